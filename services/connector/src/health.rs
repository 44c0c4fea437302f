//! Per-relay health: consecutive failures, exponential backoff with jitter, Dead after a day of
//! continuous failure (then one attempt a day), rate-limit pauses and the stability rule (a
//! connection that drops at once does not reset the backoff). Pure: time (ms) and randomness
//! (a unit number) are parameters.

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

/// The numbers of DESIGN.md section 5 that drive a tracker (configurable so tests shrink them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthRules {
    pub backoff: Backoff,
    /// Connected this long, a recovered relay is Healthy and its failure count resets.
    pub stable_after: Duration,
    /// Failing continuously this long, a relay is Dead.
    pub dead_after: Duration,
    /// A Dead relay is tried once per this.
    pub dead_retry: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthTracker {
    rules: HealthRules,
    consecutive_failures: u32,
    /// Start of the current failure streak; only a stable connection ends it.
    failing_since_ms: Option<u64>,
    next_attempt_ms: Option<u64>,
    rate_limited_until_ms: Option<u64>,
    connected_since_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl HealthTracker {
    pub fn new(rules: HealthRules) -> HealthTracker {
        HealthTracker {
            rules,
            consecutive_failures: 0,
            failing_since_ms: None,
            next_attempt_ms: None,
            rate_limited_until_ms: None,
            connected_since_ms: None,
        }
    }

    /// Continues from what the previous owner persisted (backoff, Dead and rate limits carry
    /// over); a session it had open is over, whatever the snapshot says.
    pub fn restore(rules: HealthRules, s: &HealthSnapshot) -> HealthTracker {
        HealthTracker {
            consecutive_failures: s.consecutive_failures,
            failing_since_ms: s.failing_since_ms,
            next_attempt_ms: s.next_attempt_ms,
            rate_limited_until_ms: s.rate_limited_until_ms,
            connected_since_ms: None,
            ..HealthTracker::new(rules)
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

    /// When the current failure streak makes the relay Dead, if it is failing.
    fn dead_at(&self) -> Option<u64> {
        self.failing_since_ms
            .map(|since| since.saturating_add(ms(self.rules.dead_after)))
    }

    fn is_dead(&self, now_ms: u64) -> bool {
        self.dead_at().is_some_and(|at| at <= now_ms)
    }

    /// A connection attempt failed (or a session the relay ended); returns the wait before the
    /// next attempt: the backoff, or the daily retry once Dead.
    pub fn record_failure(&mut self, now_ms: u64, unit: f64) -> Duration {
        self.connected_since_ms = None;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failing_since_ms.get_or_insert(now_ms);
        let delay = if self.is_dead(now_ms) {
            self.rules.dead_retry
        } else {
            self.rules.backoff.delay(self.consecutive_failures, unit)
        };
        self.next_attempt_ms = Some(now_ms.saturating_add(ms(delay)));
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
            let stable = now_ms.saturating_sub(since) >= ms(self.rules.stable_after);
            if stable && (self.consecutive_failures > 0 || self.failing_since_ms.is_some()) {
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

    /// While waiting to reconnect: the next moment the state changes by itself (the attempt,
    /// or turning Dead before it), so the owner can report it on time.
    pub fn next_wake_at(&self, now_ms: u64) -> u64 {
        let attempt = self.next_attempt_at();
        match self.dead_at() {
            Some(dead) if dead > now_ms && self.connected_since_ms.is_none() => attempt.min(dead),
            _ => attempt,
        }
    }

    pub fn state(&self, now_ms: u64) -> Health {
        if self.rate_limited_until_ms.is_some_and(|u| u > now_ms) {
            Health::RateLimited
        } else if self.connected_since_ms.is_some() {
            if self.consecutive_failures > 0 {
                Health::Degraded
            } else {
                Health::Healthy
            }
        } else if self.is_dead(now_ms) {
            Health::Dead
        } else if self.consecutive_failures > 0 {
            Health::Degraded
        } else {
            Health::Disconnected
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

    const SEC: u64 = 1_000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;

    fn rules() -> HealthRules {
        HealthRules {
            backoff: Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(3600),
                jitter: 0.2,
            },
            stable_after: Duration::from_secs(300),
            dead_after: Duration::from_secs(24 * 3600),
            dead_retry: Duration::from_secs(24 * 3600),
        }
    }

    fn tracker() -> HealthTracker {
        HealthTracker::new(rules())
    }

    /// Fails every attempt as soon as it is due, from `start` until `end`; returns the attempt
    /// times.
    fn fail_until(h: &mut HealthTracker, start: u64, end: u64, unit: f64) -> Vec<u64> {
        let mut now = start;
        let mut attempts = Vec::new();
        while now < end {
            attempts.push(now);
            h.record_failure(now, unit);
            now = h.next_attempt_at();
        }
        attempts
    }

    #[test]
    fn backoff_doubles_from_five_seconds_to_the_one_hour_cap() {
        let b = rules().backoff;
        let secs: Vec<u64> = (1..=12).map(|n| b.delay(n, 0.5).as_secs()).collect();
        assert_eq!(
            secs,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(b.delay(u32::MAX, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_either_way() {
        let b = rules().backoff;
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(6));
        assert_eq!(b.delay(12, 0.0), Duration::from_secs(2880));
        assert_eq!(b.delay(12, 1.0), Duration::from_secs(4320));
        for n in 1..=14 {
            let mid = b.delay(n, 0.5).as_secs_f64();
            for i in 0..=100 {
                let d = b.delay(n, f64::from(i) / 100.0).as_secs_f64();
                assert!(d >= mid * 0.8 - 1e-9 && d <= mid * 1.2 + 1e-9, "n={n}: {d}");
            }
        }
    }

    #[test]
    fn attempts_of_a_relay_down_for_a_day_follow_the_backoff_then_the_cap() {
        let mut h = tracker();
        let attempts = fail_until(&mut h, 0, 20 * HOUR, 0.5);
        let gaps: Vec<u64> = attempts.windows(2).map(|w| (w[1] - w[0]) / SEC).collect();
        assert_eq!(
            gaps[..12],
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert!(gaps[10..].iter().all(|g| *g == 3600));
        assert_eq!(h.state(20 * HOUR), Health::Degraded);
    }

    #[test]
    fn a_day_of_continuous_failure_is_dead_and_retried_once_a_day() {
        let mut h = tracker();
        let attempts = fail_until(&mut h, 0, 5 * DAY, 0.9);
        assert_eq!(h.state(DAY - 1), Health::Degraded);
        assert_eq!(h.state(DAY), Health::Dead);
        let after_dead: Vec<u64> = attempts.iter().copied().filter(|t| *t >= DAY).collect();
        // The first attempt at or past the day notices it; then exactly one a day.
        assert!(
            after_dead.windows(2).all(|w| w[1] - w[0] == DAY),
            "{after_dead:?}"
        );
        assert_eq!(after_dead.len(), 4, "days 1-5: {after_dead:?}");
        let r = h.report(5 * DAY);
        assert_eq!(r.state, Health::Dead);
        assert!(r.consecutive_failures > 30);
        assert_eq!(r.next_attempt_ms, Some(*after_dead.last().unwrap() + DAY));
    }

    #[test]
    fn the_owner_wakes_when_the_relay_turns_dead_between_attempts() {
        let mut h = tracker();
        fail_until(&mut h, 0, DAY - 10 * MIN, 0.5);
        let now = DAY - 10 * MIN;
        assert!(
            h.next_attempt_at() > DAY,
            "the capped backoff reaches past the day"
        );
        assert_eq!(h.next_wake_at(now), DAY);
        assert_eq!(h.state(DAY), Health::Dead);
    }

    #[test]
    fn a_dead_relay_that_comes_back_is_degraded_then_healthy_after_five_stable_minutes() {
        let mut h = tracker();
        fail_until(&mut h, 0, 2 * DAY, 0.5);
        let back = h.next_attempt_at();
        h.record_connected(back);
        assert_eq!(h.state(back), Health::Degraded);
        assert!(!h.tick(back + 5 * MIN - 1));
        assert!(h.consecutive_failures() > 0);
        assert!(h.tick(back + 5 * MIN));
        assert_eq!(h.state(back + 5 * MIN), Health::Healthy);
        assert_eq!(h.consecutive_failures(), 0);
        // A new streak starts from the first step, and is far from Dead.
        h.record_disconnected(back + HOUR, true, 0.5);
        assert_eq!(h.next_attempt_at(), back + HOUR + 5 * SEC);
        assert_eq!(h.state(back + HOUR), Health::Degraded);
    }

    #[test]
    fn a_connection_that_drops_at_once_keeps_backing_off_and_stays_dead() {
        let mut h = tracker();
        h.record_failure(0, 0.5);
        h.record_failure(10_000, 0.5);
        h.record_connected(30_000);
        assert_eq!(h.state(30_000), Health::Degraded);
        h.record_disconnected(31_000, true, 0.5);
        assert_eq!(h.consecutive_failures(), 3);
        assert_eq!(h.next_attempt_at(), 31_000 + 20_000);

        // Accept-and-drop for two days: the streak never ends, so it turns Dead.
        let mut now = 51_000;
        let mut gap = 0;
        while now < 2 * DAY {
            h.record_connected(now);
            h.record_disconnected(now + 100, true, 0.5);
            gap = h.next_attempt_at() - (now + 100);
            now = h.next_attempt_at();
        }
        assert_eq!(h.state(now), Health::Dead);
        assert_eq!(gap, DAY, "one attempt a day");
    }

    #[test]
    fn a_first_connection_is_healthy_and_a_drop_we_caused_reconnects_at_once() {
        let mut h = tracker();
        assert_eq!(h.state(0), Health::Disconnected);
        h.record_connected(0);
        assert_eq!(h.state(0), Health::Healthy);
        h.record_disconnected(1_000, false, 0.5);
        assert_eq!(h.next_attempt_at(), 0);
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.state(1_000), Health::Disconnected);
    }

    #[test]
    fn rate_limits_hold_attempts_for_the_cooldown_and_expire() {
        let mut h = tracker();
        h.record_connected(0);
        h.record_rate_limited(65 * SEC);
        h.record_rate_limited(30 * SEC);
        assert_eq!(h.state(SEC), Health::RateLimited);
        assert_eq!(h.report(SEC).rate_limited_until_ms, Some(65 * SEC));
        assert_eq!(
            h.next_attempt_at(),
            65 * SEC,
            "a shorter limit never shortens one"
        );
        assert!(!h.tick(65 * SEC - 1));
        assert!(h.tick(65 * SEC));
        assert_eq!(h.state(65 * SEC), Health::Healthy);
        assert_eq!(h.report(65 * SEC).rate_limited_until_ms, None);
        // A rate limit never shortens a longer backoff.
        h.record_disconnected(70 * SEC, true, 0.5);
        h.record_failure(75 * SEC, 0.5);
        let backoff_until = h.next_attempt_at();
        h.record_rate_limited(76 * SEC);
        assert_eq!(h.next_attempt_at(), backoff_until);
    }

    #[test]
    fn a_new_owner_continues_the_backoff_and_the_dead_state() {
        let mut h = tracker();
        fail_until(&mut h, 0, 3 * DAY, 0.5);
        let restored = HealthTracker::restore(rules(), &h.snapshot());
        assert_eq!(restored.consecutive_failures(), h.consecutive_failures());
        assert_eq!(restored.next_attempt_at(), h.next_attempt_at());
        assert_eq!(restored.state(3 * DAY), Health::Dead);
    }
}
