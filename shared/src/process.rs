//! What every service binary does around its `run`: tracing, signals, config errors.

use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;

/// Installs a `tracing` subscriber filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout is for what a command prints (`status --json`, `ping`).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// A token cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
        t.cancel();
    });
    token
}

/// Exit code for invalid configuration.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code for a service that failed while running.
pub const EXIT_FAILURE: i32 = 1;

/// Prints the one-line configuration error and exits with code 2.
pub fn exit_on_config_error(e: ConfigError) -> ! {
    eprintln!("configuration error: {e}");
    std::process::exit(EXIT_CONFIG)
}
