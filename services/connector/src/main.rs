//! The connector binary: configuration from the environment, NATS, signals, exit codes.

use ngit_sync_connector::{run, Config, SERVICE};
use ngit_sync_shared::process;

#[tokio::main]
async fn main() {
    process::init_tracing();
    let config = Config::from_env().unwrap_or_else(|e| process::exit_on_config_error(e));
    let nats = match config.common.nats.connect(SERVICE).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot connect to NATS");
            std::process::exit(process::EXIT_FAILURE);
        }
    };
    if run(config, nats, process::shutdown_on_signals())
        .await
        .is_err()
    {
        std::process::exit(process::EXIT_FAILURE);
    }
}
