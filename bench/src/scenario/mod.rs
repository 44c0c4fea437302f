//! The scenarios, one file each; this module picks one and holds what several share.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use ngit_sync_shared::messages::LeaseEntry;
use ngit_sync_shared::Bus;
use ngit_sync_test_support::TestRelay;

use crate::args::{BenchArgs, Scenario, DEFAULT_RELAYS};
use crate::report::Report;
use crate::stats::{ratio, round};
use crate::world::{World, WorldSpec};

pub mod cold;
pub mod failover;
pub mod idle_resync;
pub mod limit;
pub mod live;
pub mod naive;
pub mod scale;

/// Source relays of every scenario but failover and scale.
pub const RELAYS: usize = DEFAULT_RELAYS;

/// Pause between two looks at a condition: short next to the figures it times.
pub const POLL: Duration = Duration::from_millis(50);

/// Runs the chosen scenario and returns its figures.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    match args.scenario {
        Scenario::Cold => cold::run(args).await,
        Scenario::Limit => limit::run(args).await,
        Scenario::Naive => naive::run(args).await,
        Scenario::IdleResync => idle_resync::run(args).await,
        Scenario::Live => live::run(args).await,
        Scenario::Failover => failover::run(args).await,
        Scenario::Scale => scale::run(args).await,
    }
}

/// The world the flags describe; `default_relays` source relays unless `--relays` says.
pub async fn build_world(args: &BenchArgs, default_relays: usize) -> anyhow::Result<World> {
    let relays = args.relays_or(default_relays);
    progress(&format!(
        "building the world: {relays} relays, {} repos, {} events, seed {}",
        args.repos, args.events, args.seed
    ));
    World::build(WorldSpec {
        relays,
        no_nip77_percent: args.no_nip77_percent,
        repos: args.repos,
        events: args.events,
        max_copies: args.max_copies,
        relays_per_repo: args.relays_per_repo,
        patch_kib: args.patch_kib,
        seed: args.seed,
        stale_announcements: !args.no_stale_announcements,
    })
    .await
}

/// A report with the world's figures filled in.
pub fn base_report(scenario: Scenario, world: &World) -> Report {
    Report {
        scenario: scenario.name().to_string(),
        relays: world.sources.len(),
        relays_without_nip77: world.plain_count(),
        repos: world.corpus.repos().len(),
        events: world.to_sync.len(),
        seed: world.spec.seed,
        stale_announcements: world.spec.stale_announcements,
        ..Report::default()
    }
}

/// `events / seconds`, rounded.
pub fn rate(events: usize, seconds: f64) -> Option<f64> {
    ratio(events as f64, seconds).map(|r| round(r, 0))
}

/// A fresh home relay holding the world's announcements, as every run starts with.
pub async fn fresh_home(world: &World) -> anyhow::Result<TestRelay> {
    let home = TestRelay::home().await?;
    home.publish(&world.announcements).await?;
    Ok(home)
}

/// Ids of `want` the home relay lacks.
pub async fn missing(home: &TestRelay, want: &HashSet<nostr::EventId>) -> anyhow::Result<usize> {
    let have = home.event_ids().await?;
    Ok(want.difference(&have).count())
}

/// Relay key → owning worker, from `ngit_sync_leases`.
pub async fn leases(bus: &Bus) -> anyhow::Result<BTreeMap<String, String>> {
    let store = &bus.buckets.leases;
    let mut keys = store.keys().await?;
    let mut out = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let key = key?;
        if let Some(lease) = bus.get::<LeaseEntry>(store, &key).await? {
            out.insert(key, lease.worker);
        }
    }
    Ok(out)
}

/// One line of progress on stderr (stdout carries only the JSON).
pub fn progress(text: &str) {
    eprintln!("[bench] {text}");
}
