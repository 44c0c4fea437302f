//! Tests for `TestRelay`: real down/up, persistence across restarts, limits and counters.

use std::time::{Duration, Instant};

use futures::StreamExt;
use nostr::{EventBuilder, JsonUtil, Keys, Kind};
use nostr_sdk::Client;

use super::*;
use crate::eventually::eventually;
use crate::net::port_is_open;

const WAIT: Duration = Duration::from_secs(5);

fn notes(n: usize) -> Vec<Event> {
    let keys = Keys::generate();
    (0..n)
        .map(|i| {
            EventBuilder::text_note(format!("note {i}"))
                .sign_with_keys(&keys)
                .unwrap()
        })
        .collect()
}

async fn client_of(relay: &TestRelay) -> Client {
    let client = Client::default();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    client
}

async fn fetch_ids(relay: &TestRelay) -> HashSet<EventId> {
    let client = client_of(relay).await;
    let events = client
        .fetch_events(Filter::new().kind(Kind::TextNote), WAIT)
        .await
        .unwrap();
    client.shutdown().await;
    events.into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn stopped_relay_refuses_connections_and_restart_serves_the_same_events() {
    let mut relay = TestRelay::remote().await.unwrap();
    let events = notes(20);
    assert_eq!(relay.publish(&events).await.unwrap(), 20);
    let want: HashSet<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(fetch_ids(&relay).await, want);

    let port = relay.port();
    relay.stop();
    assert!(!relay.is_running());
    assert!(
        !port_is_open(port).await,
        "port {port} still accepts after stop"
    );

    relay.start_again().await.unwrap();
    assert_eq!(relay.port(), port);
    assert_eq!(relay.url(), format!("ws://127.0.0.1:{port}"));
    assert_eq!(fetch_ids(&relay).await, want);
    assert_eq!(relay.event_ids().await.unwrap(), want);
}

#[tokio::test]
async fn stop_cuts_open_connections() {
    let mut relay = TestRelay::remote().await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(relay.url()).await.unwrap();
    eventually(WAIT, "the connection to be counted", || async {
        relay.open_connections() == 1
    })
    .await
    .unwrap();
    relay.stop();
    assert_eq!(relay.open_connections(), 0);
    let next = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("socket still open");
    assert!(!matches!(&next, Some(Ok(m)) if m.is_text()), "got {next:?}");
}

#[tokio::test]
async fn home_relay_takes_bulk_client_writes_and_counts_reqs() {
    let relay = TestRelay::home().await.unwrap();
    let client = client_of(&relay).await;
    let events = notes(150);
    for event in &events {
        let out = client.send_event(event).await.unwrap();
        assert!(out.failed.is_empty(), "{:?}", out.failed);
    }
    assert_eq!(relay.write_count(), 150);
    assert_eq!(relay.count().await.unwrap(), 150);

    let fetched = client
        .fetch_events(Filter::new().kind(Kind::TextNote).limit(1000), WAIT)
        .await
        .unwrap();
    assert_eq!(fetched.len(), 150);
    assert_eq!(relay.req_count(), 1);
    assert_eq!(relay.queries()[0].limit, Some(1000));
    assert_eq!(relay.connection_count(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn small_rate_limit_rejects_writes_beyond_it() {
    let relay = TestRelay::start(TestRelayOptions::new().rate_limit(10, 2))
        .await
        .unwrap();
    let client = client_of(&relay).await;
    let mut failures = Vec::new();
    for event in notes(4) {
        let out = client.send_event(&event).await.unwrap();
        failures.extend(out.failed.into_values());
    }
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[0].contains("rate-limited"), "{failures:?}");
    assert_eq!(relay.count().await.unwrap(), 2);
    client.shutdown().await;
}

#[tokio::test]
async fn publish_seeds_five_thousand_events_quickly() {
    let relay = TestRelay::home().await.unwrap();
    let events = notes(5_000);
    let started = Instant::now();
    assert_eq!(relay.publish(&events).await.unwrap(), 5_000);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "seeding took {took:?}");
    assert_eq!(relay.event_ids().await.unwrap().len(), 5_000);
    // A second publish of the same events stores nothing new.
    assert_eq!(relay.publish(&events[..10]).await.unwrap(), 0);
}

#[tokio::test]
async fn negentropy_sync_works_through_the_fixture() {
    use nostr_relay_builder::prelude::{MemoryDatabase, MemoryDatabaseOptions};
    use nostr_sdk::{SyncDirection, SyncOptions};

    let relay = TestRelay::remote().await.unwrap();
    relay.publish(&notes(30)).await.unwrap();
    // The client database must store events, or every sync re-downloads (deps-spike §5).
    let database = MemoryDatabase::with_opts(MemoryDatabaseOptions {
        events: true,
        max_events: None,
    });
    let client = Client::builder().database(database).build();
    client.add_relay(relay.url()).await.unwrap();
    client.connect().await;
    client.wait_for_connection(WAIT).await;
    let opts = SyncOptions::default().direction(SyncDirection::Down);
    let filter = Filter::new().kind(Kind::TextNote);
    let first = client.sync(filter.clone(), &opts).await.unwrap();
    assert_eq!(first.val.received.len(), 30, "{:?}", first.failed);
    let second = client.sync(filter, &opts).await.unwrap();
    assert!(second.val.received.is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn bytes_sent_counts_what_clients_received() {
    let relay = TestRelay::remote().await.unwrap();
    let events = notes(10);
    relay.publish(&events).await.unwrap();
    assert_eq!(relay.bytes_sent(), 0);
    assert_eq!(fetch_ids(&relay).await.len(), 10);
    let json: u64 = events.iter().map(|e| e.as_json().len() as u64).sum();
    // Every event went out once, wrapped in an EVENT frame, plus EOSE.
    eventually(WAIT, "bytes counted", || async {
        relay.bytes_sent() > json
    })
    .await
    .unwrap();
}
