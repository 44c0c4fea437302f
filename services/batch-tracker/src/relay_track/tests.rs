//! The status rules of one relay, step by step (DESIGN.md section 6).

use ngit_sync_shared::status::{AttemptResult::*, ConnectionStatus as S, Layer::*};

use super::*;
use crate::fixtures::*;

const QUIET: u64 = 1_000;

/// One relay and discovery's watermark; `send` lets time pass before applying, as the
/// machine does.
struct Relay {
    track: RelayTrack,
    watermark: u64,
}

impl Relay {
    fn new() -> Relay {
        Relay {
            track: RelayTrack::new(url(1), 0),
            watermark: 0,
        }
    }

    fn seeded(report: StatusReport) -> Relay {
        Relay {
            track: RelayTrack::seeded(url(1), &report),
            watermark: 0,
        }
    }

    fn send(&mut self, at: u64, body: RelayBody) -> &mut Relay {
        self.tick(at);
        self.track.apply(&body, at);
        self.tick(at)
    }

    fn tick(&mut self, at: u64) -> &mut Relay {
        self.track.settle(self.watermark, QUIET, at);
        self
    }

    fn watermark(&mut self, seq: u64, at: u64) -> &mut Relay {
        self.watermark = seq;
        self.tick(at)
    }

    fn status(&self) -> S {
        self.track.status()
    }

    /// Session `s1` open with its L1 batch confirmed at `at`.
    fn synced(&mut self, at: u64, last_seq: u64) -> &mut Relay {
        self.send(at, attempted(Started))
            .send(at, connected("s1"))
            .send(at, opened("s1", "l1", L1))
            .send(at, confirmed("s1", "l1", last_seq))
    }
}

fn report(status: S, session: &str, failed: u32) -> StatusReport {
    StatusReport {
        status,
        since_ms: 1,
        session: Some(session.into()),
        open_batches: 0,
        failed_batches: failed,
        owner: Some(WORKER.into()),
        health: None,
    }
}

#[test]
fn attempts_move_a_relay_between_connecting_and_disconnected() {
    let mut r = Relay::new();
    r.send(10, attempted(Started));
    assert_eq!((r.status(), r.track.report().since_ms), (S::Connecting, 10));
    r.send(20, attempted(Failure));
    assert_eq!(
        (r.status(), r.track.report().since_ms),
        (S::Disconnected, 20)
    );
    r.send(30, attempted(Started)).send(40, attempted(Success));
    assert_eq!(
        r.status(),
        S::Connecting,
        "`connected`, not success, opens the session"
    );
}

#[test]
fn connected_starts_syncing_the_new_session_with_its_owner() {
    let mut r = Relay::new();
    r.send(0, attempted(Started)).send(5, connected("s1"));
    let report = r.track.report();
    assert_eq!((report.status, report.since_ms), (S::Syncing, 5));
    assert_eq!(report.session.as_deref(), Some("s1"));
    assert_eq!(report.owner.as_deref(), Some(WORKER));
}

#[test]
fn relay_turns_connected_once_the_watermark_covers_its_batches_and_quiet_passes() {
    let mut r = Relay::new();
    r.watermark(5, 0).synced(0, 10).tick(60_000);
    assert_eq!(r.status(), S::Syncing, "watermark 5 is below last_seq 10");
    r.watermark(10, 70_000).tick(75_000);
    assert_eq!(
        r.status(),
        S::Syncing,
        "the owner has not said its batches reflect the targets up to 10"
    );
    r.send(75_000, applied("s1", 10)).tick(75_999);
    assert_eq!(r.status(), S::Syncing, "quiet period not over");
    r.tick(76_000);
    let report = r.track.report();
    assert_eq!((report.status, report.since_ms), (S::Connected, 76_000));
}

#[test]
fn the_owners_word_counts_only_for_its_session_and_only_up_to_its_watermark() {
    let mut r = Relay::new();
    r.watermark(20, 0).synced(0, 10);
    r.send(1, applied("s0", 10)).tick(10_000);
    assert_eq!(r.status(), S::Syncing, "another session's word");
    r.send(10_000, applied("s1", 9)).tick(20_000);
    assert_eq!(r.status(), S::Syncing, "9 is below last_seq 10");
    r.send(20_000, applied("s1", 12)).tick(21_000);
    assert_eq!(r.status(), S::Connected);
    // A new session forgets what the old one was told.
    r.send(30_000, connected("s2"))
        .send(30_000, opened("s2", "l1", L1))
        .send(30_001, confirmed("s2", "l1", 15))
        .tick(40_000);
    assert_eq!(r.status(), S::Syncing);
}

#[test]
fn connected_is_dated_at_the_end_of_the_quiet_period_not_at_the_late_tick() {
    let mut r = Relay::new();
    r.synced(100, 0).tick(9_000);
    assert_eq!(r.track.report().since_ms, 1_100);
}

#[test]
fn no_open_batch_is_not_enough_before_the_l1_batch_ended() {
    let mut r = Relay::new();
    r.send(0, connected("s1")).tick(10_000);
    assert_eq!(r.status(), S::Syncing);
    r.send(10_000, opened("s1", "l2", L2))
        .send(10_001, confirmed("s1", "l2", 0))
        .tick(20_000);
    assert_eq!(r.status(), S::Syncing, "L1 has not run");
    r.send(20_000, opened("s1", "l1", L1))
        .send(20_001, confirmed("s1", "l1", 0))
        .tick(21_001);
    assert_eq!(r.status(), S::Connected);
}

