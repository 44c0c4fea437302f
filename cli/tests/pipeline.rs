//! Acceptance tests of the whole pipeline (issue "End-to-end sync pipeline"): real nats-server,
//! real relays over WebSockets, every service running.

mod stack;

use std::collections::HashSet;
use std::time::Duration;

use ngit_sync_shared::messages::RelayBody;
use ngit_sync_shared::status::ConnectionStatus;
use ngit_sync_test_support::{
    eventually, Corpus, CorpusSpec, RawRelay, RawRelayOptions, TestRelay,
};
use nostr::{Event, EventBuilder, EventId, Keys, Kind, Tag};
use stack::{announce, ids, statuses_of, Service, Stack};

const SYNC_WITHIN: Duration = Duration::from_secs(120);

async fn sources(n: usize) -> anyhow::Result<Vec<TestRelay>> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TestRelay::remote().await?);
    }
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn home_relay_gets_exactly_the_related_events_of_three_relays_and_metrics_match(
) -> anyhow::Result<()> {
    let relays = sources(3).await?;
    let urls: Vec<String> = relays.iter().map(|r| r.url()).collect();
    let corpus = Corpus::generate(
        CorpusSpec::new(11)
            .repos(1)
            .total_events(2_000)
            .relays(urls.clone())
            .patch_kib(2, 16),
    );
    // Every related event on one to three relays; 200 unrelated ones (kind 1, and NIP-34 events
    // of a repo nobody announced) spread over them too.
    for (relay, share) in relays.iter().zip(corpus.spread(3, 3)) {
        relay.publish(&share).await?;
    }
    let unrelated = corpus.unrelated(200);
    for (i, relay) in relays.iter().enumerate() {
        relay
            .publish(
                &unrelated
                    .iter()
                    .skip(i)
                    .step_by(3)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .await?;
    }
    let ours = vec![announce(&corpus.repos()[0], &urls)];
    let want = corpus.expected_home(&ours);

    let stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, Duration::from_secs(60))
        .await?;
    stack.assert_services_alive()?;

    let have = stack.home.event_ids().await?;
    assert_eq!(
        have, want,
        "the home relay holds exactly the related events"
    );
    assert!(ids(&unrelated).is_disjoint(&have));

    // Metrics of DESIGN.md section 8 for this scenario, and `ngit-sync status` (one line per
    // relay from the KV buckets), read in the same round so both show the same moment.
    let synced = (want.len() - ours.len()) as f64;
    let last_table = std::sync::Mutex::new(String::new());
    let agreed = eventually(
        Duration::from_secs(20),
        "metrics and `ngit-sync status` reflect the finished sync",
        || async {
            let Ok(m) = stack.metrics().await else {
                return false;
            };
            let Ok(lines) = ngit_sync::status::collect(&stack.bus).await else {
                return false;
            };
            let table = ngit_sync::status::render(&lines, ngit_sync_shared::messages::now_ms());
            let rows_ok = lines.len() == 3
                && urls.iter().all(|u| {
                    table
                        .lines()
                        .find(|l| l.starts_with(u.as_str()))
                        .is_some_and(|row| row.contains(" connected ") && row.contains("healthy"))
                });
            *last_table.lock().unwrap() = table;
            rows_ok
                && m.get("ngit_sync_events_synced_total", &[]) == Some(synced)
                && m.get("ngit_sync_relays_connected_total", &[]) == Some(3.0)
                && urls
                    .iter()
                    .all(|u| m.get("ngit_sync_relay_connected", &[("relay", u)]) == Some(3.0))
        },
    )
    .await;
    if let Err(e) = agreed {
        anyhow::bail!("{e}; last status table:\n{}", last_table.lock().unwrap());
    }

    let m = stack.metrics().await?;
    assert!(m.has_type("ngit_sync_events_synced_total", "counter"));
    assert!(m.has_type("ngit_sync_relay_connected", "gauge"));
    assert_eq!(m.get("ngit_sync_relays_tracked_total", &[]), Some(3.0));
    assert_eq!(m.get("ngit_sync_relays_dead_total", &[]), Some(0.0));
    for u in &urls {
        assert_eq!(
            m.get("ngit_sync_relay_status", &[("relay", u)]),
            Some(1.0),
            "{u} healthy"
        );
        assert_eq!(
            m.get("ngit_sync_relay_failures", &[("relay", u)]),
            Some(0.0)
        );
        assert!(
            m.get(
                "ngit_sync_connection_attempts_total",
                &[("relay", u), ("result", "success")]
            )
            .unwrap_or(0.0)
                >= 1.0
        );
        assert_eq!(
            m.get(
                "ngit_sync_connection_attempts_total",
                &[("relay", u), ("result", "failure")]
            )
            .unwrap_or(0.0),
            0.0
        );
    }
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_announcement_added_later_brings_its_relay_through_syncing_to_connected_and_live_events_follow(
) -> anyhow::Result<()> {
    let relays = sources(2).await?;
    let (first, second) = (relays[0].url(), relays[1].url());
    let corpus = Corpus::generate(
        CorpusSpec::new(12)
            .repos(2)
            .events_per_repo(60)
            .relays([first.clone()])
            .patch_kib(2, 4),
    );
    let (repo_a, repo_b) = (&corpus.repos()[0], &corpus.repos()[1]);
    relays[0].publish(&repo_a.all_events()).await?;
    relays[1].publish(&repo_b.all_events()).await?;
    let ann_a = announce(repo_a, &[first.clone()]);
    // This run speaks JSON on the bus, the wire an operator picks to read it with the NATS CLI.
    let stack = Stack::start_with(std::slice::from_ref(&ann_a), |s| {
        s.insert("NGIT_SYNC_WIRE".into(), "json".into());
    })
    .await?;
    stack
        .wait_status(&[first.clone()], ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;

    // A second repository, on the second relay only, is announced on the home relay.
    let ann_b = announce(repo_b, &[second.clone()]);
    stack.home.publish(std::slice::from_ref(&ann_b)).await?;
    let mut want_b: HashSet<EventId> = ids(&repo_b.all_events());
    want_b.remove(&repo_b.announcement.id);
    want_b.insert(ann_b.id);
    stack.wait_home_has(&want_b, SYNC_WITHIN).await?;
    stack
        .wait_status(
            &[second.clone()],
            ConnectionStatus::Connected,
            Duration::from_secs(60),
        )
        .await?;
    let seen = statuses_of(&stack.relay_news().await?, &second);
    let syncing = seen
        .iter()
        .position(|s| *s == ConnectionStatus::Syncing)
        .expect("passed Syncing");
    let connected = seen
        .iter()
        .rposition(|s| *s == ConnectionStatus::Connected)
        .expect("ended Connected");
    assert!(syncing < connected, "Syncing before Connected: {seen:?}");

    // Live: an issue published on the second relay after Connected reaches home within 5 s.
    let issue = EventBuilder::new(Kind::GitIssue, "live issue")
        .tag(
            Tag::parse([
                "a",
                &format!(
                    "30617:{}:{}",
                    repo_b.owner.public_key(),
                    repo_b.identifier()
                ),
            ])
            .unwrap(),
        )
        .sign_with_keys(&Keys::generate())?;
    relays[1].publish(std::slice::from_ref(&issue)).await?;
    stack
        .wait_home_has(&HashSet::from([issue.id]), Duration::from_secs(5))
        .await?;
    stack.assert_services_alive()?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_events_than_one_page_are_all_synced_through_pagination() -> anyhow::Result<()> {
    let relay = TestRelay::remote().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(13)
            .repos(1)
            .total_events(1_600)
            .relays([relay.url()])
            .patch_kib(2, 3)
            .collision_percent(40),
    );
    relay.publish(&corpus.all_related()).await?;
    let ours = vec![announce(&corpus.repos()[0], &[relay.url()])];
    let want = corpus.expected_home(&ours);
    let shared_second = corpus.all_related().iter().fold(
        std::collections::HashMap::<u64, usize>::new(),
        |mut m, e| {
            *m.entry(e.created_at.as_secs()).or_default() += 1;
            m
        },
    );
    assert!(
        shared_second.values().any(|n| *n > 10),
        "the corpus has events sharing a second"
    );

    // Pagination is what is tested: history by REQ, not NIP-77.
    let stack = Stack::start_with(&ours, |s| {
        s.insert("NGIT_SYNC_NEGENTROPY".into(), "false".into());
    })
    .await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(
            &[relay.url()],
            ConnectionStatus::Connected,
            Duration::from_secs(60),
        )
        .await?;
    assert_eq!(stack.home.event_ids().await?, want);
    let pages = stack
        .relay_news()
        .await?
        .iter()
        .filter(|n| matches!(n.body, RelayBody::BatchPage { .. }))
        .count();
    assert!(
        pages >= 4,
        "1,600 events take several pages of 500, saw {pages}"
    );
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_unrequested_events_never_reach_the_home_relay_and_are_counted(
) -> anyhow::Result<()> {
    let corpus = Corpus::generate(
        CorpusSpec::new(14)
            .repos(1)
            .events_per_repo(40)
            .patch_kib(2, 3),
    );
    let bad = corpus.bad_events();
    let mut served: Vec<String> = corpus
        .all_related()
        .iter()
        .map(nostr::JsonUtil::as_json)
        .collect();
    served.extend(bad.broken());
    served.push(nostr::JsonUtil::as_json(&bad.unrelated));
    let relay = RawRelay::start(
        served,
        RawRelayOptions::new()
            .serve_unconditionally()
            .ignore_filters(),
    )
    .await?;
    let ours = vec![announce(&corpus.repos()[0], &[relay.url()])];
    let want = corpus.expected_home(&ours);

    let stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(
            &[relay.url()],
            ConnectionStatus::Connected,
            Duration::from_secs(60),
        )
        .await?;
    let have = stack.home.event_ids().await?;
    assert_eq!(have, want, "only the valid, requested events arrive");
    assert!(!have.contains(&bad.unrelated.id));

    let dropped = |news: &[ngit_sync_shared::messages::RelayNews]| {
        news.iter().fold(
            ngit_sync_shared::messages::DroppedEvents::default(),
            |mut acc, n| {
                if let RelayBody::Dropped(d) = &n.body {
                    acc.bad_id += d.bad_id;
                    acc.bad_signature += d.bad_signature;
                    acc.unrequested += d.unrequested;
                }
                acc
            },
        )
    };
    eventually(
        Duration::from_secs(15),
        "dropped events are reported",
        || async {
            let d = dropped(&stack.relay_news().await.unwrap_or_default());
            d.bad_id >= 1 && d.bad_signature >= 1 && d.unrequested >= 1
        },
    )
    .await?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn home_relay_down_for_twenty_seconds_mid_sync_loses_nothing() -> anyhow::Result<()> {
    let relays = sources(2).await?;
    let urls: Vec<String> = relays.iter().map(|r| r.url()).collect();
    let corpus = Corpus::generate(
        CorpusSpec::new(15)
            .repos(2)
            .total_events(1_500)
            .relays(urls.clone())
            .patch_kib(2, 8),
    );
    for (relay, share) in relays.iter().zip(corpus.spread(2, 2)) {
        relay.publish(&share).await?;
    }
    let ours: Vec<Event> = corpus.repos().iter().map(|r| announce(r, &urls)).collect();
    let want = corpus.expected_home(&ours);
    let mut stack = Stack::start(&ours).await?;

    eventually(SYNC_WITHIN, "the sync is under way", || async {
        stack.home.count().await.unwrap_or(0) > 100
    })
    .await?;
    stack.home.stop();
    let outage = tokio::time::Instant::now();
    // While the home relay is down, events wait in the stream: nothing is acked without an OK.
    let events_stream = stack.bus.names.stream_events();
    eventually(
        Duration::from_secs(15),
        "events wait unacked in the stream",
        || async {
            match stack.bus.js.get_stream(&events_stream).await {
                Ok(mut s) => s
                    .info()
                    .await
                    .map(|i| i.state.messages > 0)
                    .unwrap_or(false),
                Err(_) => false,
            }
        },
    )
    .await?;
    tokio::time::sleep_until(outage + Duration::from_secs(20)).await;
    stack.home.start_again().await?;

    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, Duration::from_secs(60))
        .await?;
    assert_eq!(stack.home.event_ids().await?, want);
    stack.assert_services_alive()?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_tracker_killed_mid_sync_and_restarted_ends_with_the_right_statuses(
) -> anyhow::Result<()> {
    let relays = sources(3).await?;
    let urls: Vec<String> = relays.iter().map(|r| r.url()).collect();
    let corpus = Corpus::generate(
        CorpusSpec::new(16)
            .repos(2)
            .total_events(900)
            .relays(urls.clone())
            .patch_kib(2, 8),
    );
    for (relay, share) in relays.iter().zip(corpus.spread(3, 2)) {
        relay.publish(&share).await?;
    }
    let ours: Vec<Event> = corpus.repos().iter().map(|r| announce(r, &urls)).collect();
    let want = corpus.expected_home(&ours);
    let mut stack = Stack::start(&ours).await?;

    eventually(SYNC_WITHIN, "some relay is syncing", || async {
        for u in &urls {
            if let Ok(Some(s)) = stack.status(u).await {
                if s.status == ConnectionStatus::Syncing {
                    return true;
                }
            }
        }
        false
    })
    .await?;
    stack.kill_service(Service::BatchTracker).await;
    stack.start_service(Service::BatchTracker).await?;

    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, Duration::from_secs(60))
        .await?;
    stack.assert_services_alive()?;
    stack.shutdown().await
}
