//! The pool's decisions as a plain state machine: live workers and wanted relays in, claims and
//! releases out, paced so a worker never opens hundreds of connections in one instant.

use std::collections::{BTreeMap, HashMap};

use ngit_sync_shared::messages::RelayEntry;

use crate::rendezvous;

/// Why this worker gives a relay up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// The relay left `ngit_sync_relays`.
    Forgotten,
    /// Another live worker now has the highest weight for it.
    Rebalance,
    Shutdown,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forgotten => "forgotten",
            Self::Rebalance => "rebalance",
            Self::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Claim(RelayEntry),
    Release { key: String, reason: ReleaseReason },
}

/// How a relay's owner task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Another worker holds the lease.
    LeaseBusy,
    /// A renewal failed: the lease may be someone else's now.
    LeaseLost,
    /// Released on request.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Running,
    Stopping,
}

/// A busy or lost lease is tried again after at most this long: a dead worker's lease expires
/// on the server's clock, and waiting a whole renewal period on top would slow every failover.
pub const CLAIM_RETRY_MS: u64 = 1_000;

#[derive(Debug)]
pub struct Ownership {
    me: String,
    worker_ttl_ms: u64,
    /// Our own heartbeat comes back through the watch this often.
    renew_ms: u64,
    claim_retry_ms: u64,
    /// Worker id → when its last heartbeat was seen (local clock, so server skew is harmless).
    workers: HashMap<String, u64>,
    /// Relay key → entry.
    relays: BTreeMap<String, RelayEntry>,
    held: HashMap<String, Held>,
    /// Relays whose claim failed: not before this.
    retry_at: HashMap<String, u64>,
    /// Assigned worker per relay for `assigned_live` and the relays as they were; recomputed
    /// only when either changed (hashing every relay every tick adds up).
    assignment: HashMap<String, String>,
    assigned_live: Vec<String>,
    stale: bool,
    /// Whether the last decision held still because the view was old or settling (for logging).
    frozen: bool,
    /// The view went old since the last decision that acted.
    was_old: bool,
    /// After an old view turns current again, hold still until then: the other workers'
    /// heartbeats come back within a renewal period of ours, and a worker judged before that
    /// would look dead.
    settle_until: Option<u64>,
}

impl Ownership {
    /// `renew_ms` is the heartbeat period; the worker TTL must be at least twice it.
    pub fn new(me: &str, worker_ttl_ms: u64, renew_ms: u64) -> Ownership {
        Ownership {
            me: me.to_string(),
            worker_ttl_ms,
            renew_ms,
            claim_retry_ms: renew_ms.min(CLAIM_RETRY_MS),
            workers: HashMap::new(),
            relays: BTreeMap::new(),
            held: HashMap::new(),
            retry_at: HashMap::new(),
            assignment: HashMap::new(),
            assigned_live: Vec::new(),
            stale: true,
            frozen: false,
            was_old: false,
            settle_until: None,
        }
    }

    pub fn worker_seen(&mut self, id: &str, at_ms: u64) {
        self.workers.insert(id.to_string(), at_ms);
    }

    /// A worker deleted its heartbeat (graceful stop): its relays move at once.
    pub fn worker_gone(&mut self, id: &str) {
        self.workers.remove(id);
    }

    pub fn relay_put(&mut self, key: &str, entry: RelayEntry) {
        if self.relays.insert(key.to_string(), entry).is_none() {
            self.stale = true;
        }
    }

    pub fn relay_deleted(&mut self, key: &str) {
        if self.relays.remove(key).is_some() {
            self.stale = true;
        }
        self.retry_at.remove(key);
    }

    /// Our view of the pool is current while our own heartbeat keeps coming back through the
    /// watch. When it stops (NATS down, the watch recreating itself) every other worker will
    /// soon look dead to us, and acting on that would grab their relays: so we hold still.
    /// The threshold is below the worker TTL, so we freeze before anyone looks dead.
    fn view_is_current(&self, now_ms: u64) -> bool {
        let threshold = (2 * self.renew_ms).min(self.worker_ttl_ms);
        self.workers
            .get(&self.me)
            .is_some_and(|seen| now_ms.saturating_sub(*seen) < threshold)
    }

