//! What batch-tracker knows about one relay and how each piece of news moves its status
//! (DESIGN.md section 6). Pure: time comes in as `now_ms`.

use std::collections::BTreeMap;

use ngit_sync_shared::messages::{HealthReport, RelayBody, StatusReport};
use ngit_sync_shared::status::{AttemptResult, ConnectionStatus, Layer};
use ngit_sync_shared::RelayUrl;

/// One relay's status and the session facts the Syncing → Connected rule needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayTrack {
    url: RelayUrl,
    status: ConnectionStatus,
    since_ms: u64,
    /// The live session; `None` while Disconnected or Connecting.
    session: Option<String>,
    /// Batches of the session still open: id → layer (their `last_seq` is not known yet).
    open: BTreeMap<String, Layer>,
    /// Highest `last_seq` of the session's ended (confirmed or failed) batches: discovery's
    /// watermark must reach it before the relay may complete.
    landed_seq: u64,
    /// Highest watermark up to which the owner says the session's batches reflect every
    /// target change (`targets.applied`); it too must reach `landed_seq`.
    applied_seq: u64,
    failed: u32,
    /// The session's L1 batch ended. Until it has, an empty `open` only means the batches
    /// have not been opened yet.
    l1_done: bool,
    owner: Option<String>,
    health: Option<HealthReport>,
    /// Since when the completion condition has held without a break.
    quiet_since: Option<u64>,
}

impl RelayTrack {
    pub fn new(url: RelayUrl, now_ms: u64) -> RelayTrack {
        RelayTrack {
            url,
            status: ConnectionStatus::Disconnected,
            since_ms: now_ms,
            session: None,
            open: BTreeMap::new(),
            landed_seq: 0,
            applied_seq: 0,
            failed: 0,
            l1_done: false,
            owner: None,
            health: None,
            quiet_since: None,
        }
    }

