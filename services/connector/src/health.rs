//! Per-relay health: consecutive failures, exponential backoff with jitter, rate-limit pauses
//! and the stability rule (a connection that drops at once does not reset the backoff).
//! Pure: time (ms) and randomness (a unit number) are parameters.

use std::time::Duration;

use ngit_sync_shared::messages::{HealthReport, HealthSnapshot};
use ngit_sync_shared::status::Health;

/// `base × 2^(n-1)` capped at `cap`, spread by ± `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub jitter: f64,
}

impl Backoff {
    /// Delay after the `failures`-th consecutive failure; `unit` is uniform in [0, 1).
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(32);
        let raw = self.base.as_secs_f64() * 2f64.powi(exp as i32);
        let capped = raw.min(self.cap.as_secs_f64());
        let spread = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((capped * spread).max(0.0))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthTracker {
    backoff: Backoff,
    stable_after_ms: u64,
    consecutive_failures: u32,
    failing_since_ms: Option<u64>,
    next_attempt_ms: Option<u64>,
    rate_limited_until_ms: Option<u64>,
    connected_since_ms: Option<u64>,
}

impl HealthTracker {
    pub fn new(backoff: Backoff, stable_after: Duration) -> HealthTracker {
        HealthTracker {
            backoff,
            stable_after_ms: stable_after.as_millis() as u64,
            consecutive_failures: 0,
            failing_since_ms: None,
            next_attempt_ms: None,
            rate_limited_until_ms: None,
            connected_since_ms: None,
        }
    }

    /// Continues from what the previous owner persisted (backoff carries over); a session it
    /// had open is over, whatever the snapshot says.
    pub fn restore(backoff: Backoff, stable_after: Duration, s: &HealthSnapshot) -> HealthTracker {
        HealthTracker {
            consecutive_failures: s.consecutive_failures,
            failing_since_ms: s.failing_since_ms,
            next_attempt_ms: s.next_attempt_ms,
            rate_limited_until_ms: s.rate_limited_until_ms,
            connected_since_ms: None,
            ..HealthTracker::new(backoff, stable_after)
        }
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            consecutive_failures: self.consecutive_failures,
            failing_since_ms: self.failing_since_ms,
            next_attempt_ms: self.next_attempt_ms,
            rate_limited_until_ms: self.rate_limited_until_ms,
            connected_since_ms: self.connected_since_ms,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// A connection attempt failed; returns the backoff before the next one.
    pub fn record_failure(&mut self, now_ms: u64, unit: f64) -> Duration {
        self.connected_since_ms = None;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failing_since_ms.get_or_insert(now_ms);
        let delay = self.backoff.delay(self.consecutive_failures, unit);
        self.next_attempt_ms = Some(now_ms + delay.as_millis() as u64);
        delay
    }

    /// A session opened. The failure count stays until the session proves stable.
    pub fn record_connected(&mut self, now_ms: u64) {
        self.connected_since_ms = Some(now_ms);
        self.next_attempt_ms = None;
    }

    /// A session ended. A drop the relay caused counts as a failure (so a relay that accepts
    /// and drops keeps backing off); one we caused (shutdown, lease moved, bus trouble)
    /// allows an immediate reconnect.
    pub fn record_disconnected(&mut self, now_ms: u64, relay_fault: bool, unit: f64) {
        self.tick(now_ms);
        self.connected_since_ms = None;
        if relay_fault {
            self.record_failure(now_ms, unit);
        } else {
            self.next_attempt_ms = None;
        }
    }

    /// The relay said it rate-limits us: no REQ and no reconnect before `until_ms`.
    pub fn record_rate_limited(&mut self, until_ms: u64) {
        let later = self
            .rate_limited_until_ms
            .map_or(until_ms, |u| u.max(until_ms));
        self.rate_limited_until_ms = Some(later);
    }

    /// Applies the passage of time: a session connected long enough resets the failures,
    /// an expired rate limit is cleared. Returns whether anything changed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let mut changed = false;
        if let Some(since) = self.connected_since_ms {
            if self.consecutive_failures > 0 && now_ms.saturating_sub(since) >= self.stable_after_ms
            {
                self.consecutive_failures = 0;
                self.failing_since_ms = None;
                changed = true;
            }
        }
        if self.rate_limited_until_ms.is_some_and(|u| u <= now_ms) {
            self.rate_limited_until_ms = None;
            changed = true;
        }
        changed
    }