    /// Whether the last [`decide`](Self::decide) held still because the view was old.
    pub fn frozen(&self) -> bool {
        self.frozen
    }

    /// Workers heard from within the TTL, always including this one, sorted.
    pub fn live_workers(&self, now_ms: u64) -> Vec<String> {
        let mut live: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, seen)| now_ms.saturating_sub(**seen) < self.worker_ttl_ms)
            .map(|(w, _)| w.clone())
            .collect();
        if !live.contains(&self.me) {
            live.push(self.me.clone());
        }
        live.sort();
        live
    }

    fn is_mine(&self, key: &str) -> bool {
        self.assignment.get(key).is_some_and(|w| *w == self.me)
    }

    /// The worker this relay is assigned to in the current view.
    pub fn assigned(&self, key: &str) -> Option<&str> {
        self.assignment.get(key).map(String::as_str)
    }

    fn refresh_assignment(&mut self, now_ms: u64) {
        let live = self.live_workers(now_ms);
        if live != self.assigned_live || self.stale {
            let workers: Vec<&str> = live.iter().map(String::as_str).collect();
            self.assignment = rendezvous::assign(&workers, self.relays.keys().map(String::as_str));
            self.assigned_live = live;
            self.stale = false;
        }
    }

    /// What to do now: releases for relays no longer ours, then at most `max_claims` claims.
    /// With an old view of the pool only forgotten relays are released.
    pub fn decide(&mut self, now_ms: u64, max_claims: usize) -> Vec<Decision> {
        if !self.view_is_current(now_ms) {
            self.was_old = true;
            self.frozen = true;
        } else {
            if std::mem::take(&mut self.was_old) {
                self.settle_until = Some(now_ms + 2 * self.renew_ms);
            }
            self.frozen = self.settle_until.is_some_and(|t| now_ms < t);
        }
        if !self.frozen {
            self.refresh_assignment(now_ms);
        }
        let mut out = Vec::new();
        let running: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| **h == Held::Running)
            .map(|(k, _)| k.clone())
            .collect();
        for key in running {
            let reason = if !self.relays.contains_key(&key) {
                Some(ReleaseReason::Forgotten)
            } else if !self.frozen && !self.is_mine(&key) {
                Some(ReleaseReason::Rebalance)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.held.insert(key.clone(), Held::Stopping);
                out.push(Decision::Release { key, reason });
            }
        }
        if self.frozen {
            return out;
        }
        let candidates: Vec<String> = self
            .relays
            .keys()
            .filter(|k| !self.held.contains_key(*k))
            .filter(|k| self.retry_at.get(*k).is_none_or(|t| *t <= now_ms))
            .cloned()
            .collect();
        let mut claims = 0;
        for key in candidates {
            if claims >= max_claims {
                break;
            }
            if !self.is_mine(&key) {
                continue;
            }
            self.retry_at.remove(&key);
            self.held.insert(key.clone(), Held::Running);
            out.push(Decision::Claim(self.relays[&key].clone()));
            claims += 1;
        }
        out
    }

    /// The owner task of `key` ended.
    pub fn ended(&mut self, key: &str, ended: &Ended, now_ms: u64) {
        self.held.remove(key);
        match ended {
            Ended::LeaseBusy | Ended::LeaseLost => {
                self.retry_at
                    .insert(key.to_string(), now_ms + self.claim_retry_ms);
            }
            Ended::Stopped => {}
        }
    }

    /// Relays this worker holds or is giving up.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::RelayUrl;

    fn entry(n: usize) -> (String, RelayEntry) {
        let url = RelayUrl::parse(&format!("wss://r{n}.example")).unwrap();
        (
            url.key().to_string(),
            RelayEntry {
                url,
                bootstrap: false,
                repos: 1,
            },
        )
    }

    fn with_relays(n: usize) -> Ownership {
        let mut o = Ownership::new("me", 10_000, 3_000);
        for i in 0..n {
            let (k, e) = entry(i);
            o.relay_put(&k, e);
        }
        o
    }

    /// Our heartbeat came back through the watch just now, then a decision.
    fn decide(o: &mut Ownership, now: u64, max: usize) -> Vec<Decision> {
        o.worker_seen("me", now);
        o.decide(now, max)
    }

    fn claims(d: &[Decision]) -> usize {
        d.iter().filter(|d| matches!(d, Decision::Claim(_))).count()
    }

    fn released(d: Vec<Decision>) -> Vec<String> {
        d.into_iter()
            .filter_map(|d| match d {
                Decision::Release { key, reason } => {
                    assert_eq!(reason, ReleaseReason::Rebalance);
                    Some(key)
                }
                Decision::Claim(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_lone_worker_claims_everything_at_a_limited_pace() {
        let mut o = with_relays(25);
        assert_eq!(claims(&decide(&mut o, 0, 10)), 10);
        assert_eq!(claims(&decide(&mut o, 100, 10)), 10);
        assert_eq!(claims(&decide(&mut o, 200, 10)), 5);
        assert!(decide(&mut o, 300, 10).is_empty());
        assert_eq!(o.held(), 25);
    }

    #[test]
    fn a_new_worker_takes_its_share_and_a_dead_one_gives_it_back() {
        let mut o = with_relays(40);
        assert_eq!(claims(&decide(&mut o, 0, 100)), 40);
        o.worker_seen("other", 1_000);
        let released = released(decide(&mut o, 1_000, 100));
        // Bounded loads: the newcomer gets exactly half.
        assert_eq!(released.len(), 20);
        for key in &released {
            o.ended(key, &Ended::Stopped, 1_100);
        }
        assert!(
            decide(&mut o, 1_200, 100).is_empty(),
            "nothing to do while other lives"
        );
        // No heartbeat for the TTL: its relays come back.
        assert_eq!(claims(&decide(&mut o, 11_001, 100)), released.len());
    }

    #[test]
    fn a_forgotten_relay_is_released_and_a_busy_lease_waits_before_a_retry() {
        let mut o = with_relays(3);
        let (k1, _) = entry(1);
        let (k2, _) = entry(2);
        assert_eq!(claims(&decide(&mut o, 0, 10)), 3);
        o.relay_deleted(&k1);
        assert_eq!(
            decide(&mut o, 10, 10),
            vec![Decision::Release {
                key: k1.clone(),
                reason: ReleaseReason::Forgotten
            }]
        );
        o.ended(&k1, &Ended::Stopped, 20);
        o.ended(&k2, &Ended::LeaseBusy, 20);
        assert!(decide(&mut o, 500, 10).is_empty());
        // Retried after CLAIM_RETRY_MS, not a whole renewal period.
        assert_eq!(claims(&decide(&mut o, 1_020, 10)), 1);
    }

    #[test]
    fn a_worker_that_said_goodbye_is_gone_at_once() {
        let mut o = Ownership::new("me", 10_000, 3_000);
        o.worker_seen("other", 0);
        assert_eq!(
            o.live_workers(5),
            vec!["me".to_string(), "other".to_string()]
        );
        o.worker_gone("other");
        assert_eq!(o.live_workers(5), vec!["me".to_string()]);
    }

    #[test]
    fn with_an_old_view_of_the_pool_nothing_is_claimed_or_rebalanced() {
        let mut o = with_relays(20);
        o.worker_seen("other", 0);
        let mine = claims(&decide(&mut o, 0, 100));
        assert!(mine > 0 && mine < 20);
        // NATS went away: no heartbeat comes back, neither ours nor the other's. Past the TTL
        // the other looks dead, yet its relays are not grabbed.
        assert!(o.decide(12_000, 100).is_empty());
        assert!(o.frozen());
        // A forgotten relay is still let go.
        let held: Vec<String> = (0..20)
            .map(|i| entry(i).0)
            .filter(|k| o.assigned(k) == Some("me"))
            .collect();
        o.relay_deleted(&held[0]);
        assert_eq!(
            o.decide(12_100, 100),
            vec![Decision::Release {
                key: held[0].clone(),
                reason: ReleaseReason::Forgotten
            }]
        );
        // The watch is back: ours comes first; the other's heartbeat may take a renewal period,
        // so nothing is judged for two of them.
        assert!(decide(&mut o, 13_000, 100).is_empty());
        assert!(o.frozen(), "settling");
        o.worker_seen("other", 14_500);
        assert!(decide(&mut o, 19_000, 100).is_empty());
        assert!(!o.frozen());
    }
}
