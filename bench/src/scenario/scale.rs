//! `scale`: many empty relays on a few connector workers. Connector memory is read once the
//! workers are up with nothing to do, and again once every relay is Connected and idle; the
//! difference per session is the cost of holding a relay. CPU is measured over an idle window.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ngit_sync_test_support::{Corpus, CorpusSpec, TestRelay};

use super::{progress, POLL};
use crate::args::{BenchArgs, Scenario};
use crate::report::Report;
use crate::scenario::cold::cpu_seconds;
use crate::stack::{Stack, StackOptions};
use crate::stats::round;
use crate::status_watch::{keys_of, StatusWatch};
use crate::world::announce;

const DEFAULT_WORKERS: usize = 2;
/// Relays listed per repo announcement.
const RELAYS_PER_REPO: usize = 50;
/// How long the idle connectors are watched for CPU.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let n = args.scale_relays.max(1);
    let workers = args.workers.unwrap_or(DEFAULT_WORKERS).max(1);
    progress(&format!("scale: starting {n} empty relays"));
    let mut relays = Vec::with_capacity(n);
    for _ in 0..n {
        relays.push(TestRelay::remote().await?);
    }
    let urls: Vec<String> = relays.iter().map(TestRelay::url).collect();
    let repos = n.div_ceil(RELAYS_PER_REPO);
    let corpus = Corpus::generate(CorpusSpec::new(args.seed).repos(repos).events_per_repo(0));
    let announcements: Vec<_> = corpus
        .repos()
        .iter()
        .enumerate()
        .map(|(i, repo)| {
            let listed: Vec<String> = urls.iter().skip(i).step_by(repos).cloned().collect();
            announce(repo, &listed)
        })
        .collect();

    let home = TestRelay::home().await?;
    let opts = StackOptions {
        discovery_window: args.discovery_window,
        keep_logs: args.keep_logs,
    };
    let mut stack = Stack::prepare(&home.url(), &opts).await?;
    let watch = StatusWatch::start(&stack.bus).await?;
    let keys = keys_of(&urls)?;
    stack.start_services(workers)?;
    let connectors = stack.connectors();
    wait_workers(&mut stack, workers, args.timeout).await?;
    let rss_empty = stack.rss_of(&connectors);

    progress(&format!(
        "scale: announcing {n} relays to {workers} connector(s)"
    ));
    home.publish(&announcements).await?;
    let started = Instant::now();
    loop {
        stack.ensure_alive()?;
        if watch.all_connected(&keys) {
            break;
        }
        if started.elapsed() >= args.timeout {
            anyhow::bail!(
                "not all relays Connected after {:?}: {}",
                args.timeout,
                watch.census(&keys)
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    progress(&format!(
        "scale: all Connected after {seconds:.2} s; watching {IDLE_WINDOW:?} of idle"
    ));
    let cpu_before = stack.cpu();
    tokio::time::sleep(IDLE_WINDOW).await;
    stack.ensure_alive()?;
    let cpu_after = stack.cpu();
    let rss_idle = stack.rss_of(&connectors);

    let idle_cpu: BTreeMap<String, Duration> = cpu_after
        .iter()
        .map(|(name, after)| {
            let before = cpu_before.get(name).copied().unwrap_or_default();
            (name.clone(), after.saturating_sub(before))
        })
        .collect();
    let connectors_cpu: Duration = idle_cpu
        .iter()
        .filter(|(name, _)| connectors.contains(name))
        .map(|(_, d)| *d)
        .sum();
    let mut report = Report {
        scenario: Scenario::Scale.name().to_string(),
        relays: n,
        repos,
        seed: args.seed,
        seconds: round(seconds, 3),
        idle_sessions: Some(n),
        bytes_per_idle_session: Some(rss_idle.saturating_sub(rss_empty) / n as u64),
        idle_cpu_percent: Some(round(
            connectors_cpu.as_secs_f64() / IDLE_WINDOW.as_secs_f64() * 100.0,
            2,
        )),
        peak_rss_bytes: stack.peak_rss(),
        cpu_seconds: cpu_seconds(idle_cpu),
        complete: Some(true),
        ..Report::default()
    };
    report.nats_server_rss_bytes = stack.nats_rss().await;
    report.settings = stack.overrides.clone();
    report
        .settings
        .insert("connectors".to_string(), workers.to_string());
    stack.shutdown().await;
    Ok(report)
}

/// Waits until `n` workers heartbeat in `ngit_sync_workers`: the connectors are up and idle.
async fn wait_workers(stack: &mut Stack, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        stack.ensure_alive()?;
        let mut keys = stack.bus.buckets.workers.keys().await?;
        let mut alive = 0;
        while let Some(key) = keys.next().await {
            key?;
            alive += 1;
        }
        if alive >= n {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "only {alive} of {n} workers after {timeout:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
