//! ngit-sync connector: a pool worker that leases relays and, for each relay it owns, holds
//! one WebSocket session that syncs L1–L3 history and live events, checks every event and
//! publishes it to the events stream (DESIGN.md sections 4, 5 and 9).
//!
//! Ownership:
//! - [`config`]: settings and their environment variables
//! - [`pool`]: heartbeat, live workers, relays to sync, one owner task per relay
//! - [`ownership`]: the pool's claim/release decisions (pure, paced)
//! - [`rendezvous`]: highest-random-weight choice of a relay's worker
//! - [`lease`]: leases (compare-and-set) and heartbeats in KV
//! - [`kv_feed`]: KV watches that say when the initial values are in
//!
//! A relay:
//! - [`relay_owner`]: lease renewal, connection attempts with backoff, wind-down
//! - [`health`]: failures, backoff, rate limits, stability (pure)
//! - [`relay_state`]: the persisted per-relay state and the fresh/quick plan
//! - [`session`]: one WebSocket session's I/O loop
//! - [`news`]: the relay's RELAYS-stream messages, in order
//!
//! Sync (pure, but for the watcher):
//! - [`syncer`]: a session's state machine
//! - [`targets`]: per-relay targets; [`targets_watcher`] feeds them from the repos bucket
//! - [`work`]: confirmed / pending / carried / failed work and the three-way diff
//! - [`historic`]: batches and their pagination
//! - [`negentropy`]: NIP-77 reconciliation, refusals, fetch rounds (pure)
//! - [`index_client`]: the home index's items for a filter, from discovery
//! - [`subscriptions`]: open REQs, the queue, EOSE deadlines
//! - [`checks`]: frame splitting and event verification
//!
//! - [`error`]: why the service stops

pub mod applied_watermark;
pub mod checks;
pub mod config;
pub mod error;
pub mod health;
pub mod historic;
pub mod index_client;
pub mod kv_feed;
pub mod lease;
pub mod negentropy;
pub mod news;
pub mod ownership;
pub mod pool;
pub mod publish_budget;
pub mod relay_owner;
pub mod relay_state;
pub mod rendezvous;
pub mod session;
pub mod subscriptions;
pub mod syncer;
pub mod targets;
pub mod targets_watcher;
pub mod work;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ngit_sync_shared::messages::now_ms;
use ngit_sync_shared::service_api;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;

use relay_owner::OwnerContext;
use targets_watcher::Targets;

/// The service's name on the NATS service API and as a NATS client.
pub const SERVICE: &str = "connector";

/// Runs the connector until `shutdown` is cancelled, then releases every relay within the
/// configured grace. Errors when the bus cannot be set up or an internal task died.
pub async fn run(
    config: Config,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    let bus = ngit_sync_shared::bus_for(nats.clone(), &config.common).await?;
    let service = service_api::register(
        &nats,
        &bus.names,
        SERVICE,
        "syncs NIP-34 events from remote relays into the events stream",
    )
    .await
    .map_err(|e| Error::ServiceApi(e.to_string()))?;
    tracing::info!(worker = %config.worker_id, "connector starting");

    let targets = Targets::new();
    let inner = shutdown.child_token();
    let mut watcher = tokio::spawn(targets_watcher::run(
        bus.clone(),
        targets.clone(),
        inner.clone(),
    ));
    let publish_budget = publish_budget::PublishBudget::new(config.publish_budget_mib << 20);
    let ctx = Arc::new(OwnerContext {
        bus,
        publish_budget,
        config: Arc::new(config),
        targets,
        sessions: AtomicU64::new(now_ms()),
    });
    let mut pool = tokio::spawn(pool::run(ctx, inner.clone()));

    let result = tokio::select! {
        joined = &mut pool => {
            inner.cancel();
            let watched = (&mut watcher).await;
            flatten("pool", joined).and(flatten("targets watcher", watched))
        }
        joined = &mut watcher => {
            // Without targets the pool cannot work: stop it gracefully and report why.
            inner.cancel();
            let pooled = (&mut pool).await;
            flatten("targets watcher", joined).and(flatten("pool", pooled))
        }
    };
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "service API did not stop cleanly");
    }
    if let Err(e) = &result {
        tracing::error!(error = %e, "connector stopped with an error");
    }
    result
}

fn flatten(
    task: &'static str,
    joined: Result<Result<(), Error>, tokio::task::JoinError>,
) -> Result<(), Error> {
    match joined {
        Ok(result) => result,
        Err(e) => Err(Error::TaskDied {
            task,
            message: e.to_string(),
        }),
    }
}
