//! The discovery binary: configuration, signals and exit codes around [`ngit_sync_discovery::run`].

use ngit_sync_discovery::{run, Config, SERVICE};
use ngit_sync_shared::process;

#[tokio::main]
async fn main() {
    process::init_tracing();
    let config = Config::from_env().unwrap_or_else(|e| process::exit_on_config_error(e));
    let nats = match config.common.nats.connect(SERVICE).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(nats = %config.common.nats.redacted_url(), error = %e, "cannot connect to NATS");
            std::process::exit(process::EXIT_FAILURE);
        }
    };
    if let Err(e) = run(config, nats, process::shutdown_on_signals()).await {
        tracing::error!(error = %e, "discovery failed");
        std::process::exit(process::EXIT_FAILURE);
    }
}
