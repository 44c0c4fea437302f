//! discovery against a real nats-server and a real home relay.

mod harness;

use std::time::Duration;

use harness::{announcement, coord, root, Harness, WAIT};
use ngit_sync_shared::messages::{OutcomeBatch, OutcomeItem, RelayBody, Watermark};
use ngit_sync_shared::status::Outcome;
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::{eventually, TestRelay, TestRelayOptions};
use nostr::{JsonUtil, Keys, Kind};

const A: &str = "wss://relay-a.example";
const B: &str = "wss://relay-b.example";
const GRASP: &str = "git.grasp.example";
const GRASP_RELAY: &str = "wss://git.grasp.example";
const BOOT: &str = "wss://boot.example";

async fn wait_relays(h: &Harness, what: &str, want: &[&str]) -> anyhow::Result<()> {
    eventually(WAIT, what, || async {
        let got = h.relays().await;
        got.len() == want.len() && want.iter().all(|u| got.contains_key(*u))
    })
    .await
}

#[tokio::test]
async fn announcements_and_root_events_on_the_home_relay_become_targets() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[]).await?;
    let k = Keys::generate();
    let c = coord(&k, "repo");
    let issue = root(Kind::GitIssue, &c, "bug");
    let patch = root(Kind::GitPatch, &c, "diff");
    h.home
        .publish(&[
            announcement(&k, "repo", 100, &[A, B], Some(GRASP)),
            issue.clone(),
            patch.clone(),
        ])
        .await?;
    h.start().await?;

    wait_relays(&h, "both relays and the clone host", &[A, B, GRASP_RELAY]).await?;
    let repo = h.repo(&c).await.expect("repo entry");
    assert_eq!(repo.relays.len(), 3);
    eventually(WAIT, "root keys", || async {
        h.has_root(&c, &issue).await && h.has_root(&c, &patch).await
    })
    .await?;
    for url in [A, B, GRASP_RELAY] {
        let news = h
            .last_news(url, "discovered")
            .await
            .expect("discovered message");
        assert_eq!(
            news.body,
            RelayBody::Discovered {
                bootstrap: false,
                repos: 1
            }
        );
    }
    h.stop().await
}

#[tokio::test]
async fn a_live_announcement_adds_its_relays_within_the_window() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[]).await?;
    h.home
        .publish(&[announcement(&Keys::generate(), "first", 100, &[A], None)])
        .await?;
    h.start().await?;
    wait_relays(&h, "the history's relay", &[A]).await?;

    let published = std::time::Instant::now();
    h.home
        .publish(&[announcement(&Keys::generate(), "second", 200, &[B], None)])
        .await?;
    wait_relays(&h, "the live announcement's relay", &[A, B]).await?;
    assert!(published.elapsed() < harness::WINDOW + Duration::from_secs(3));
    h.stop().await
}

#[tokio::test]
async fn a_new_version_dropping_a_relay_forgets_it() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[]).await?;
    let k = Keys::generate();
    h.home
        .publish(&[announcement(&k, "repo", 100, &[A, B], None)])
        .await?;
    h.start().await?;
    wait_relays(&h, "both relays", &[A, B]).await?;

    h.home
        .publish(&[announcement(&k, "repo", 200, &[A], None)])
        .await?;
    wait_relays(&h, "only relay A", &[A]).await?;
    eventually(WAIT, "a forgotten message for B", || async {
        h.news_count(B, "forgotten").await == 1
    })
    .await?;
    assert_eq!(h.news_count(A, "forgotten").await, 0);
    assert_eq!(
        h.repo(&coord(&k, "repo")).await.unwrap().relays,
        [RelayUrl::parse(A)?]
    );
    h.stop().await
}

#[tokio::test]
async fn outcome_batches_add_root_events_and_advance_the_watermark() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[]).await?;
    let k = Keys::generate();
    let c = coord(&k, "repo");
    h.home
        .publish(&[announcement(&k, "repo", 100, &[A], None)])
        .await?;
    h.start().await?;
    wait_relays(&h, "relay A", &[A]).await?;

    // Only the outcome carries this issue; the home relay never sends it to discovery.
    let issue = root(Kind::GitIssue, &c, "from a remote relay");
    let item = |event: &nostr::Event, seq| OutcomeItem {
        id: event.id.to_hex(),
        kind: event.kind.as_u16(),
        seq,
        relay: RelayUrl::parse(A).unwrap(),
        reason: None,
        event: Some(event.as_json()),
    };
    let batch = OutcomeBatch {
        outcome: Outcome::Saved,
        watermark: 42,
        items: vec![item(&issue, 42)],
    };
    h.bus.publish_outcomes(&batch).await?;
    eventually(WAIT, "the issue's root key", || async {
        h.has_root(&c, &issue).await
    })
    .await?;
    eventually(WAIT, "watermark 42", || async { h.watermark().await == 42 }).await?;

    // A batch that changes nothing moves the watermark without waiting; rejected items fold nothing.
    let rejected = root(Kind::GitIssue, &c, "spam");
    let batch = OutcomeBatch {
        outcome: Outcome::Rejected,
        watermark: 50,
        items: vec![item(&rejected, 50)],
    };
    h.bus.publish_outcomes(&batch).await?;
    eventually(WAIT, "watermark 50", || async { h.watermark().await == 50 }).await?;
    assert!(!h.has_root(&c, &rejected).await);
    // Never down.
    let stale = OutcomeBatch {
        outcome: Outcome::Duplicate,
        watermark: 7,
        items: vec![],
    };
    h.bus.publish_outcomes(&stale).await?;
    let later = OutcomeBatch {
        outcome: Outcome::Duplicate,
        watermark: 51,
        items: vec![],
    };
    h.bus.publish_outcomes(&later).await?;
    eventually(WAIT, "watermark 51", || async { h.watermark().await == 51 }).await?;
    h.stop().await
}

