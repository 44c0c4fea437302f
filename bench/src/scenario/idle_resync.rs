//! `idle-resync`: after cold, every relay gets a fresh start (what the daily reconciliation
//! does) with nothing new on the sources: bytes and time against cold's.
//!
//! The fresh start is forced the way an operator could: the connector is stopped with SIGTERM
//! and a new one starts with `NGIT_SYNC_QUICK_RECONNECT_WINDOW=0s`, so no relay qualifies for a
//! quick reconnect.

use std::collections::BTreeMap;
use std::time::Instant;

use super::{cold, missing, progress, POLL};
use crate::args::{BenchArgs, Scenario};
use crate::report::Report;
use crate::stats::{ratio, round};
use crate::status_watch::is_done;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let world = super::build_world(args, super::RELAYS).await?;
    let mut cold = cold::start(&world, args, 1).await?;
    let cold_report = cold.report(Scenario::IdleResync, &world).await;

    let sessions: Vec<Option<String>> = cold
        .watch
        .get(&cold.keys)
        .into_iter()
        .map(|s| s.and_then(|s| s.report.session))
        .collect();
    for name in cold.stack.connectors() {
        cold.stack.terminate(&name).await?;
    }
    progress("idle-resync: connector restarted for a fresh start of every relay");
    let home_before = cold.home.count().await?;
    let bytes_before = (world.bytes_sent(), world.bytes_sent_plain());
    let started = Instant::now();
    let fresh: BTreeMap<String, String> = [(
        "NGIT_SYNC_QUICK_RECONNECT_WINDOW".to_string(),
        "0s".to_string(),
    )]
    .into();
    cold.stack.start_connector(&fresh)?;
    let deadline = started + args.timeout;
    loop {
        cold.stack.ensure_alive()?;
        let now = cold.watch.get(&cold.keys);
        let resynced = now.iter().zip(&sessions).all(|(seen, before)| {
            seen.as_ref().is_some_and(|s| {
                is_done(s.report.status)
                    && s.report.session.is_some()
                    && &s.report.session != before
            })
        });
        if resynced {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no resync after {:?}; relays: {}",
                args.timeout,
                cold.watch.census(&cold.keys)
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = world.bytes_sent() - bytes_before.0;
    let bytes_plain = world.bytes_sent_plain() - bytes_before.1;
    progress(&format!(
        "idle-resync: done in {seconds:.2} s, {bytes} bytes from sources"
    ));

    let mut report = cold_report.clone();
    report.seconds = round(seconds, 3);
    report.events_per_second = None;
    report.all_events_seconds = None;
    report.bytes_from_sources = Some(bytes);
    report.bytes_from_sources_without_nip77 = Some(bytes_plain);
    report.cold_seconds = Some(cold_report.seconds);
    report.cold_bytes_from_sources = cold_report.bytes_from_sources;
    report.bytes_ratio_vs_cold = cold_report
        .bytes_from_sources
        .and_then(|cold_bytes| ratio(bytes as f64, cold_bytes as f64));
    report.seconds_ratio_vs_cold = ratio(seconds, cold_report.seconds);
    report.complete = Some(
        cold.home.count().await? == home_before && missing(&cold.home, &world.want).await? == 0,
    );
    // Cold's processes are the ones whose memory matters; the new connector's is added.
    cold.fill_processes(&mut report).await;
    for (name, peak) in cold_report.peak_rss_bytes {
        report.peak_rss_bytes.entry(name).or_insert(peak);
    }
    cold.stack.shutdown().await;
    Ok(report)
}
