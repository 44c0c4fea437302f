//! The exporter's picture of the whole system, folded from relay messages, sink outcomes and
//! KV values. A plain state machine: no I/O, time passed in; the metrics and the status page
//! read it back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use ngit_sync_shared::messages::{
    HealthReport, LeaseEntry, OutcomeBatch, RelayBody, RelayEntry, RelayNews, StatusReport,
    Watermark,
};
use ngit_sync_shared::status::{ConnectionStatus, Health, Layer, Outcome, SyncMethod};
use ngit_sync_shared::{RelayKey, RelayUrl};

use crate::expiring::Expiring;
use crate::relay_view::{BatchChange, BatchResult, RelayView};

/// Key of the sink's landing watermark in `ngit_sync_watermarks`.
pub const SINK_WATERMARK: &str = "sink";

/// A historic batch that ended: one observation of `ngit_sync_historic_sync_seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchDone {
    pub layer: Layer,
    pub result: BatchResult,
    pub seconds: f64,
}

/// One relay as the metrics and the status page show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySummary {
    pub url: RelayUrl,
    pub tracked: bool,
    pub status: ConnectionStatus,
    pub since_ms: Option<u64>,
    pub health: Option<HealthReport>,
    pub open_batches: u32,
    pub owner: Option<String>,
    pub attempts_success: u64,
    pub attempts_failure: u64,
    pub dropped: [(&'static str, u64); 5],
}

#[derive(Debug)]
pub struct View {
    relays: HashMap<RelayKey, RelayView>,
    /// Keys of `ngit_sync_relays`.
    tracked: HashSet<RelayKey>,
    outcomes: HashMap<Outcome, u64>,
    batches: HashMap<(Layer, SyncMethod, BatchResult), u64>,
    workers: Expiring<()>,
    leases: Expiring<LeaseEntry>,
    sink_watermark: Option<u64>,
    events_last_seq: Option<u64>,
    /// Connector pool: who claimed each relay last, and how often a relay changed hands.
    claimed_by: HashMap<RelayKey, String>,
    lease_handoffs: u64,
}

impl View {
    /// `worker_ttl` and `lease_ttl` are the max ages of the two expiring buckets.
    pub fn new(worker_ttl: Duration, lease_ttl: Duration) -> View {
        View {
            relays: HashMap::new(),
            tracked: HashSet::new(),
            outcomes: HashMap::new(),
            batches: HashMap::new(),
            workers: Expiring::new(worker_ttl),
            leases: Expiring::new(lease_ttl),
            sink_watermark: None,
            events_last_seq: None,
            claimed_by: HashMap::new(),
            lease_handoffs: 0,
        }
    }

    fn relay(&mut self, key: RelayKey) -> &mut RelayView {
        self.relays.entry(key).or_default()
    }

    fn learn_url(&mut self, url: &RelayUrl) -> &mut RelayView {
        let relay = self.relay(url.key());
        if relay.url.is_none() {
            relay.url = Some(url.clone());
        }
        relay
    }

    /// One message of the RELAYS stream. Returns the batch it ended, if any.
    pub fn apply_news(&mut self, news: &RelayNews) -> Option<BatchDone> {
        self.count_handoff(news);
        let relay = self.learn_url(&news.relay);
        match &news.body {
            RelayBody::Discovered { .. } => {
                relay.forgotten = false;
                return None;
            }
            RelayBody::Forgotten => {
                relay.forget();
                return None;
            }
            // Stragglers after `forgotten` (a late `released`) must not bring series back.
            _ if relay.forgotten => return None,
            _ => {}
        }
        match relay.apply(&news.body, news.at_ms)? {
            BatchChange::Opened(layer, method) => {
                *self
                    .batches
                    .entry((layer, method, BatchResult::Opened))
                    .or_default() += 1;
                None
            }
            BatchChange::Ended(open, result, at_ms) => {
                *self
                    .batches
                    .entry((open.layer, open.method, result))
                    .or_default() += 1;
                Some(BatchDone {
                    layer: open.layer,
                    result,
                    seconds: at_ms.saturating_sub(open.opened_ms) as f64 / 1000.0,
                })
            }
        }
    }

    /// Connector pool: a `claimed` by another worker than the relay's previous claimer is a
    /// handoff (failover, rebalance, or a graceful stop's successor).
    fn count_handoff(&mut self, news: &RelayNews) {
        match &news.body {
            RelayBody::Claimed { worker } => {
                let previous = self.claimed_by.insert(news.relay.key(), worker.clone());
                if previous.is_some_and(|p| p != *worker) {
                    self.lease_handoffs += 1;
                }
            }
            RelayBody::Forgotten => {
                self.claimed_by.remove(&news.relay.key());
            }
            _ => {}
        }
    }

    /// Relays that changed hands between workers (`ngit_sync_lease_handoffs_total`).
    pub fn lease_handoffs(&self) -> u64 {
        self.lease_handoffs
    }

    /// One batch of the OUTCOMES stream.
    pub fn apply_outcomes(&mut self, batch: &OutcomeBatch) {
        *self.outcomes.entry(batch.outcome).or_default() += batch.items.len() as u64;
    }

    pub fn put_relay(&mut self, key: &str, entry: &RelayEntry) {
        let key = RelayKey::from_raw(key);
        self.tracked.insert(key.clone());
        let relay = self.relay(key);
        relay.url = Some(entry.url.clone());
        relay.forgotten = false;
    }

    /// A key deleted from `ngit_sync_relays`: discovery forgot the relay.
    pub fn delete_relay(&mut self, key: &str) {
        let key = RelayKey::from_raw(key);
        self.tracked.remove(&key);
        if let Some(relay) = self.relays.get_mut(&key) {
            relay.forget();
        }
    }

    /// A value of `ngit_sync_status` (`None`: deleted); `at_ms` is the entry's timestamp.
    pub fn put_status(&mut self, key: &str, report: Option<StatusReport>, at_ms: u64) {
        self.relay(RelayKey::from_raw(key))
            .set_status(report, at_ms);
    }

    pub fn put_worker(&mut self, key: &str, at_ms: u64) {
        self.workers.put(key, (), at_ms);
    }

    pub fn delete_worker(&mut self, key: &str) {
        self.workers.delete(key);
    }

    pub fn put_lease(&mut self, key: &str, lease: LeaseEntry, at_ms: u64) {
        self.learn_url(&lease.relay);
        self.leases.put(key, lease, at_ms);
    }

    pub fn delete_lease(&mut self, key: &str) {
        self.leases.delete(key);
    }

    /// A value of `ngit_sync_watermarks` (`None`: deleted).
    pub fn put_watermark(&mut self, key: &str, watermark: Option<Watermark>) {
        if key == SINK_WATERMARK {
            self.sink_watermark = watermark.map(|w| w.seq);
        }
    }

    /// The EVENTS stream's last sequence, read periodically.
    pub fn set_events_last_seq(&mut self, seq: u64) {
        self.events_last_seq = Some(seq);
    }

    /// Forgets expired heartbeats and leases.
    pub fn prune(&mut self, now_ms: u64) {
        self.workers.prune(now_ms);
        self.leases.prune(now_ms);
    }

    /// Every relay that has series: its URL is known and discovery has not forgotten it.
    /// Sorted by URL.
    pub fn relays(&self, now_ms: u64) -> Vec<RelaySummary> {
        let mut out: Vec<RelaySummary> = self
            .relays
            .iter()
            .filter(|(_, r)| !r.forgotten)
            .filter_map(|(key, r)| {
                let report = r.status_report();
                Some(RelaySummary {
                    url: r.url.clone()?,
                    tracked: self.tracked.contains(key),
                    status: r.status(),
                    since_ms: report.map(|s| s.since_ms),
                    health: r.health().cloned(),
                    open_batches: report.map_or(0, |s| s.open_batches),
                    owner: self
                        .leases
                        .get(key.as_str(), now_ms)
                        .map(|l| l.worker.clone())
                        .or_else(|| report.and_then(|s| s.owner.clone())),
                    attempts_success: r.attempts_success,
                    attempts_failure: r.attempts_failure,
                    dropped: r.dropped.by_reason(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.url.cmp(&b.url));
        out
    }

    /// Keys in `ngit_sync_relays`.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// `(layer, method, result, count)` of `batch.*` messages, in a stable order.
    pub fn batches(&self) -> Vec<(Layer, SyncMethod, BatchResult, u64)> {
        let mut out: Vec<_> = self
            .batches
            .iter()
            .map(|(&(l, m, r), &n)| (l, m, r, n))
            .collect();
        out.sort_by_key(|&(l, m, r, _)| (l, m.as_str(), r));
        out
    }

    /// Events in the EVENTS stream without a home relay answer yet; `None` until the stream
    /// was read once.
    pub fn sink_lag(&self) -> Option<u64> {
        let last = self.events_last_seq?;
        Some(last.saturating_sub(self.sink_watermark.unwrap_or(0)))
    }

    /// Live connector workers.
    pub fn workers(&self, now_ms: u64) -> usize {
        self.workers.live(now_ms).count()
    }

    /// Live leases per worker, with 0 for live workers that hold none.
    pub fn relays_per_worker(&self, now_ms: u64) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = self
            .workers
            .live(now_ms)
            .map(|(w, _)| (w.to_string(), 0))
            .collect();
        for (_, lease) in self.leases.live(now_ms) {
            *out.entry(lease.worker.clone()).or_default() += 1;
        }
        out
    }
}

/// Relays with status Syncing or better.
pub fn connected(relays: &[RelaySummary]) -> usize {
    relays
        .iter()
        .filter(|r| r.status.gauge() >= ConnectionStatus::Syncing.gauge())
        .count()
}

/// Relays whose health is Dead.
pub fn dead(relays: &[RelaySummary]) -> usize {
    relays
        .iter()
        .filter(|r| r.health.as_ref().map(|h| h.state) == Some(Health::Dead))
        .count()
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
