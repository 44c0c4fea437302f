//! The `ngit-sync-metrics-exporter` binary: configuration, NATS connection, signals, exit code.

use ngit_sync_metrics_exporter::{run, Config, SERVICE};
use ngit_sync_shared::process;

#[tokio::main]
async fn main() {
    process::init_tracing();
    let config = Config::from_env().unwrap_or_else(|e| process::exit_on_config_error(e));
    tracing::info!(nats = %config.common.nats.redacted_url(), addr = %config.addr, "starting");
    let nats = match config.common.nats.connect(SERVICE).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to NATS");
            std::process::exit(process::EXIT_FAILURE);
        }
    };
    if let Err(e) = run(config, nats, process::shutdown_on_signals()).await {
        tracing::error!(error = %e, "metrics-exporter failed");
        std::process::exit(process::EXIT_FAILURE);
    }
}
