//! When this worker has applied discovery's watermark: discovery stores the watermark only
//! after the target changes it depends on are in `ngit_sync_repos`, so once the worker's
//! watch of that bucket has passed the bucket's last revision as of the watermark's arrival,
//! every one of those changes is in the sessions' targets. Pure: revisions come in.

#[derive(Debug, Default)]
pub struct AppliedGate {
    /// Highest bucket revision whose change was handed to the sessions.
    flushed_rev: u64,
    /// Watermarks waiting for the watch: (bucket revision to reach, watermark).
    waiting: Vec<(u64, u64)>,
    applied: u64,
}

impl AppliedGate {
    /// Discovery's watermark `watermark` arrived when the bucket's last revision was `rev`.
    /// Returns the new applied watermark if it can be applied at once.
    pub fn watermark(&mut self, watermark: u64, rev: u64) -> Option<u64> {
        if watermark <= self.applied {
            return None;
        }
        if rev <= self.flushed_rev {
            self.applied = watermark;
            return Some(watermark);
        }
        self.waiting.push((rev, watermark));
        None
    }

    /// Every change up to bucket revision `rev` was handed to the sessions. Returns the new
    /// applied watermark if one was waiting for it.
    pub fn flushed(&mut self, rev: u64) -> Option<u64> {
        self.flushed_rev = self.flushed_rev.max(rev);
        let reached = self.flushed_rev;
        let best = self
            .waiting
            .iter()
            .filter(|(r, _)| *r <= reached)
            .map(|(_, w)| *w)
            .max();
        self.waiting.retain(|(r, _)| *r > reached);
        match best {
            Some(w) if w > self.applied => {
                self.applied = w;
                Some(w)
            }
            _ => None,
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_waits_until_the_watch_reaches_the_revision_it_arrived_at() {
        let mut g = AppliedGate::default();
        assert_eq!(g.flushed(3), None);
        assert_eq!(
            g.watermark(100, 5),
            None,
            "the watch is at 3, the bucket at 5"
        );
        assert_eq!(g.flushed(4), None);
        assert_eq!(g.flushed(5), Some(100));
        assert_eq!(g.applied(), 100);
    }

    #[test]
    fn a_watermark_the_watch_already_covers_applies_at_once_and_never_goes_down() {
        let mut g = AppliedGate::default();
        g.flushed(10);
        assert_eq!(g.watermark(50, 10), Some(50));
        assert_eq!(g.watermark(40, 10), None, "older");
        assert_eq!(g.watermark(70, 12), None);
        assert_eq!(g.watermark(60, 11), None);
        // Both reached: the higher one wins.
        assert_eq!(g.flushed(12), Some(70));
        assert_eq!(g.flushed(13), None);
        assert_eq!(g.applied(), 70);
    }
}
