//! The syncer driven by hand: a scripted relay conversation, no sockets.

use std::collections::BTreeSet;

use nostr::{Event, EventBuilder, Keys, Kind, Tag};

use super::*;

fn cfg() -> SyncerConfig {
    SyncerConfig {
        page_limit: 500,
        max_filters_per_req: 20,
        max_historic_subscriptions: 20,
        eose_timeout_ms: 60_000,
        rate_limit_cooldown_ms: 65_000,
        batch_retry_ms: 600_000,
        max_event_bytes: 512 * 1024,
        dropped_report_ms: 5_000,
        live_filter_consolidation: 70,
    }
}

fn fresh() -> Syncer {
    fresh_with(cfg())
}

fn fresh_with(cfg: SyncerConfig) -> Syncer {
    let start = StartPlan {
        plan: SyncPlan::Fresh,
        since: None,
    };
    Syncer::new(
        cfg,
        "w-1".into(),
        start,
        &RelayState::default(),
        HistoricMethod::Req,
    )
}

/// (subscription id, filters) of every REQ among `actions`.
fn reqs(actions: &[Action]) -> Vec<(String, Vec<Filter>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(text) => match ClientMessage::from_json(text).unwrap() {
                ClientMessage::Req {
                    subscription_id,
                    filters,
                } => Some((
                    subscription_id.to_string(),
                    filters.into_iter().map(|f| f.into_owned()).collect(),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn historic(actions: &[Action]) -> Vec<(String, Vec<Filter>)> {
    reqs(actions)
        .into_iter()
        .filter(|(_, f)| f[0].limit != Some(0))
        .collect()
}

fn news(actions: &[Action]) -> Vec<RelayBody> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::News(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn publishes(actions: &[Action]) -> Vec<PublishJob> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn frame(sub: &str, event: &Event) -> String {
    format!("[\"EVENT\",\"{sub}\",{}]", event.as_json())
}

fn eose(sub: &str) -> String {
    format!("[\"EOSE\",\"{sub}\"]")
}

fn announcement(keys: &Keys, d: &str, at: u64) -> Event {
    EventBuilder::new(Kind::GitRepoAnnouncement, "")
        .tag(Tag::identifier(d))
        .custom_created_at(Timestamp::from(at))
        .sign_with_keys(keys)
        .unwrap()
}

fn issue(keys: &Keys, coord: &str, at: u64) -> Event {
    EventBuilder::new(Kind::GitIssue, "bug")
        .tag(Tag::parse(["a", coord]).unwrap())
        .custom_created_at(Timestamp::from(at))
        .sign_with_keys(keys)
        .unwrap()
}

fn targets(repos: &[&str], roots: &[&str]) -> Arc<RelayTargets> {
    Arc::new(RelayTargets {
        ready: true,
        repos: repos.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        roots: roots.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
    })
}

#[test]
fn a_fresh_session_confirms_l1_after_eose_and_every_ack() {
    let keys = Keys::generate();
    let mut s = fresh();
    s.start(0);
    let a = s.drain();
    let sent = reqs(&a);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1[0].limit, Some(0), "live L1 goes first");
    let (h, filters) = &historic(&a)[0];
    assert_eq!(filters[0].limit, Some(500));
    assert!(matches!(&news(&a)[0], RelayBody::BatchOpened(b) if b.layer == Layer::L1));

    let ann = announcement(&keys, "repo", 100);
    s.on_text(&frame(h, &ann), 1);
    let a = s.drain();
    let jobs = publishes(&a);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].json, ann.as_json());
    let batch = jobs[0].batch.clone().unwrap();

    s.on_text(&eose(h), 2);
    let a = s.drain();
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::Send(t) if t.contains("CLOSE"))));
    assert!(matches!(
        &news(&a)[..],
        [RelayBody::BatchPage {
            page: 1,
            events_seen: 1,
            ..
        }]
    ));
    assert_eq!(s.open_batches(), 1, "the ack is still missing");

    s.on_ack(Some(&batch), 7, 3);
    let a = s.drain();
    assert!(matches!(
        &news(&a)[..],
        [RelayBody::BatchConfirmed {
            last_seq: 7,
            events_seen: 1,
            ..
        }]
    ));
    assert!(a.contains(&Action::StateChanged));
    assert!(s.persisted().l1);
}

