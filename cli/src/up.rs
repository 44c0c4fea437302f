//! `ngit-sync up`: every service in one process. Settings come from the environment (the same
//! variables the separate services read) with the command's flags on top; a local nats-server
//! and an embedded home relay stand in for `NATS_URL` and `NGIT_SYNC_HOME_RELAY` when unset.

use std::collections::HashMap;
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

/// Reads every service's configuration, so a bad value stops `up` before anything starts.
fn validate(lookup: &HashMap<String, String>) -> Result<(), ConfigError> {
    ngit_sync_discovery::Config::from_lookup(lookup)?;
    ngit_sync_connector::Config::from_lookup(lookup)?;
    ngit_sync_sink::Config::from_lookup(lookup)?;
    ngit_sync_batch_tracker::Config::from_lookup(lookup)?;
    ngit_sync_metrics_exporter::Config::from_lookup(lookup)?;
    Ok(())
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
    validate(&check)?;

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
    validate(&settings)?;
    let result = run_services(&settings, shutdown).await;
    if let Some(relay) = home {
        relay.stop();
    }
    if let Some(nats) = nats {
        nats.stop().await;
    }
    result
}

async fn run_services(
    settings: &HashMap<String, String>,
    shutdown: CancellationToken,
) -> Result<(), UpError> {
    let stop = shutdown.child_token();
    let tasks = TaskTracker::new();
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel::<UpError>(8);
    for service in crate::run::SERVICES {
        let (settings, stop, failed) = (settings.clone(), stop.clone(), failed_tx.clone());
        tasks.spawn(async move {
            if let Err(error) = crate::run::run(service, &settings, stop).await {
                tracing::error!(service, %error, "service failed");
                let _ = failed.send(error).await;
            }
        });
    }
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
