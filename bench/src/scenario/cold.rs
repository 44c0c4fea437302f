//! `cold`: an empty home relay (announcements only), the stack starts; timed until every relay
//! is Connected and the home relay holds every related event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ngit_sync_test_support::TestRelay;

use super::{base_report, build_world, fresh_home, missing, progress, rate, POLL};
use crate::args::{BenchArgs, Scenario};
use crate::report::Report;
use crate::stack::{Stack, StackOptions};
use crate::stats::round;
use crate::status_watch::{keys_of, StatusWatch};
use crate::world::World;

/// A finished cold sync with the stack still running, for scenarios that continue from it.
pub struct ColdRun {
    pub stack: Stack,
    pub home: TestRelay,
    pub watch: StatusWatch,
    /// Status keys of every source relay.
    pub keys: Vec<String>,
    /// Start of services → all Connected and all events home.
    pub seconds: f64,
    /// Start of services → all events home.
    pub events_seconds: f64,
    pub bytes_from_sources: u64,
    /// Of those, from the relays without NIP-77.
    pub bytes_without_nip77: u64,
    pub complete: bool,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let world = build_world(args, super::RELAYS).await?;
    let mut cold = start(&world, args, 1).await?;
    let report = cold.report(Scenario::Cold, &world).await;
    cold.stack.shutdown().await;
    Ok(report)
}

/// Starts the stack with `connectors` workers on a fresh home relay and waits for the sync.
pub async fn start(world: &World, args: &BenchArgs, connectors: usize) -> anyhow::Result<ColdRun> {
    let home = fresh_home(world).await?;
    let opts = StackOptions {
        discovery_window: args.discovery_window,
        keep_logs: args.keep_logs,
    };
    let mut stack = Stack::prepare(&home.url(), &opts).await?;
    let watch = StatusWatch::start(&stack.bus).await?;
    let keys = keys_of(&world.urls())?;
    progress(&format!(
        "cold: starting the services ({connectors} connector(s)), {} events to sync",
        world.to_sync.len()
    ));
    let bytes_before = (world.bytes_sent(), world.bytes_sent_plain());
    let started = Instant::now();
    stack.start_services(connectors)?;
    let (events_seconds, seconds) = wait_synced(
        world,
        &home,
        &watch,
        &keys,
        &mut stack,
        started,
        args.timeout,
    )
    .await?;
    let bytes_from_sources = world.bytes_sent() - bytes_before.0;
    let bytes_without_nip77 = world.bytes_sent_plain() - bytes_before.1;
    let complete =
        missing(&home, &world.want).await? == 0 && home.count().await? == world.want.len();
    progress(&format!("cold: done in {seconds:.2} s"));
    Ok(ColdRun {
        stack,
        home,
        watch,
        keys,
        seconds,
        events_seconds,
        bytes_from_sources,
        bytes_without_nip77,
        complete,
    })
}

/// Waits until the home relay holds as many events as it should and every relay is Connected;
/// returns the seconds since `started` at which each became true.
pub async fn wait_synced(
    world: &World,
    home: &TestRelay,
    watch: &StatusWatch,
    keys: &[String],
    stack: &mut Stack,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<(f64, f64)> {
    let want = world.want.len();
    let deadline = started + timeout;
    let mut events_at: Option<f64> = None;
    loop {
        stack.ensure_alive()?;
        let have = home.count().await?;
        if events_at.is_none() && have >= want {
            events_at = Some(started.elapsed().as_secs_f64());
        }
        if let Some(at) = events_at {
            if watch.all_connected(keys) {
                return Ok((at, started.elapsed().as_secs_f64()));
            }
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no complete sync after {timeout:?}: home holds {have} of {want}; relays: {}",
                watch.census(keys)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

impl ColdRun {
    /// The cold figures as a report for `scenario`; reads the processes' memory and CPU now.
    pub async fn report(&mut self, scenario: Scenario, world: &World) -> Report {
        let mut report = base_report(scenario, world);
        report.seconds = round(self.seconds, 3);
        report.events_per_second = rate(world.to_sync.len(), self.seconds);
        report.all_events_seconds = Some(round(self.events_seconds, 3));
        report.bytes_from_sources = Some(self.bytes_from_sources);
        report.bytes_from_sources_without_nip77 = Some(self.bytes_without_nip77);
        report.complete = Some(self.complete);
        self.fill_processes(&mut report).await;
        report
    }

    /// Peak RSS, CPU seconds, nats-server memory and settings into `report`.
    pub async fn fill_processes(&mut self, report: &mut Report) {
        report.peak_rss_bytes = self.stack.peak_rss();
        report.cpu_seconds = cpu_seconds(self.stack.cpu());
        report.nats_server_rss_bytes = self.stack.nats_rss().await;
        report.settings = self.stack.overrides.clone();
    }
}

pub fn cpu_seconds(cpu: BTreeMap<String, Duration>) -> BTreeMap<String, f64> {
    cpu.into_iter()
        .map(|(k, v)| (k, round(v.as_secs_f64(), 2)))
        .collect()
}
