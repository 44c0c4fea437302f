//! One service as its own process (`ngit-sync run <service>`), so its memory and CPU are its own.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procfs::{self, Memory};

/// Name of the CLI binary that runs any service.
const CLI_BINARY: &str = "ngit-sync";
/// Overrides where the CLI binary is looked for.
pub const BIN_ENV: &str = "NGIT_SYNC_BIN";
/// How often a stopping process is checked.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// The `ngit-sync` binary: `$NGIT_SYNC_BIN`, else next to this executable (cargo puts every
/// binary of a profile in the same directory).
pub fn locate_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("cannot find this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    let bin = dir.join(CLI_BINARY);
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it with `cargo build --release -p ngit-sync` (same profile as the \
         bench) or set {BIN_ENV}",
        bin.display()
    );
    Ok(bin)
}

/// A running service process; killed when dropped.
pub struct ServiceProcess {
    /// Unique in a run, e.g. `connector-2`.
    pub name: String,
    child: Child,
    log: PathBuf,
    /// Last memory reading, kept so a process that is gone still has a figure.
    last_memory: Option<Memory>,
}

impl ServiceProcess {
    /// Starts `ngit-sync run <service>` with exactly `env` on top of this process' environment;
    /// stdout and stderr go to `<log_dir>/<name>.log`.
    pub fn spawn(
        bin: &Path,
        service: &str,
        name: &str,
        env: &BTreeMap<String, String>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(bin)
            .arg("run")
            .arg(service)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} run {service}", bin.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
            last_memory: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Current and peak memory; the last reading once the process is gone.
    pub fn memory(&mut self) -> Option<Memory> {
        if let Some(m) = procfs::memory(self.pid()) {
            self.last_memory = Some(m);
        }
        self.last_memory
    }

    /// CPU time used so far.
    pub fn cpu(&self) -> Option<Duration> {
        procfs::cpu_time(self.pid())
    }

    /// The exit status if the process ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) {
        self.memory();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; SIGKILL if it has not exited within `grace`. Returns how long it took to exit
    /// on its own, or `None` if it had to be killed.
    pub async fn terminate(&mut self, grace: Duration) -> Option<Duration> {
        self.memory();
        if self.exited().is_some() {
            return Some(Duration::ZERO);
        }
        let started = Instant::now();
        // std has no portable signal call and this crate forbids unsafe: ask kill(1).
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if sent.is_ok() {
            while started.elapsed() < grace {
                if self.exited().is_some() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(EXIT_POLL).await;
            }
        }
        self.kill();
        None
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
