//! The connector's settings: shared ones plus pool, session and sync knobs, each overridable
//! by an `NGIT_SYNC_*` environment variable and validated before anything connects.

use std::time::Duration;

use ngit_sync_shared::config::{self as shared_config, Lookup};
use ngit_sync_shared::{constants, CommonConfig, ConfigError};

/// Ack-waiting publishes one session keeps in flight before it stops reading its socket.
pub const DEFAULT_PUBLISH_IN_FLIGHT: usize = 256;
/// Event bytes the whole worker keeps read but unacked before its sessions stop reading.
pub const DEFAULT_PUBLISH_BUDGET_MIB: usize = 16;
/// A failed batch's items are tried again (full history) after this, in the same session.
pub const DEFAULT_BATCH_RETRY: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// This worker's id in `ngit_sync_workers` and in leases (`NGIT_SYNC_WORKER_ID`).
    pub worker_id: String,
    /// Connect to loopback/private addresses (`NGIT_SYNC_ALLOW_PRIVATE_RELAYS`).
    pub allow_private: bool,
    /// WebSocket connect timeout (`NGIT_SYNC_CONNECT_TIMEOUT`).
    pub connect_timeout: Duration,
    /// A historic subscription with no EOSE and no event for this long fails its batch
    /// (`NGIT_SYNC_EOSE_TIMEOUT`).
    pub eose_timeout: Duration,
    /// Events per historic page (`NGIT_SYNC_PAGE_LIMIT`).
    pub page_limit: usize,
    /// Larger event JSON is dropped (`NGIT_SYNC_MAX_EVENT_BYTES`).
    pub max_event_bytes: usize,
    /// Heartbeat and lease renewal period (`NGIT_SYNC_LEASE_RENEW`).
    pub lease_renew: Duration,
    /// A relay disconnected less than this ago continues with its confirmed state
    /// (`NGIT_SYNC_QUICK_RECONNECT_WINDOW`).
    pub quick_reconnect_window: Duration,
    /// A quick reconnect asks history from the last connection minus this
    /// (`NGIT_SYNC_QUICK_RECONNECT_OVERLAP`).
    pub quick_reconnect_overlap: Duration,
    /// First backoff after a failed attempt (`NGIT_SYNC_BACKOFF_BASE`).
    pub backoff_base: Duration,
    /// Backoff ceiling (`NGIT_SYNC_BACKOFF_CAP`).
    pub backoff_cap: Duration,
    /// Connected this long, a relay's failure count resets (`NGIT_SYNC_STABLE_AFTER`).
    pub stable_after: Duration,
    /// Failing continuously this long, a relay is Dead (`NGIT_SYNC_DEAD_AFTER`).
    pub dead_after: Duration,
    /// A Dead relay is tried once per this (`NGIT_SYNC_DEAD_RETRY`).
    pub dead_retry: Duration,
    /// A connected relay gets a fresh start (daily reconciliation) at a random time between
    /// these after its last one (`NGIT_SYNC_DAILY_MIN`, `NGIT_SYNC_DAILY_MAX`).
    pub daily_min: Duration,
    pub daily_max: Duration,
    /// Past this many live filters on one relay they are consolidated
    /// (`NGIT_SYNC_LIVE_FILTER_CONSOLIDATION`).
    pub live_filter_consolidation: usize,
    /// No REQ for this long after a relay says it rate-limits us
    /// (`NGIT_SYNC_RATE_LIMIT_COOLDOWN`).
    pub rate_limit_cooldown: Duration,
    /// Filters per REQ (`NGIT_SYNC_MAX_FILTERS_PER_REQ`).
    pub max_filters_per_req: usize,
    /// Historic subscriptions open at once per relay (`NGIT_SYNC_MAX_HISTORIC_SUBSCRIPTIONS`).
    pub max_historic_subscriptions: usize,
    /// Event publishes awaiting their ack per session (`NGIT_SYNC_PUBLISH_IN_FLIGHT`).
    pub publish_in_flight: usize,
    /// Event bytes read but unacked across all sessions of this worker, in MiB
    /// (`NGIT_SYNC_PUBLISH_BUDGET_MIB`): the connector's memory bound for events in transit.
    pub publish_budget_mib: usize,
    /// Failed batch items are retried after this (`NGIT_SYNC_BATCH_RETRY`).
    pub batch_retry: Duration,
    /// Bound on a graceful stop (`NGIT_SYNC_SHUTDOWN_GRACE`).
    pub shutdown_grace: Duration,
    /// Historic sync tries NIP-77 negentropy first on relays not known to lack it
    /// (`NGIT_SYNC_NEGENTROPY`, default true; false syncs every relay by REQ).
    pub negentropy: bool,
}

