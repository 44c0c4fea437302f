//! The batching window: the first change after a flush opens it, and everything that arrives
//! until it closes is written to KV in one go. Time is passed in.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Window {
    length: Duration,
    closes_at: Option<Instant>,
}

impl Window {
    pub fn new(length: Duration) -> Window {
        Window {
            length,
            closes_at: None,
        }
    }

    /// Something changed at `now`: open the window unless it is open already (a steady trickle
    /// of changes must not postpone the flush forever).
    pub fn changed(&mut self, now: Instant) {
        self.closes_at.get_or_insert(now + self.length);
    }

    /// When the open window closes.
    pub fn closes_at(&self) -> Option<Instant> {
        self.closes_at
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.closes_at.is_some_and(|at| now >= at)
    }

    /// The gathered changes were written.
    pub fn flushed(&mut self) {
        self.closes_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_change_opens_the_window_and_later_ones_do_not_extend_it() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(5));
        assert_eq!(w.closes_at(), None);
        assert!(!w.is_due(t0));
        w.changed(t0);
        w.changed(t0 + Duration::from_secs(3));
        assert_eq!(w.closes_at(), Some(t0 + Duration::from_secs(5)));
        assert!(!w.is_due(t0 + Duration::from_secs(4)));
        assert!(w.is_due(t0 + Duration::from_secs(5)));
        w.flushed();
        assert_eq!(w.closes_at(), None);
        w.changed(t0 + Duration::from_secs(6));
        assert_eq!(w.closes_at(), Some(t0 + Duration::from_secs(11)));
    }
}