    /// Earliest time of the next connection attempt (0: now).
    pub fn next_attempt_at(&self) -> u64 {
        self.next_attempt_ms
            .unwrap_or(0)
            .max(self.rate_limited_until_ms.unwrap_or(0))
    }

    pub fn state(&self, now_ms: u64) -> Health {
        if self.rate_limited_until_ms.is_some_and(|u| u > now_ms) {
            Health::RateLimited
        } else if self.connected_since_ms.is_none() {
            Health::Disconnected
        } else if self.consecutive_failures > 0 {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    pub fn report(&self, now_ms: u64) -> HealthReport {
        HealthReport {
            state: self.state(now_ms),
            consecutive_failures: self.consecutive_failures,
            next_attempt_ms: self.next_attempt_ms,
            rate_limited_until_ms: self.rate_limited_until_ms.filter(|u| *u > now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> HealthTracker {
        HealthTracker::new(
            Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(3600),
                jitter: 0.2,
            },
            Duration::from_secs(300),
        )
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_the_one_hour_cap() {
        let b = tracker().backoff;
        let secs: Vec<u64> = (1..=12).map(|n| b.delay(n, 0.5).as_secs()).collect();
        assert_eq!(
            secs,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(6));
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn failures_push_the_next_attempt_out_and_are_reported() {
        let mut h = tracker();
        assert_eq!(h.next_attempt_at(), 0);
        h.record_failure(1_000, 0.5);
        h.record_failure(7_000, 0.5);
        assert_eq!(h.next_attempt_at(), 17_000);
        let r = h.report(7_000);
        assert_eq!(r.state, Health::Disconnected);
        assert_eq!(r.consecutive_failures, 2);
        assert_eq!(r.next_attempt_ms, Some(17_000));
    }

    #[test]
    fn a_connection_that_drops_at_once_keeps_backing_off() {
        let mut h = tracker();
        h.record_failure(0, 0.5);
        h.record_failure(10_000, 0.5);
        h.record_connected(30_000);
        assert_eq!(h.state(30_000), Health::Degraded);
        h.record_disconnected(31_000, true, 0.5);
        assert_eq!(h.consecutive_failures(), 3);
        assert_eq!(h.next_attempt_at(), 31_000 + 20_000);
    }

    #[test]
    fn five_stable_minutes_reset_the_failures() {
        let mut h = tracker();
        h.record_failure(0, 0.5);
        h.record_connected(10_000);
        assert!(!h.tick(100_000));
        assert!(h.tick(310_000));
        assert_eq!(h.state(310_000), Health::Healthy);
        h.record_disconnected(900_000, true, 0.5);
        assert_eq!(h.consecutive_failures(), 1);
        assert_eq!(h.next_attempt_at(), 905_000);
    }

    #[test]
    fn a_drop_we_caused_allows_an_immediate_reconnect() {
        let mut h = tracker();
        h.record_connected(0);
        h.record_disconnected(1_000, false, 0.5);
        assert_eq!(h.next_attempt_at(), 0);
        assert_eq!(h.consecutive_failures(), 0);
    }

    #[test]
    fn rate_limits_delay_attempts_and_expire() {
        let mut h = tracker();
        h.record_connected(0);
        h.record_rate_limited(65_000);
        assert_eq!(h.state(1_000), Health::RateLimited);
        assert_eq!(h.next_attempt_at(), 65_000);
        assert!(h.tick(65_000));
        assert_eq!(h.state(65_000), Health::Healthy);
    }

    #[test]
    fn a_new_owner_continues_the_backoff() {
        let mut h = tracker();
        h.record_failure(0, 0.5);
        h.record_failure(5_000, 0.5);
        let restored = HealthTracker::restore(h.backoff, Duration::from_secs(300), &h.snapshot());
        assert_eq!(restored.consecutive_failures(), 2);
        assert_eq!(restored.next_attempt_at(), h.next_attempt_at());
    }
}
