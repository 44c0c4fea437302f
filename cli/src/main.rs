//! The `ngit-sync` command: `up`, `status`, `watch`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ngit_sync::up::{UpError, UpOptions};
use ngit_sync_shared::process;
use ngit_sync_shared::CommonConfig;

#[derive(Parser)]
#[command(
    name = "ngit-sync",
    version,
    about = "Proactive sync of NIP-34 git events into a GRASP home relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process (local nats-server and home relay when none is configured).
    Up {
        /// Where the local nats-server and the embedded home relay keep their data.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// Bootstrap relays (comma separated); overrides NGIT_SYNC_BOOTSTRAP_RELAYS.
        #[arg(long)]
        bootstrap: Option<String>,
        /// Metrics and status page address; overrides NGIT_SYNC_METRICS_ADDR.
        #[arg(long)]
        metrics_addr: Option<String>,
    },
    /// Print one line per relay: status, health, failures, owner, last change.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print relay lifecycle messages as they happen.
    Watch {
        #[arg(long)]
        json: bool,
    },
    /// Ask a service over the NATS service API whether it runs (exit 0 if it answers within 2 s);
    /// prints every instance that answers.
    Ping {
        /// discovery, connector, sink, batch-tracker or metrics-exporter
        service: String,
        /// Succeed only if an instance on this host (HOSTNAME, else the kernel's hostname)
        /// answers: the health check of one replica among several.
        #[arg(long)]
        here: bool,
    },
    /// Run one service (discovery, connector, sink, batch-tracker, metrics-exporter) in this process.
    Run { service: String },
    /// Run only a home relay (nostr-relay-builder over LMDB), e.g. for a compose deployment.
    Relay {
        #[arg(long, default_value = "127.0.0.1:7777")]
        addr: std::net::SocketAddr,
        #[arg(long, default_value = "./data/home-relay")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    process::init_tracing();
    match cli.command {
        Command::Up { data_dir, bootstrap, metrics_addr } => {
            let opts = UpOptions { data_dir, bootstrap, metrics_addr };
            let settings = ngit_sync::up::settings(std::env::vars(), &opts);
            match ngit_sync::up::up(opts, settings, process::shutdown_on_signals()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(UpError::Config(e)) => process::exit_on_config_error(e),
                Err(e) => {
                    eprintln!("ngit-sync up: {e}");
                    ExitCode::from(process::EXIT_FAILURE as u8)
                }
            }
        }
        Command::Status { json } => inspect(|bus| async move {
            let lines = ngit_sync::status::collect(&bus).await?;
            if json {
                for l in &lines {
                    println!("{}", serde_json::json!({"relay": l.url, "bootstrap": l.bootstrap, "repos": l.repos, "status": l.status, "owner": l.owner}));
                }
            } else {
                print!("{}", ngit_sync::status::render(&lines, ngit_sync_shared::messages::now_ms()));
            }
            Ok(())
        })
        .await,
        Command::Watch { json } => inspect(|bus| async move { ngit_sync::watch::watch(&bus, json, process::shutdown_on_signals()).await }).await,
        Command::Run { service } => {
            let settings: std::collections::HashMap<String, String> = std::env::vars().collect();
            match ngit_sync::run::run(&service, &settings, process::shutdown_on_signals()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(UpError::Config(e)) => process::exit_on_config_error(e),
                Err(e) => {
                    eprintln!("ngit-sync run {service}: {e}");
                    ExitCode::from(process::EXIT_FAILURE as u8)
                }
            }
        }
        Command::Ping { service, here } => {
            let env = ngit_sync_shared::config::env();
            let config = CommonConfig::from_lookup(&env).unwrap_or_else(|e| process::exit_on_config_error(e));
            let host = match here {
                false => None,
                true => match ngit_sync_shared::host::hostname(&env) {
                    Some(h) => Some(h),
                    None => {
                        eprintln!("ngit-sync ping --here: this host's name is unknown (set HOSTNAME)");
                        return ExitCode::from(process::EXIT_FAILURE as u8);
                    }
                },
            };
            let Some(client) = connect(&config).await else { return ExitCode::from(process::EXIT_FAILURE as u8) };
            report(ngit_sync::ping::ping(&client, &config.names, &service, host.as_deref()).await)
        }
        Command::Relay { addr, data_dir } => match ngit_sync::home_relay::HomeRelay::start_on(addr, &data_dir).await {
            Ok(relay) => {
                process::shutdown_on_signals().cancelled().await;
                relay.stop();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ngit-sync relay: {e}");
                ExitCode::from(process::EXIT_FAILURE as u8)
            }
        },
    }
}

/// Connects to the configured NATS within 5 s (no local server: inspecting needs a running system).
async fn connect(config: &CommonConfig) -> Option<async_nats::Client> {
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        config.nats.connect("ngit-sync-cli"),
    )
    .await
    {
        Ok(Ok(c)) => Some(c),
        _ => {
            eprintln!(
                "cannot reach NATS at {} (set NATS_URL)",
                config.nats.redacted_url()
            );
            None
        }
    }
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(process::EXIT_FAILURE as u8)
        }
    }
}

/// Connects and opens the buckets, for the commands that read them.
async fn inspect<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce(ngit_sync_shared::Bus) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let config = CommonConfig::from_lookup(&ngit_sync_shared::config::env())
        .unwrap_or_else(|e| process::exit_on_config_error(e));
    let Some(client) = connect(&config).await else {
        return ExitCode::from(process::EXIT_FAILURE as u8);
    };
    match ngit_sync_shared::bus_for(client, &config).await {
        Ok(bus) => report(f(bus).await),
        Err(e) => report(Err(e.to_string())),
    }
}
