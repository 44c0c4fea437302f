//! Unit tests of [`super::View`]: feed it messages and KV values, read the values back.

use super::*;
use ngit_sync_shared::messages::{BatchOpened, DroppedEvents, OutcomeItem};
use ngit_sync_shared::status::AttemptResult;

fn url(s: &str) -> RelayUrl {
    RelayUrl::parse(s).unwrap()
}

fn news(relay: &str, at_ms: u64, body: RelayBody) -> RelayNews {
    RelayNews {
        relay: url(relay),
        at_ms,
        body,
    }
}

fn attempted(result: AttemptResult) -> RelayBody {
    RelayBody::Attempted {
        worker: "w1".into(),
        attempt: 1,
        result,
        error: None,
    }
}

fn health(state: Health, failures: u32) -> RelayBody {
    RelayBody::Health(HealthReport {
        state,
        consecutive_failures: failures,
        next_attempt_ms: None,
        rate_limited_until_ms: None,
    })
}

fn status(status: ConnectionStatus, open_batches: u32) -> StatusReport {
    StatusReport {
        status,
        since_ms: 42,
        session: Some("s1".into()),
        open_batches,
        failed_batches: 0,
        owner: Some("w-status".into()),
        health: None,
    }
}

fn entry(u: &str) -> RelayEntry {
    RelayEntry {
        url: url(u),
        bootstrap: false,
        repos: 1,
    }
}

fn outcomes(outcome: Outcome, n: usize) -> OutcomeBatch {
    OutcomeBatch {
        outcome,
        watermark: 0,
        items: (0..n)
            .map(|i| OutcomeItem {
                id: format!("{i:064x}"),
                kind: 1621,
                seq: i as u64,
                relay: url("wss://a.example"),
                reason: None,
                event: None,
            })
            .collect(),
    }
}

fn view() -> View {
    View::new(Duration::from_secs(10), Duration::from_secs(10))
}

const A: &str = "wss://a.example";
const B: &str = "wss://b.example";

fn summary<'a>(relays: &'a [RelaySummary], u: &str) -> &'a RelaySummary {
    relays
        .iter()
        .find(|r| r.url.as_str() == u)
        .unwrap_or_else(|| panic!("{u} has no summary"))
}

#[test]
fn status_comes_from_kv_and_aggregates_are_recounted() {
    let mut v = view();
    v.put_relay(url(A).key().as_str(), &entry(A));
    v.put_relay(url(B).key().as_str(), &entry(B));
    v.put_status(
        url(A).key().as_str(),
        Some(status(ConnectionStatus::Connected, 2)),
        1,
    );
    let relays = v.relays(0);
    assert_eq!(relays.len(), 2);
    assert_eq!(summary(&relays, A).status, ConnectionStatus::Connected);
    assert_eq!(summary(&relays, A).open_batches, 2);
    assert_eq!(summary(&relays, B).status, ConnectionStatus::Disconnected);
    assert_eq!(connected(&relays), 1);
    assert_eq!(v.tracked(), 2);

    // The same status twice must not count twice (no +1/-1 drift).
    v.put_status(
        url(A).key().as_str(),
        Some(status(ConnectionStatus::Syncing, 0)),
        2,
    );
    v.put_status(
        url(B).key().as_str(),
        Some(status(ConnectionStatus::Syncing, 0)),
        2,
    );
    v.put_status(
        url(B).key().as_str(),
        Some(status(ConnectionStatus::Syncing, 0)),
        3,
    );
    assert_eq!(connected(&v.relays(0)), 2);
    v.put_status(url(B).key().as_str(), None, 4);
    assert_eq!(connected(&v.relays(0)), 1);
}