    /// A relay as the status bucket last showed it, before the stream is replayed.
    ///
    /// The stream keeps 24 h, so a session older than that has no `connected` or
    /// `batch.opened` left in it: its L1 batch is long over, and any batch still open would
    /// be replayed. Hence `l1_done` and no open batches; a replayed `connected` resets both.
    pub fn seeded(url: RelayUrl, report: &StatusReport) -> RelayTrack {
        let live = report.session.is_some() && is_live(report.status);
        RelayTrack {
            url,
            status: report.status,
            since_ms: report.since_ms,
            session: if live { report.session.clone() } else { None },
            open: BTreeMap::new(),
            landed_seq: 0,
            applied_seq: 0,
            failed: if live { report.failed_batches } else { 0 },
            l1_done: live,
            owner: report.owner.clone(),
            health: report.health.clone(),
            quiet_since: None,
        }
    }

    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    pub fn status(&self) -> ConnectionStatus {
        self.status
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    pub fn is_quieting(&self) -> bool {
        self.quiet_since.is_some()
    }

    pub fn report(&self) -> StatusReport {
        StatusReport {
            status: self.status,
            since_ms: self.since_ms,
            session: self.session.clone(),
            open_batches: self.open.len() as u32,
            failed_batches: self.failed,
            owner: self.owner.clone(),
            health: self.health.clone(),
        }
    }

    /// Keeps `since_ms` of an equal status found in the bucket, so a replay that reached the
    /// same status by a slightly different clock does not move it.
    pub fn adopt_since(&mut self, status: ConnectionStatus, since_ms: u64) {
        if self.status == status {
            self.since_ms = since_ms;
        }
    }

    /// Applies one message; [`RelayTrack::settle`] must follow.
    pub fn apply(&mut self, body: &RelayBody, now_ms: u64) {
        match body {
            RelayBody::Claimed { worker } => self.owner = Some(worker.clone()),
            RelayBody::Released { worker, .. } => {
                if self.owner.as_ref().is_none_or(|o| o == worker) {
                    self.owner = None;
                    self.end_session(ConnectionStatus::Disconnected, now_ms);
                }
            }
            RelayBody::Attempted { result, .. } => match result {
                AttemptResult::Started => self.end_session(ConnectionStatus::Connecting, now_ms),
                AttemptResult::Failure => self.end_session(ConnectionStatus::Disconnected, now_ms),
                // `connected` follows (or came first) and is what opens the session.
                AttemptResult::Success => {}
            },
            RelayBody::Connected {
                worker, session, ..
            } => {
                self.end_session(ConnectionStatus::Syncing, now_ms);
                self.session = Some(session.clone());
                self.owner = Some(worker.clone());
            }
            RelayBody::Disconnected { session, .. } => {
                if self.is_current(session) {
                    self.end_session(ConnectionStatus::Disconnected, now_ms);
                }
            }
            RelayBody::BatchOpened(b) => {
                if self.is_current(&b.session) {
                    self.open.insert(b.batch.clone(), b.layer);
                    self.set_status(ConnectionStatus::Syncing, now_ms);
                }
            }
            RelayBody::BatchConfirmed {
                batch,
                session,
                last_seq,
                ..
            } => {
                if self.is_current(session) {
                    self.batch_ended(batch, *last_seq);
                }
            }
            RelayBody::BatchFailed {
                batch,
                session,
                last_seq,
                ..
            } => {
                if self.is_current(session) {
                    self.failed += 1;
                    self.batch_ended(batch, *last_seq);
                }
            }
            RelayBody::TargetsApplied { session, watermark } => {
                if self.is_current(session) {
                    self.applied_seq = self.applied_seq.max(*watermark);
                }
            }
            RelayBody::Health(h) => self.health = Some(h.clone()),
            // Forgotten is the machine's (it removes the relay); the rest say nothing about
            // the status, and `.status` is our own output.
            RelayBody::Forgotten
            | RelayBody::Discovered { .. }
            | RelayBody::BatchPage { .. }
            | RelayBody::Dropped(_)
            | RelayBody::Status(_) => {}
        }
    }

    /// The owner's lease is gone (deleted or expired): nobody syncs the relay any more.
    /// `worker` is the lease's last holder when known. Returns whether it applied.
    pub fn lease_lost(&mut self, worker: Option<&str>, now_ms: u64) -> bool {
        let Some(owner) = self.owner.as_deref() else {
            return false;
        };
        if worker.is_some_and(|w| w != owner) {
            return false;
        }
        self.owner = None;
        self.end_session(ConnectionStatus::Disconnected, now_ms);
        true
    }

    /// Runs the completion rule: Syncing → Connected (or ConnectedDegraded) once no batch is
    /// open, the L1 batch ended, discovery's watermark covers every landed batch and the owner
    /// said its batches reflect the targets up to there, and that has held for `quiet_ms`.
    pub fn settle(&mut self, watermark: u64, quiet_ms: u64, now_ms: u64) {
        let complete = self.status == ConnectionStatus::Syncing
            && self.open.is_empty()
            && self.l1_done
            && watermark >= self.landed_seq
            && self.applied_seq >= self.landed_seq;
        if !complete {
            self.quiet_since = None;
            return;
        }
        let since = *self.quiet_since.get_or_insert(now_ms);
        let done_at = since.saturating_add(quiet_ms);
        if now_ms >= done_at {
            self.quiet_since = None;
            let status = if self.failed > 0 {
                ConnectionStatus::ConnectedDegraded
            } else {
                ConnectionStatus::Connected
            };
            // The moment the quiet period ended, not the tick that noticed it, so a replay
            // that ticks at other instants lands on the same time.
            self.set_status(status, done_at);
        }
    }

    fn is_current(&self, session: &str) -> bool {
        self.session.as_deref() == Some(session)
    }

    fn batch_ended(&mut self, batch: &str, last_seq: u64) {
        // A batch we never saw open (its `opened` aged out of the stream) still counts for
        // the watermark; only the L1 batch's layer matters and it comes from `opened`.
        if self.open.remove(batch) == Some(Layer::L1) {
            self.l1_done = true;
        }
        self.landed_seq = self.landed_seq.max(last_seq);
    }

    /// Leaves the session (batches of it no longer count) and takes `status`.
    fn end_session(&mut self, status: ConnectionStatus, now_ms: u64) {
        self.session = None;
        self.open.clear();
        self.landed_seq = 0;
        self.applied_seq = 0;
        self.failed = 0;
        self.l1_done = false;
        self.quiet_since = None;
        self.set_status(status, now_ms);
    }

    fn set_status(&mut self, status: ConnectionStatus, at_ms: u64) {
        if self.status != status {
            self.status = status;
            self.since_ms = at_ms;
        }
    }
}

/// Statuses that have a session.
fn is_live(status: ConnectionStatus) -> bool {
    matches!(
        status,
        ConnectionStatus::Syncing
            | ConnectionStatus::Connected
            | ConnectionStatus::ConnectedDegraded
    )
}

#[cfg(test)]
mod tests;
