//! The worker-wide publish budget: a worker syncing several relays of large events through a
//! budget far smaller than their sum still delivers every event, because acks give the budget
//! back and wake the sessions that paused reading.

mod common;

use std::collections::HashSet;

use common::{config, Connector, World, WORKER};
use ngit_sync_test_support::TestRelay;
use nostr::{Event, EventBuilder, Keys, Kind, Tag, Timestamp};

/// An announced repo and `issues` issues of about `kib` KiB each.
fn big_repo(issues: usize, kib: usize) -> (String, Vec<Event>) {
    let keys = Keys::generate();
    let coord = format!("30617:{}:big", keys.public_key().to_hex());
    let mut events = vec![EventBuilder::new(Kind::GitRepoAnnouncement, "")
        .tags([Tag::identifier("big"), Tag::parse(["name", "big"]).unwrap()])
        .custom_created_at(Timestamp::from(1_700_000_000))
        .sign_with_keys(&keys)
        .unwrap()];
    for i in 0..issues {
        let body = format!("{i:06}").repeat(kib * 1024 / 6);
        events.push(
            EventBuilder::new(Kind::GitIssue, body)
                .tag(Tag::parse(["a", coord.as_str()]).unwrap())
                .custom_created_at(Timestamp::from(1_700_000_100 + i as u64))
                .sign_with_keys(&keys)
                .unwrap(),
        );
    }
    (coord, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_holding_many_times_the_budget_are_synced_completely() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let mut all = Vec::new();
    let mut relays = Vec::new();
    for _ in 0..4 {
        // 4 relays × 60 events × 32 KiB ≈ 7.5 MiB through a 1 MiB budget.
        let relay = TestRelay::remote().await?;
        let (coord, events) = big_repo(60, 32);
        relay.publish(&events).await?;
        let url = world.want_relay(&relay.url()).await?;
        world.want_repo(&coord, &[&url]).await?;
        all.extend(events);
        relays.push(relay);
    }
    let total: usize = all.iter().map(|e| nostr::JsonUtil::as_json(e).len()).sum();
    let mut c = config(&world.nats, WORKER);
    c.publish_budget_mib = 1;
    assert!(total > 7 * (c.publish_budget_mib << 20), "{total} bytes");
    let connector = Connector::start(&world.nats, c).await?;

    world
        .wait_synced(&all, "every event of the four relays")
        .await?;
    let want: HashSet<String> = all.iter().map(|e| e.id.to_hex()).collect();
    assert_eq!(
        world.synced_ids().await?,
        want,
        "each id once, nothing else"
    );
    connector.stop().await
}
