//! The landing watermark (ARCHITECTURE.md "Landing watermark"): the highest events-stream
//! sequence at or below which every delivered message has its outcome published.
//!
//! The stream delivers in sequence order, so the sequences the sink has seen but not yet
//! published bound the watermark from below: it is the smallest of them minus one, or the
//! highest delivered when there is none. It never goes back: what a published batch claimed
//! stays true, so a redelivered old message (its ack was lost) does not lower it.
//!
//! Messages delivered to an earlier run and never acked are invisible until the stream hands
//! them out again; while such messages may exist ("inherited"), only the consumer's ack floor
//! from the server (every sequence at or below it is acked, so published) moves the watermark.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandingWatermark {
    /// Proven landed: the last published watermark, the stored one, or the server's ack floor.
    floor: u64,
    /// Delivered to us, outcome not yet published.
    open: BTreeSet<u64>,
    /// Highest sequence delivered to us.
    highest: u64,
    /// Sequences up to this may be held by an earlier delivery we never saw.
    inherited: Option<u64>,
    /// The highest watermark a published batch carried (or the stored one).
    announced: u64,
}

impl LandingWatermark {
    /// Starts from the watermark stored by an earlier run (0 if none).
    pub fn new(stored: u64) -> LandingWatermark {
        LandingWatermark {
            floor: stored,
            open: BTreeSet::new(),
            highest: stored,
            inherited: None,
            announced: stored,
        }
    }

    /// A message was delivered.
    pub fn delivered(&mut self, seq: u64) {
        self.open.insert(seq);
        self.highest = self.highest.max(seq);
    }

    /// The watermark a batch publishing the outcomes of `seqs` may carry: as if they were
    /// already published, while every other open sequence still holds it back.
    pub fn with_published(&self, seqs: &[u64]) -> u64 {
        let own = if self.inherited.is_some() {
            self.floor
        } else {
            match self.open.iter().find(|s| !seqs.contains(s)) {
                Some(first) => first - 1,
                None => self.highest,
            }
        };
        self.floor.max(own)
    }

    /// The watermark now.
    pub fn current(&self) -> u64 {
        self.with_published(&[])
    }

    /// A batch carrying `watermark` with the outcomes of `seqs` (maybe none) was published.
    pub fn published(&mut self, seqs: &[u64], watermark: u64) {
        for seq in seqs {
            self.open.remove(seq);
        }
        self.floor = self.floor.max(watermark);
        self.announced = self.announced.max(watermark);
    }

    /// A message that needs no outcome (it could not be read) is done.
    pub fn settled(&mut self, seq: u64) {
        self.open.remove(&seq);
    }

    /// The stream may hold messages up to `delivered` that an earlier delivery never acked.
    pub fn inherit(&mut self, delivered: u64) {
        if delivered > self.floor {
            self.inherited = Some(self.inherited.unwrap_or(0).max(delivered));
        }
    }

    /// Whether only the server's ack floor can move the watermark right now.
    pub fn is_inherited(&self) -> bool {
        self.inherited.is_some()
    }

    /// The consumer's ack floor as the server reports it: everything at or below is acked,
    /// and the sink acks only after publishing.
    pub fn server_ack_floor(&mut self, ack_floor: u64) {
        self.floor = self.floor.max(ack_floor);
        self.highest = self.highest.max(ack_floor);
        if self.inherited.is_some_and(|until| ack_floor >= until) {
            self.inherited = None;
        }
    }

    /// The highest watermark published so far (what KV should say).
    pub fn announced(&self) -> u64 {
        self.announced
    }

