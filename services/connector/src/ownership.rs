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

#[derive(Debug)]
pub struct Ownership {
    me: String,
    worker_ttl_ms: u64,
    claim_retry_ms: u64,
    /// Worker id → when its last heartbeat was seen (local clock, so server skew is harmless).
    workers: HashMap<String, u64>,
    /// Relay key → entry.
    relays: BTreeMap<String, RelayEntry>,
    held: HashMap<String, Held>,
    /// Relays whose claim failed: not before this.
    retry_at: HashMap<String, u64>,
    /// Preferred worker per relay for `cache_live`; hashing every relay every tick adds up.
    cache: HashMap<String, String>,
    cache_live: Vec<String>,
}

impl Ownership {
    pub fn new(me: &str, worker_ttl_ms: u64, claim_retry_ms: u64) -> Ownership {
        Ownership {
            me: me.to_string(),
            worker_ttl_ms,
            claim_retry_ms,
            workers: HashMap::new(),
            relays: BTreeMap::new(),
            held: HashMap::new(),
            retry_at: HashMap::new(),
            cache: HashMap::new(),
            cache_live: Vec::new(),
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
        self.relays.insert(key.to_string(), entry);
    }

    pub fn relay_deleted(&mut self, key: &str) {
        self.relays.remove(key);
        self.retry_at.remove(key);
        self.cache.remove(key);
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

    fn preferred(&mut self, key: &str) -> String {
        if let Some(w) = self.cache.get(key) {
            return w.clone();
        }
        let w = rendezvous::preferred(self.cache_live.iter().map(String::as_str), key)
            .unwrap_or(&self.me)
            .to_string();
        self.cache.insert(key.to_string(), w.clone());
        w
    }

    /// What to do now: releases for relays no longer ours, then at most `max_claims` claims.
    pub fn decide(&mut self, now_ms: u64, max_claims: usize) -> Vec<Decision> {
        let live = self.live_workers(now_ms);
        if live != self.cache_live {
            self.cache_live = live;
            self.cache.clear();
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
            } else if self.preferred(&key) != self.me {
                Some(ReleaseReason::Rebalance)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.held.insert(key.clone(), Held::Stopping);
                out.push(Decision::Release { key, reason });
            }
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
            if self.preferred(&key) != self.me {
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

    fn claims(d: &[Decision]) -> usize {
        d.iter().filter(|d| matches!(d, Decision::Claim(_))).count()
    }

    #[test]
    fn a_lone_worker_claims_everything_at_a_limited_pace() {
        let mut o = Ownership::new("me", 10_000, 3_000);
        for n in 0..25 {
            let (k, e) = entry(n);
            o.relay_put(&k, e);
        }
        assert_eq!(claims(&o.decide(0, 10)), 10);
        assert_eq!(claims(&o.decide(100, 10)), 10);
        assert_eq!(claims(&o.decide(200, 10)), 5);
        assert!(o.decide(300, 10).is_empty());
        assert_eq!(o.held(), 25);
    }

    #[test]
    fn a_new_worker_takes_its_share_and_a_dead_one_gives_it_back() {
        let mut o = Ownership::new("me", 10_000, 3_000);
        for n in 0..40 {
            let (k, e) = entry(n);
            o.relay_put(&k, e);
        }
        assert_eq!(claims(&o.decide(0, 100)), 40);
        o.worker_seen("other", 1_000);
        let released: Vec<String> = o
            .decide(1_000, 100)
            .into_iter()
            .filter_map(|d| match d {
                Decision::Release { key, reason } => {
                    assert_eq!(reason, ReleaseReason::Rebalance);
                    Some(key)
                }
                Decision::Claim(_) => None,
            })
            .collect();
        assert!(!released.is_empty() && released.len() < 40);
        for key in &released {
            o.ended(key, &Ended::Stopped, 1_100);
        }
        assert!(
            o.decide(1_200, 100).is_empty(),
            "nothing to do while other lives"
        );
        // No heartbeat for the TTL: its relays come back.
        assert_eq!(claims(&o.decide(11_001, 100)), released.len());
    }

    #[test]
    fn a_forgotten_relay_is_released_and_a_busy_lease_waits_before_a_retry() {
        let mut o = Ownership::new("me", 10_000, 3_000);
        let (k1, e1) = entry(1);
        let (k2, e2) = entry(2);
        o.relay_put(&k1, e1);
        o.relay_put(&k2, e2);
        assert_eq!(claims(&o.decide(0, 10)), 2);
        o.relay_deleted(&k1);
        assert_eq!(
            o.decide(10, 10),
            vec![Decision::Release {
                key: k1.clone(),
                reason: ReleaseReason::Forgotten
            }]
        );
        o.ended(&k1, &Ended::Stopped, 20);
        o.ended(&k2, &Ended::LeaseBusy, 20);
        assert!(o.decide(1_000, 10).is_empty());
        assert_eq!(claims(&o.decide(3_020, 10)), 1);
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
}
