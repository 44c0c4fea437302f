//! batch-tracker: owns every relay's ConnectionStatus (DESIGN.md section 6). It follows the
//! connectors' lifecycle news on the RELAYS stream, discovery's landing watermark and the
//! leases, decides Syncing → Connected, and publishes each change on `.status` and in
//! `ngit_sync_status`.
//!
//! - [`config`]: [`Config`], read from the environment
//! - [`relay_track`]: one relay's status and session facts, and how news moves them
//! - [`status_machine`]: every relay's status; news, watermark, leases and time in, changes out
//! - [`lease_book`]: when a relay's lease was last renewed, to notice a dead owner
//! - [`status_store`]: writes reports to the bucket and subject only when they differ
//! - [`tracker`]: the task that replays the stream at start, then follows it live

pub mod config;
#[cfg(test)]
mod fixtures;
pub mod lease_book;
pub mod relay_track;
pub mod status_machine;
pub mod status_store;
pub mod tracker;

use std::time::Duration;

use ngit_sync_shared::{constants, service_api, BusError};
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// Service name on the NATS service API.
pub const SERVICE: &str = "batch-tracker";

/// Time the tracker task gets to finish after shutdown.
const SHUTDOWN_GRACE: Duration = constants::SHUTDOWN_GRACE;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start: {0}")]
    Start(#[from] ngit_sync_shared::StartError),
    #[error("cannot register with the NATS service API: {0}")]
    ServiceApi(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("bucket {bucket}: {message}")]
    Kv { bucket: String, message: String },
    #[error("stream {stream}: {message}")]
    Stream { stream: String, message: String },
    #[error("the {0} ended")]
    FeedEnded(&'static str),
    #[error("the tracker task died: {0}")]
    TaskDied(String),
    #[error("the tracker task did not stop within {0:?}")]
    ShutdownTimeout(Duration),
}

/// Runs batch-tracker until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let bus = ngit_sync_shared::bus_for(nats, &config.common).await?;
    let service = service_api::register(
        &bus.client,
        &bus.names,
        SERVICE,
        "ConnectionStatus of every relay, from the connectors' lifecycle news",
    )
    .await
    .map_err(|e| Error::ServiceApi(e.to_string()))?;
    tracing::info!(quiet = ?config.quiet, prefix = bus.names.prefix(), "batch-tracker started");

    let stop = shutdown.child_token();
    let mut task = tokio::spawn(tracker::track(bus, config, stop.clone()));
    let joined = |r: Result<Result<(), Error>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Err(Error::TaskDied(e.to_string())))
    };
    let result = tokio::select! {
        r = &mut task => match joined(r) {
            Ok(()) if !stop.is_cancelled() => Err(Error::TaskDied("returned early".into())),
            other => other,
        },
        _ = shutdown.cancelled() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(r) => joined(r),
            Err(_) => {
                task.abort();
                Err(Error::ShutdownTimeout(SHUTDOWN_GRACE))
            }
        },
    };
    if let Err(e) = service.stop().await {
        tracing::warn!(error = %e, "cannot stop the service API responder");
    }
    match &result {
        Ok(()) => tracing::info!("batch-tracker stopped"),
        Err(e) => tracing::error!(error = %e, "batch-tracker failed"),
    }
    result
}