    /// The current watermark if it passed the last published one without any outcome to carry
    /// it (an unreadable message, the server's ack floor): it needs a batch of its own.
    pub fn unannounced(&self) -> Option<u64> {
        let current = self.current();
        (current > self.announced).then_some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_delivered_keeps_the_stored_value() {
        assert_eq!(LandingWatermark::new(0).current(), 0);
        assert_eq!(LandingWatermark::new(42).current(), 42);
    }

    #[test]
    fn out_of_order_completion_waits_for_the_oldest_open_message() {
        let mut w = LandingWatermark::new(0);
        for seq in 1..=5 {
            w.delivered(seq);
        }
        // 3 and 5 answered first: 1 is still open.
        assert_eq!(w.with_published(&[3, 5]), 0);
        w.published(&[3, 5], 0);
        assert_eq!(w.with_published(&[1]), 1, "2 is still open");
        w.published(&[1], 1);
        assert_eq!(w.with_published(&[2, 4]), 5, "all published: the highest");
        w.published(&[2, 4], 5);
        assert_eq!(w.current(), 5);
        assert_eq!(w.announced(), 5);
        assert_eq!(w.unannounced(), None);
    }

    #[test]
    fn a_retried_message_holds_the_watermark_below_it() {
        let mut w = LandingWatermark::new(10);
        for seq in 11..=20 {
            w.delivered(seq);
        }
        let done: Vec<u64> = (11..=20).filter(|s| *s != 14).collect();
        let wm = w.with_published(&done);
        assert_eq!(wm, 13);
        w.published(&done, wm);
        assert_eq!(w.current(), 13, "14 is being retried");
        w.delivered(21);
        assert_eq!(w.current(), 13);
        assert_eq!(w.with_published(&[14]), 20, "21 is open");
        w.published(&[14], 20);
        assert_eq!(w.with_published(&[21]), 21);
    }

    #[test]
    fn batches_of_one_flush_carry_rising_watermarks() {
        let mut w = LandingWatermark::new(0);
        for seq in 1..=4 {
            w.delivered(seq);
        }
        // saved {1, 3} then duplicate {2, 4}: the first batch must not claim 2.
        assert_eq!(w.with_published(&[1, 3]), 1);
        w.published(&[1, 3], 1);
        assert_eq!(w.with_published(&[2, 4]), 4);
    }

    #[test]
    fn idle_with_nothing_in_flight_means_the_highest_final() {
        let mut w = LandingWatermark::new(0);
        w.delivered(7);
        w.published(&[7], w.with_published(&[7]));
        assert_eq!(w.current(), 7);
    }

    #[test]
    fn an_unreadable_message_lets_the_watermark_pass_without_an_outcome() {
        let mut w = LandingWatermark::new(3);
        w.delivered(4);
        w.settled(4);
        assert_eq!(w.current(), 4);
        assert_eq!(w.unannounced(), Some(4), "needs a batch of its own");
        w.published(&[], 4);
        assert_eq!(w.announced(), 4);
        assert_eq!(w.unannounced(), None);
    }

    #[test]
    fn it_never_goes_back_for_a_redelivered_old_message() {
        let mut w = LandingWatermark::new(0);
        w.delivered(1);
        w.delivered(2);
        w.published(&[1, 2], 2);
        // 1's ack was lost and the stream hands it out again.
        w.delivered(1);
        assert_eq!(w.current(), 2);
        w.delivered(3);
        assert_eq!(w.with_published(&[3]), 2);
        w.published(&[1, 3], w.with_published(&[1, 3]));
        assert_eq!(w.current(), 3);
    }

    #[test]
    fn after_a_restart_inherited_messages_hold_it_at_the_server_ack_floor() {
        // Stored 10; the previous run was handed 11..=15 and acked 11 and 12 before dying.
        let mut w = LandingWatermark::new(10);
        w.server_ack_floor(12);
        w.inherit(15);
        assert_eq!(w.current(), 12);
        // New messages land first; 13..=15 come back only later.
        w.delivered(16);
        w.published(&[16], w.with_published(&[16]));
        assert_eq!(w.current(), 12, "13..=15 may not have landed");
        for seq in 13..=15 {
            w.delivered(seq);
        }
        w.published(&[13, 14, 15], w.with_published(&[13, 14, 15]));
        assert_eq!(
            w.current(),
            12,
            "only the server knows they were the inherited ones"
        );
        w.server_ack_floor(16);
        assert!(!w.is_inherited());
        assert_eq!(w.current(), 16);
    }

    #[test]
    fn a_restart_with_nothing_inherited_continues_from_the_ack_floor() {
        // The stored value is older than what was acked (the last KV write was lost).
        let mut w = LandingWatermark::new(5);
        w.server_ack_floor(9);
        w.inherit(9);
        assert!(!w.is_inherited(), "everything delivered is acked");
        assert_eq!(w.current(), 9);
        assert_eq!(
            w.unannounced(),
            Some(9),
            "announced even with no event at all"
        );
        w.delivered(10);
        assert_eq!(w.current(), 9);
        assert_eq!(w.with_published(&[10]), 10);
    }
}
