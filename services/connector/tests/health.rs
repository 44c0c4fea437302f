//! Relay health and the session lifecycle against real relays that go down, drop us, refuse
//! and rate-limit (issue "Relay health and session lifecycle", acceptance 2–6 and 8), with
//! every duration shrunk. Discovery is not running: the tests write its KV entries.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{config, confirmed, Connector, World, WORKER};
use ngit_sync_shared::messages::{now_ms, HealthReport, RelayBody};
use ngit_sync_shared::status::{AttemptResult, Health, Layer, SyncPlan};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::{
    free_port, Corpus, CorpusSpec, RawRelay, RawRelayOptions, Repo, TestRelay, TestRelayOptions,
};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag, Timestamp};
use serde_json::Value;

/// Starts of connection attempts, with their time.
fn attempt_starts(news: &[(u64, RelayBody)]) -> Vec<u64> {
    news.iter()
        .filter_map(|(at, n)| match n {
            RelayBody::Attempted {
                result: AttemptResult::Started,
                ..
            } => Some(*at),
            _ => None,
        })
        .collect()
}

fn health_reports(news: &[(u64, RelayBody)]) -> Vec<(u64, HealthReport)> {
    news.iter()
        .filter_map(|(at, n)| match n {
            RelayBody::Health(h) => Some((*at, h.clone())),
            _ => None,
        })
        .collect()
}

fn connects(news: &[(u64, RelayBody)]) -> Vec<(u64, String, SyncPlan)> {
    news.iter()
        .filter_map(|(at, n)| match n {
            RelayBody::Connected { session, plan, .. } => Some((*at, session.clone(), *plan)),
            _ => None,
        })
        .collect()
}

/// The repo's coordinate and roots written as discovery would.
async fn want_repo(world: &World, repo: &Repo, relays: &[&RelayUrl]) -> anyhow::Result<()> {
    let coord = repo.coordinate.to_string();
    world.want_repo(&coord, relays).await?;
    for root in repo.roots() {
        world.want_root(&coord, &root).await?;
    }
    Ok(())
}