impl Config {
    /// Every default of DESIGN.md, with a generated worker id.
    pub fn new(common: CommonConfig) -> Config {
        Config {
            common,
            worker_id: default_worker_id(ngit_sync_shared::host::hostname(&shared_config::env())),
            allow_private: false,
            connect_timeout: constants::CONNECT_TIMEOUT,
            eose_timeout: constants::BATCH_EOSE_TIMEOUT,
            page_limit: constants::PAGE_LIMIT,
            max_event_bytes: constants::MAX_EVENT_BYTES,
            lease_renew: constants::LEASE_RENEW,
            quick_reconnect_window: constants::QUICK_RECONNECT_WINDOW,
            quick_reconnect_overlap: constants::QUICK_RECONNECT_OVERLAP,
            backoff_base: constants::BACKOFF_BASE,
            backoff_cap: constants::BACKOFF_CAP,
            stable_after: constants::STABLE_AFTER,
            dead_after: constants::DEAD_AFTER,
            dead_retry: constants::DEAD_RETRY,
            daily_min: constants::DAILY_MIN,
            daily_max: constants::DAILY_MAX,
            live_filter_consolidation: constants::LIVE_FILTER_CONSOLIDATION,
            rate_limit_cooldown: constants::RATE_LIMIT_COOLDOWN,
            max_filters_per_req: constants::MAX_FILTERS_PER_REQ,
            max_historic_subscriptions: constants::MAX_HISTORIC_SUBSCRIPTIONS,
            publish_in_flight: DEFAULT_PUBLISH_IN_FLIGHT,
            publish_budget_mib: DEFAULT_PUBLISH_BUDGET_MIB,
            batch_retry: DEFAULT_BATCH_RETRY,
            shutdown_grace: constants::SHUTDOWN_GRACE,
            negentropy: true,
        }
    }

    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&shared_config::env())
    }

    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Config, ConfigError> {
        use shared_config::{bool_or, duration_or, parse_or, value};
        let common = CommonConfig::from_lookup(lookup)?;
        let d = Config::new(common.clone());
        let worker_id = match value(lookup, "NGIT_SYNC_WORKER_ID") {
            Some(id) => id,
            None => default_worker_id(ngit_sync_shared::host::hostname(lookup)),
        };
        let config = Config {
            common,
            worker_id,
            allow_private: bool_or(lookup, "NGIT_SYNC_ALLOW_PRIVATE_RELAYS", d.allow_private)?,
            connect_timeout: duration_or(lookup, "NGIT_SYNC_CONNECT_TIMEOUT", d.connect_timeout)?,
            eose_timeout: duration_or(lookup, "NGIT_SYNC_EOSE_TIMEOUT", d.eose_timeout)?,
            page_limit: parse_or(lookup, "NGIT_SYNC_PAGE_LIMIT", d.page_limit)?,
            max_event_bytes: parse_or(lookup, "NGIT_SYNC_MAX_EVENT_BYTES", d.max_event_bytes)?,
            lease_renew: duration_or(lookup, "NGIT_SYNC_LEASE_RENEW", d.lease_renew)?,
            quick_reconnect_window: duration_or(
                lookup,
                "NGIT_SYNC_QUICK_RECONNECT_WINDOW",
                d.quick_reconnect_window,
            )?,
            quick_reconnect_overlap: duration_or(
                lookup,
                "NGIT_SYNC_QUICK_RECONNECT_OVERLAP",
                d.quick_reconnect_overlap,
            )?,
            backoff_base: duration_or(lookup, "NGIT_SYNC_BACKOFF_BASE", d.backoff_base)?,
            backoff_cap: duration_or(lookup, "NGIT_SYNC_BACKOFF_CAP", d.backoff_cap)?,
            stable_after: duration_or(lookup, "NGIT_SYNC_STABLE_AFTER", d.stable_after)?,
            dead_after: duration_or(lookup, "NGIT_SYNC_DEAD_AFTER", d.dead_after)?,
            dead_retry: duration_or(lookup, "NGIT_SYNC_DEAD_RETRY", d.dead_retry)?,
            daily_min: duration_or(lookup, "NGIT_SYNC_DAILY_MIN", d.daily_min)?,
            daily_max: duration_or(lookup, "NGIT_SYNC_DAILY_MAX", d.daily_max)?,
            live_filter_consolidation: parse_or(
                lookup,
                "NGIT_SYNC_LIVE_FILTER_CONSOLIDATION",
                d.live_filter_consolidation,
            )?,
            rate_limit_cooldown: duration_or(
                lookup,
                "NGIT_SYNC_RATE_LIMIT_COOLDOWN",
                d.rate_limit_cooldown,
            )?,
            max_filters_per_req: parse_or(
                lookup,
                "NGIT_SYNC_MAX_FILTERS_PER_REQ",
                d.max_filters_per_req,
            )?,
            max_historic_subscriptions: parse_or(
                lookup,
                "NGIT_SYNC_MAX_HISTORIC_SUBSCRIPTIONS",
                d.max_historic_subscriptions,
            )?,
            publish_in_flight: parse_or(
                lookup,
                "NGIT_SYNC_PUBLISH_IN_FLIGHT",
                d.publish_in_flight,
            )?,
            publish_budget_mib: parse_or(
                lookup,
                "NGIT_SYNC_PUBLISH_BUDGET_MIB",
                d.publish_budget_mib,
            )?,
            batch_retry: duration_or(lookup, "NGIT_SYNC_BATCH_RETRY", d.batch_retry)?,
            shutdown_grace: duration_or(lookup, "NGIT_SYNC_SHUTDOWN_GRACE", d.shutdown_grace)?,
            negentropy: bool_or(lookup, "NGIT_SYNC_NEGENTROPY", d.negentropy)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the relations between settings; `from_lookup` calls it, tests building the
    /// struct by hand may too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |var: &str, message: String| Err(ConfigError::new(var, message));
        if !is_valid_kv_key(&self.worker_id) {
            return fail(
                "NGIT_SYNC_WORKER_ID",
                format!(
                    "{:?} must be 1-200 characters of [A-Za-z0-9_=-]",
                    self.worker_id
                ),
            );
        }
        let positive = [
            ("NGIT_SYNC_CONNECT_TIMEOUT", self.connect_timeout),
            ("NGIT_SYNC_EOSE_TIMEOUT", self.eose_timeout),
            ("NGIT_SYNC_LEASE_RENEW", self.lease_renew),
            ("NGIT_SYNC_BACKOFF_BASE", self.backoff_base),
            ("NGIT_SYNC_SHUTDOWN_GRACE", self.shutdown_grace),
            ("NGIT_SYNC_DEAD_RETRY", self.dead_retry),
            ("NGIT_SYNC_DAILY_MIN", self.daily_min),
        ];
        for (var, value) in positive {
            if value.is_zero() {
                return fail(var, "must be more than zero".into());
            }
        }
        let counts = [
            ("NGIT_SYNC_PAGE_LIMIT", self.page_limit),
            ("NGIT_SYNC_MAX_EVENT_BYTES", self.max_event_bytes),
            ("NGIT_SYNC_MAX_FILTERS_PER_REQ", self.max_filters_per_req),
            (
                "NGIT_SYNC_MAX_HISTORIC_SUBSCRIPTIONS",
                self.max_historic_subscriptions,
            ),
            ("NGIT_SYNC_PUBLISH_IN_FLIGHT", self.publish_in_flight),
            ("NGIT_SYNC_PUBLISH_BUDGET_MIB", self.publish_budget_mib),
            (
                "NGIT_SYNC_LIVE_FILTER_CONSOLIDATION",
                self.live_filter_consolidation,
            ),
        ];
        for (var, value) in counts {
            if value == 0 {
                return fail(var, "must be at least 1".into());
            }
        }
        if self.backoff_cap < self.backoff_base {
            return fail(
                "NGIT_SYNC_BACKOFF_CAP",
                format!(
                    "{:?} is below NGIT_SYNC_BACKOFF_BASE {:?}",
                    self.backoff_cap, self.backoff_base
                ),
            );
        }
        if self.daily_max < self.daily_min {
            return fail(
                "NGIT_SYNC_DAILY_MAX",
                format!(
                    "{:?} is below NGIT_SYNC_DAILY_MIN {:?}",
                    self.daily_max, self.daily_min
                ),
            );
        }
        // A renewal must land well inside the TTL, or a live worker loses its leases.
        let ttl = self.common.bus.lease_ttl.min(self.common.bus.worker_ttl);
        if self.lease_renew * 2 > ttl {
            return fail(
                "NGIT_SYNC_LEASE_RENEW",
                format!(
                    "{:?} must be at most half the lease/worker TTL {ttl:?}",
                    self.lease_renew
                ),
            );
        }
        Ok(())
    }
}