#[tokio::test]
async fn bootstrap_relays_stay_and_the_home_relay_is_never_a_target() -> anyhow::Result<()> {
    let home = TestRelay::home().await?;
    let home_url = home.url();
    let mut h = Harness::new(home, &[BOOT]).await?;
    h.start().await?;
    wait_relays(&h, "the bootstrap relay alone", &[BOOT]).await?;
    let entry = h.relays().await[BOOT].clone();
    assert!(entry.bootstrap && entry.repos == 0);

    let k = Keys::generate();
    h.home
        .publish(&[announcement(&k, "repo", 100, &[A, BOOT, &home_url], None)])
        .await?;
    wait_relays(&h, "A and the bootstrap relay", &[A, BOOT]).await?;
    eventually(WAIT, "bootstrap relay counts its repo", || async {
        h.relays()
            .await
            .get(BOOT)
            .is_some_and(|e| e.bootstrap && e.repos == 1)
    })
    .await?;
    assert!(!h
        .repo(&coord(&k, "repo"))
        .await
        .unwrap()
        .relays
        .iter()
        .any(|u| u.as_str() == home_url));

    h.home
        .publish(&[announcement(&k, "repo", 200, &[A], None)])
        .await?;
    eventually(WAIT, "bootstrap relay back to no repos", || async {
        h.relays()
            .await
            .get(BOOT)
            .is_some_and(|e| e.bootstrap && e.repos == 0)
    })
    .await?;
    assert_eq!(h.news_count(BOOT, "forgotten").await, 0);
    assert_eq!(h.news_count(&home_url, "discovered").await, 0);
    h.stop().await
}

#[tokio::test]
async fn a_root_event_before_its_announcement_is_kept() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[BOOT]).await?;
    let k = Keys::generate();
    let c = coord(&k, "repo");
    let early = root(Kind::Custom(1618), &c, "early PR");
    h.home.publish(std::slice::from_ref(&early)).await?;
    h.start().await?;
    wait_relays(&h, "the history read (bootstrap relay)", &[BOOT]).await?;
    assert!(!h.has_root(&c, &early).await, "no repo yet");

    h.home
        .publish(&[announcement(&k, "repo", 100, &[A], None)])
        .await?;
    eventually(WAIT, "the early root key", || async {
        h.has_root(&c, &early).await
    })
    .await?;
    h.stop().await
}

#[tokio::test]
async fn a_restart_reconciles_without_storms() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[BOOT]).await?;
    let k = Keys::generate();
    h.home
        .publish(&[announcement(&k, "repo", 100, &[A, B], None)])
        .await?;
    h.start().await?;
    wait_relays(&h, "first run", &[A, B, BOOT]).await?;
    h.stop().await?;

    // While discovery is down, the repo drops B.
    h.home
        .publish(&[announcement(&k, "repo", 200, &[A], None)])
        .await?;
    h.start().await?;
    wait_relays(&h, "B forgotten after the restart", &[A, BOOT]).await?;
    eventually(WAIT, "a forgotten message for B", || async {
        h.news_count(B, "forgotten").await == 1
    })
    .await?;
    // A marker announcement published after the restart proves the first flush is long done.
    h.home
        .publish(&[announcement(
            &Keys::generate(),
            "marker",
            300,
            &["wss://marker.example"],
            None,
        )])
        .await?;
    wait_relays(&h, "the marker relay", &[A, BOOT, "wss://marker.example"]).await?;
    for url in [A, BOOT] {
        assert_eq!(
            h.news_count(url, "discovered").await,
            1,
            "{url} announced once"
        );
        assert_eq!(h.news_count(url, "forgotten").await, 0);
    }
    h.stop().await
}

#[tokio::test]
async fn a_capped_home_relay_is_read_page_by_page_and_re_read_after_it_returns(
) -> anyhow::Result<()> {
    let home = TestRelay::start(TestRelayOptions::home().max_filter_limit(20)).await?;
    let mut h = Harness::new(home, &[]).await?;
    let urls: Vec<String> = (0..70).map(|i| format!("wss://r{i}.example")).collect();
    let events: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| announcement(&Keys::generate(), "repo", 1000 + i as u64 / 4, &[u], None))
        .collect();
    h.home.publish(&events).await?;
    h.start().await?;
    eventually(WAIT, "all 70 relays", || async {
        h.relays().await.len() == 70
    })
    .await?;
    assert!(
        h.home.req_count() > 70 / 20,
        "paged: {} filters",
        h.home.req_count()
    );

    h.home.stop();
    h.home
        .publish(&[announcement(
            &Keys::generate(),
            "while-down",
            5000,
            &[A],
            None,
        )])
        .await?;
    h.home.start_again().await?;
    eventually(
        WAIT,
        "the relay published while the home relay was down",
        || async { h.relays().await.contains_key(A) },
    )
    .await?;
    h.stop().await
}

#[tokio::test]
async fn the_sink_watermark_read_before_the_history_carries_over() -> anyhow::Result<()> {
    let mut h = Harness::new(TestRelay::home().await?, &[]).await?;
    let sink = Watermark { seq: 99, at_ms: 1 };
    h.bus.put(&h.bus.buckets.watermarks, "sink", &sink).await?;
    h.home
        .publish(&[announcement(&Keys::generate(), "repo", 100, &[A], None)])
        .await?;
    h.start().await?;
    // Every event the sink saw up to 99 is on the home relay, so the history covers it.
    eventually(WAIT, "discovery watermark 99", || async {
        h.watermark().await == 99
    })
    .await?;
    assert!(
        h.relays().await.contains_key(A),
        "written before the watermark"
    );
    h.stop().await
}
