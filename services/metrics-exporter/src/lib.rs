//! metrics-exporter turns the bus into Prometheus metrics (DESIGN.md section 8) and serves
//! `GET /metrics`, `GET /healthz` and an HTML status page of every relay at `GET /`.
//!
//! It reads the RELAYS and OUTCOMES streams from their start (counters rebuild from the
//! retained 24 h) and watches the relays, status, workers, leases and watermarks buckets.
//!
//! Modules:
//! - [`config`]: [`Config`] from the environment
//! - [`view`]: the state machine that folds messages and KV values into per-relay state
//! - [`relay_view`]: one relay's part of the view
//! - [`expiring`]: mirrors of buckets whose entries expire (heartbeats, leases)
//! - [`metrics`]: the Prometheus registry, projected from the view at every scrape
//! - [`page`]: the HTML status page
//! - [`exporter`]: the state shared by the inputs and the HTTP handlers
//! - [`inputs`]: the NATS consumers and watches that feed it
//! - [`http`]: the axum router

pub mod config;
pub mod expiring;
pub mod exporter;
pub mod http;
pub mod inputs;
pub mod metrics;
pub mod page;
pub mod relay_view;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use ngit_sync_shared::{bus_for, service_api, StartError};

pub use config::Config;
use exporter::Exporter;

/// Name on the NATS service API and of the NATS connection.
pub const SERVICE: &str = "metrics-exporter";

/// Tasks get this long to stop after shutdown (well inside the 10 s SIGTERM promise).
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register with the NATS service API: {0}")]
    ServiceApi(String),
    #[error("metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
    #[error("{input}: {message}")]
    Input {
        input: &'static str,
        message: String,
    },
    #[error("input {0} ended unexpectedly")]
    InputEnded(String),
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    #[error("task {0} stopped unexpectedly")]
    TaskStopped(&'static str),
    #[error("a task panicked: {0}")]
    TaskPanicked(String),
}

/// Binds `config.addr` and runs until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: config.addr,
            source,
        })?;
    run_with_listener(config, nats, listener, shutdown).await
}

/// Runs on an already bound listener (ignoring `config.addr`): a caller that binds port 0
/// knows the address from `listener.local_addr()` before the service starts.
pub async fn run_with_listener(
    config: Config,
    nats: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let bus = bus_for(nats.clone(), &config.common).await?;
    let service = service_api::register(
        &nats,
        &bus.names,
        SERVICE,
        "Prometheus metrics and a status page of ngit-sync",
    )
    .await
    .map_err(|e| Error::ServiceApi(e.to_string()))?;
    let exporter = Arc::new(Exporter::new(nats, &config.common.bus, inputs::INPUTS)?);
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "serving /metrics, /healthz and /");

    // Not a child of `shutdown`: tasks must not stop before the select below has seen
    // `shutdown`, or their clean exit would look like a failure.
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    inputs::spawn(&mut tasks, &bus, &exporter, &stop);
    tasks.spawn({
        let (exporter, stop) = (exporter.clone(), stop.clone());
        async move { ("http", http::serve(listener, exporter, stop).await) }
    });

    let failure = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        Some(joined) = tasks.join_next() => Some(match joined {
            Ok((_, Err(e))) => e,
            Ok((name, Ok(()))) => Error::TaskStopped(name),
            Err(e) => Error::TaskPanicked(e.to_string()),
        }),
    };
    if let Some(e) = &failure {
        tracing::error!(error = %e, "a task failed; stopping");
    }
    stop.cancel();
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, Err(e))) => {
                    tracing::warn!(task = name, error = %e, "task ended with an error")
                }
                Err(e) if e.is_panic() => tracing::warn!(error = %e, "task panicked"),
                _ => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("tasks did not stop within the grace period; aborting them");
        tasks.abort_all();
    }
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "service API stop");
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