/// Characters NATS KV accepts in a key, minus `.` and `/` so the id is one plain token.
fn is_valid_kv_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '='))
}

/// `<hostname>-<pid>-<4 random hex>`: readable, and unique even for two processes in
/// containers that share a hostname and a pid.
fn default_worker_id(hostname: Option<String>) -> String {
    let host = hostname.unwrap_or_else(|| "connector".to_string());
    let host: String = host
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::config::lookup_from as map;

    #[test]
    fn defaults_come_from_the_design_constants() {
        let c = Config::from_lookup(&map(&[("HOSTNAME", "box.example")])).unwrap();
        assert_eq!(c.page_limit, 500);
        assert_eq!(c.eose_timeout, Duration::from_secs(60));
        assert_eq!(c.max_event_bytes, 512 * 1024);
        assert_eq!(c.dead_after, Duration::from_secs(24 * 3600));
        assert_eq!(c.dead_retry, Duration::from_secs(24 * 3600));
        assert_eq!(
            (c.daily_min, c.daily_max),
            (
                Duration::from_secs(23 * 3600),
                Duration::from_secs(25 * 3600)
            )
        );
        assert_eq!(c.rate_limit_cooldown, Duration::from_secs(65));
        assert_eq!(c.stable_after, Duration::from_secs(300));
        assert_eq!(c.live_filter_consolidation, 70);
        assert!(!c.allow_private);
        assert!(c.worker_id.starts_with("box_example-"), "{}", c.worker_id);
        assert!(is_valid_kv_key(&c.worker_id));
    }

    #[test]
    fn every_knob_reads_its_variable() {
        let c = Config::from_lookup(&map(&[
            ("NGIT_SYNC_WORKER_ID", "w1"),
            ("NGIT_SYNC_ALLOW_PRIVATE_RELAYS", "true"),
            ("NGIT_SYNC_EOSE_TIMEOUT", "2s"),
            ("NGIT_SYNC_PAGE_LIMIT", "50"),
            ("NGIT_SYNC_BACKOFF_BASE", "100ms"),
            ("NGIT_SYNC_BACKOFF_CAP", "1s"),
            ("NGIT_SYNC_RATE_LIMIT_COOLDOWN", "300ms"),
            ("NGIT_SYNC_DEAD_AFTER", "3s"),
            ("NGIT_SYNC_DEAD_RETRY", "2s"),
            ("NGIT_SYNC_DAILY_MIN", "5s"),
            ("NGIT_SYNC_DAILY_MAX", "6s"),
            ("NGIT_SYNC_LIVE_FILTER_CONSOLIDATION", "12"),
        ]))
        .unwrap();
        assert_eq!(c.worker_id, "w1");
        assert!(c.allow_private);
        assert_eq!(c.eose_timeout, Duration::from_secs(2));
        assert_eq!(c.page_limit, 50);
        assert_eq!(c.backoff_base, Duration::from_millis(100));
        assert_eq!(c.rate_limit_cooldown, Duration::from_millis(300));
        assert_eq!(c.dead_after, Duration::from_secs(3));
        assert_eq!(c.dead_retry, Duration::from_secs(2));
        assert_eq!(
            (c.daily_min, c.daily_max),
            (Duration::from_secs(5), Duration::from_secs(6))
        );
        assert_eq!(c.live_filter_consolidation, 12);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("NGIT_SYNC_WORKER_ID", "has space"),
            ("NGIT_SYNC_WORKER_ID", "a.b"),
            ("NGIT_SYNC_PAGE_LIMIT", "0"),
            ("NGIT_SYNC_PAGE_LIMIT", "many"),
            ("NGIT_SYNC_EOSE_TIMEOUT", "soon"),
            ("NGIT_SYNC_BACKOFF_CAP", "1s"),
            ("NGIT_SYNC_LEASE_RENEW", "8s"),
            ("NGIT_SYNC_DAILY_MAX", "1h"),
            ("NGIT_SYNC_DEAD_RETRY", "0s"),
        ] {
            let e = Config::from_lookup(&map(&[(var, value)])).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}: {e}");
        }
    }
}
