//! What the exporter knows of one relay: its batch-tracker status, its health, its connection
//! attempts, dropped events and open batches.

use std::collections::HashMap;

use ngit_sync_shared::messages::{DroppedEvents, HealthReport, RelayBody, StatusReport};
use ngit_sync_shared::status::{AttemptResult, ConnectionStatus, Layer, SyncMethod};
use ngit_sync_shared::RelayUrl;

/// How a historic batch ended (label `result` of `ngit_sync_batches_total`, with `opened`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BatchResult {
    Opened,
    Confirmed,
    Failed,
}

impl BatchResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Confirmed => "confirmed",
            Self::Failed => "failed",
        }
    }
}

/// A batch between `batch.opened` and its end; `batch.confirmed` carries no layer or method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub session: String,
    pub layer: Layer,
    pub method: SyncMethod,
    pub opened_ms: u64,
}

/// What one relay message did to the batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchChange {
    Opened(Layer, SyncMethod),
    Ended(OpenBatch, BatchResult, u64),
}

#[derive(Debug, Clone, Default)]
pub struct RelayView {
    pub url: Option<RelayUrl>,
    /// Forgotten by discovery: the relay keeps no series until it is discovered again.
    pub forgotten: bool,
    /// batch-tracker's report from `ngit_sync_status`, with the KV entry's timestamp.
    status: Option<(StatusReport, u64)>,
    /// The connector's last `.health` message, with its `at_ms`.
    health: Option<(HealthReport, u64)>,
    pub attempts_success: u64,
    pub attempts_failure: u64,
    pub dropped: DroppedEvents,
    open: HashMap<String, OpenBatch>,
}

impl RelayView {
    /// Drops everything learned from relay messages; the KV status stays (it is current truth
    /// and matters again if the relay is discovered anew).
    pub fn forget(&mut self) {
        self.forgotten = true;
        self.health = None;
        self.attempts_success = 0;
        self.attempts_failure = 0;
        self.dropped = DroppedEvents::default();
        self.open.clear();
    }

    pub fn set_status(&mut self, report: Option<StatusReport>, at_ms: u64) {
        self.status = report.map(|r| (r, at_ms));
    }

    pub fn status_report(&self) -> Option<&StatusReport> {
        self.status.as_ref().map(|(r, _)| r)
    }

    pub fn status(&self) -> ConnectionStatus {
        self.status_report().map(|r| r.status).unwrap_or_default()
    }

    /// The newer of the connector's `.health` message and the health batch-tracker put into
    /// its status report: the stream replays old messages while KV already holds new values,
    /// so arrival order says nothing.
    pub fn health(&self) -> Option<&HealthReport> {
        let from_status = self
            .status
            .as_ref()
            .and_then(|(r, at)| r.health.as_ref().map(|h| (h, *at)));
        let from_news = self.health.as_ref().map(|(h, at)| (h, *at));
        match (from_news, from_status) {
            (Some((n, n_at)), Some((s, s_at))) => Some(if s_at > n_at { s } else { n }),
            (Some((h, _)), None) | (None, Some((h, _))) => Some(h),
            (None, None) => None,
        }
    }

    /// Applies one message of the connector about this relay.
    pub fn apply(&mut self, body: &RelayBody, at_ms: u64) -> Option<BatchChange> {
        match body {
            RelayBody::Attempted { result, .. } => {
                match result {
                    AttemptResult::Success => self.attempts_success += 1,
                    AttemptResult::Failure => self.attempts_failure += 1,
                    AttemptResult::Started => {}
                }
                None
            }
            RelayBody::Health(h) => {
                self.health = Some((h.clone(), at_ms));
                None
            }
            RelayBody::Dropped(d) => {
                add_dropped(&mut self.dropped, d);
                None
            }
            RelayBody::Connected { session, .. } => {
                // Batches of older sessions can never end now.
                self.open.retain(|_, b| &b.session == session);
                None
            }
            RelayBody::Disconnected { .. } | RelayBody::Released { .. } => {
                self.open.clear();
                None
            }
            RelayBody::BatchOpened(b) => {
                let open = OpenBatch {
                    session: b.session.clone(),
                    layer: b.layer,
                    method: b.method,
                    opened_ms: at_ms,
                };
                self.open.insert(b.batch.clone(), open);
                Some(BatchChange::Opened(b.layer, b.method))
            }
            RelayBody::BatchConfirmed { batch, .. } => self
                .open
                .remove(batch)
                .map(|b| BatchChange::Ended(b, BatchResult::Confirmed, at_ms)),
            RelayBody::BatchFailed { batch, .. } => self
                .open
                .remove(batch)
                .map(|b| BatchChange::Ended(b, BatchResult::Failed, at_ms)),
            RelayBody::Discovered { .. }
            | RelayBody::Forgotten
            | RelayBody::Claimed { .. }
            | RelayBody::BatchPage { .. }
            | RelayBody::TargetsApplied { .. }
            | RelayBody::Status(_) => None,
        }
    }
}

