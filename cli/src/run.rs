//! `ngit-sync run <service>`: one service in this process, exactly as its own binary runs it,
//! so one executable can serve every container of a deployment and every process of a test.

use std::collections::HashMap;
use std::future::Future;

use ngit_sync_shared::config::ConfigError;
use ngit_sync_shared::CommonConfig;
use tokio_util::sync::CancellationToken;

use crate::up::UpError;

/// The services `run` accepts.
pub const SERVICES: [&str; 5] = [
    "discovery",
    "connector",
    "sink",
    "batch-tracker",
    "metrics-exporter",
];

/// Reads the service's configuration from `settings`, connects and runs it until `shutdown`.
pub async fn run(
    service: &str,
    settings: &HashMap<String, String>,
    shutdown: CancellationToken,
) -> Result<(), UpError> {
    match service {
        "discovery" => {
            let c = ngit_sync_discovery::Config::from_lookup(settings)?;
            let nats = connect("discovery", &c.common).await?;
            finish(
                "discovery",
                Box::pin(ngit_sync_discovery::run(c, nats, shutdown)),
            )
            .await
        }
        "connector" => {
            let c = ngit_sync_connector::Config::from_lookup(settings)?;
            let nats = connect("connector", &c.common).await?;
            finish(
                "connector",
                Box::pin(ngit_sync_connector::run(c, nats, shutdown)),
            )
            .await
        }
        "sink" => {
            let c = ngit_sync_sink::Config::from_lookup(settings)?;
            let nats = connect("sink", &c.common).await?;
            finish("sink", Box::pin(ngit_sync_sink::run(c, nats, shutdown))).await
        }
        "batch-tracker" => {
            let c = ngit_sync_batch_tracker::Config::from_lookup(settings)?;
            let nats = connect("batch-tracker", &c.common).await?;
            finish(
                "batch-tracker",
                Box::pin(ngit_sync_batch_tracker::run(c, nats, shutdown)),
            )
            .await
        }
        "metrics-exporter" => {
            let c = ngit_sync_metrics_exporter::Config::from_lookup(settings)?;
            let nats = connect("metrics-exporter", &c.common).await?;
            finish(
                "metrics-exporter",
                Box::pin(ngit_sync_metrics_exporter::run(c, nats, shutdown)),
            )
            .await
        }
        other => Err(UpError::Config(ConfigError::new(
            "SERVICE",
            format!("unknown service {other:?} (one of {})", SERVICES.join(", ")),
        ))),
    }
}

async fn connect(name: &str, common: &CommonConfig) -> Result<async_nats::Client, UpError> {
    common
        .nats
        .connect(name)
        .await
        .map_err(|e| UpError::Connect(e.to_string()))
}

/// Each service's future is boxed: together in one match their sizes add up to more stack than
/// a debug build's worker thread has.
async fn finish<E: std::fmt::Display>(
    service: &'static str,
    fut: impl Future<Output = Result<(), E>>,
) -> Result<(), UpError> {
    fut.await.map_err(|e| UpError::Service {
        service,
        message: e.to_string(),
    })
}
