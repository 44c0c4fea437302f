//! The ConnectionStatus machine of every relay: news, discovery's watermark, lost leases and
//! ticks in; the relays whose [`StatusReport`] changed out. Pure and synchronous.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ngit_sync_shared::messages::{RelayBody, RelayNews, StatusReport};
use ngit_sync_shared::{RelayKey, RelayUrl};

use crate::relay_track::RelayTrack;

/// Whether two reports differ in what readers care about. `since_ms` is left out: a replay
/// after a restart reaches the same status at a slightly different instant, and that alone
/// must not publish again.
pub fn differs(a: Option<&StatusReport>, b: Option<&StatusReport>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.status != b.status
                || a.session != b.session
                || a.open_batches != b.open_batches
                || a.failed_batches != b.failed_batches
                || a.owner != b.owner
                || a.health != b.health
        }
        (None, None) => false,
        _ => true,
    }
}

#[derive(Debug, Clone)]
pub struct StatusMachine {
    quiet_ms: u64,
    /// discovery's landing watermark: events-stream sequence folded into the targets.
    watermark: u64,
    relays: BTreeMap<RelayKey, RelayTrack>,
    /// Relays whose quiet period runs, so a tick does not walk every relay.
    quieting: BTreeSet<RelayKey>,
}

impl StatusMachine {
    pub fn new(quiet: Duration) -> StatusMachine {
        StatusMachine {
            quiet_ms: quiet.as_millis() as u64,
            watermark: 0,
            relays: BTreeMap::new(),
            quieting: BTreeSet::new(),
        }
    }

