//! The discovery watermark gate (ARCHITECTURE.md "Landing watermark"): an outcome batch's
//! watermark may be stored only once every target change folded before it is in KV, and the
//! stored value never goes down.

/// Decides when a watermark may be written; the caller writes and reports back.
#[derive(Debug, Clone, Default)]
pub struct WatermarkGate {
    /// Highest value known to be in KV.
    stored: u64,
    /// Highest value waiting for the next flush.
    held: Option<u64>,
}

impl WatermarkGate {
    /// Starts from what KV holds.
    pub fn new(stored: u64) -> WatermarkGate {
        WatermarkGate { stored, held: None }
    }

    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// Everything up to `seq` was folded. With changes pending (from this batch or any before
    /// it) the watermark waits for the flush; otherwise it may be written now.
    pub fn folded(&mut self, seq: u64, changes_pending: bool) -> Option<u64> {
        if changes_pending || self.held.is_some() {
            self.hold(seq);
            return None;
        }
        (seq > self.stored).then_some(seq)
    }

    /// The pending changes are in KV: the held watermark may be written.
    pub fn flushed(&mut self) -> Option<u64> {
        self.held.take().filter(|seq| *seq > self.stored)
    }

    /// `seq` is in KV.
    pub fn written(&mut self, seq: u64) {
        self.stored = self.stored.max(seq);
    }

    /// Writing `seq` failed: keep it for the next flush.
    pub fn hold(&mut self, seq: u64) {
        if seq > self.stored {
            self.held = Some(self.held.map_or(seq, |h| h.max(seq)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_without_changes_is_written_at_once() {
        let mut g = WatermarkGate::new(5);
        assert_eq!(g.folded(9, false), Some(9));
        g.written(9);
        assert_eq!(g.folded(7, false), None, "never down");
        assert_eq!(g.stored(), 9);
    }

    #[test]
    fn a_batch_with_changes_waits_for_the_flush_and_so_do_later_ones() {
        let mut g = WatermarkGate::new(0);
        assert_eq!(g.folded(10, true), None);
        // A later batch without changes of its own must not overtake the held one.
        assert_eq!(g.folded(12, false), None);
        assert_eq!(g.flushed(), Some(12));
        g.written(12);
        assert_eq!(g.flushed(), None);
        assert_eq!(g.folded(13, false), Some(13));
    }

    #[test]
    fn a_failed_write_is_retried_at_the_next_flush() {
        let mut g = WatermarkGate::new(3);
        assert_eq!(g.folded(8, false), Some(8));
        g.hold(8);
        assert_eq!(g.folded(9, false), None);
        assert_eq!(g.flushed(), Some(9));
        g.hold(2);
        assert_eq!(g.flushed(), None, "below what is stored");
    }
}
