//! Unit tests of the ledger: pipelining, retries, pauses, timeouts, reconnects.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn ledger() -> Ledger {
    Ledger::new(
        RetryPolicy {
            base: 100 * MS,
            cap: 1000 * MS,
        },
        5000 * MS,
    )
}

fn held(seq: u64, id: &str) -> Held {
    Held {
        seq,
        id: id.to_string(),
        kind: 1621,
        relay: RelayUrl::parse("wss://remote.example").unwrap(),
        json: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn outcome(step: Option<Step>) -> Option<Outcome> {
    match step {
        Some(Step::Final { verdict, .. }) => Some(verdict.outcome),
        _ => None,
    }
}

#[test]
fn many_writes_are_in_flight_and_answers_match_by_id_in_any_order() {
    let t0 = Instant::now();
    let mut l = ledger();
    for (seq, id) in [(1, "a"), (2, "b"), (3, "c")] {
        assert!(l.admit(held(seq, id), t0));
    }
    assert_eq!(l.take_sendable(t0), vec![1, 2, 3]);
    assert_eq!(l.sent_count(), 3);
    assert!(l.take_sendable(t0).is_empty(), "nothing is written twice");

    assert_eq!(outcome(l.answer("c", true, "", t0)), Some(Outcome::Saved));
    assert_eq!(
        outcome(l.answer("a", true, "duplicate: have it", t0)),
        Some(Outcome::Duplicate)
    );
    assert_eq!(
        outcome(l.answer("b", false, "blocked: no", t0)),
        Some(Outcome::Rejected)
    );
    let finals: Vec<(u64, Outcome, Option<String>)> = l
        .finals()
        .into_iter()
        .map(|(h, v)| (h.seq, v.outcome, v.reason.clone()))
        .collect();
    assert_eq!(
        finals,
        vec![
            (1, Outcome::Duplicate, Some("duplicate: have it".into())),
            (2, Outcome::Rejected, Some("blocked: no".into())),
            (3, Outcome::Saved, None),
        ]
    );
    assert!(l.unfinished().is_empty());
    assert_eq!(l.remove(2).map(|h| h.id), Some("b".to_string()));
    assert_eq!(l.len(), 2);
}

#[test]
fn an_answer_for_an_unknown_event_changes_nothing() {
    let t0 = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "a"), t0);
    l.take_sendable(t0);
    assert_eq!(l.answer("zz", true, "", t0), None);
    assert_eq!(l.unfinished(), vec![1]);
}

#[test]
fn transient_answers_are_retried_with_doubling_delays_and_never_become_final() {
    let t0 = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "a"), t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..6 {
        assert_eq!(l.take_sendable(now), vec![1]);
        match l.answer("a", false, "error: disk full", now) {
            Some(Step::Retry { delay, reason, .. }) => {
                assert_eq!(reason, RetryReason::RelayError("error: disk full".into()));
                delays.push(delay.as_millis());
                assert!(l.take_sendable(now + delay - MS).is_empty());
                now += delay;
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(l.unfinished(), vec![1]);
    assert!(l.finals().is_empty());
    assert_eq!(l.take_sendable(now), vec![1]);
    assert_eq!(outcome(l.answer("a", true, "", now)), Some(Outcome::Saved));
}

#[test]
fn rate_limiting_pauses_every_write_not_only_the_refused_one() {
    let t0 = Instant::now();
    let mut l = ledger();
    for (seq, id) in [(1, "a"), (2, "b"), (3, "c")] {
        l.admit(held(seq, id), t0);
    }
    assert_eq!(l.take_sendable(t0), vec![1, 2, 3]);
    l.answer("a", false, "rate-limited: slow down", t0);
    l.answer("b", false, "rate-limited: slow down", t0);
    assert_eq!(
        l.paused_until(t0),
        Some(t0 + 100 * MS),
        "one burst, one pause"
    );
    l.admit(held(4, "d"), t0);
    assert!(
        l.take_sendable(t0 + 99 * MS).is_empty(),
        "a new event waits out the pause too"
    );
    assert_eq!(l.next_wakeup(t0, true), Some(t0 + 100 * MS));
    assert_eq!(l.take_sendable(t0 + 100 * MS), vec![1, 2, 4]);

    // Refused again: the next pause is longer; an accepted event resets it.
    let t1 = t0 + 100 * MS;
    l.answer("a", false, "rate-limited: slow down", t1);
    assert_eq!(l.paused_until(t1), Some(t1 + 200 * MS));
    l.answer("c", true, "", t1);
    let t2 = t1 + 200 * MS;
    assert_eq!(l.take_sendable(t2), vec![1]);
    l.answer("a", false, "rate-limited: slow down", t2);
    assert_eq!(l.paused_until(t2), Some(t2 + 100 * MS));
}

#[test]
fn an_overdue_ok_is_retried_and_a_late_final_answer_still_counts() {
    let t0 = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "a"), t0);
    l.take_sendable(t0);
    assert_eq!(l.next_wakeup(t0, true), Some(t0 + 5000 * MS));
    assert!(l.expire(t0 + 4999 * MS).is_empty());
    let steps = l.expire(t0 + 5000 * MS);
    assert!(matches!(
        steps.as_slice(),
        [Step::Retry {
            seq: 1,
            reason: RetryReason::Timeout,
            ..
        }]
    ));
    assert_eq!(l.sent_count(), 0);
    assert_eq!(
        l.answer("a", false, "rate-limited: late", t0 + 5001 * MS),
        None,
        "a late transient answer changes nothing"
    );
    assert_eq!(
        outcome(l.answer("a", true, "", t0 + 5002 * MS)),
        Some(Outcome::Saved)
    );
}