/// An issue of `repo` created now: what a relay receives while we are away.
fn new_issue(repo: &Repo, n: usize) -> Event {
    EventBuilder::new(Kind::GitIssue, format!("written during the gap {n}"))
        .tag(Tag::parse(["a", &repo.coordinate.to_string()]).unwrap())
        .custom_created_at(Timestamp::now())
        .sign_with_keys(&Keys::generate())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_down_when_discovered_backs_off_and_turns_healthy_only_after_stable_minutes(
) -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let port = free_port();
    let url = world.want_relay(&format!("ws://127.0.0.1:{port}")).await?;
    let mut cfg = config(&world.nats, WORKER);
    cfg.backoff_base = Duration::from_millis(200);
    cfg.backoff_cap = Duration::from_millis(3_200);
    cfg.stable_after = Duration::from_secs(2);
    let connector = Connector::start(&world.nats, cfg).await?;

    world
        .wait_news(&url, "six attempts", |n| {
            (n.iter()
                .filter(|b| {
                    matches!(
                        b,
                        RelayBody::Attempted {
                            result: AttemptResult::Failure,
                            ..
                        }
                    )
                })
                .count()
                >= 6)
                .then_some(())
        })
        .await?;
    let news = world.news_stamped(&url).await?;
    let starts = attempt_starts(&news);
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().take(5).enumerate() {
        let expected = 200 << i;
        // ±20 % jitter, plus the refused connect and the bus on top.
        assert!(
            *gap * 10 >= expected * 8 && *gap <= expected * 12 / 10 + 150,
            "gap {i} of {gaps:?} is not 200 ms × 2^{i} ± 20 %"
        );
    }
    let reports = health_reports(&news);
    let last = &reports.last().expect("health reported").1;
    assert_eq!(last.state, Health::Degraded);
    assert!(last.consecutive_failures >= 6);

    let mut relay = TestRelay::start(TestRelayOptions::new().port(port)).await?;
    let healthy = world
        .wait_news(&url, "Healthy", |n| {
            n.iter()
                .any(|b| matches!(b, RelayBody::Health(h) if h.state == Health::Healthy))
                .then_some(())
        })
        .await;
    healthy?;
    let news = world.news_stamped(&url).await?;
    let (connected_at, _, _) = connects(&news)[0].clone();
    let reports = health_reports(&news);
    let after: Vec<&(u64, HealthReport)> = reports
        .iter()
        .filter(|(at, _)| *at >= connected_at)
        .collect();
    assert_eq!(
        after[0].1.state,
        Health::Degraded,
        "connected, not yet stable"
    );
    assert!(
        after[0].1.consecutive_failures >= 6,
        "the count stays while unproven"
    );
    let (healthy_at, h) = after
        .iter()
        .find(|(_, h)| h.state == Health::Healthy)
        .expect("Healthy");
    assert_eq!(h.consecutive_failures, 0, "reset only now");
    assert!(
        healthy_at - connected_at >= 2_000,
        "Healthy after {} ms, before the 2 s of stability",
        healthy_at - connected_at
    );
    relay.stop();
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_drops_every_connection_at_once_keeps_backing_off() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = RawRelay::start(Vec::new(), RawRelayOptions::new().accept_then_close()).await?;
    let url = world.want_relay(&relay.url()).await?;
    let mut cfg = config(&world.nats, WORKER);
    cfg.backoff_base = Duration::from_millis(200);
    cfg.backoff_cap = Duration::from_secs(10);
    cfg.stable_after = Duration::from_secs(1);
    let connector = Connector::start(&world.nats, cfg).await?;

    world
        .wait_news(&url, "six dropped sessions", |n| {
            (n.iter()
                .filter(|b| matches!(b, RelayBody::Disconnected { .. }))
                .count()
                >= 6)
                .then_some(())
        })
        .await?;
    let news = world.news_stamped(&url).await?;
    let successes = news
        .iter()
        .filter(|(_, n)| {
            matches!(
                n,
                RelayBody::Attempted {
                    result: AttemptResult::Success,
                    ..
                }
            )
        })
        .count();
    assert!(successes >= 6, "the handshake succeeds every time");
    let gaps: Vec<u64> = attempt_starts(&news)
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert!(
        gaps.windows(2).take(5).all(|w| w[1] > w[0]),
        "each gap longer than the last: {gaps:?}"
    );
    assert!(gaps[4] >= 2_000, "the fifth wait is 3.2 s ± 20 %: {gaps:?}");
    let failures: Vec<u32> = health_reports(&news)
        .iter()
        .map(|(_, h)| h.consecutive_failures)
        .collect();
    assert!(
        failures.windows(2).all(|w| w[1] >= w[0]),
        "a drop never resets the count: {failures:?}"
    );
    assert!(failures.last().copied().unwrap_or(0) >= 6);
    // Healthy at most for the very first session (no failure yet); never once failing.
    let reports = health_reports(&news);
    let first_drop = reports
        .iter()
        .position(|(_, h)| h.consecutive_failures > 0)
        .expect("a failure");
    assert!(reports[first_drop..]
        .iter()
        .all(|(_, h)| h.state == Health::Degraded));
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limiting_relay_gets_no_req_during_the_cooldown_and_every_subscription_back(
) -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(41)
            .repos(2)
            .events_per_repo(20)
            .patch_kib(1, 1),
    );
    let events = corpus.all_related();
    let relay = RawRelay::serving(&events, RawRelayOptions::new().rate_limit_reqs_first(2)).await?;
    let url = world.want_relay(&relay.url()).await?;
    for repo in corpus.repos() {
        want_repo(&world, repo, &[&url]).await?;
    }
    let mut cfg = config(&world.nats, WORKER);
    cfg.rate_limit_cooldown = Duration::from_secs(3);
    let connector = Connector::start(&world.nats, cfg).await?;

    let until = world
        .wait_news(&url, "RateLimited", |n| {
            n.iter().find_map(|b| match b {
                RelayBody::Health(h) if h.state == Health::RateLimited => h.rate_limited_until_ms,
                _ => None,
            })
        })
        .await?;
    let during = relay.req_count();
    let mut samples = 0;
    while now_ms() + 200 < until {
        assert_eq!(relay.req_count(), during, "a REQ during the cooldown");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        samples >= 20,
        "the cooldown was watched ({samples} samples)"
    );

    world
        .wait_synced(&events, "every event after the pause")
        .await?;
    world
        .wait_news(&url, "L1, L2 and L3 confirmed", |n| {
            (confirmed(n) >= 3).then_some(())
        })
        .await?;
    let reqs = relay.reqs();
    assert!(
        reqs.len() > during,
        "nothing asked after the cooldown: {} REQs, {during} when it began, news {:?}",
        reqs.len(),
        world
            .news(&url)
            .await?
            .iter()
            .map(RelayBody::suffix)
            .collect::<Vec<_>>()
    );
    for refused in &reqs[..2] {
        assert!(
            reqs[2..].iter().any(|r| r.filters == refused.filters),
            "refused REQ {:?} never asked again",
            refused.filters
        );
    }
    let news = world.news(&url).await?;
    assert!(news.iter().all(|n| !matches!(
        n,
        RelayBody::BatchFailed { .. } | RelayBody::Disconnected { .. }
    )));
    assert!(
        matches!(
            news.iter().rev().find_map(|n| match n {
                RelayBody::Health(h) => Some(h.state),
                _ => None,
            }),
            Some(Health::Healthy)
        ),
        "back to Healthy once the cooldown ended"
    );
    connector.stop().await
}

