//! The batch-tracker binary: configuration, NATS connection and signals around [`run`].

use ngit_sync_batch_tracker::{run, Config, SERVICE};
use ngit_sync_shared::process;

#[tokio::main]
async fn main() {
    process::init_tracing();
    let config = Config::from_env().unwrap_or_else(|e| process::exit_on_config_error(e));
    let nats = match config.common.nats.connect(SERVICE).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(url = %config.common.nats.redacted_url(), error = %e, "cannot connect to NATS");
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
