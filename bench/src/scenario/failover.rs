//! `failover`: several connector processes share the relays; once every relay is leased and a
//! quarter of the events are home, the busiest worker gets SIGKILL. Timed until every relay it
//! held is Connected again under another owner; then the sync must still complete.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use super::{base_report, build_world, fresh_home, leases, progress, rate, POLL};
use crate::args::{BenchArgs, Scenario};
use crate::report::Report;
use crate::scenario::cold::{cpu_seconds, wait_synced};
use crate::stack::{worker_id, Stack, StackOptions};
use crate::stats::{ratio, round};
use crate::status_watch::{is_done, keys_of, StatusWatch};

/// Default size of the scenario (issue 5, acceptance 6).
const DEFAULT_RELAYS: usize = 60;
const DEFAULT_WORKERS: usize = 3;
/// The kill comes once this share of the events is home: mid-sync.
const KILL_AT_SHARE: f64 = 0.25;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let workers = args.workers.unwrap_or(DEFAULT_WORKERS).max(2);
    let world = build_world(args, DEFAULT_RELAYS).await?;
    let relays = world.sources.len();
    let home = fresh_home(&world).await?;
    let opts = StackOptions {
        discovery_window: args.discovery_window,
        keep_logs: args.keep_logs,
    };
    let mut stack = Stack::prepare(&home.url(), &opts).await?;
    let watch = StatusWatch::start(&stack.bus).await?;
    let keys = keys_of(&world.urls())?;
    let bytes_before = world.bytes_sent();
    let started = Instant::now();
    progress(&format!(
        "failover: {workers} connectors over {relays} relays"
    ));
    stack.start_services(workers)?;

    // Mid-sync: every relay leased, a quarter of the events home, the sync not over.
    let kill_when = (world.want.len() as f64 * KILL_AT_SHARE).ceil() as usize;
    let deadline = started + args.timeout;
    let owners = loop {
        stack.ensure_alive()?;
        let owners = leases(&stack.bus).await?;
        let have = home.count().await?;
        let leased = keys.iter().filter(|k| owners.contains_key(*k)).count();
        if leased == keys.len() && have >= kill_when {
            anyhow::ensure!(
                have < world.want.len(),
                "the sync finished before the kill: use more --events"
            );
            break owners;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no mid-sync moment: {leased} of {} relays leased, home holds {have}",
                keys.len()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let per_worker = relays_per_worker(&owners, &keys);
    let mean = keys.len() as f64 / workers as f64;
    let (victim_id, held) = per_worker
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(w, n)| (w.clone(), *n))
        .unwrap_or_default();
    let victim = (1..=workers)
        .map(|i| format!("connector-{i}"))
        .find(|name| worker_id(name) == victim_id)
        .ok_or_else(|| {
            anyhow::anyhow!("the busiest lease holder {victim_id:?} is no bench worker")
        })?;
    let victim_keys: Vec<String> = keys
        .iter()
        .filter(|k| owners.get(*k) == Some(&victim_id))
        .cloned()
        .collect();
    let peak_before_kill = stack.process(&victim)?.memory().map(|m| m.peak_rss_bytes);
    progress(&format!(
        "failover: SIGKILL to {victim} holding {held} relays ({per_worker:?})"
    ));
    stack.kill(&victim)?;
    let killed = Instant::now();

    let want = world.want.len();
    let mut events_at: Option<f64> = None;
    let mut takeover_at: Option<f64> = None;
    let failover_seconds = loop {
        stack.ensure_alive()?;
        if events_at.is_none() && home.count().await? >= want {
            events_at = Some(started.elapsed().as_secs_f64());
        }
        if takeover_at.is_none() {
            let owners = leases(&stack.bus).await?;
            let taken = victim_keys
                .iter()
                .all(|k| owners.get(k).is_some_and(|w| *w != victim_id));
            if taken {
                takeover_at = Some(killed.elapsed().as_secs_f64());
            }
        }
        let back = watch.all(&victim_keys, |s| {
            is_done(s.report.status)
                && s.at > killed
                && s.report.owner.as_deref().is_some_and(|o| o != victim_id)
        });
        if back {
            break killed.elapsed().as_secs_f64();
        }
        if Instant::now() >= killed + args.timeout {
            anyhow::bail!(
                "the killed worker's relays are not back after {:?}: {}",
                args.timeout,
                watch.census(&victim_keys)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    progress(&format!(
        "failover: its relays are leased again after {:.2} s, Connected after {failover_seconds:.2} s",
        takeover_at.unwrap_or(f64::NAN)
    ));
    let finished = wait_synced(
        &world,
        &home,
        &watch,
        &keys,
        &mut stack,
        started,
        args.timeout,
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let have = home.event_ids().await?;
    let lost = world.want.difference(&have).count();

    let mut report = base_report(Scenario::Failover, &world);
    report.seconds = round(seconds, 3);
    report.events_per_second = rate(world.to_sync.len(), seconds);
    report.all_events_seconds = events_at
        .or_else(|| finished.as_ref().ok().map(|(at, _)| *at))
        .map(|at| round(at, 3));
    report.takeover_seconds = takeover_at.map(|t| round(t, 3));
    report.bytes_from_sources = Some(world.bytes_sent() - bytes_before);
    report.failover_seconds = Some(round(failover_seconds, 3));
    report.events_lost = Some(lost);
    report.max_relay_share_vs_mean = ratio(held as f64, mean);
    report.relays_moved = Some(victim_keys.len());
    report.complete = Some(finished.is_ok() && lost == 0 && have.len() == world.want.len());
    report.peak_rss_bytes = stack.peak_rss();
    if let Some(peak) = peak_before_kill {
        report.peak_rss_bytes.insert(victim, peak);
    }
    report.cpu_seconds = cpu_seconds(stack.cpu());
    report.nats_server_rss_bytes = stack.nats_rss().await;
    report.settings = stack.overrides.clone();
    if let Err(e) = finished {
        progress(&format!("failover: the sync did not complete: {e:#}"));
    }
    stack.shutdown().await;
    Ok(report)
}

/// Relays held by each worker, counting only the world's relays.
fn relays_per_worker(
    owners: &BTreeMap<String, String>,
    keys: &[String],
) -> BTreeMap<String, usize> {
    let wanted: HashSet<&String> = keys.iter().collect();
    let mut out = BTreeMap::new();
    for (key, worker) in owners {
        if wanted.contains(key) {
            *out.entry(worker.clone()).or_default() += 1;
        }
    }
    out
}