#[test]
fn ready_targets_open_l2_and_l3_and_a_new_root_gets_its_own_batch() {
    let mut s = fresh();
    s.start(0);
    s.drain();
    let mut t = (*targets(&["30617:p:one"], &[])).clone();
    t.ready = false;
    s.on_targets(Arc::new(t), 1);
    assert!(s.drain().is_empty(), "a partial view drives nothing");
    s.on_targets(targets(&["30617:p:one"], &["e1"]), 2);
    let a = s.drain();
    let layers: Vec<Layer> = news(&a)
        .iter()
        .filter_map(|n| match n {
            RelayBody::BatchOpened(b) => Some(b.layer),
            _ => None,
        })
        .collect();
    assert_eq!(layers, [Layer::L2, Layer::L3]);
    assert_eq!(reqs(&a).len(), 4, "live and historic for each layer");
    s.on_targets(targets(&["30617:p:one"], &["e1"]), 3);
    assert!(s.drain().is_empty(), "nothing new, nothing opened");
    s.on_targets(targets(&["30617:p:one"], &["e1", "e2"]), 4);
    let a = s.drain();
    match &news(&a)[..] {
        [RelayBody::BatchOpened(b)] => assert_eq!((b.layer, b.items, b.filters), (Layer::L3, 1, 3)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_and_unrequested_events_are_counted_not_published() {
    let keys = Keys::generate();
    let mut s = fresh();
    s.start(0);
    let (h, _) = historic(&s.drain())[0].clone();
    let good = announcement(&keys, "x", 10);
    let mut forged: serde_json::Value = serde_json::from_str(&good.as_json()).unwrap();
    forged["sig"] = announcement(&keys, "y", 10).sig.to_string().into();
    let mut wrong_id: serde_json::Value = serde_json::from_str(&good.as_json()).unwrap();
    wrong_id["tags"] = serde_json::json!([["d", "other"]]);
    let note = EventBuilder::text_note("hi").sign_with_keys(&keys).unwrap();
    for text in [
        format!("[\"EVENT\",\"{h}\",{forged}]"),
        format!("[\"EVENT\",\"{h}\",{wrong_id}]"),
        frame(&h, &note),
        frame("never-opened", &good),
        "[\"EVENT\",\"h2\",{\"id\":\"nope\"}]".to_string(),
    ] {
        s.on_text(&text, 1);
    }
    assert!(publishes(&s.drain()).is_empty());
    s.on_text(&eose(&h), 2);
    let dropped = news(&s.drain())
        .into_iter()
        .find_map(|n| match n {
            RelayBody::Dropped(d) => Some(d),
            _ => None,
        })
        .expect("dropped counts ride with the page");
    assert_eq!(dropped.bad_signature, 1);
    assert_eq!(dropped.bad_id, 1);
    assert_eq!(dropped.unrequested, 2);
    assert_eq!(dropped.malformed, 1);
}

#[test]
fn oversized_events_are_dropped() {
    let keys = Keys::generate();
    let mut s = fresh_with(SyncerConfig {
        max_event_bytes: 100,
        ..cfg()
    });
    s.start(0);
    let (h, _) = historic(&s.drain())[0].clone();
    s.on_text(&frame(&h, &announcement(&keys, "x", 10)), 1);
    assert!(publishes(&s.drain()).is_empty());
    s.on_tick(10_000);
    assert!(matches!(&news(&s.drain())[..], [RelayBody::Dropped(d)] if d.oversized == 1));
}

#[test]
fn a_closed_historic_req_fails_its_batch_and_the_work_is_retried_later() {
    let mut s = fresh();
    s.start(0);
    let (h, _) = historic(&s.drain())[0].clone();
    s.on_text(&format!("[\"CLOSED\",\"{h}\",\"error: shutting down\"]"), 1);
    let a = s.drain();
    assert!(
        matches!(&news(&a)[..], [RelayBody::BatchFailed { reason, .. }] if reason.contains("error: shutting down"))
    );
    assert!(!s.persisted().l1);
    s.on_tick(2);
    assert!(historic(&s.drain()).is_empty(), "no hot retry loop");
    s.on_tick(600_001);
    assert_eq!(historic(&s.drain()).len(), 1, "retried after batch_retry");
}

#[test]
fn a_rate_limited_req_waits_for_the_cooldown_and_is_asked_again() {
    let mut s = fresh();
    s.start(0);
    let (h, filters) = historic(&s.drain())[0].clone();
    s.on_text(
        &format!("[\"CLOSED\",\"{h}\",\"rate-limited: slow down\"]"),
        1_000,
    );
    let a = s.drain();
    assert!(a.contains(&Action::RateLimited(66_000)));
    assert!(news(&a).is_empty(), "the batch stays open");
    s.on_tick(65_999);
    assert!(reqs(&s.drain()).is_empty());
    s.on_tick(66_000);
    let again = historic(&s.drain());
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, filters);
}

#[test]
fn a_rate_limit_notice_pauses_new_reqs() {
    let mut s = fresh();
    s.on_text("[\"NOTICE\",\"Too many requests, slow down\"]", 0);
    assert!(s.drain().contains(&Action::RateLimited(65_000)));
    s.start(1);
    assert!(reqs(&s.drain()).is_empty());
    s.on_tick(65_000);
    assert_eq!(reqs(&s.drain()).len(), 2);
}

#[test]
fn a_silent_relay_fails_the_batch_at_the_eose_timeout() {
    let mut s = fresh();
    s.start(0);
    s.drain();
    s.on_tick(59_999);
    assert!(news(&s.drain()).is_empty());
    s.on_tick(60_000);
    assert!(
        matches!(&news(&s.drain())[..], [RelayBody::BatchFailed { reason, .. }] if reason.contains("EOSE"))
    );
}

#[test]
fn full_pages_walk_back_with_until_and_count_every_event() {
    let keys = Keys::generate();
    let mut s = fresh_with(SyncerConfig {
        page_limit: 2,
        ..cfg()
    });
    s.start(0);
    let (h1, _) = historic(&s.drain())[0].clone();
    for (d, at) in [("a", 300), ("b", 200)] {
        s.on_text(&frame(&h1, &announcement(&keys, d, at)), 1);
    }
    s.on_text(&eose(&h1), 2);
    let next = historic(&s.drain());
    assert_eq!(next[0].1[0].until, Some(Timestamp::from(200)));
    let (h2, _) = next[0].clone();
    s.on_text(&frame(&h2, &announcement(&keys, "c", 100)), 3);
    s.on_text(&eose(&h2), 4);
    let a = s.drain();
    assert!(historic(&a).is_empty(), "a short page ends the filter");
    for job in publishes(&a) {
        s.on_ack(job.batch.as_deref(), 1, 5);
    }
    // Acks of the first page are still owed.
    assert_eq!(s.open_batches(), 1);
    s.on_ack(Some("w-1-b1"), 2, 6);
    s.on_ack(Some("w-1-b1"), 3, 6);
    assert!(matches!(
        &news(&s.drain())[..],
        [RelayBody::BatchConfirmed {
            events_seen: 3,
            last_seq: 3,
            ..
        }]
    ));
}

#[test]
fn a_quick_reconnect_catches_up_confirmed_items_since_the_last_connection() {
    let state = RelayState {
        confirmed_l1: true,
        confirmed_repos: vec!["30617:p:one".into(), "30617:p:gone".into()],
        ..Default::default()
    };
    let start = StartPlan {
        plan: SyncPlan::Quick,
        since: Some(Timestamp::from(1_000)),
    };
    let mut s = Syncer::new(cfg(), "w-2".into(), start, &state, HistoricMethod::Req);
    s.start(0);
    let a = s.drain();
    assert!(historic(&a)
        .iter()
        .all(|(_, f)| f[0].since == Some(Timestamp::from(1_000))));
    assert!(!s.catch_up_done());
    s.on_targets(targets(&["30617:p:one", "30617:p:new"], &[]), 1);
    let a = s.drain();
    let since: Vec<Option<Timestamp>> = historic(&a).iter().map(|(_, f)| f[0].since).collect();
    assert_eq!(
        since,
        [Some(Timestamp::from(1_000)), None],
        "catch-up, then new repo"
    );
    assert_eq!(
        s.persisted().repos.len(),
        1,
        "the repo no longer listed is forgotten"
    );
}

#[test]
fn live_events_publish_without_a_batch() {
    let keys = Keys::generate();
    let mut s = fresh();
    s.start(0);
    let (live, _) = reqs(&s.drain())[0].clone();
    s.on_text(&frame(&live, &announcement(&keys, "x", 10)), 1);
    let jobs = publishes(&s.drain());
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].batch, None);
    assert_eq!(jobs[0].kind, 30617);
}

