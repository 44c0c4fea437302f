//! Payload types of every subject and KV value (DESIGN.md section 2). Each type names its
//! subject or bucket, its publisher and its readers. Encode them with [`crate::codec`].

use serde::{Deserialize, Serialize};

use crate::relay_url::RelayUrl;
use crate::status::{
    AttemptResult, ConnectionStatus, Health, Layer, Outcome, SyncMethod, SyncPlan,
};

/// Everything on `<prefix>.v1.relay.<relay>.*` (stream RELAYS). Published by discovery,
/// connector and batch-tracker; read by batch-tracker, metrics-exporter and `ngit-sync watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelayNews {
    pub relay: RelayUrl,
    /// Publisher's wall clock, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub body: RelayBody,
}

/// What happened to a relay; the variant decides the subject suffix ([`RelayBody::suffix`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayBody {
    /// discovery: a relay is now to be synced.
    Discovered { bootstrap: bool, repos: u32 },
    /// discovery: no repo lists the relay any more and it is not bootstrap.
    Forgotten,
    /// connector: this worker holds the relay's lease.
    Claimed { worker: String },
    /// connector: this worker gave the relay up (shutdown, rebalance, forgotten).
    Released { worker: String, reason: String },
    /// connector: a connection attempt started or ended.
    Attempted {
        worker: String,
        attempt: u32,
        result: AttemptResult,
        error: Option<String>,
    },
    /// connector: a session is open.
    Connected {
        worker: String,
        session: String,
        plan: SyncPlan,
    },
    /// connector: a session ended.
    Disconnected {
        worker: String,
        session: String,
        reason: String,
    },
    /// connector: a historic batch started.
    BatchOpened(BatchOpened),
    /// connector: one page of a historic batch ended (REQ pagination or negentropy round).
    BatchPage {
        batch: String,
        session: String,
        page: u32,
        events_seen: u64,
    },
    /// connector: every event of the batch was received and published; `last_seq` is the
    /// events-stream sequence of the last event it published (0 when none).
    BatchConfirmed {
        batch: String,
        session: String,
        events_seen: u64,
        last_seq: u64,
    },
    /// connector: the batch could not complete.
    BatchFailed {
        batch: String,
        session: String,
        events_seen: u64,
        last_seq: u64,
        reason: String,
    },
    /// connector: events from this relay that were dropped since the last report, by reason
    /// (sent with batch pages and confirmations, and periodically while any are dropped).
    Dropped(DroppedEvents),
    /// connector: health changed or was re-stated.
    Health(HealthReport),
    /// batch-tracker: the relay's ConnectionStatus changed.
    Status(StatusReport),
    /// connector: every target change discovery had written when its watermark reached
    /// `watermark` is in the session's batches (opened, or nothing to open), so the layers
    /// that the session's events up to that sequence unlock are open already. Sent once the
    /// watermark covers the session's landed batches (ARCHITECTURE.md "Landing watermark").
    TargetsApplied { session: String, watermark: u64 },
}

impl RelayBody {
    /// Subject suffix after `<prefix>.v1.relay.<relay>.`.
    pub fn suffix(&self) -> &'static str {
        match self {
            Self::Discovered { .. } => "discovered",
            Self::Forgotten => "forgotten",
            Self::Claimed { .. } => "claimed",
            Self::Released { .. } => "released",
            Self::Attempted { .. } => "attempted",
            Self::Connected { .. } => "connected",
            Self::Disconnected { .. } => "disconnected",
            Self::BatchOpened(_) => "batch.opened",
            Self::BatchPage { .. } => "batch.page",
            Self::BatchConfirmed { .. } => "batch.confirmed",
            Self::BatchFailed { .. } => "batch.failed",
            Self::Dropped(_) => "dropped",
            Self::Health(_) => "health",
            Self::Status(_) => "status",
            Self::TargetsApplied { .. } => "targets.applied",
        }
    }

    /// The batch id, for the `Ngit-Batch` header.
    pub fn batch(&self) -> Option<&str> {
        match self {
            Self::BatchOpened(b) => Some(&b.batch),
            Self::BatchPage { batch, .. }
            | Self::BatchConfirmed { batch, .. }
            | Self::BatchFailed { batch, .. } => Some(batch),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOpened {
    pub batch: String,
    pub session: String,
    pub layer: Layer,
    pub method: SyncMethod,
    /// Filters in the batch.
    pub filters: u32,
    /// Coordinates or ids the batch covers (0 for L1).
    pub items: u32,
}

/// Counts of events a connector refused from one relay (DESIGN.md section 9); each a delta.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DroppedEvents {
    pub bad_id: u64,
    pub bad_signature: u64,
    /// Valid events matching no filter we sent on that subscription.
    pub unrequested: u64,
    pub oversized: u64,
    /// Frames that are not nostr relay messages, or events that do not parse.
    pub malformed: u64,
}

impl DroppedEvents {
    pub fn total(&self) -> u64 {
        self.bad_id + self.bad_signature + self.unrequested + self.oversized + self.malformed
    }

    /// `(reason label, count)` pairs, for metrics.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("bad_id", self.bad_id),
            ("bad_signature", self.bad_signature),
            ("unrequested", self.unrequested),
            ("oversized", self.oversized),
            ("malformed", self.malformed),
        ]
    }
}

