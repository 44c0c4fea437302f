//! A connector syncing by NIP-77 against a real nostr-relay-builder relay, with a tiny stand-in
//! for discovery's home index answering `index.items` from a fixed event set.

mod common;

use std::collections::HashSet;

use common::{config, confirmed, Connector, World, WORKER};
use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{IndexItemsChunk, IndexItemsRequest, RelayBody, RelayState};
use ngit_sync_shared::status::SyncMethod;
use ngit_sync_shared::Bus;
use ngit_sync_test_support::TestRelay;
use nostr::filter::MatchEventOptions;
use nostr::{Event, EventBuilder, Filter, JsonUtil, Keys, Kind, Tag, Timestamp};

/// A repo announcement and `n` issues tagging it.
fn repo(n: usize) -> (String, Vec<Event>) {
    let keys = Keys::generate();
    let coord = format!("30617:{}:demo", keys.public_key().to_hex());
    let mut events = vec![EventBuilder::new(Kind::GitRepoAnnouncement, "")
        .tags([Tag::identifier("demo")])
        .sign_with_keys(&keys)
        .unwrap()];
    for i in 0..n {
        events.push(
            EventBuilder::new(Kind::GitIssue, format!("issue {i}"))
                .tag(Tag::parse(["a", coord.as_str()]).unwrap())
                .custom_created_at(Timestamp::from(1_700_000_000 + i as u64))
                .sign_with_keys(&keys)
                .unwrap(),
        );
    }
    (coord, events)
}

/// Answers `index.items` with the items of `home` matching the filters, in one chunk.
fn serve_index(bus: Bus, home: Vec<Event>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut requests = bus
            .client
            .queue_subscribe(bus.names.index_items(), bus.names.index_queue())
            .await
            .expect("subscribe");
        while let Some(message) = requests.next().await {
            let request: IndexItemsRequest = codec::decode(&message.payload).expect("request");
            let filters: Vec<Filter> = request
                .filters
                .iter()
                .map(|f| Filter::from_json(f).expect("filter"))
                .collect();
            let items = home
                .iter()
                .filter(|e| {
                    filters
                        .iter()
                        .any(|f| f.match_event(e, MatchEventOptions::new()))
                })
                .map(|e| (e.created_at.as_secs(), e.id.to_hex()))
                .collect();
            let chunk = IndexItemsChunk {
                chunk: 0,
                last: true,
                items,
                error: None,
            };
            let payload = codec::encode(bus.wire, &chunk).expect("encode");
            let reply = message.reply.expect("a request has a reply subject");
            bus.client.publish(reply, payload).await.expect("reply");
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_home_index_lacks_is_fetched() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let (coord, events) = repo(300);
    relay.publish(&events).await?;
    // The home relay already holds the announcement and the first 200 issues.
    let (home, missing) = events.split_at(201);
    let index = serve_index(world.bus.clone(), home.to_vec());
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo(&coord, &[&url]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    world
        .wait_news(&url, "L1 and L2 confirmed", |n| {
            (confirmed(n) >= 2).then_some(())
        })
        .await?;
    world.wait_synced(missing, "the 100 missing issues").await?;
    let synced = world.synced_ids().await?;
    let want: HashSet<String> = missing.iter().map(|e| e.id.to_hex()).collect();
    assert_eq!(synced, want, "nothing the home index holds was fetched");
    let news = world.news(&url).await?;
    assert!(news
        .iter()
        .all(|n| !matches!(n, RelayBody::BatchFailed { .. })));
    assert!(news
        .iter()
        .filter_map(|n| match n {
            RelayBody::BatchOpened(b) => Some(b.method),
            _ => None,
        })
        .all(|m| m == SyncMethod::Negentropy));
    for query in relay.queries().iter().filter(|f| f.limit != Some(0)) {
        assert!(query.ids.is_some(), "history only by {{ids}}: {query:?}");
    }
    connector.stop().await?;
    index.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_home_index_history_goes_by_req_and_the_relay_is_not_blamed() -> anyhow::Result<()>
{
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let (coord, events) = repo(50);
    relay.publish(&events).await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo(&coord, &[&url]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    world.wait_synced(&events, "every event by REQ").await?;
    world
        .wait_news(&url, "L1 and L2 confirmed", |n| {
            (confirmed(n) >= 2).then_some(())
        })
        .await?;
    connector.stop().await?;
    let state: RelayState = world
        .bus
        .get(&world.bus.buckets.relay_state, url.key().as_str())
        .await?
        .unwrap_or_default();
    assert_ne!(state.negentropy, Some(false));
    Ok(())
}