#[test]
fn attempts_and_health_come_from_relay_news() {
    let mut v = view();
    for r in [
        AttemptResult::Started,
        AttemptResult::Failure,
        AttemptResult::Started,
        AttemptResult::Failure,
    ] {
        v.apply_news(&news(B, 1, attempted(r)));
    }
    v.apply_news(&news(A, 1, attempted(AttemptResult::Success)));
    v.apply_news(&news(B, 2, health(Health::Degraded, 2)));
    v.apply_news(&news(A, 2, health(Health::Dead, 40)));
    let relays = v.relays(0);
    let b = summary(&relays, B);
    assert_eq!((b.attempts_success, b.attempts_failure), (0, 2));
    assert_eq!(b.health.as_ref().unwrap().state, Health::Degraded);
    assert_eq!(b.health.as_ref().unwrap().consecutive_failures, 2);
    assert_eq!(summary(&relays, A).attempts_success, 1);
    assert_eq!(dead(&relays), 1);
}

#[test]
fn forgetting_removes_the_relay_until_it_is_discovered_again() {
    let mut v = view();
    let key = url(A).key();
    v.put_relay(key.as_str(), &entry(A));
    v.apply_news(&news(A, 1, attempted(AttemptResult::Failure)));
    v.apply_news(&news(A, 2, RelayBody::Forgotten));
    assert!(v.relays(0).is_empty());
    // A late `released` does not resurrect it.
    let released = RelayBody::Released {
        worker: "w1".into(),
        reason: "forgotten".into(),
    };
    v.apply_news(&news(A, 3, released));
    assert!(v.relays(0).is_empty());
    v.apply_news(&news(
        A,
        4,
        RelayBody::Discovered {
            bootstrap: false,
            repos: 1,
        },
    ));
    let relays = v.relays(0);
    assert_eq!(relays.len(), 1);
    assert_eq!(
        relays[0].attempts_failure, 0,
        "counters restart after forgetting"
    );

    v.delete_relay(key.as_str());
    assert!(v.relays(0).is_empty());
    assert_eq!(v.tracked(), 0);
    v.put_relay(key.as_str(), &entry(A));
    assert_eq!(v.relays(0).len(), 1);
}

#[test]
fn status_of_an_unknown_url_waits_for_the_url() {
    let mut v = view();
    v.put_status(
        url(A).key().as_str(),
        Some(status(ConnectionStatus::Connected, 0)),
        1,
    );
    assert!(v.relays(0).is_empty());
    v.put_relay(url(A).key().as_str(), &entry(A));
    assert_eq!(v.relays(0)[0].status, ConnectionStatus::Connected);
}

#[test]
fn outcomes_count_items_by_outcome() {
    let mut v = view();
    v.apply_outcomes(&outcomes(Outcome::Saved, 3));
    v.apply_outcomes(&outcomes(Outcome::Duplicate, 2));
    v.apply_outcomes(&outcomes(Outcome::Saved, 1));
    v.apply_outcomes(&outcomes(Outcome::Rejected, 1));
    assert_eq!(v.outcomes(Outcome::Saved), 4);
    assert_eq!(v.outcomes(Outcome::Duplicate), 2);
    assert_eq!(v.outcomes(Outcome::Rejected), 1);
}

#[test]
fn batches_count_by_layer_and_method_and_time_their_sync() {
    let mut v = view();
    let opened = RelayBody::BatchOpened(BatchOpened {
        batch: "b1".into(),
        session: "s1".into(),
        layer: Layer::L1,
        method: SyncMethod::Req,
        filters: 1,
        items: 0,
    });
    assert_eq!(v.apply_news(&news(A, 10_000, opened)), None);
    let failed = RelayBody::BatchFailed {
        batch: "b1".into(),
        session: "s1".into(),
        events_seen: 0,
        last_seq: 0,
        reason: "no EOSE".into(),
    };
    let done = v.apply_news(&news(A, 72_500, failed)).unwrap();
    assert_eq!(done.layer, Layer::L1);
    assert_eq!(done.result, BatchResult::Failed);
    assert_eq!(done.seconds, 62.5);
    let counts = v.batches();
    assert_eq!(
        counts,
        vec![
            (Layer::L1, SyncMethod::Req, BatchResult::Opened, 1),
            (Layer::L1, SyncMethod::Req, BatchResult::Failed, 1),
        ]
    );
}