#[test]
fn a_lost_connection_sends_every_unanswered_write_back_to_the_queue() {
    let t0 = Instant::now();
    let mut l = ledger();
    for (seq, id) in [(1, "a"), (2, "b"), (3, "c")] {
        l.admit(held(seq, id), t0);
    }
    l.take_sendable(t0);
    l.answer("b", true, "", t0);
    assert_eq!(l.connection_lost(t0), 2);
    assert_eq!(l.sent_count(), 0);
    assert_eq!(l.unfinished(), vec![1, 3]);
    assert_eq!(l.next_wakeup(t0, false), None, "nothing to do while down");
    assert_eq!(l.next_wakeup(t0, true), Some(t0 + 100 * MS));
    assert_eq!(l.take_sendable(t0 + 100 * MS), vec![1, 3]);
}

#[test]
fn the_same_event_held_twice_is_written_once_at_a_time() {
    let t0 = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "a"), t0);
    l.admit(held(2, "a"), t0);
    assert!(
        !l.admit(held(2, "a"), t0),
        "a redelivered sequence is held once"
    );
    assert_eq!(l.take_sendable(t0), vec![1]);
    assert_eq!(outcome(l.answer("a", true, "", t0)), Some(Outcome::Saved));
    assert_eq!(l.take_sendable(t0), vec![2]);
    assert_eq!(
        outcome(l.answer("a", true, "duplicate: have it", t0)),
        Some(Outcome::Duplicate)
    );
}

#[test]
fn held_events_are_touched_again_once_per_interval() {
    let t0 = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "a"), t0);
    l.admit(held(2, "b"), t0 + 500 * MS);
    assert!(l.take_stale(t0 + 999 * MS, 1000 * MS).is_empty());
    assert_eq!(l.take_stale(t0 + 1000 * MS, 1000 * MS), vec![1]);
    assert_eq!(l.take_stale(t0 + 1500 * MS, 1000 * MS), vec![2]);
    assert!(l.take_stale(t0 + 1500 * MS, 1000 * MS).is_empty());
}

#[test]
fn an_event_the_relay_keeps_erroring_on_while_accepting_others_is_rejected() {
    let mut now = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "poison"), now);
    l.admit(held(2, "fine"), now);
    assert_eq!(l.take_sendable(now), vec![1, 2]);
    assert_eq!(
        outcome(l.answer("poison", false, "error: unknown", now)),
        None
    );
    assert_eq!(
        outcome(l.answer("fine", true, "", now)),
        Some(Outcome::Saved)
    );
    let mut last = None;
    for _ in 1..MAX_ERROR_ANSWERS {
        now += Duration::from_secs(2);
        assert_eq!(l.take_sendable(now), vec![1]);
        last = outcome(l.answer("poison", false, "error: unknown", now));
    }
    assert_eq!(
        last,
        Some(Outcome::Rejected),
        "given up after {MAX_ERROR_ANSWERS} error answers"
    );
}

#[test]
fn error_answers_while_the_relay_accepts_nothing_are_retried_for_ever() {
    let mut now = Instant::now();
    let mut l = ledger();
    l.admit(held(1, "a"), now);
    for _ in 0..(MAX_ERROR_ANSWERS * 3) {
        assert_eq!(l.take_sendable(now), vec![1]);
        assert_eq!(
            outcome(l.answer("a", false, "error: database error", now)),
            None,
            "the relay is broken, not the event"
        );
        now += Duration::from_secs(2);
    }
}

#[test]
fn an_older_announcement_the_relay_errors_on_twice_is_rejected_at_once() {
    let mut now = Instant::now();
    let mut l = ledger();
    let mut announcement = held(1, "old-announcement");
    announcement.kind = 30617;
    l.admit(announcement, now);
    l.admit(held(2, "fine"), now);
    assert_eq!(l.take_sendable(now), vec![1, 2]);
    assert_eq!(
        outcome(l.answer("old-announcement", false, "error: unknown", now)),
        None
    );
    assert_eq!(
        outcome(l.answer("fine", true, "", now)),
        Some(Outcome::Saved)
    );
    now += Duration::from_secs(2);
    assert_eq!(l.take_sendable(now), vec![1]);
    assert_eq!(
        outcome(l.answer("old-announcement", false, "error: unknown", now)),
        Some(Outcome::Rejected)
    );
}
