//! `naive`: what an operator would script by hand with nostr-sdk: one client fetches the three
//! layers from every source relay with REQ, then writes each event to the home relay and waits
//! for its OK. cold runs in the same world for the ratio.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ngit_sync_shared::{filters, nip34};
use nostr::{Event, EventId, Filter};
use nostr_sdk::Client;

use super::{base_report, build_world, cold, fresh_home, missing, progress, rate};
use crate::args::{BenchArgs, Scenario};
use crate::report::Report;
use crate::stats::{ratio, round};
use crate::world::World;

/// Big enough that no relay of the world truncates an answer, so no paging is needed.
const FETCH_LIMIT: usize = 1_000_000;
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let world = build_world(args, super::RELAYS).await?;
    let (seconds, bytes) = measure(&world).await?;
    let mut cold = cold::start(&world, args, 1).await?;
    let mut report = base_report(Scenario::Naive, &world);
    report.seconds = round(seconds, 3);
    report.events_per_second = rate(world.to_sync.len(), seconds);
    report.bytes_from_sources = Some(bytes);
    report.naive_seconds = Some(report.seconds);
    report.cold_seconds = Some(round(cold.seconds, 3));
    report.cold_bytes_from_sources = Some(cold.bytes_from_sources);
    report.ratio_vs_naive = ratio(seconds, cold.seconds);
    report.complete = Some(cold.complete);
    cold.fill_processes(&mut report).await;
    cold.stack.shutdown().await;
    Ok(report)
}

/// Seconds and source bytes of the scripted sync into a fresh home relay.
pub async fn measure(world: &World) -> anyhow::Result<(f64, u64)> {
    let home = fresh_home(world).await?;
    progress("naive: nostr-sdk fetching L1, L2, L3 from every relay, then writing one by one");
    let bytes_before = world.bytes_sent();
    let started = Instant::now();
    let sources = Client::default();
    for url in world.urls() {
        sources.add_relay(url).await?;
    }
    sources.connect().await;
    sources.wait_for_connection(CONNECT_TIMEOUT).await;
    let coords: Vec<String> = world
        .corpus
        .repos()
        .iter()
        .map(|r| r.coordinate.to_string())
        .collect();
    let mut fetched: HashMap<EventId, Event> = HashMap::new();
    fetch_into(&sources, [filters::l1()], &mut fetched).await?;
    let l2 = fetch_into(&sources, filters::l2(&coords), &mut fetched).await?;
    let roots: Vec<String> = l2
        .iter()
        .filter(|e| nip34::is_root_kind(e.kind.as_u16()))
        .map(|e| e.id.to_hex())
        .collect();
    fetch_into(&sources, filters::l3(&roots), &mut fetched).await?;
    sources.shutdown().await;

    let writer = Client::default();
    writer.add_relay(home.url()).await?;
    writer.connect().await;
    writer.wait_for_connection(CONNECT_TIMEOUT).await;
    let mut refused = 0;
    for event in fetched.values() {
        // An older copy of a replaceable event is refused; the script shrugs and goes on.
        match writer.send_event(event).await {
            Ok(output) if output.success.is_empty() => refused += 1,
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    writer.shutdown().await;
    let bytes = world.bytes_sent() - bytes_before;
    let lacking = missing(&home, &world.want).await?;
    anyhow::ensure!(lacking == 0, "the naive script left {lacking} events out");
    progress(&format!(
        "naive: done in {seconds:.2} s ({} fetched, {refused} refused by the home relay)",
        fetched.len()
    ));
    Ok((seconds, bytes))
}

/// Fetches each filter from every relay in turn, adds the events to `into`, returns them.
async fn fetch_into(
    client: &Client,
    filters: impl IntoIterator<Item = Filter>,
    into: &mut HashMap<EventId, Event>,
) -> anyhow::Result<Vec<Event>> {
    let mut out = Vec::new();
    for filter in filters {
        let events = client
            .fetch_events(filter.limit(FETCH_LIMIT), FETCH_TIMEOUT)
            .await?;
        for event in events {
            into.entry(event.id).or_insert_with(|| event.clone());
            out.push(event);
        }
    }
    Ok(out)
}
