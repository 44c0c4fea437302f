//! `limit`: the same events written straight to a fresh home relay by one pipelining client,
//! the fastest the home relay can take them; cold runs in the same world for the ratio.

use super::{base_report, build_world, cold, fresh_home, missing, progress, rate};
use crate::args::{BenchArgs, Scenario};
use crate::ingest;
use crate::report::Report;
use crate::stats::{ratio, round};
use crate::world::World;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let world = build_world(args, super::RELAYS).await?;
    let seconds = measure(&world).await?;
    let mut cold = cold::start(&world, args, 1).await?;
    let mut report = base_report(Scenario::Limit, &world);
    report.seconds = round(seconds, 3);
    report.events_per_second = rate(world.to_sync.len(), seconds);
    report.limit_seconds = Some(report.seconds);
    report.cold_seconds = Some(round(cold.seconds, 3));
    report.cold_bytes_from_sources = Some(cold.bytes_from_sources);
    report.ratio_vs_limit = ratio(cold.seconds, seconds);
    report.complete = Some(cold.complete);
    cold.fill_processes(&mut report).await;
    cold.stack.shutdown().await;
    Ok(report)
}

/// Seconds from the first EVENT to the last OK when one client writes every event of the world
/// to a fresh home relay.
pub async fn measure(world: &World) -> anyhow::Result<f64> {
    let home = fresh_home(world).await?;
    progress(&format!(
        "limit: writing {} events to a fresh home relay",
        world.to_sync.len()
    ));
    let outcome = ingest::write_all(&home.url(), &world.to_sync).await?;
    let seconds = outcome.seconds;
    anyhow::ensure!(
        outcome.rejected.is_empty(),
        "the home relay rejected {} events, e.g. {:?}",
        outcome.rejected.len(),
        outcome.rejected.first()
    );
    let lacking = missing(&home, &world.want).await?;
    anyhow::ensure!(
        lacking == 0,
        "the home relay lacks {lacking} events after the limit run"
    );
    progress(&format!("limit: done in {seconds:.2} s"));
    Ok(seconds)
}
