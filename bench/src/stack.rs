//! The system under test: a nats-server, and every service as its own process, configured
//! against a home relay; plus the bench's own bus handle to read KV.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ngit_sync_shared::{Bus, CommonConfig};
use ngit_sync_test_support::{free_port, http_get, NatsServer};
use tempfile::TempDir;

use crate::service_process::{locate_binary, ServiceProcess};

/// Services started once per stack; connectors are started separately, as many as asked.
const SINGLETONS: [&str; 4] = ["sink", "discovery", "batch-tracker", "metrics-exporter"];
/// Matches the services' own shutdown bound (DESIGN: exit within 10 s).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to configure beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// NGIT_SYNC_DISCOVERY_WINDOW.
    pub discovery_window: Option<Duration>,
    /// Keep the log directory after the run.
    pub keep_logs: bool,
}

pub struct Stack {
    pub nats: NatsServer,
    pub bus: Bus,
    /// Environment every service gets.
    pub settings: BTreeMap<String, String>,
    /// Settings that differ from the services' defaults, for the report.
    pub overrides: BTreeMap<String, String>,
    bin: PathBuf,
    logs: Option<TempDir>,
    keep_logs: bool,
    processes: Vec<ServiceProcess>,
    connectors_started: usize,
}

impl Stack {
    /// Starts nats-server and provisions the bus; no service runs yet.
    pub async fn prepare(home_relay: &str, opts: &StackOptions) -> anyhow::Result<Stack> {
        let bin = locate_binary()?;
        let nats = NatsServer::start().await?;
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut overrides = BTreeMap::new();
        if let Some(window) = opts.discovery_window {
            overrides.insert(
                "NGIT_SYNC_DISCOVERY_WINDOW".to_string(),
                format!("{}ms", window.as_millis()),
            );
        }
        let mut settings: BTreeMap<String, String> = [
            ("NATS_URL", nats.url()),
            ("NGIT_SYNC_HOME_RELAY", home_relay.to_string()),
            ("NGIT_SYNC_ALLOW_PRIVATE_RELAYS", "true".to_string()),
            ("NGIT_SYNC_METRICS_ADDR", metrics.to_string()),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        settings.extend(overrides.clone());
        let lookup: HashMap<String, String> = settings.clone().into_iter().collect();
        let common = CommonConfig::from_lookup(&lookup).map_err(|e| anyhow::anyhow!("{e}"))?;
        let bus = ngit_sync_shared::bus_for(nats.client().await?, &common).await?;
        let logs = tempfile::Builder::new()
            .prefix("ngit-sync-bench-logs-")
            .tempdir()?;
        Ok(Stack {
            nats,
            bus,
            settings,
            overrides,
            bin,
            logs: Some(logs),
            keep_logs: opts.keep_logs,
            processes: Vec::new(),
            connectors_started: 0,
        })
    }

    /// Starts sink, discovery, batch-tracker, metrics-exporter and `connectors` connectors.
    pub fn start_services(&mut self, connectors: usize) -> anyhow::Result<()> {
        for service in SINGLETONS {
            self.spawn(service, service, &BTreeMap::new())?;
        }
        for _ in 0..connectors {
            self.start_connector(&BTreeMap::new())?;
        }
        Ok(())
    }

    /// Starts one more connector worker (`connector-<n>`, worker id `bench-connector-<n>`)
    /// with `extra` settings; returns its name.
    pub fn start_connector(&mut self, extra: &BTreeMap<String, String>) -> anyhow::Result<String> {
        self.connectors_started += 1;
        let name = format!("connector-{}", self.connectors_started);
        let mut env = extra.clone();
        env.insert("NGIT_SYNC_WORKER_ID".to_string(), worker_id(&name));
        self.spawn("connector", &name, &env)?;
        Ok(name)
    }

    fn spawn(
        &mut self,
        service: &str,
        name: &str,
        extra: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let mut env = self.settings.clone();
        env.extend(extra.clone());
        let dir = self.logs.as_ref().expect("logs live as long as the stack");
        let process = ServiceProcess::spawn(&self.bin, service, name, &env, dir.path())?;
        self.processes.push(process);
        Ok(())
    }

    /// The process called `name`.
    pub fn process(&mut self, name: &str) -> anyhow::Result<&mut ServiceProcess> {
        self.processes
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process {name}"))
    }

    /// Names of the running connector processes.
    pub fn connectors(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|p| {
                (p.name.starts_with("connector") && p.exited().is_none()).then(|| p.name.clone())
            })
            .collect()
    }

    /// Fails, with the end of its log, if a service exited on its own.
    pub fn ensure_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.processes {
            if let Some(status) = p.exited() {
                anyhow::bail!(
                    "{} exited ({status}); end of its log:\n{}",
                    p.name,
                    p.log_tail(20)
                );
            }
        }
        Ok(())
    }

    /// Stops a service with SIGKILL and forgets it (its figures go with it).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        self.process(name)?.kill();
        self.processes.retain(|p| p.name != name);
        Ok(())
    }

    /// Stops a service with SIGTERM (SIGKILL after 10 s); returns how long it took to exit.
    pub async fn terminate(&mut self, name: &str) -> anyhow::Result<Option<Duration>> {
        let took = self.process(name)?.terminate(STOP_GRACE).await;
        self.processes.retain(|p| p.name != name);
        Ok(took)
    }

    /// Peak RSS of every service process still known, by name.
    pub fn peak_rss(&mut self) -> BTreeMap<String, u64> {
        self.processes
            .iter_mut()
            .filter_map(|p| Some((p.name.clone(), p.memory()?.peak_rss_bytes)))
            .collect()
    }

    /// Current RSS of the named processes, summed.
    pub fn rss_of(&mut self, names: &[String]) -> u64 {
        self.processes
            .iter_mut()
            .filter(|p| names.contains(&p.name))
            .filter_map(|p| p.memory().map(|m| m.rss_bytes))
            .sum()
    }

    /// CPU seconds of every running service process, by name.
    pub fn cpu(&self) -> BTreeMap<String, Duration> {
        self.processes
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.cpu()?)))
            .collect()
    }

    /// nats-server's own memory figure (`/varz` "mem", resident bytes).
    pub async fn nats_rss(&self) -> Option<u64> {
        let (code, body) = http_get(self.nats.monitor_addr(), "/varz").await.ok()?;
        let varz: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        varz["mem"].as_u64()
    }

    /// SIGTERM to every service (connectors first), nats-server last; keeps or deletes the logs.
    pub async fn shutdown(mut self) {
        self.processes
            .sort_by_key(|p| !p.name.starts_with("connector"));
        for p in &mut self.processes {
            p.terminate(STOP_GRACE).await;
        }
        self.processes.clear();
        self.nats.stop();
        if let Some(dir) = self.logs.take() {
            if self.keep_logs {
                eprintln!("service logs kept in {}", dir.keep().display());
            }
        }
    }
}

/// The worker id a connector process runs under.
pub fn worker_id(name: &str) -> String {
    format!("bench-{name}")
}
