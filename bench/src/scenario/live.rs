//! `live`: after cold, new comments appear on the sources at a steady rate; each one's latency
//! runs from its publish on a source to its arrival on a live subscription to the home relay
//! (the home relay broadcasts an event once it saved it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ngit_sync_shared::socket::{self, Incoming};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::TestRelay;
use nostr::{
    ClientMessage, Event, EventBuilder, EventId, Filter, Keys, Kind, RelayMessage, SubscriptionId,
    Tag, Timestamp,
};

use super::{cold, progress};
use crate::args::{BenchArgs, Scenario};
use crate::report::Report;
use crate::stats::{percentile, round};
use crate::world::World;

/// After the last publish, stragglers get this long to arrive.
const DRAIN: Duration = Duration::from_secs(30);

type Arrivals = Arc<Mutex<HashMap<EventId, Instant>>>;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let world = super::build_world(args, super::RELAYS).await?;
    let plan = plan(&world, args.live_events)?;
    let mut cold = cold::start(&world, args, 1).await?;
    let cold_report = cold.report(Scenario::Live, &world).await;

    let arrivals: Arrivals = Arc::default();
    let listener = listen(&cold.home.url(), Arc::clone(&arrivals)).await?;
    progress(&format!(
        "live: publishing {} comments at {}/s on NIP-77 sources",
        plan.len(),
        args.live_rate
    ));
    let mut sent: HashMap<EventId, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(args.live_rate.max(1)),
    ));
    let bytes_before = world.bytes_sent();
    let started = Instant::now();
    for (event, relay) in &plan {
        tick.tick().await;
        sent.insert(event.id, Instant::now());
        relay.publish(std::slice::from_ref(event)).await?;
    }
    let deadline = Instant::now() + DRAIN;
    while arrivals.lock().expect("arrivals").len() < plan.len() && Instant::now() < deadline {
        cold.stack.ensure_alive()?;
        tokio::time::sleep(super::POLL).await;
    }
    listener.abort();
    let seconds = started.elapsed().as_secs_f64();
    let arrived = arrivals.lock().expect("arrivals").clone();
    let latencies: Vec<f64> = sent
        .iter()
        .filter_map(|(id, at)| Some(arrived.get(id)?.duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    let lost = plan.len() - latencies.len();
    progress(&format!(
        "live: {} of {} arrived",
        latencies.len(),
        plan.len()
    ));

    let mut report = cold_report.clone();
    report.events = plan.len();
    report.seconds = round(seconds, 3);
    report.events_per_second = None;
    report.all_events_seconds = None;
    report.bytes_from_sources = Some(world.bytes_sent() - bytes_before);
    report.bytes_from_sources_without_nip77 = None;
    report.cold_seconds = Some(cold_report.seconds);
    report.cold_bytes_from_sources = cold_report.bytes_from_sources;
    report.latency_ms_p50 = percentile(&latencies, 50.0).map(|v| round(v, 1));
    report.latency_ms_p99 = percentile(&latencies, 99.0).map(|v| round(v, 1));
    report.latency_ms_max = percentile(&latencies, 100.0).map(|v| round(v, 1));
    report.events_lost = Some(lost);
    report.complete = Some(lost == 0 && cold_report.complete == Some(true));
    cold.fill_processes(&mut report).await;
    cold.stack.shutdown().await;
    Ok(report)
}

/// `n` new comments, each with the NIP-77 source it goes to: round robin over the repos that
/// list such a relay and have a root, each comment under one of the repo's roots.
fn plan(world: &World, n: usize) -> anyhow::Result<Vec<(Event, &TestRelay)>> {
    let targets: Vec<_> = world
        .live_targets()
        .into_iter()
        .filter(|(repo, _)| !world.corpus.repos()[*repo].roots().is_empty())
        .collect();
    anyhow::ensure!(
        !targets.is_empty(),
        "no repo lists a NIP-77 relay and has a root event: raise --relays or lower --no-nip77-percent"
    );
    let author = Keys::generate();
    let now = Timestamp::now();
    (0..n)
        .map(|i| {
            let (repo_index, relays) = &targets[i % targets.len()];
            let repo = &world.corpus.repos()[*repo_index];
            let roots = repo.roots();
            let root = &roots[i % roots.len()];
            let tag = |parts: &[&str]| Tag::parse(parts.iter().copied()).expect("a valid tag");
            let event = EventBuilder::new(Kind::Comment, format!("live comment {i}"))
                .tags([
                    tag(&["E", &root.id.to_hex(), "", &root.pubkey.to_hex()]),
                    tag(&["K", &root.kind.as_u16().to_string()]),
                    tag(&["P", &root.pubkey.to_hex()]),
                    tag(&["A", &repo.coordinate.to_string()]),
                    tag(&["e", &root.id.to_hex(), "", &root.pubkey.to_hex()]),
                    tag(&["k", &root.kind.as_u16().to_string()]),
                    tag(&["p", &root.pubkey.to_hex()]),
                ])
                .custom_created_at(now)
                .sign_with_keys(&author)?;
            Ok((event, relays[i % relays.len()]))
        })
        .collect()
}

/// Subscribes to new comments on the home relay and records when each arrives.
async fn listen(home: &str, arrivals: Arrivals) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let url = RelayUrl::parse(home)?;
    let (mut writer, mut reader, _) = socket::connect(&url, Duration::from_secs(5)).await?;
    let filter = Filter::new().kind(Kind::Comment).limit(0);
    writer
        .send(&ClientMessage::req(
            SubscriptionId::new("live"),
            vec![filter],
        ))
        .await?;
    // The subscription is in place once the relay ends its (empty) history.
    loop {
        let incoming = tokio::time::timeout(Duration::from_secs(5), reader.next()).await??;
        if let Incoming::Message(RelayMessage::EndOfStoredEvents(_)) = incoming {
            break;
        }
    }
    Ok(tokio::spawn(async move {
        // The writer must live as long as the subscription.
        let _writer = writer;
        while let Ok(incoming) = reader.next().await {
            if let Incoming::Message(RelayMessage::Event { event, .. }) = incoming {
                arrivals
                    .lock()
                    .expect("arrivals")
                    .entry(event.id)
                    .or_insert_with(Instant::now);
            }
        }
    }))
}