#[test]
fn historic_reqs_respect_the_filter_and_subscription_limits() {
    let mut s = fresh_with(SyncerConfig {
        max_filters_per_req: 2,
        max_historic_subscriptions: 2,
        ..cfg()
    });
    s.start(0);
    s.drain();
    let roots: Vec<String> = (0..150).map(|i| format!("{i:064x}")).collect();
    let refs: Vec<&str> = roots.iter().map(String::as_str).collect();
    s.on_targets(targets(&["30617:p:one"], &refs), 1);
    let a = s.drain();
    // Only one slot was free (L1 holds the other): one historic REQ now.
    let h = historic(&a);
    assert_eq!(h.len(), 1);
    assert!(reqs(&a).iter().all(|(_, f)| f.len() <= 2));
}

#[test]
fn ending_a_session_fails_its_open_batches() {
    let mut s = fresh();
    s.start(0);
    s.drain();
    s.abandon("connection lost", 5);
    assert!(
        matches!(&news(&s.drain())[..], [RelayBody::BatchFailed { reason, .. }] if reason.contains("connection lost"))
    );
    assert_eq!(s.open_batches(), 0);
}

#[test]
fn issues_of_a_listed_repo_arrive_through_l2() {
    let keys = Keys::generate();
    let mut s = fresh();
    s.start(0);
    s.drain();
    s.on_targets(targets(&["30617:p:one"], &[]), 1);
    let h = historic(&s.drain());
    let (sub, filters) = &h[0];
    assert_eq!(filters.len(), 3);
    s.on_text(&frame(sub, &issue(&keys, "30617:p:one", 5)), 2);
    s.on_text(&frame(sub, &issue(&keys, "30617:p:other", 5)), 2);
    assert_eq!(publishes(&s.drain()).len(), 1);
}