/// `since` of every historic REQ the relay received from index `from` on.
fn historic_since(relay: &RawRelay, from: usize) -> Vec<Option<u64>> {
    relay.reqs()[from..]
        .iter()
        .flat_map(|r| r.filters.clone())
        .filter(|f| f.get("limit") != Some(&Value::from(0)))
        .map(|f| f.get("since").and_then(Value::as_u64))
        .collect()
}

fn events_seen_in(news: &[RelayBody], session: &str) -> u64 {
    let opened: HashSet<String> = news
        .iter()
        .filter_map(|n| match n {
            RelayBody::BatchOpened(b) if b.session == session => Some(b.batch.clone()),
            _ => None,
        })
        .collect();
    news.iter()
        .filter_map(|n| match n {
            RelayBody::BatchConfirmed {
                batch, events_seen, ..
            } if opened.contains(batch) => Some(*events_seen),
            _ => None,
        })
        .sum()
}

fn connects_of(news: &[RelayBody]) -> Vec<String> {
    news.iter()
        .filter_map(|n| match n {
            RelayBody::Connected { session, .. } => Some(session.clone()),
            _ => None,
        })
        .collect()
}

fn confirmed_in(news: &[RelayBody], session: &str) -> usize {
    news.iter()
        .filter(|n| matches!(n, RelayBody::BatchConfirmed { session: s, .. } if s == session))
        .count()
}

/// A relay synced once, then stopped for a while as new issues appear on it, then back: the
/// gap's events and the relay's REQ count at the restart.
struct Outage {
    world: World,
    relay: RawRelay,
    url: RelayUrl,
    corpus_size: usize,
    gap: Vec<Event>,
    reqs_before: usize,
    /// What the relay sent before the outage (the first, full sync).
    bytes_before: u64,
    connector: Connector,
}

