//! Pool membership: heartbeat into `ngit_sync_workers`, follow the live workers and the relays
//! to sync, and start or stop one owner task per relay as [`Ownership`] decides. On shutdown
//! every owner closes and releases, then the heartbeat goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{now_ms, RelayEntry, WorkerEntry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::kv_feed::{Feed, KvFeed};
use crate::lease;
use crate::ownership::{Decision, Ended, Ownership, ReleaseReason};
use crate::relay_owner::{self, OwnerContext, StopSignal};

/// Claims are paced: at most this many new relays per tick...
const CLAIMS_PER_TICK: usize = 8;
/// ...of this length (80 connection attempts a second at most).
const CLAIM_TICK: Duration = Duration::from_millis(100);

/// Runs until `shutdown`, then winds every relay down within the configured grace.
pub async fn run(ctx: Arc<OwnerContext>, shutdown: CancellationToken) -> Result<(), Error> {
    let config = ctx.config.clone();
    let bus = &ctx.bus;
    let me = config.worker_id.clone();
    let started = now_ms();
    let worker_ttl = config.common.bus.worker_ttl.as_millis() as u64;
    let mut ownership = Ownership::new(&me, worker_ttl, config.lease_renew.as_millis() as u64);
    let beat = |relays: usize| WorkerEntry {
        worker: me.clone(),
        started_ms: started,
        relays: relays as u32,
    };
    lease::heartbeat(bus, &beat(0)).await?;
    let mut workers = KvFeed::open(&bus.buckets.workers).await?;
    let mut relays = KvFeed::open(&bus.buckets.relays).await?;
    let (mut workers_current, mut relays_current) = (false, false);
    let mut owners: JoinSet<(String, Ended)> = JoinSet::new();
    let mut stops: HashMap<String, StopSignal> = HashMap::new();
    let mut heartbeat = tokio::time::interval(config.lease_renew);
    heartbeat.tick().await;
    // The heartbeat in flight: sent from its own task, so a put stuck while NATS is away never
    // holds the loop up, and bounded by one period, so the next one goes out on time once NATS
    // is back (a late heartbeat makes the others think this worker died).
    let mut beating: Option<tokio::task::JoinHandle<()>> = None;
    let mut pace = tokio::time::interval(CLAIM_TICK);
    let mut was_frozen = false;
    tracing::info!(worker = %me, "connector joined the pool");

    let failure: Option<Error> = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            _ = heartbeat.tick() => {
                let (bus, entry, within) = (bus.clone(), beat(ownership.held()), config.lease_renew);
                beating = Some(tokio::spawn(async move {
                    match tokio::time::timeout(within, lease::heartbeat(&bus, &entry)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat failed"),
                        Err(_) => tracing::warn!("heartbeat unanswered within {within:?}"),
                    }
                }));
            }
            _ = pace.tick(), if workers_current && relays_current => {
                let decisions = ownership.decide(now_ms(), CLAIMS_PER_TICK);
                if ownership.frozen() != was_frozen {
                    was_frozen = ownership.frozen();
                    if was_frozen {
                        tracing::warn!(worker = %me, "own heartbeat not seen lately; holding relays as they are until the pool is visible again");
                    } else {
                        tracing::info!(worker = %me, "pool visible again");
                    }
                }
                for decision in decisions {
                    match decision {
                        Decision::Claim(entry) => {
                            let key = entry.url.key().to_string();
                            let stop = StopSignal::default();
                            stops.insert(key.clone(), stop.clone());
                            let ctx = ctx.clone();
                            owners.spawn(async move {
                                let ended = relay_owner::own(ctx, entry, stop).await;
                                (key, ended)
                            });
                        }
                        Decision::Release { key, reason } => {
                            tracing::info!(relay = %key, reason = reason.as_str(), "releasing relay");
                            if let Some(stop) = stops.get(&key) {
                                stop.stop(reason.as_str());
                            }
                        }
                    }
                }
            }
            item = workers.next() => match item {
                Ok(Feed::Entry(e)) if e.operation == Operation::Put => ownership.worker_seen(&e.key, now_ms()),
                Ok(Feed::Entry(e)) => ownership.worker_gone(&e.key),
                Ok(Feed::Current) => workers_current = true,
                Err(e) => break Some(e),
            },
            item = relays.next() => match item {
                Ok(Feed::Entry(e)) if e.operation == Operation::Put => match codec::decode::<RelayEntry>(&e.value) {
                    Ok(entry) if entry.url.key().as_str() == e.key => ownership.relay_put(&e.key, entry),
                    Ok(entry) => tracing::warn!(key = %e.key, url = %entry.url, "relay entry under a foreign key ignored"),
                    Err(err) => tracing::warn!(key = %e.key, error = %err, "undecodable relay entry ignored"),
                },
                Ok(Feed::Entry(e)) => ownership.relay_deleted(&e.key),
                Ok(Feed::Current) => relays_current = true,
                Err(e) => break Some(e),
            },
            Some(joined) = owners.join_next(), if !owners.is_empty() => match joined {
                Ok((key, ended)) => {
                    stops.remove(&key);
                    ownership.ended(&key, &ended, now_ms());
                }
                Err(e) => break Some(Error::TaskDied { task: "relay owner", message: e.to_string() }),
            },
        }
    };

    wind_down(&mut owners, &stops, config.shutdown_grace).await;
    // A heartbeat landing after the goodbye would keep this worker "alive" for a TTL.
    if let Some(last) = beating.take() {
        let _ = last.await;
    }
    if let Err(e) = lease::retire(bus, &me).await {
        tracing::warn!(error = %e, "heartbeat not removed; it expires with its TTL");
    }
    tracing::info!(worker = %me, "connector left the pool");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Stops every owner and waits for them, leaving a second of the grace for the rest.
async fn wind_down(
    owners: &mut JoinSet<(String, Ended)>,
    stops: &HashMap<String, StopSignal>,
    grace: Duration,
) {
    for stop in stops.values() {
        stop.stop(ReleaseReason::Shutdown.as_str());
    }
    let within = grace.saturating_sub(Duration::from_secs(1));
    let all = async {
        while let Some(joined) = owners.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "relay owner died while stopping");
            }
        }
    };
    if tokio::time::timeout(within, all).await.is_err() {
        tracing::warn!(
            left = owners.len(),
            "relay owners did not stop within {within:?}"
        );
        owners.abort_all();
    }
}