fn closes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(text) => match ClientMessage::from_json(text).unwrap() {
                ClientMessage::Close(sub) => Some(sub.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn live(actions: &[Action]) -> Vec<(String, Vec<Filter>)> {
    reqs(actions)
        .into_iter()
        .filter(|(_, f)| f[0].limit == Some(0))
        .collect()
}

#[test]
fn live_filters_past_seventy_are_consolidated_and_the_old_ones_closed_after() {
    let mut s = fresh();
    s.start(0);
    let mut open_live: BTreeSet<String> = live(&s.drain()).into_iter().map(|(id, _)| id).collect();
    let coords: Vec<String> = (0..40).map(|i| format!("30617:p:{i}")).collect();
    let mut consolidated_at = None;
    for n in 1..=coords.len() {
        let now = n as u64 * 1_000;
        let refs: Vec<&str> = coords[..n].iter().map(String::as_str).collect();
        s.on_targets(targets(&refs, &[]), now);
        let a = s.drain();
        assert!(reqs(&a).iter().all(|(_, f)| f.len() <= 20));
        open_live.extend(live(&a).into_iter().map(|(id, _)| id));
        let closed = closes(&a);
        let closed_live: Vec<&String> = closed.iter().filter(|c| open_live.contains(*c)).collect();
        if !closed_live.is_empty() {
            consolidated_at.get_or_insert(n);
            // The replacement went out in the same breath, before the CLOSEs.
            let first_close = a
                .iter()
                .position(|x| matches!(x, Action::Send(t) if t.starts_with("[\"CLOSE\"")))
                .unwrap();
            let last_live_req = a
                .iter()
                .rposition(|x| matches!(x, Action::Send(t) if t.contains("\"limit\":0")))
                .unwrap();
            assert!(last_live_req < first_close);
            for c in closed_live.clone() {
                open_live.remove(c);
            }
        }
    }
    // 1 (L1) + 3 per repo batch passes 70 at the 24th repo.
    assert_eq!(consolidated_at, Some(24));
    // One consolidated REQ (L1 and three tag filters), then one REQ per later batch.
    assert_eq!(s.subs.live_filters(), 4 + 3 * 16);
    assert_eq!(open_live.len(), 1 + 16, "{open_live:?}");
}

#[test]
fn a_daily_reconciliation_asks_all_history_again_as_a_new_session_keeping_live() {
    let state = RelayState {
        confirmed_l1: true,
        confirmed_repos: vec!["30617:p:one".into()],
        ..Default::default()
    };
    let start = StartPlan {
        plan: SyncPlan::Quick,
        since: Some(Timestamp::from(1_000)),
    };
    let mut s = Syncer::new(cfg(), "w-1".into(), start, &state, HistoricMethod::Req);
    s.start(0);
    s.on_targets(targets(&["30617:p:one"], &[]), 1);
    let before = s.drain();
    let open_historic: Vec<String> = historic(&before).into_iter().map(|(id, _)| id).collect();
    assert_eq!(open_historic.len(), 2);

    s.daily_fresh_start("w-9".into(), HistoricMethod::Req, 5_000);
    let a = s.drain();
    assert_eq!(s.session(), "w-9");
    let mut closed = closes(&a);
    closed.sort();
    assert_eq!(closed, open_historic, "the old batches' pages are closed");
    assert!(live(&a).is_empty(), "live subscriptions stay as they are");
    let h = historic(&a);
    assert_eq!(h.len(), 2, "L1 and L2 history again");
    assert!(h.iter().all(|(_, f)| f[0].since.is_none()), "full history");
    let opened: Vec<String> = news(&a)
        .into_iter()
        .filter_map(|n| match n {
            RelayBody::BatchOpened(b) => Some(b.session),
            _ => None,
        })
        .collect();
    assert_eq!(opened, ["w-9", "w-9"]);
    assert!(s.persisted().is_empty());
    assert!(news(&a)
        .iter()
        .all(|n| !matches!(n, RelayBody::BatchFailed { .. })));
}

#[test]
fn a_rate_limited_ok_pauses_reqs() {
    let mut s = fresh();
    s.on_text(
        &format!(
            "[\"OK\",\"{}\",false,\"rate-limited: too fast\"]",
            "a".repeat(64)
        ),
        0,
    );
    assert!(s.drain().contains(&Action::RateLimited(65_000)));
}

#[test]
fn targets_applied_is_said_once_the_watermark_covers_the_landed_batches() {
    let keys = Keys::generate();
    let mut s = fresh();
    s.start(0);
    let a = s.drain();
    s.on_applied(100);
    assert!(
        news(&s.drain()).is_empty(),
        "nothing landed: nothing to say"
    );

    // L1 history: one event, acked at events-stream sequence 7.
    let (h, _) = historic(&a)[0].clone();
    s.on_text(&frame(&h, &announcement(&keys, "repo", 100)), 1);
    let batch = publishes(&s.drain())[0].batch.clone().unwrap();
    s.on_text(&eose(&h), 2);
    s.on_ack(Some(&batch), 7, 3);
    s.drain();

    s.on_applied(6);
    assert!(news(&s.drain()).is_empty(), "6 is below the landed 7");
    s.on_applied(9);
    assert_eq!(
        news(&s.drain()),
        [RelayBody::TargetsApplied {
            session: "w-1".into(),
            watermark: 9
        }]
    );
    s.on_applied(12);
    assert!(news(&s.drain()).is_empty(), "said once until more lands");
}