async fn outage(quick_window: Duration, outage: Duration) -> anyhow::Result<Outage> {
    let mut world = World::start().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(43)
            .repos(1)
            .events_per_repo(120)
            .patch_kib(1, 2),
    );
    let events = corpus.all_related();
    let mut relay = RawRelay::serving(&events, RawRelayOptions::new()).await?;
    let url = world.want_relay(&relay.url()).await?;
    let repo = &corpus.repos()[0];
    want_repo(&world, repo, &[&url]).await?;
    let mut cfg = config(&world.nats, WORKER);
    cfg.quick_reconnect_window = quick_window;
    let connector = Connector::start(&world.nats, cfg).await?;
    world.wait_synced(&events, "the first sync").await?;
    world
        .wait_news(&url, "the first session's batches", |n| {
            (confirmed(n) >= 3).then_some(())
        })
        .await?;

    relay.stop();
    let gap: Vec<Event> = (0..5).map(|n| new_issue(repo, n)).collect();
    relay.add_events(gap.iter().map(JsonUtil::as_json));
    tokio::time::sleep(outage).await;
    let reqs_before = relay.req_count();
    let bytes_before = relay.bytes_sent();
    relay.start_again().await?;
    Ok(Outage {
        world,
        relay,
        url,
        corpus_size: events.len(),
        gap,
        reqs_before,
        bytes_before,
        connector,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_back_after_thirty_seconds_gets_a_quick_reconnect_with_since_and_no_full_download(
) -> anyhow::Result<()> {
    let started = now_ms();
    let Outage {
        mut world,
        relay,
        url,
        corpus_size,
        gap,
        reqs_before,
        bytes_before,
        connector,
    } = outage(Duration::from_secs(15 * 60), Duration::from_secs(30)).await?;

    world
        .wait_synced(&gap, "the issues written during the gap")
        .await?;
    let session = world
        .wait_news(&url, "a second session", |n| {
            n.iter()
                .filter_map(|b| match b {
                    RelayBody::Connected { session, plan, .. } => Some((session.clone(), *plan)),
                    _ => None,
                })
                .nth(1)
        })
        .await?;
    assert_eq!(session.1, SyncPlan::Quick);
    world
        .wait_news(&url, "the catch-up batches", |n| {
            (confirmed_in(n, &session.0) >= 3).then_some(())
        })
        .await?;
    let since = historic_since(&relay, reqs_before);
    assert!(!since.is_empty());
    let earliest = (started - 10 * 60 * 1000) / 1000 - 5;
    assert!(
        since.iter().all(|s| s.is_some_and(|s| s >= earliest)),
        "every catch-up REQ starts at the last connection minus 10 min: {since:?}"
    );
    let news = world.news(&url).await?;
    let seen = events_seen_in(&news, &session.0);
    assert_eq!(
        seen,
        gap.len() as u64,
        "only the gap's events came again, not the {corpus_size} of the first sync"
    );
    let bytes_after = relay.bytes_sent() - bytes_before;
    assert!(
        bytes_after * 20 < bytes_before,
        "the relay served {bytes_after} bytes after the outage, {bytes_before} before"
    );
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_down_longer_than_the_quick_window_gets_a_fresh_start() -> anyhow::Result<()> {
    let Outage {
        mut world,
        relay,
        url,
        corpus_size,
        gap,
        reqs_before,
        bytes_before,
        connector,
    } = outage(Duration::from_secs(2), Duration::from_secs(4)).await?;

    world
        .wait_synced(&gap, "the issues written during the gap")
        .await?;
    let session = world
        .wait_news(&url, "a second session", |n| {
            n.iter()
                .filter_map(|b| match b {
                    RelayBody::Connected { session, plan, .. } => Some((session.clone(), *plan)),
                    _ => None,
                })
                .nth(1)
        })
        .await?;
    assert_eq!(session.1, SyncPlan::Fresh);
    let news = world
        .wait_news(&url, "the fresh batches", |n| {
            (confirmed_in(n, &session.0) >= 3).then(|| n.to_vec())
        })
        .await?;
    let layers: HashSet<Layer> = news
        .iter()
        .filter_map(|n| match n {
            RelayBody::BatchOpened(b) if b.session == session.0 => Some(b.layer),
            _ => None,
        })
        .collect();
    assert_eq!(layers.len(), 3, "every layer from scratch");
    let since = historic_since(&relay, reqs_before);
    assert!(since.iter().all(Option::is_none), "full history: {since:?}");
    let first = connects_of(&news)[0].clone();
    let before = events_seen_in(&news, &first);
    assert!(before >= corpus_size as u64);
    assert_eq!(
        events_seen_in(&news, &session.0),
        before + gap.len() as u64,
        "everything served again, and the gap"
    );
    assert!(relay.bytes_sent() - bytes_before >= bytes_before);
    connector.stop().await
}

/// REQ and CLOSE messages a raw relay received, replayed: the most subscriptions open at once,
/// the most filters in one REQ, live subscriptions open at the end, live ones closed.
fn subscription_profile(relay: &RawRelay) -> (usize, usize, usize, usize) {
    let mut open: HashSet<String> = HashSet::new();
    let mut live: HashSet<String> = HashSet::new();
    let (mut most_open, mut most_filters, mut closed_live) = (0, 0, 0);
    for text in relay.received() {
        let Ok(Value::Array(parts)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let sub = parts
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match parts.first().and_then(Value::as_str) {
            Some("REQ") => {
                let filters = &parts[2..];
                most_filters = most_filters.max(filters.len());
                if filters.iter().all(|f| f["limit"] == 0) {
                    live.insert(sub.clone());
                }
                open.insert(sub);
                most_open = most_open.max(open.len());
            }
            Some("CLOSE") => {
                open.remove(&sub);
                if live.remove(&sub) {
                    closed_live += 1;
                }
            }
            _ => {}
        }
    }
    (most_open, most_filters, live.len(), closed_live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_and_fifty_repos_fit_under_a_fifty_subscription_limit() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(47)
            .repos(150)
            .events_per_repo(2)
            .patch_kib(1, 1),
    );
    let events = corpus.all_related();
    let limited = TestRelay::start(TestRelayOptions::new().rate_limit(50, 60)).await?;
    limited.publish(&events).await?;
    let raw = RawRelay::serving(&events, RawRelayOptions::new()).await?;
    let limited_url = world.want_relay(&limited.url()).await?;
    let raw_url = world.want_relay(&raw.url()).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;
    world
        .wait_news(&limited_url, "L1 confirmed", |n| {
            (confirmed(n) >= 1).then_some(())
        })
        .await?;

    // Repos arrive one by one, as announcements do: each wave of targets opens its own batch
    // with its own live filters, which pass 70 long before the last repo.
    for repo in corpus.repos() {
        want_repo(&world, repo, &[&limited_url, &raw_url]).await?;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    world
        .wait_synced(&events, "every event of the 150 repos")
        .await?;
    for url in [&limited_url, &raw_url] {
        world
            .wait_news(url, "every batch confirmed", |n| {
                let opened = n
                    .iter()
                    .filter(|b| matches!(b, RelayBody::BatchOpened(_)))
                    .count();
                (confirmed(n) == opened).then_some(())
            })
            .await?;
    }

    let (most_open, most_filters, live_open, live_closed) = subscription_profile(&raw);
    assert!(most_filters <= 20, "a REQ carried {most_filters} filters");
    assert!(live_closed > 0, "live subscriptions were consolidated");
    assert!(
        most_open < 50,
        "{most_open} subscriptions open at once on one relay"
    );
    assert!(live_open < 30, "{live_open} live subscriptions left open");

    let news = world.news(&limited_url).await?;
    assert!(
        news.iter()
            .all(|n| !matches!(n, RelayBody::Health(h) if h.state == Health::RateLimited)),
        "the relay's 50-subscription limit was never hit"
    );
    assert!(news
        .iter()
        .all(|n| !matches!(n, RelayBody::BatchFailed { .. })));

    // Consolidated live subscriptions still deliver, for the first repo and the last.
    let first = new_issue(&corpus.repos()[0], 0);
    let last = new_issue(&corpus.repos()[149], 1);
    limited.publish(&[first.clone(), last.clone()]).await?;
    world
        .wait_synced(&[first, last], "live issues after consolidation")
        .await?;
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_relay_gets_its_daily_fresh_start_without_a_disconnect() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(53)
            .repos(1)
            .events_per_repo(30)
            .patch_kib(1, 1),
    );
    let events = corpus.all_related();
    let relay = RawRelay::serving(&events, RawRelayOptions::new()).await?;
    let url = world.want_relay(&relay.url()).await?;
    want_repo(&world, &corpus.repos()[0], &[&url]).await?;
    let mut cfg = config(&world.nats, WORKER);
    cfg.daily_min = Duration::from_secs(3);
    cfg.daily_max = Duration::from_secs(4);
    let connector = Connector::start(&world.nats, cfg).await?;

    let second = world
        .wait_news(&url, "a second session on the same connection", |n| {
            connects_of(n).get(1).cloned()
        })
        .await?;
    let news = world
        .wait_news(&url, "the reconciliation's batches", |n| {
            (confirmed_in(n, &second) >= 3).then(|| n.to_vec())
        })
        .await?;
    let stamped = world.news_stamped(&url).await?;
    let sessions = connects(&stamped);
    assert_eq!(sessions[1].2, SyncPlan::Fresh);
    let after = sessions[1].0 - sessions[0].0;
    assert!(
        (3_000..4_500).contains(&after),
        "due 3-4 s after the first, came after {after} ms"
    );
    assert!(
        news.iter().all(|n| !matches!(
            n,
            RelayBody::Disconnected { .. }
                | RelayBody::Attempted { .. }
                | RelayBody::BatchFailed { .. }
        ) || matches!(n, RelayBody::Attempted { attempt: 1, .. })),
        "one connection, no disconnect, no failed batch"
    );
    let first = connects_of(&news)[0].clone();
    assert_eq!(
        events_seen_in(&news, &second),
        events_seen_in(&news, &first),
        "the whole history asked again"
    );
    assert!(health_reports(&stamped)
        .iter()
        .all(|(_, h)| h.consecutive_failures == 0));
    assert_eq!(relay.connection_count(), 1);
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_continues_the_backoff_of_the_last_one() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let url = world
        .want_relay(&format!("ws://127.0.0.1:{}", free_port()))
        .await?;
    let first = Connector::start(&world.nats, config(&world.nats, "first")).await?;
    world
        .wait_news(&url, "four failed attempts", |n| {
            (n.iter()
                .filter(|b| {
                    matches!(
                        b,
                        RelayBody::Attempted {
                            result: AttemptResult::Failure,
                            ..
                        }
                    )
                })
                .count()
                >= 4)
                .then_some(())
        })
        .await?;
    first.stop().await?;
    let before = world.news(&url).await?.len();
    let failures = health_reports(&world.news_stamped(&url).await?)
        .last()
        .map(|(_, h)| h.consecutive_failures)
        .expect("health reported");

    let second = Connector::start(&world.nats, config(&world.nats, "second")).await?;
    let (report, attempt) = world
        .wait_news(&url, "the new owner's first attempt", |n| {
            let mine = &n[before..];
            let report = mine.iter().find_map(|b| match b {
                RelayBody::Health(h) => Some(h.clone()),
                _ => None,
            })?;
            let attempt = mine.iter().find_map(|b| match b {
                RelayBody::Attempted { attempt, .. } => Some(*attempt),
                _ => None,
            })?;
            Some((report, attempt))
        })
        .await?;
    assert_eq!(report.state, Health::Degraded);
    assert_eq!(report.consecutive_failures, failures, "carried over");
    assert_eq!(attempt, failures + 1, "counting on, not from one");
    second.stop().await
}
