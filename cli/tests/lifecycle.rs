//! Acceptance of the relay lifecycle across the whole system (issue "Relay health and session
//! lifecycle", point 7): a relay no repository lists any more is forgotten, disconnected and
//! removed from the metrics.

mod stack;

use std::collections::HashSet;
use std::time::Duration;

use ngit_sync_shared::messages::RelayBody;
use ngit_sync_shared::status::ConnectionStatus;
use ngit_sync_test_support::{eventually, Corpus, CorpusSpec, TestRelay};
use nostr::{EventBuilder, EventId, Kind, Tag, Timestamp};
use stack::Stack;

const SYNC_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_dropped_from_the_announcement_is_forgotten_disconnected_and_gone_from_metrics(
) -> anyhow::Result<()> {
    let (kept, dropped) = (TestRelay::remote().await?, TestRelay::remote().await?);
    let urls = vec![kept.url(), dropped.url()];
    let corpus = Corpus::generate(
        CorpusSpec::new(71)
            .repos(1)
            .events_per_repo(20)
            .relays(urls.clone())
            .patch_kib(1, 2),
    );
    let repo = &corpus.repos()[0];
    kept.publish(&repo.all_events()).await?;
    dropped.publish(&repo.all_events()).await?;
    let now = Timestamp::now().as_secs();
    let both = repo.announcement_listing(&urls, Timestamp::from(now - 10));
    let stack = Stack::start(std::slice::from_ref(&both)).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;
    let gone = dropped.url();
    let has_series = |m: &stack::Metrics, relay: &str| {
        m.samples
            .iter()
            .any(|(_, labels, _)| labels.get("relay").map(String::as_str) == Some(relay))
    };
    eventually(
        Duration::from_secs(20),
        "both relays healthy in /metrics",
        || async {
            let Ok(m) = stack.metrics().await else {
                return false;
            };
            urls.iter()
                .all(|u| m.get("ngit_sync_relay_status", &[("relay", u)]) == Some(1.0))
        },
    )
    .await?;
    assert_eq!(dropped.open_connections(), 1, "one session on the relay");

    // The owner updates the announcement: the second relay is no longer listed.
    let only_kept = repo.announcement_listing(&urls[..1], Timestamp::from(now));
    stack.home.publish(std::slice::from_ref(&only_kept)).await?;

    eventually(
        Duration::from_secs(20),
        "the dropped relay disconnected",
        || async { dropped.open_connections() == 0 },
    )
    .await?;
    eventually(
        Duration::from_secs(20),
        "the dropped relay gone from /metrics",
        || async {
            let Ok(m) = stack.metrics().await else {
                return false;
            };
            !has_series(&m, &gone)
                && has_series(&m, &kept.url())
                && m.get("ngit_sync_relays_tracked_total", &[]) == Some(1.0)
        },
    )
    .await?;
    // The connector publishes `released` after closing the session, so it may trail the
    // disconnect the test saw.
    eventually(
        Duration::from_secs(10),
        "discovery forgot the relay and the connector released it as forgotten",
        || async {
            let Ok(news) = stack.relay_news().await else {
                return false;
            };
            let about_gone: Vec<&RelayBody> = news
                .iter()
                .filter(|n| n.relay.as_str() == gone)
                .map(|n| &n.body)
                .collect();
            about_gone
                .iter()
                .position(|b| matches!(b, RelayBody::Forgotten))
                .is_some_and(|forgotten| {
                    about_gone[forgotten..].iter().any(|b| {
                        matches!(b, RelayBody::Released { reason, .. } if reason.as_str() == "forgotten")
                    })
                })
        },
    )
    .await?;
    assert!(
        kept.open_connections() >= 1,
        "the relay still listed keeps its session"
    );
    // Nothing would ever read the forgotten relay's state again: it is deleted, the kept
    // relay's stays.
    let state_of = |url: &str| {
        let key = ngit_sync_shared::RelayUrl::parse(url).unwrap().key();
        let bus = stack.bus.clone();
        async move {
            bus.get::<ngit_sync_shared::messages::RelayState>(
                &bus.buckets.relay_state,
                key.as_str(),
            )
            .await
        }
    };
    eventually(
        Duration::from_secs(10),
        "the forgotten relay's state deleted",
        || async { matches!(state_of(&gone).await, Ok(None)) },
    )
    .await?;
    assert!(state_of(&kept.url()).await?.is_some());

    // Nothing more is asked of the forgotten relay, and the other still syncs live.
    let queries = dropped.req_count();
    let issue = EventBuilder::new(Kind::GitIssue, "after the update")
        .tag(Tag::parse(["a", &repo.coordinate.to_string()]).unwrap())
        .sign_with_keys(&repo.owner)?;
    kept.publish(std::slice::from_ref(&issue)).await?;
    dropped.publish(std::slice::from_ref(&issue)).await?;
    stack
        .wait_home_has(
            &HashSet::<EventId>::from([issue.id]),
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(dropped.req_count(), queries);
    assert_eq!(dropped.open_connections(), 0);
    stack.assert_services_alive()?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_down_past_the_dead_threshold_is_dead_in_metrics_retried_rarely_and_recovers(
) -> anyhow::Result<()> {
    let port = ngit_sync_test_support::free_port();
    let url = format!("ws://127.0.0.1:{port}");
    let corpus = Corpus::generate(
        CorpusSpec::new(73)
            .repos(1)
            .events_per_repo(10)
            .relays([url.clone()])
            .patch_kib(1, 1),
    );
    let repo = &corpus.repos()[0];
    let ann = repo.announcement_listing(std::slice::from_ref(&url), Timestamp::now());
    let stack = Stack::start_with(std::slice::from_ref(&ann), |s| {
        for (k, v) in [
            ("NGIT_SYNC_DEAD_AFTER", "2s"),
            ("NGIT_SYNC_DEAD_RETRY", "3s"),
            ("NGIT_SYNC_STABLE_AFTER", "1s"),
        ] {
            s.insert(k.into(), v.into());
        }
    })
    .await?;

    eventually(
        Duration::from_secs(30),
        "the relay Dead in /metrics",
        || async {
            let Ok(m) = stack.metrics().await else {
                return false;
            };
            m.get("ngit_sync_relays_dead_total", &[]) == Some(1.0)
                && m.get("ngit_sync_relay_status", &[("relay", &url)]) == Some(4.0)
                && m.get("ngit_sync_relay_failures", &[("relay", &url)])
                    .unwrap_or(0.0)
                    >= 4.0
                && m.get(
                    "ngit_sync_connection_attempts_total",
                    &[("relay", &url), ("result", "failure")],
                )
                .unwrap_or(0.0)
                    >= 4.0
        },
    )
    .await?;
    // Two attempts after turning Dead: they are the dead retry apart, not the 2 s backoff cap.
    let starts = eventually_starts(&stack, &url, 7).await?;
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    let last = *gaps.last().unwrap();
    assert!(
        (3_000..3_600).contains(&last),
        "Dead: one attempt per 3 s, gaps {gaps:?}"
    );

    let relay = ngit_sync_test_support::TestRelay::start(
        ngit_sync_test_support::TestRelayOptions::new().port(port),
    )
    .await?;
    relay.publish(&repo.all_events()).await?;
    stack
        .wait_status(
            std::slice::from_ref(&url),
            ConnectionStatus::Connected,
            SYNC_WITHIN,
        )
        .await?;
    eventually(
        Duration::from_secs(20),
        "Healthy again in /metrics",
        || async {
            let Ok(m) = stack.metrics().await else {
                return false;
            };
            m.get("ngit_sync_relays_dead_total", &[]) == Some(0.0)
                && m.get("ngit_sync_relay_status", &[("relay", &url)]) == Some(1.0)
                && m.get("ngit_sync_relay_failures", &[("relay", &url)]) == Some(0.0)
        },
    )
    .await?;
    stack.assert_services_alive()?;
    stack.shutdown().await
}

/// Times of the first `n` connection attempts started on `relay`, once there are that many.
async fn eventually_starts(stack: &Stack, relay: &str, n: usize) -> anyhow::Result<Vec<u64>> {
    ngit_sync_test_support::eventually_some(
        Duration::from_secs(30),
        "connection attempts",
        || async {
            let news = stack.relay_news().await.ok()?;
            let starts: Vec<u64> = news
                .iter()
                .filter(|m| m.relay.as_str() == relay)
                .filter_map(|m| match &m.body {
                    RelayBody::Attempted {
                        result: ngit_sync_shared::status::AttemptResult::Started,
                        ..
                    } => Some(m.at_ms),
                    _ => None,
                })
                .collect();
            (starts.len() >= n).then(|| starts[..n].to_vec())
        },
    )
    .await
}
