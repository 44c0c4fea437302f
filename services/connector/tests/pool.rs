//! The connector's life around relays: retries with backoff, leases, forgetting, shutdown,
//! and two workers sharing relays.

mod common;

use std::collections::HashMap;

use common::script_relay::{self, ScriptRelay};
use common::{config, confirmed, first, Connector, World, WAIT, WORKER};
use ngit_sync_connector::rendezvous;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{now_ms, LeaseEntry, RelayBody, RelayState};
use ngit_sync_shared::status::{AttemptResult, Health, SyncPlan};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::{eventually, TestRelay};

async fn lease_holder(world: &World, url: &RelayUrl) -> Option<String> {
    let lease: Option<LeaseEntry> = world
        .bus
        .get(&world.bus.buckets.leases, url.key().as_str())
        .await
        .ok()?;
    lease.map(|l| l.worker)
}

/// A relay that has nothing: every REQ gets its EOSE.
async fn empty_relay() -> anyhow::Result<ScriptRelay> {
    ScriptRelay::start(|sub, _| vec![script_relay::eose(sub)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_down_at_first_is_retried_with_backoff_until_it_comes_up() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let mut relay = TestRelay::remote().await?;
    relay.stop();
    let url = world.want_relay(&relay.url()).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    let failures = world
        .wait_news(&url, "three failed attempts", |n| {
            let at: Vec<(u32, usize)> = n
                .iter()
                .enumerate()
                .filter_map(|(i, b)| match b {
                    RelayBody::Attempted {
                        attempt,
                        result: AttemptResult::Failure,
                        ..
                    } => Some((*attempt, i)),
                    _ => None,
                })
                .collect();
            (at.len() >= 3).then_some(at)
        })
        .await?;
    let numbers: Vec<u32> = failures.iter().map(|(a, _)| *a).take(3).collect();
    assert_eq!(
        numbers,
        [1, 2, 3],
        "each retry counts the failures before it"
    );
    let health = world
        .wait_news(&url, "a health report of repeated failure", |n| {
            n.iter().rev().find_map(|b| match b {
                RelayBody::Health(h) if h.consecutive_failures >= 2 => Some(h.clone()),
                _ => None,
            })
        })
        .await?;
    assert_eq!(health.state, Health::Degraded, "failing, not yet Dead");
    assert!(health.next_attempt_ms.is_some());

    relay.start_again().await?;
    world
        .wait_news(&url, "a connection once the relay is up", |n| {
            first(n, "connected")
        })
        .await?;
    world
        .wait_news(&url, "L1 confirmed", |n| (confirmed(n) >= 1).then_some(()))
        .await?;

    // The backoff really spaced the attempts: base 200 ms, ±20 %.
    let stamps = stamps_of_attempts(&mut world, &url).await?;
    for pair in stamps.windows(2).take(2) {
        assert!(
            pair[1] - pair[0] >= 150,
            "attempts {} ms apart",
            pair[1] - pair[0]
        );
    }
    connector.stop().await
}

/// When each `started` attempt was published (ms).
async fn stamps_of_attempts(world: &mut World, url: &RelayUrl) -> anyhow::Result<Vec<u64>> {
    Ok(world
        .news_stamped(url)
        .await?
        .into_iter()
        .filter(|(_, b)| {
            matches!(
                b,
                RelayBody::Attempted {
                    result: AttemptResult::Started,
                    ..
                }
            )
        })
        .map(|(at, _)| at)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_releases_and_deletes_the_lease_in_time() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = empty_relay().await?;
    let url = world.want_relay(&relay.url()).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;
    world
        .wait_news(&url, "L1 confirmed", |n| (confirmed(n) >= 1).then_some(()))
        .await?;
    assert_eq!(lease_holder(&world, &url).await.as_deref(), Some(WORKER));

    let asked = tokio::time::Instant::now();
    connector.stop().await?;
    assert!(asked.elapsed() < ngit_sync_shared::constants::SHUTDOWN_GRACE);

    let news = world.news(&url).await?;
    let disconnected = first(&news, "disconnected").expect("disconnected");
    let released = first(&news, "released").expect("released");
    assert!(disconnected < released);
    assert!(matches!(&news[released], RelayBody::Released { reason, .. } if reason == "shutdown"));
    assert_eq!(lease_holder(&world, &url).await, None);
    assert!(
        world.bus.buckets.workers.get(WORKER).await?.is_none(),
        "heartbeat removed"
    );
    let state: RelayState = world
        .bus
        .get(&world.bus.buckets.relay_state, url.key().as_str())
        .await?
        .expect("relay state persisted");
    assert!(state.confirmed_l1);
    assert!(state.disconnected_ms.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_leased_by_another_worker_waits_for_the_lease() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let (busy, control) = (empty_relay().await?, empty_relay().await?);
    let url = RelayUrl::parse(&busy.url())?;
    let foreign = LeaseEntry {
        worker: "someone-else".into(),
        relay: url.clone(),
        since_ms: now_ms(),
    };
    let payload = codec::encode(world.bus.wire, &foreign)?;
    world
        .bus
        .buckets
        .leases
        .create(url.key().as_str(), payload)
        .await?;
    world.want_relay(&busy.url()).await?;
    let control_url = world.want_relay(&control.url()).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    // The control relay connecting proves claim rounds run; the busy one was in them too.
    world
        .wait_news(&control_url, "the control relay connected", |n| {
            first(n, "connected")
        })
        .await?;
    assert_eq!(
        lease_holder(&world, &url).await.as_deref(),
        Some("someone-else")
    );

    let freed_at = now_ms();
    world.bus.buckets.leases.delete(url.key().as_str()).await?;
    world
        .wait_news(&url, "a connection once the lease is free", |n| {
            first(n, "connected")
        })
        .await?;
    let claimed_at = world
        .news_stamped(&url)
        .await?
        .into_iter()
        .find_map(|(at, b)| matches!(b, RelayBody::Claimed { .. }).then_some(at))
        .expect("claimed");
    assert!(
        claimed_at >= freed_at,
        "claimed at {claimed_at}, before the lease was free at {freed_at}"
    );
    assert_eq!(lease_holder(&world, &url).await.as_deref(), Some(WORKER));
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_relay_is_disconnected_and_released() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = empty_relay().await?;
    let url = world.want_relay(&relay.url()).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;
    world
        .wait_news(&url, "L1 confirmed", |n| (confirmed(n) >= 1).then_some(()))
        .await?;

    world.forget_relay(&url).await?;
    let reason = world
        .wait_news(&url, "released", |n| {
            n.iter().find_map(|b| match b {
                RelayBody::Released { reason, .. } => Some(reason.clone()),
                _ => None,
            })
        })
        .await?;
    assert_eq!(reason, "forgotten");
    assert!(first(&world.news(&url).await?, "disconnected").is_some());
    assert_eq!(lease_holder(&world, &url).await, None);
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_split_the_relays_and_one_takes_over_when_the_other_leaves(
) -> anyhow::Result<()> {
    let world = World::start().await?;
    let mut relays = Vec::new();
    let mut urls = Vec::new();
    for _ in 0..12 {
        let relay = empty_relay().await?;
        urls.push(world.want_relay(&relay.url()).await?);
        relays.push(relay);
    }
    let a = Connector::start(&world.nats, config(&world.nats, "worker-a")).await?;
    let b = Connector::start(&world.nats, config(&world.nats, "worker-b")).await?;

    let keys: Vec<String> = urls.iter().map(|u| u.key().to_string()).collect();
    let assigned = rendezvous::assign(&["worker-a", "worker-b"], keys.iter().map(String::as_str));
    let preferred: HashMap<RelayUrl, String> = urls
        .iter()
        .map(|u| (u.clone(), assigned[u.key().as_str()].clone()))
        .collect();
    eventually(
        WAIT,
        "each relay leased by its rendezvous choice",
        || async {
            for (url, want) in &preferred {
                if lease_holder(&world, url).await.as_ref() != Some(want) {
                    return false;
                }
            }
            true
        },
    )
    .await?;

    a.stop().await?;
    eventually(WAIT, "worker-b holding every relay", || async {
        for url in &urls {
            if lease_holder(&world, url).await.as_deref() != Some("worker-b") {
                return false;
            }
        }
        true
    })
    .await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_drop_reconnects_quickly_asking_history_since_the_last_connection(
) -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let mut relay = TestRelay::remote().await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo("30617:abcd:demo", &[&url]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;
    world
        .wait_news(&url, "L1 and L2 confirmed", |n| {
            (confirmed(n) >= 2).then_some(())
        })
        .await?;
    let first_connect = world
        .news_stamped(&url)
        .await?
        .into_iter()
        .find_map(|(at, b)| matches!(b, RelayBody::Connected { .. }).then_some(at))
        .expect("connected");

    relay.restart().await?;
    let plans = world
        .wait_news(&url, "a second session", |n| {
            let plans: Vec<SyncPlan> = n
                .iter()
                .filter_map(|b| match b {
                    RelayBody::Connected { plan, .. } => Some(*plan),
                    _ => None,
                })
                .collect();
            (plans.len() >= 2).then_some(plans)
        })
        .await?;
    assert_eq!(plans[..2], [SyncPlan::Fresh, SyncPlan::Quick]);
    world
        .wait_news(&url, "the catch-up confirmed", |n| {
            (confirmed(n) >= 4).then_some(())
        })
        .await?;
    // Overlap 10 min before the first connection, to the second.
    let since = (first_connect - 600_000) / 1000;
    let catch_up: Vec<u64> = relay
        .queries()
        .iter()
        .filter_map(|f| f.since.map(|s| s.as_secs()))
        .collect();
    assert!(!catch_up.is_empty(), "the catch-up REQs carry since");
    assert!(
        catch_up.iter().all(|s| s.abs_diff(since) <= 1),
        "{catch_up:?} vs {since}"
    );
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_address_is_refused_unless_allowed_and_still_retried() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = empty_relay().await?;
    let url = world.want_relay(&relay.url()).await?;
    let mut cfg = config(&world.nats, WORKER);
    cfg.allow_private = false;
    let connector = Connector::start(&world.nats, cfg).await?;

    let errors = world
        .wait_news(&url, "two refused attempts", |n| {
            let errors: Vec<String> = n
                .iter()
                .filter_map(|b| match b {
                    RelayBody::Attempted {
                        result: AttemptResult::Failure,
                        error,
                        ..
                    } => error.clone(),
                    _ => None,
                })
                .collect();
            (errors.len() >= 2).then_some(errors)
        })
        .await?;
    assert!(
        errors.iter().all(|e| e.starts_with("refused:")),
        "{errors:?}"
    );
    assert!(first(&world.news(&url).await?, "connected").is_none());
    connector.stop().await
}