#[test]
fn a_failed_batch_makes_the_relay_connected_degraded() {
    let mut r = Relay::new();
    r.synced(0, 3)
        .send(1, opened("s1", "l2", L2))
        .send(2, failed("s1", "l2", 4));
    assert_eq!(r.track.report().failed_batches, 1);
    r.tick(5_000);
    assert_eq!(
        r.status(),
        S::Syncing,
        "the failed batch's events have not landed"
    );
    r.watermark(4, 5_000)
        .send(5_000, applied("s1", 4))
        .tick(6_000);
    assert_eq!(r.status(), S::ConnectedDegraded);
}

#[test]
fn a_failed_l1_batch_still_lets_the_relay_complete_degraded() {
    let mut r = Relay::new();
    r.send(0, connected("s1"))
        .send(0, opened("s1", "l1", L1))
        .send(1, failed("s1", "l1", 0))
        .tick(1_001);
    assert_eq!(r.status(), S::ConnectedDegraded);
}

#[test]
fn a_batch_opened_later_moves_connected_back_to_syncing() {
    let mut r = Relay::new();
    r.synced(0, 0).tick(1_000);
    assert_eq!(r.status(), S::Connected);
    r.send(5_000, opened("s1", "l3", L3));
    let report = r.track.report();
    assert_eq!((report.status, report.open_batches), (S::Syncing, 1));
    assert_eq!(report.since_ms, 5_000);
    r.send(5_100, confirmed("s1", "l3", 0)).tick(6_099);
    assert_eq!(r.status(), S::Syncing);
    r.tick(6_100);
    assert_eq!(r.status(), S::Connected);
}

#[test]
fn activity_during_the_quiet_period_restarts_it() {
    let mut r = Relay::new();
    r.synced(0, 0)
        .send(800, opened("s1", "l2", L2))
        .send(900, confirmed("s1", "l2", 0))
        .tick(1_500);
    assert_eq!(r.status(), S::Syncing);
    r.tick(1_900);
    assert_eq!(r.status(), S::Connected);
}

#[test]
fn messages_of_an_older_session_are_ignored() {
    let mut r = Relay::new();
    r.send(0, connected("s1"))
        .send(1, opened("s1", "old", L1))
        .send(2, connected("s2"));
    assert_eq!(
        r.track.report().open_batches,
        0,
        "s1's batch no longer counts"
    );
    r.send(3, disconnected("s1"))
        .send(4, opened("s1", "old2", L2))
        .send(5, failed("s1", "old", 99));
    let report = r.track.report();
    assert_eq!(
        (report.status, report.open_batches, report.failed_batches),
        (S::Syncing, 0, 0)
    );
    assert_eq!(report.session.as_deref(), Some("s2"));
}

#[test]
fn disconnected_drops_the_open_batches_and_later_batch_news() {
    let mut r = Relay::new();
    r.send(0, connected("s1"))
        .send(1, opened("s1", "l1", L1))
        .send(2, disconnected("s1"));
    let report = r.track.report();
    assert_eq!(
        (report.status, report.open_batches, report.session),
        (S::Disconnected, 0, None)
    );
    assert_eq!(
        report.owner.as_deref(),
        Some(WORKER),
        "it still holds the lease"
    );
    r.send(3, confirmed("s1", "l1", 0));
    assert_eq!(r.status(), S::Disconnected);
}

#[test]
fn released_by_the_owner_disconnects_and_by_another_worker_is_ignored() {
    let mut r = Relay::new();
    r.send(0, claimed("w2")).send(1, connected("s1"));
    r.send(2, released("w9"));
    assert_eq!(r.status(), S::Syncing);
    r.send(3, released(WORKER));
    let report = r.track.report();
    assert_eq!((report.status, report.owner), (S::Disconnected, None));
}

#[test]
fn a_lost_lease_disconnects_only_when_it_was_the_owners() {
    let mut r = Relay::new();
    r.synced(0, 0);
    assert!(!r.track.lease_lost(Some("w7"), 10));
    assert_eq!(r.status(), S::Syncing);
    assert!(r.track.lease_lost(Some(WORKER), 20));
    let report = r.track.report();
    assert_eq!(
        (report.status, report.since_ms, report.owner),
        (S::Disconnected, 20, None)
    );
    assert!(!r.track.lease_lost(None, 30), "no owner left to lose it");
    r.send(40, connected("s2"));
    assert!(r.track.lease_lost(None, 50), "holder unknown: the owner's");
}

#[test]
fn a_seeded_session_older_than_the_stream_continues() {
    let mut r = Relay::seeded(report(S::Connected, "s1", 0));
    r.send(100, opened("s1", "daily", L2));
    assert_eq!(r.status(), S::Syncing);
    r.send(200, confirmed("s1", "daily", 0)).tick(1_200);
    assert_eq!(r.status(), S::Connected);
    let mut r = Relay::seeded(report(S::Disconnected, "s1", 0));
    r.send(100, opened("s1", "late", L2));
    assert_eq!(r.status(), S::Disconnected, "no live session to continue");
}

#[test]
fn a_replayed_connected_resets_a_seeded_relay() {
    let mut r = Relay::seeded(report(S::ConnectedDegraded, "s1", 2));
    r.send(10, connected("s1")).tick(5_000);
    let report = r.track.report();
    assert_eq!(
        (report.status, report.failed_batches),
        (S::Syncing, 0),
        "waits for L1"
    );
}

#[test]
fn adopting_a_stored_since_needs_the_same_status() {
    let mut r = Relay::new();
    r.send(50, attempted(Started));
    r.track.adopt_since(S::Connected, 7);
    assert_eq!(r.track.report().since_ms, 50);
    r.track.adopt_since(S::Connecting, 7);
    assert_eq!(r.track.report().since_ms, 7);
}
