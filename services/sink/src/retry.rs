//! Exponential retry delays for transient failures and home-relay reconnects.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The wait after the `failures`-th failure in a row: base, 2×base, 4×base … up to the cap.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        };
        let secs: Vec<f64> = (1..=9).map(|n| p.delay(n).as_secs_f64()).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
        assert_eq!(p.delay(0), p.base);
        assert_eq!(p.delay(u32::MAX), p.cap);
    }
}