    /// Starts a relay from the status bucket's last report (before the stream replay).
    pub fn seed(&mut self, url: RelayUrl, report: &StatusReport) {
        self.relays
            .insert(url.key(), RelayTrack::seeded(url, report));
    }

    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    pub fn get(&self, key: &RelayKey) -> Option<&RelayTrack> {
        self.relays.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &RelayKey> {
        self.relays.keys()
    }

    /// `(relay, owner)` of every relay some worker holds.
    pub fn owned(&self) -> Vec<(RelayKey, String)> {
        self.relays
            .iter()
            .filter_map(|(k, t)| t.owner().map(|o| (k.clone(), o.to_string())))
            .collect()
    }

    /// See [`RelayTrack::adopt_since`].
    pub fn adopt_since(&mut self, key: &RelayKey, stored: &StatusReport) {
        if let Some(track) = self.relays.get_mut(key) {
            track.adopt_since(stored.status, stored.since_ms);
        }
    }

    /// Applies one message of the RELAYS stream.
    pub fn apply(&mut self, news: &RelayNews, now_ms: u64) -> Vec<RelayKey> {
        let key = news.relay.key();
        if news.body == RelayBody::Forgotten {
            self.quieting.remove(&key);
            return match self.relays.remove(&key) {
                Some(_) => vec![key],
                None => Vec::new(),
            };
        }
        // Only signs of a relay being synced bring one into view: the `disconnected` and
        // `released` a connector sends after discovery forgot a relay must not revive it.
        let creates = matches!(
            news.body,
            RelayBody::Discovered { .. }
                | RelayBody::Claimed { .. }
                | RelayBody::Attempted { .. }
                | RelayBody::Connected { .. }
        );
        if !creates && !self.relays.contains_key(&key) {
            return Vec::new();
        }
        let before = self.relays.get(&key).map(RelayTrack::report);
        self.relays
            .entry(key.clone())
            .or_insert_with(|| RelayTrack::new(news.relay.clone(), now_ms))
            .apply(&news.body, now_ms);
        self.settle(&key, before, now_ms)
    }

    /// discovery's watermark moved.
    pub fn set_watermark(&mut self, seq: u64, now_ms: u64) -> Vec<RelayKey> {
        self.watermark = seq;
        let keys: Vec<RelayKey> = self.relays.keys().cloned().collect();
        self.settle_all(&keys, now_ms)
    }

    /// The lease of `key` is gone; `worker` is its last holder when known.
    pub fn lease_lost(
        &mut self,
        key: &RelayKey,
        worker: Option<&str>,
        now_ms: u64,
    ) -> Vec<RelayKey> {
        let Some(track) = self.relays.get_mut(key) else {
            return Vec::new();
        };
        let before = track.report();
        track.lease_lost(worker, now_ms);
        self.settle(key, Some(before), now_ms)
    }

    /// Lets time pass: relays whose quiet period ended turn Connected.
    pub fn tick(&mut self, now_ms: u64) -> Vec<RelayKey> {
        let keys: Vec<RelayKey> = self.quieting.iter().cloned().collect();
        self.settle_all(&keys, now_ms)
    }

    fn settle_all(&mut self, keys: &[RelayKey], now_ms: u64) -> Vec<RelayKey> {
        let mut changed = Vec::new();
        for key in keys {
            let before = self.relays.get(key).map(RelayTrack::report);
            changed.extend(self.settle(key, before, now_ms));
        }
        changed
    }

    /// Runs the completion rule on one relay and reports its key when its report is no
    /// longer `before`.
    fn settle(
        &mut self,
        key: &RelayKey,
        before: Option<StatusReport>,
        now_ms: u64,
    ) -> Vec<RelayKey> {
        let Some(track) = self.relays.get_mut(key) else {
            return Vec::new();
        };
        track.settle(self.watermark, self.quiet_ms, now_ms);
        if track.is_quieting() {
            self.quieting.insert(key.clone());
        } else {
            self.quieting.remove(key);
        }
        if differs(before.as_ref(), Some(&track.report())) {
            vec![key.clone()]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use ngit_sync_shared::status::{AttemptResult::*, ConnectionStatus as S, Health, Layer::*};

    use super::*;
    use crate::fixtures::*;

    fn send(m: &mut StatusMachine, relay: &RelayUrl, at: u64, body: RelayBody) -> Vec<RelayKey> {
        let mut changed = m.tick(at);
        changed.extend(m.apply(&news(relay, at, body), at));
        changed
    }

    fn status(m: &StatusMachine, relay: &RelayUrl) -> Option<S> {
        m.get(&relay.key()).map(RelayTrack::status)
    }

    /// Connected with its L1 batch confirmed at `last_seq`.
    fn synced(m: &mut StatusMachine, relay: &RelayUrl, last_seq: u64) {
        for body in [
            connected("s1"),
            opened("s1", "l1", L1),
            confirmed("s1", "l1", last_seq),
            applied("s1", last_seq),
        ] {
            send(m, relay, 0, body);
        }
    }

    #[test]
    fn only_relays_whose_report_changed_are_returned() {
        let mut m = StatusMachine::new(Duration::from_secs(1));
        let r = url(1);
        let key = vec![r.key()];
        let discovered = RelayBody::Discovered {
            bootstrap: false,
            repos: 2,
        };
        assert_eq!(send(&mut m, &r, 0, discovered), key, "a new relay");
        assert_eq!(status(&m, &r), Some(S::Disconnected));
        assert_eq!(
            send(&mut m, &r, 1, RelayBody::Health(health(Health::Healthy))),
            key
        );
        assert!(send(&mut m, &r, 2, RelayBody::Health(health(Health::Healthy))).is_empty());
        assert_eq!(send(&mut m, &r, 3, claimed("w2")), key, "owner");
        assert!(send(&mut m, &r, 3, claimed("w2")).is_empty());
        assert_eq!(send(&mut m, &r, 4, connected("s1")), key);
        assert_eq!(
            send(&mut m, &r, 5, opened("s1", "l1", L1)),
            key,
            "open count"
        );
        assert!(send(&mut m, &r, 6, page("s1", "l1")).is_empty());
        let rediscovered = RelayBody::Discovered {
            bootstrap: true,
            repos: 3,
        };
        assert!(send(&mut m, &r, 7, rediscovered).is_empty());
        assert_eq!(send(&mut m, &r, 8, confirmed("s1", "l1", 0)), key);
        assert!(m.tick(1_007).is_empty());
        assert_eq!(m.tick(1_008), key, "quiet period over");
        assert!(m.tick(5_000).is_empty());
    }

    #[test]
    fn a_watermark_move_reports_every_relay_it_completes() {
        let mut m = StatusMachine::new(Duration::ZERO);
        for (n, last_seq) in [(1, 10), (2, 20), (3, 30)] {
            synced(&mut m, &url(n), last_seq);
        }
        let mut changed = m.set_watermark(20, 5);
        changed.sort();
        let mut expected = vec![url(1).key(), url(2).key()];
        expected.sort();
        assert_eq!(changed, expected);
        assert_eq!(
            status(&m, &url(1)),
            Some(S::Connected),
            "zero quiet: at once"
        );
        assert_eq!(status(&m, &url(3)), Some(S::Syncing));
        assert_eq!(m.watermark(), 20);
    }

    #[test]
    fn forgotten_removes_the_relay_and_later_news_does_not_revive_it() {
        let mut m = StatusMachine::new(Duration::from_secs(1));
        let r = url(1);
        synced(&mut m, &r, 0);
        assert_eq!(send(&mut m, &r, 1, RelayBody::Forgotten), vec![r.key()]);
        assert_eq!(status(&m, &r), None);
        for body in [
            disconnected("s1"),
            released(WORKER),
            RelayBody::Health(health(Health::Disconnected)),
            confirmed("s1", "l2", 0),
        ] {
            assert!(send(&mut m, &r, 2, body).is_empty());
        }
        assert_eq!(status(&m, &r), None);
        assert!(send(&mut m, &r, 3, RelayBody::Forgotten).is_empty());
        assert!(m.tick(10_000).is_empty(), "its quiet timer went with it");
        assert_eq!(
            send(&mut m, &r, 4, attempted(Started)),
            vec![r.key()],
            "synced again"
        );
    }

    #[test]
    fn lease_loss_and_status_news_reach_only_known_relays() {
        let mut m = StatusMachine::new(Duration::from_secs(1));
        let r = url(1);
        assert!(m.lease_lost(&r.key(), None, 0).is_empty());
        synced(&mut m, &r, 0);
        assert_eq!(m.owned(), vec![(r.key(), WORKER.to_string())]);
        assert_eq!(m.lease_lost(&r.key(), Some(WORKER), 5), vec![r.key()]);
        assert_eq!(status(&m, &r), Some(S::Disconnected));
        assert!(m.owned().is_empty());
        let own_output = RelayBody::Status(m.get(&r.key()).unwrap().report());
        assert!(send(&mut m, &url(2), 6, own_output).is_empty());
        assert_eq!(status(&m, &url(2)), None);
    }

    #[test]
    fn seeded_relays_start_from_the_stored_report() {
        let mut m = StatusMachine::new(Duration::from_secs(1));
        let stored = StatusReport {
            status: S::Connected,
            since_ms: 42,
            session: Some("s9".into()),
            open_batches: 0,
            failed_batches: 0,
            owner: Some(WORKER.into()),
            health: Some(health(Health::Healthy)),
        };
        m.seed(url(1), &stored);
        assert!(!differs(
            Some(&stored),
            Some(&m.get(&url(1).key()).unwrap().report())
        ));
        assert_eq!(m.get(&url(1).key()).unwrap().report().since_ms, 42);
        assert!(m.tick(10_000).is_empty());
    }

    #[test]
    fn differs_ignores_only_the_since_instant() {
        let a = StatusReport {
            status: S::Connected,
            since_ms: 1,
            session: Some("s".into()),
            open_batches: 0,
            failed_batches: 0,
            owner: Some("w".into()),
            health: None,
        };
        let moved = StatusReport {
            since_ms: 2,
            ..a.clone()
        };
        assert!(!differs(Some(&a), Some(&moved)));
        assert!(differs(Some(&a), None));
        assert!(!differs(None, None));
        let open = StatusReport {
            open_batches: 1,
            ..a.clone()
        };
        assert!(differs(Some(&a), Some(&open)));
        let sick = StatusReport {
            health: Some(health(Health::Dead)),
            ..a.clone()
        };
        assert!(differs(Some(&a), Some(&sick)));
    }
}