#[test]
fn dropped_events_add_up_per_reason() {
    let mut v = view();
    let d = DroppedEvents {
        oversized: 2,
        malformed: 1,
        ..Default::default()
    };
    v.apply_news(&news(A, 1, RelayBody::Dropped(d.clone())));
    v.apply_news(&news(A, 2, RelayBody::Dropped(d)));
    let relays = v.relays(0);
    let dropped: BTreeMap<_, _> = relays[0].dropped.iter().copied().collect();
    assert_eq!(dropped["oversized"], 4);
    assert_eq!(dropped["malformed"], 2);
    assert_eq!(dropped["bad_id"], 0);
}

#[test]
fn workers_and_leases_expire_with_their_buckets() {
    let mut v = view();
    let lease = |w: &str, relay: &str| LeaseEntry {
        worker: w.into(),
        relay: url(relay),
        since_ms: 0,
    };
    v.put_worker("w1", 1_000);
    v.put_worker("w2", 1_000);
    v.put_worker("w3", 5_000);
    v.put_lease(url(A).key().as_str(), lease("w1", A), 1_000);
    v.put_lease(url(B).key().as_str(), lease("w1", B), 8_000);
    assert_eq!(v.workers(2_000), 3);
    let per: Vec<_> = v.relays_per_worker(2_000).into_iter().collect();
    assert_eq!(
        per,
        vec![("w1".into(), 2), ("w2".into(), 0), ("w3".into(), 0)]
    );
    assert_eq!(
        summary(&v.relays(2_000), A).owner.as_deref(),
        Some("w1"),
        "the lease names the owner"
    );
    // w1 and w2 stop heartbeating; A's lease runs out too.
    assert_eq!(v.workers(12_000), 1);
    let per: Vec<_> = v.relays_per_worker(12_000).into_iter().collect();
    assert_eq!(per, vec![("w1".into(), 1), ("w3".into(), 0)]);
    v.delete_worker("w3");
    v.delete_lease(url(B).key().as_str());
    v.prune(12_000);
    assert_eq!(v.workers(12_000), 0);
    assert!(v.relays_per_worker(12_000).is_empty());
}

#[test]
fn owner_falls_back_to_the_status_report() {
    let mut v = view();
    v.put_relay(url(A).key().as_str(), &entry(A));
    v.put_status(
        url(A).key().as_str(),
        Some(status(ConnectionStatus::Connecting, 0)),
        1,
    );
    assert_eq!(v.relays(0)[0].owner.as_deref(), Some("w-status"));
}

#[test]
fn sink_lag_is_last_sequence_minus_the_sink_watermark() {
    let mut v = view();
    assert_eq!(v.sink_lag(), None);
    v.set_events_last_seq(10);
    assert_eq!(v.sink_lag(), Some(10));
    v.put_watermark("discovery", Some(Watermark { seq: 9, at_ms: 0 }));
    assert_eq!(v.sink_lag(), Some(10));
    v.put_watermark(SINK_WATERMARK, Some(Watermark { seq: 7, at_ms: 0 }));
    assert_eq!(v.sink_lag(), Some(3));
    v.put_watermark(SINK_WATERMARK, Some(Watermark { seq: 12, at_ms: 0 }));
    assert_eq!(v.sink_lag(), Some(0));
}

#[test]
fn a_claim_by_another_worker_counts_as_a_lease_handoff() {
    let mut v = view();
    let claimed = |w: &str| RelayBody::Claimed { worker: w.into() };
    let released = |w: &str| RelayBody::Released {
        worker: w.into(),
        reason: "shutdown".into(),
    };
    v.apply_news(&news(A, 1, claimed("w1")));
    v.apply_news(&news(A, 2, released("w1")));
    // The same worker again (a restart of it) is no handoff.
    v.apply_news(&news(A, 3, claimed("w1")));
    assert_eq!(v.lease_handoffs(), 0);
    v.apply_news(&news(A, 4, claimed("w2")));
    v.apply_news(&news(B, 5, claimed("w2")));
    assert_eq!(v.lease_handoffs(), 1);
    // A forgotten relay starts over.
    v.apply_news(&news(A, 6, RelayBody::Forgotten));
    v.apply_news(&news(A, 7, claimed("w3")));
    assert_eq!(v.lease_handoffs(), 1);
}
