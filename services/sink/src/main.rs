//! The `ngit-sync-sink` binary: configuration, NATS, signals and exit codes around [`run`].

use ngit_sync_shared::process;
use ngit_sync_sink::{run, Config, SERVICE};

#[tokio::main]
async fn main() {
    process::init_tracing();
    let config = Config::from_env().unwrap_or_else(|e| process::exit_on_config_error(e));
    let nats = match config.common.nats.connect(SERVICE).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, nats = %config.common.nats.redacted_url(), "cannot connect to NATS");
            std::process::exit(process::EXIT_FAILURE);
        }
    };
    if let Err(error) = run(config, nats, process::shutdown_on_signals()).await {
        tracing::error!(%error, "sink failed");
        std::process::exit(process::EXIT_FAILURE);
    }
}