fn add_dropped(total: &mut DroppedEvents, delta: &DroppedEvents) {
    total.bad_id += delta.bad_id;
    total.bad_signature += delta.bad_signature;
    total.unrequested += delta.unrequested;
    total.oversized += delta.oversized;
    total.malformed += delta.malformed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::messages::BatchOpened;
    use ngit_sync_shared::status::Health;

    fn health(state: Health, failures: u32) -> HealthReport {
        HealthReport {
            state,
            consecutive_failures: failures,
            next_attempt_ms: None,
            rate_limited_until_ms: None,
        }
    }

    fn status_with(h: Option<HealthReport>) -> StatusReport {
        StatusReport {
            status: ConnectionStatus::Connected,
            since_ms: 1,
            session: None,
            open_batches: 0,
            failed_batches: 0,
            owner: None,
            health: h,
        }
    }

    #[test]
    fn the_newer_health_wins_whatever_the_arrival_order() {
        let mut r = RelayView::default();
        r.set_status(Some(status_with(Some(health(Health::Healthy, 0)))), 2_000);
        r.apply(&RelayBody::Health(health(Health::Degraded, 3)), 1_000);
        assert_eq!(r.health().unwrap().state, Health::Healthy);
        r.apply(&RelayBody::Health(health(Health::Dead, 9)), 3_000);
        assert_eq!(r.health().unwrap().state, Health::Dead);
        r.set_status(Some(status_with(None)), 4_000);
        assert_eq!(r.health().unwrap().state, Health::Dead);
    }

    #[test]
    fn batches_end_once_and_die_with_their_session() {
        let mut r = RelayView::default();
        let opened = |batch: &str, session: &str| {
            RelayBody::BatchOpened(BatchOpened {
                batch: batch.into(),
                session: session.into(),
                layer: Layer::L2,
                method: SyncMethod::Negentropy,
                filters: 3,
                items: 100,
            })
        };
        let confirmed = |batch: &str| RelayBody::BatchConfirmed {
            batch: batch.into(),
            session: "s1".into(),
            events_seen: 0,
            last_seq: 0,
        };
        assert_eq!(
            r.apply(&opened("b1", "s1"), 1_000),
            Some(BatchChange::Opened(Layer::L2, SyncMethod::Negentropy))
        );
        let Some(BatchChange::Ended(b, BatchResult::Confirmed, 4_000)) =
            r.apply(&confirmed("b1"), 4_000)
        else {
            panic!("b1 must end confirmed");
        };
        assert_eq!(b.opened_ms, 1_000);
        assert_eq!(r.apply(&confirmed("b1"), 5_000), None);

        r.apply(&opened("b2", "s1"), 6_000);
        r.apply(&opened("b3", "s2"), 6_000);
        r.apply(
            &RelayBody::Connected {
                worker: "w".into(),
                session: "s2".into(),
                plan: ngit_sync_shared::status::SyncPlan::Quick,
            },
            7_000,
        );
        assert_eq!(r.apply(&confirmed("b2"), 8_000), None);
        assert!(r.apply(&confirmed("b3"), 8_000).is_some());
    }

    #[test]
    fn only_finished_attempts_count_and_forgetting_clears_them() {
        let mut r = RelayView::default();
        for result in [
            AttemptResult::Started,
            AttemptResult::Failure,
            AttemptResult::Started,
            AttemptResult::Success,
        ] {
            r.apply(
                &RelayBody::Attempted {
                    worker: "w".into(),
                    attempt: 1,
                    result,
                    error: None,
                },
                1,
            );
        }
        assert_eq!((r.attempts_success, r.attempts_failure), (1, 1));
        r.apply(
            &RelayBody::Dropped(DroppedEvents {
                bad_signature: 2,
                ..Default::default()
            }),
            1,
        );
        assert_eq!(r.dropped.total(), 2);
        r.forget();
        assert_eq!((r.attempts_success, r.attempts_failure), (0, 0));
        assert_eq!(r.dropped.total(), 0);
        assert!(r.forgotten);
    }
}
