//! The batching window: the first change after a flush opens it, and everything that arrives
//! until it closes is written to KV in one go. It closes when changes have stopped for the
//! settle time, or at the latest one window length after it opened: a burst (a cold sync's
//! root events) is written once, as soon as it is over, and a steady trickle still gets one
//! write per window. Time is passed in.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Window {
    length: Duration,
    settle: Duration,
    /// The latest the open window may close: its opening plus `length`.
    deadline: Option<Instant>,
    /// When it closes if nothing else changes: the last change plus `settle`.
    quiet_at: Option<Instant>,
}

impl Window {
    /// `settle` longer than `length` is treated as `length` (no early close).
    pub fn new(length: Duration, settle: Duration) -> Window {
        Window {
            length,
            settle: settle.min(length),
            deadline: None,
            quiet_at: None,
        }
    }

    /// Something changed at `now`: open the window unless it is open already (a steady trickle
    /// of changes must not postpone the flush past the window's length) and restart the
    /// settle time.
    pub fn changed(&mut self, now: Instant) {
        self.deadline.get_or_insert(now + self.length);
        self.quiet_at = Some(now + self.settle);
    }

    /// Writing failed at `now`: try again one whole window later, not at the settle time.
    pub fn retry(&mut self, now: Instant) {
        self.deadline = Some(now + self.length);
        self.quiet_at = None;
    }

    /// When the open window closes.
    pub fn closes_at(&self) -> Option<Instant> {
        match (self.deadline, self.quiet_at) {
            (Some(d), Some(q)) => Some(d.min(q)),
            (d, q) => d.or(q),
        }
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.closes_at().is_some_and(|at| now >= at)
    }

    /// The gathered changes were written.
    pub fn flushed(&mut self) {
        self.deadline = None;
        self.quiet_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_steady_trickle_is_written_once_per_window_length() {
        let t0 = Instant::now();
        let mut w = Window::new(5 * S, 250 * MS);
        assert_eq!(w.closes_at(), None);
        assert!(!w.is_due(t0));
        // A change every 200 ms never leaves 250 ms of quiet: the length bounds the wait.
        for i in 0..25u32 {
            w.changed(t0 + i * 200 * MS);
        }
        assert_eq!(w.closes_at(), Some(t0 + 5 * S));
        assert!(!w.is_due(t0 + 4 * S));
        assert!(w.is_due(t0 + 5 * S));
        w.flushed();
        assert_eq!(w.closes_at(), None);
        w.changed(t0 + 6 * S);
        assert_eq!(w.closes_at(), Some(t0 + 6 * S + 250 * MS));
    }

    #[test]
    fn a_burst_is_written_once_it_has_settled() {
        let t0 = Instant::now();
        let mut w = Window::new(5 * S, 250 * MS);
        w.changed(t0);
        w.changed(t0 + 100 * MS);
        w.changed(t0 + 1200 * MS);
        assert!(!w.is_due(t0 + 1400 * MS));
        assert!(w.is_due(t0 + 1450 * MS));
    }

    #[test]
    fn a_settle_time_past_the_length_never_closes_early() {
        let t0 = Instant::now();
        let mut w = Window::new(2 * S, 10 * S);
        w.changed(t0);
        assert_eq!(w.closes_at(), Some(t0 + 2 * S));
    }

    #[test]
    fn a_failed_write_waits_a_whole_window() {
        let t0 = Instant::now();
        let mut w = Window::new(5 * S, 250 * MS);
        w.changed(t0);
        w.retry(t0 + 250 * MS);
        assert_eq!(w.closes_at(), Some(t0 + 5250 * MS));
        // New changes during the retry wait may close it earlier, once they settle.
        w.changed(t0 + 1000 * MS);
        assert_eq!(w.closes_at(), Some(t0 + 1250 * MS));
    }
}