/// Health of one relay as its owning connector sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub state: Health,
    pub consecutive_failures: u32,
    pub next_attempt_ms: Option<u64>,
    pub rate_limited_until_ms: Option<u64>,
}

/// batch-tracker's view of one relay: on `.status` and in `ngit_sync_status` (key: relay key).
/// Read by metrics-exporter, `ngit-sync status` and operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub status: ConnectionStatus,
    pub since_ms: u64,
    pub session: Option<String>,
    pub open_batches: u32,
    pub failed_batches: u32,
    pub owner: Option<String>,
    pub health: Option<HealthReport>,
}

/// One event received from a remote relay, on `<prefix>.v1.event.<relay>.<kind>` (stream EVENTS,
/// `Nats-Msg-Id` = event id). Published by connector, consumed by sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncedEvent {
    pub relay: RelayUrl,
    pub received_ms: u64,
    /// The event's JSON text exactly as verified (never re-encoded).
    pub event: String,
}

/// Final answers of the home relay, on `<prefix>.v1.sink.<outcome>` (stream OUTCOMES).
/// Published by sink; read by discovery (index, watermark) and metrics-exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeBatch {
    pub outcome: Outcome,
    /// Every events-stream sequence at or below this has its outcome in this or an earlier batch.
    pub watermark: u64,
    pub items: Vec<OutcomeItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeItem {
    /// Event id, hex.
    pub id: String,
    pub kind: u16,
    /// Events-stream sequence of the message that carried the event.
    pub seq: u64,
    pub relay: RelayUrl,
    /// The home relay's message for duplicates and rejections.
    pub reason: Option<String>,
    /// The event JSON for kinds discovery reads (announcements and root events); for other
    /// kinds a sketch of it, content emptied (the home index needs time, kind and tags).
    pub event: Option<String>,
}

/// `ngit_sync_repos`, key [`crate::nip34::RepoKey`]: a repository we sync. Written by discovery;
/// watched by connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoEntry {
    /// `30617:<pubkey>:<d>`.
    pub coord: String,
    pub relays: Vec<RelayUrl>,
}

/// `ngit_sync_repos`, key `<repo key>.<event id>`: a root event (patch, PR, issue) of a repo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootEntry {
    pub coord: String,
    pub id: String,
    pub kind: u16,
}

/// `ngit_sync_relays`, key relay key: a relay to sync. Written by discovery; watched by connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEntry {
    pub url: RelayUrl,
    pub bootstrap: bool,
    pub repos: u32,
}

/// `ngit_sync_workers`, key worker id: a live connector (heartbeat, bucket TTL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEntry {
    pub worker: String,
    pub started_ms: u64,
    pub relays: u32,
}

/// `ngit_sync_leases`, key relay key: who syncs the relay (compare-and-set, bucket TTL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEntry {
    pub worker: String,
    pub relay: RelayUrl,
    pub since_ms: u64,
}

/// `ngit_sync_relay_state`, key relay key: what a connector must know to continue a relay
/// where the previous owner stopped. Written and read by connector; read by `ngit-sync status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RelayState {
    /// Repo coordinates whose L2 history is confirmed.
    pub confirmed_repos: Vec<String>,
    /// Root event ids whose L3 history is confirmed.
    pub confirmed_roots: Vec<String>,
    /// L1 history confirmed.
    pub confirmed_l1: bool,
    pub last_connected_ms: Option<u64>,
    pub disconnected_ms: Option<u64>,
    /// Health tracker snapshot.
    pub health: Option<HealthSnapshot>,
    /// `Some(false)` once the relay showed it does not speak NIP-77.
    pub negentropy: Option<bool>,
    /// When the next daily reconciliation is due.
    pub daily_due_ms: Option<u64>,
}

/// What the health tracker persists so backoff carries over to a new owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HealthSnapshot {
    pub consecutive_failures: u32,
    pub failing_since_ms: Option<u64>,
    pub next_attempt_ms: Option<u64>,
    pub rate_limited_until_ms: Option<u64>,
    pub connected_since_ms: Option<u64>,
}

/// Key of the sink's watermark in `ngit_sync_watermarks`.
pub const WATERMARK_SINK: &str = "sink";
/// Key of discovery's watermark in `ngit_sync_watermarks`.
pub const WATERMARK_DISCOVERY: &str = "discovery";

/// `ngit_sync_watermarks`, keys [`WATERMARK_SINK`] and [`WATERMARK_DISCOVERY`]: an events-stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub seq: u64,
    pub at_ms: u64,
}

/// Request on `<prefix>.v1.index.items` (core NATS, queue group): negentropy items of the home
/// index that match any of these filters. Sent by connector, answered by discovery with
/// [`IndexItemsChunk`] messages to the reply subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexItemsRequest {
    /// Filters as nostr JSON.
    pub filters: Vec<String>,
}

/// [`IndexItemsChunk::error`] while discovery has not read the home relay's history yet:
/// ask again shortly rather than fall back to REQ.
pub const INDEX_NOT_READY: &str = "not ready";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexItemsChunk {
    pub chunk: u32,
    pub last: bool,
    /// `(created_at, id hex)`.
    pub items: Vec<(u64, String)>,
    pub error: Option<String>,
}

/// Milliseconds since the Unix epoch, the time unit of every message.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
