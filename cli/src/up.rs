//! `ngit-sync up`: every service in one process. Settings come from the environment (the same
//! variables the separate services read) with the command's flags on top; a local nats-server
//! and an embedded home relay stand in for `NATS_URL` and `NGIT_SYNC_HOME_RELAY` when unset.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use ngit_sync_shared::config::ConfigError;
use ngit_sync_shared::constants::SHUTDOWN_GRACE;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::home_relay::{HomeRelay, HomeRelayError};
use crate::local_nats::{LocalNats, LocalNatsError};

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub data_dir: PathBuf,
    pub bootstrap: Option<String>,
    pub metrics_addr: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Nats(#[from] LocalNatsError),
    #[error(transparent)]
    HomeRelay(#[from] HomeRelayError),
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("service {service} failed: {message}")]
    Service {
        service: &'static str,
        message: String,
    },
}

/// Stand-ins used to validate the configuration before anything starts.
const PLACEHOLDER_NATS: &str = "nats://127.0.0.1:4222";
const PLACEHOLDER_HOME: &str = "ws://127.0.0.1:7777";

/// Every service's configuration, read from one lookup.
struct Configs {
    discovery: ngit_sync_discovery::Config,
    connector: ngit_sync_connector::Config,
    sink: ngit_sync_sink::Config,
    tracker: ngit_sync_batch_tracker::Config,
    exporter: ngit_sync_metrics_exporter::Config,
}

impl Configs {
    fn read(lookup: &HashMap<String, String>) -> Result<Configs, ConfigError> {
        Ok(Configs {
            discovery: ngit_sync_discovery::Config::from_lookup(lookup)?,
            connector: ngit_sync_connector::Config::from_lookup(lookup)?,
            sink: ngit_sync_sink::Config::from_lookup(lookup)?,
            tracker: ngit_sync_batch_tracker::Config::from_lookup(lookup)?,
            exporter: ngit_sync_metrics_exporter::Config::from_lookup(lookup)?,
        })
    }
}

/// The environment with the flags applied on top.
pub fn settings(
    env: impl Iterator<Item = (String, String)>,
    opts: &UpOptions,
) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = env.collect();
    if let Some(b) = &opts.bootstrap {
        map.insert("NGIT_SYNC_BOOTSTRAP_RELAYS".into(), b.clone());
    }
    if let Some(a) = &opts.metrics_addr {
        map.insert("NGIT_SYNC_METRICS_ADDR".into(), a.clone());
    }
    map
}

/// Runs until `shutdown` is cancelled or a service fails.
pub async fn up(
    opts: UpOptions,
    mut settings: HashMap<String, String>,
    shutdown: CancellationToken,
) -> Result<(), UpError> {
    // Validate everything before starting anything.
    let mut check = settings.clone();
    check
        .entry("NATS_URL".into())
        .or_insert_with(|| PLACEHOLDER_NATS.into());
    check
        .entry("NGIT_SYNC_HOME_RELAY".into())
        .or_insert_with(|| PLACEHOLDER_HOME.into());
    Configs::read(&check)?;

    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| LocalNatsError::Dir(opts.data_dir.clone(), e))?;
    let nats = match settings.get("NATS_URL") {
        Some(_) => None,
        None => {
            let local = LocalNats::start(&opts.data_dir).await?;
            settings.insert("NATS_URL".into(), local.url.clone());
            Some(local)
        }
    };
    let home = match settings.get("NGIT_SYNC_HOME_RELAY") {
        Some(_) => None,
        None => {
            let relay = HomeRelay::start(&opts.data_dir).await?;
            settings.insert("NGIT_SYNC_HOME_RELAY".into(), relay.url.clone());
            Some(relay)
        }
    };
    let result = run_services(Configs::read(&settings)?, shutdown).await;
    if let Some(relay) = home {
        relay.stop();
    }
    if let Some(nats) = nats {
        nats.stop().await;
    }
    result
}

async fn run_services(configs: Configs, shutdown: CancellationToken) -> Result<(), UpError> {
    let connect = |name: &'static str, common: &ngit_sync_shared::CommonConfig| {
        let nats = common.nats.clone();
        async move {
            nats.connect(name)
                .await
                .map_err(|e| UpError::Connect(e.to_string()))
        }
    };
    let stop = shutdown.child_token();
    let tasks = TaskTracker::new();
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<UpError>(8);
    let spawn =
        |service: &'static str,
         fut: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>| {
            let failed = failed_tx.clone();
            tasks.spawn(async move {
                if let Err(message) = fut.await {
                    tracing::error!(service, error = %message, "service failed");
                    let _ = failed.send(UpError::Service { service, message }).await;
                }
            });
        };
    let c = connect("sink", &configs.sink.common).await?;
    spawn(
        "sink",
        Box::pin(report(ngit_sync_sink::run(configs.sink, c, stop.clone()))),
    );
    let c = connect("discovery", &configs.discovery.common).await?;
    spawn(
        "discovery",
        Box::pin(report(ngit_sync_discovery::run(
            configs.discovery,
            c,
            stop.clone(),
        ))),
    );
    let c = connect("batch-tracker", &configs.tracker.common).await?;
    spawn(
        "batch-tracker",
        Box::pin(report(ngit_sync_batch_tracker::run(
            configs.tracker,
            c,
            stop.clone(),
        ))),
    );
    let c = connect("metrics-exporter", &configs.exporter.common).await?;
    spawn(
        "metrics-exporter",
        Box::pin(report(ngit_sync_metrics_exporter::run(
            configs.exporter,
            c,
            stop.clone(),
        ))),
    );
    let c = connect("connector", &configs.connector.common).await?;
    spawn(
        "connector",
        Box::pin(report(ngit_sync_connector::run(
            configs.connector,
            c,
            stop.clone(),
        ))),
    );
    tasks.close();
    drop(failed_tx);

    let failure = tokio::select! {
        _ = shutdown.cancelled() => None,
        f = failed_rx.recv() => f,
        _ = tasks.wait() => None,
    };
    stop.cancel();
    // Services stop within their own grace; this bound keeps `up` within SIGTERM's promise.
    if tokio::time::timeout(SHUTDOWN_GRACE - Duration::from_secs(1), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("services did not stop within the grace period");
    }
    match failure.or_else(|| failed_rx.try_recv().ok()) {
        Some(e) if !shutdown.is_cancelled() => Err(e),
        _ => Ok(()),
    }
}

async fn report<E: std::fmt::Display>(
    fut: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    fut.await.map_err(|e| e.to_string())
}
