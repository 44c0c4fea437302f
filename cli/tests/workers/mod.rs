//! Connector workers as real processes of the built `ngit-sync` binary, the source relays they
//! sync from, and the checks of who owned which relay when (the connector pool's proofs).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ngit_sync_shared::messages::{RelayBody, RelayNews};
use ngit_sync_shared::status::SyncPlan;
use ngit_sync_test_support::corpus::spread_events;
use ngit_sync_test_support::{Corpus, CorpusSpec, TestRelay};
use nostr::{Event, EventId};
use tokio_util::sync::CancellationToken;

use crate::stack::{announce, ids};

pub const BIN: &str = env!("CARGO_BIN_EXE_ngit-sync");

/// Relays listed by each repository of [`Sources`].
const RELAYS_PER_REPO: usize = 5;

/// `ngit-sync run connector` as a child process, killed on drop; its log goes to a file.
pub struct Worker {
    pub id: String,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Worker {
    /// Starts a worker with the stack's `settings` as its environment.
    pub fn spawn(id: &str, settings: &HashMap<String, String>, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{id}.log"));
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(BIN)
            .args(["run", "connector"])
            .envs(settings)
            .env("NGIT_SYNC_WORKER_ID", id)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {BIN} run connector"))?;
        Ok(Worker {
            id: id.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, like a machine dying; reaps the process.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM, as an orchestrator stops a container.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("worker not running")?;
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        Ok(())
    }

    /// Waits for the process to end, at most `within`.
    pub async fn exited_within(&mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .with_context(|| format!("{} still running after {within:?}", self.id))?
            .map_err(Into::into)
    }

    /// Resident memory of the process in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time (user + system) the process used so far, in clock ticks (`/proc/<pid>/stat`).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Source relays with a NIP-34 corpus: repository `i` lists relays `5i..5i+5`, and each of its
/// events lies on one or two of them.
pub struct Sources {
    pub relays: Arc<Vec<TestRelay>>,
    pub urls: Vec<String>,
    /// Our announcements (newer than the corpus' own), to seed the home relay with.
    pub announcements: Vec<Event>,
    /// What the home relay must hold in the end: the union of the sources' related events,
    /// with our announcements in place of the corpus' ones.
    pub want: HashSet<EventId>,
    pub corpus: Corpus,
}

impl Sources {
    pub async fn start(relays: usize, seed: u64, events_per_repo: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(relays.is_multiple_of(RELAYS_PER_REPO), "whole repos only");
        let mut started = Vec::with_capacity(relays);
        for _ in 0..relays {
            started.push(TestRelay::remote().await?);
        }
        let urls: Vec<String> = started.iter().map(TestRelay::url).collect();
        let corpus = Corpus::generate(
            CorpusSpec::new(seed)
                .repos(relays / RELAYS_PER_REPO)
                .events_per_repo(events_per_repo)
                .patch_kib(2, 6),
        );
        let mut announcements = Vec::new();
        for (i, repo) in corpus.repos().iter().enumerate() {
            let listed = &urls[i * RELAYS_PER_REPO..(i + 1) * RELAYS_PER_REPO];
            let shares = spread_events(&repo.all_events(), RELAYS_PER_REPO, 2, seed + i as u64);
            for (relay, share) in started[i * RELAYS_PER_REPO..].iter().zip(shares) {
                relay.publish(&share).await?;
            }
            announcements.push(announce(repo, listed));
        }
        let replaced: HashSet<EventId> = ids(&corpus.announcements());
        let mut want: HashSet<EventId> = ids(&corpus.all_related())
            .difference(&replaced)
            .copied()
            .collect();
        want.extend(ids(&announcements));
        Ok(Sources {
            relays: Arc::new(started),
            urls,
            announcements,
            want,
            corpus,
        })
    }

    /// Starts sampling every relay's open connections every 10 ms.
    pub fn sample_connections(&self) -> ConnectionPeaks {
        let peaks: Arc<Vec<AtomicUsize>> =
            Arc::new(self.relays.iter().map(|_| AtomicUsize::new(0)).collect());
        let stop = CancellationToken::new();
        let (relays, p, s) = (self.relays.clone(), peaks.clone(), stop.clone());
        tokio::spawn(async move {
            while !s.is_cancelled() {
                for (relay, peak) in relays.iter().zip(p.iter()) {
                    peak.fetch_max(relay.open_connections(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        ConnectionPeaks {
            urls: self.urls.clone(),
            peaks,
            stop,
        }
    }
}

/// The most connections each source relay had open at once, as sampled.
pub struct ConnectionPeaks {
    urls: Vec<String>,
    peaks: Arc<Vec<AtomicUsize>>,
    stop: CancellationToken,
}

impl ConnectionPeaks {
    /// Relays that ever had more than one connection open, with the peak.
    pub fn over_one(&self) -> Vec<(String, usize)> {
        self.urls
            .iter()
            .zip(self.peaks.iter())
            .map(|(u, p)| (u.clone(), p.load(Ordering::Relaxed)))
            .filter(|(_, p)| *p > 1)
            .collect()
    }
}

impl Drop for ConnectionPeaks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Claims made while another worker still held the relay. Each relay's `claimed`/`released`
/// are walked in the order they happened (their stamps; stream order where equal): an owner cut
/// off from NATS stops syncing at once but can publish its `released` only once NATS is back,
/// so stream order alone would blame it. A worker in `killed` (id, kill time in ms) never
/// releases: a claim of its relay after the kill is a takeover, not an overlap.
pub fn overlapping_claims(news: &[RelayNews], killed: &[(&str, u64)]) -> Vec<String> {
    let mut ordered: Vec<&RelayNews> = news
        .iter()
        .filter(|n| {
            matches!(
                n.body,
                RelayBody::Claimed { .. } | RelayBody::Released { .. }
            )
        })
        .collect();
    // Stable: equal stamps keep stream order.
    ordered.sort_by_key(|n| n.at_ms);
    let mut holder: HashMap<String, String> = HashMap::new();
    let mut overlaps = Vec::new();
    for n in ordered {
        let relay = n.relay.to_string();
        match &n.body {
            RelayBody::Claimed { worker } => {
                if let Some(previous) = holder.get(&relay) {
                    let dead_before = killed
                        .iter()
                        .any(|(id, at)| id == previous && n.at_ms >= *at);
                    if previous != worker && !dead_before {
                        overlaps.push(format!(
                            "{relay}: {worker} claimed while {previous} held it"
                        ));
                    }
                }
                holder.insert(relay, worker.clone());
            }
            RelayBody::Released { worker, .. } if holder.get(&relay) == Some(worker) => {
                holder.remove(&relay);
            }
            _ => {}
        }
    }
    overlaps
}

/// How the sessions opened at or after `since_ms` started: (quick, fresh).
pub fn plans_since(news: &[RelayNews], since_ms: u64) -> (usize, usize) {
    news.iter()
        .filter(|n| n.at_ms >= since_ms)
        .fold((0, 0), |(q, f), n| match &n.body {
            RelayBody::Connected { plan, .. } if *plan == SyncPlan::Quick => (q + 1, f),
            RelayBody::Connected { .. } => (q, f + 1),
            _ => (q, f),
        })
}

/// When each relay got its first session from a worker other than `victim` at or after
/// `since_ms`.
pub fn reconnected_at(news: &[RelayNews], victim: &str, since_ms: u64) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for n in news {
        if let RelayBody::Connected { worker, .. } = &n.body {
            if worker != victim && n.at_ms >= since_ms {
                out.entry(n.relay.to_string()).or_insert(n.at_ms);
            }
        }
    }
    out
}
