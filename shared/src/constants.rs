//! Every number of DESIGN.md sections 3–6 and 9, named once; configs default to these.

use std::time::Duration;

/// Subject, stream and bucket prefix unless `NGIT_SYNC_PREFIX` says otherwise.
pub const DEFAULT_PREFIX: &str = "ngit.sync";
/// Discovery gathers RepoSyncIndex changes for this long before publishing them.
pub const DISCOVERY_WINDOW: Duration = Duration::from_secs(5);
/// ...but writes them earlier once no change has come for this long (the end of a burst).
pub const DISCOVERY_SETTLE: Duration = Duration::from_millis(250);

/// A worker heartbeat lives this long in `ngit_sync_workers` unless renewed.
pub const WORKER_TTL: Duration = Duration::from_secs(10);
/// A lease lives this long in `ngit_sync_leases` unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// Leases and heartbeats are renewed this often (well inside their TTL).
pub const LEASE_RENEW: Duration = Duration::from_secs(3);
/// A connector stops within this after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// WebSocket connect (TCP + TLS + upgrade) timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Under this since the last disconnect a reconnect keeps confirmed state.
pub const QUICK_RECONNECT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A quick reconnect asks for history from the last connection minus this overlap.
pub const QUICK_RECONNECT_OVERLAP: Duration = Duration::from_secs(10 * 60);
/// A relay that neither answers nor refuses NEG-OPEN for this long does not speak NIP-77.
pub const NEGENTROPY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest negentropy message we send (strfry's default frame limit is 131,072 bytes).
pub const NEGENTROPY_FRAME_LIMIT: usize = 60_000;
/// Page size of historic REQs.
pub const PAGE_LIMIT: usize = 500;
/// A historic batch with no EOSE for this long fails.
pub const BATCH_EOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most filters in one REQ.
pub const MAX_FILTERS_PER_REQ: usize = 20;
/// Most historic subscriptions open at once on one relay.
pub const MAX_HISTORIC_SUBSCRIPTIONS: usize = 20;
/// Past this many live filters on one relay they are consolidated into fewer subscriptions.
pub const LIVE_FILTER_CONSOLIDATION: usize = 70;
/// Values (coordinates, ids) per tag filter.
pub const FILTER_CHUNK: usize = 100;
/// Daily reconciliation of a connected relay happens at a random time in this range.
pub const DAILY_MIN: Duration = Duration::from_secs(23 * 3600);
pub const DAILY_MAX: Duration = Duration::from_secs(25 * 3600);

/// First backoff after a failed attempt; doubles per failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Backoff never grows past this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// Backoff is spread by ± this fraction.
pub const BACKOFF_JITTER: f64 = 0.2;
/// Continuous failure for this long makes a relay Dead.
pub const DEAD_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A Dead relay is tried this often.
pub const DEAD_RETRY: Duration = Duration::from_secs(24 * 3600);
/// No REQ and no reconnect for this long after a relay says `rate-limited:`.
pub const RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(65);
/// A recovered relay is Healthy (and its failure count reset) after this long connected.
pub const STABLE_AFTER: Duration = Duration::from_secs(5 * 60);

/// Quiet time before a relay whose batches all landed turns Connected.
pub const COMPLETION_QUIET: Duration = Duration::from_secs(1);

/// Events larger than this (JSON bytes) are dropped.
pub const MAX_EVENT_BYTES: usize = 512 * 1024;
/// Only this many relay URLs of one announcement are read.
pub const MAX_RELAYS_PER_ANNOUNCEMENT: usize = 1000;

/// JetStream duplicate window of the events stream (`NGIT_SYNC_DEDUP_WINDOW`).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Max age of the RELAYS and OUTCOMES streams.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Sink: first retry of a transient failure; doubles up to `SINK_RETRY_CAP`.
pub const SINK_RETRY_BASE: Duration = Duration::from_millis(500);
pub const SINK_RETRY_CAP: Duration = Duration::from_secs(30);
/// Sink: home relay answer timeout for one EVENT.
pub const SINK_OK_TIMEOUT: Duration = Duration::from_secs(10);
/// Sink: events written to the home relay without an answer yet.
pub const SINK_IN_FLIGHT: usize = 256;

/// Metrics endpoint unless `NGIT_SYNC_METRICS_ADDR` says otherwise.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";
