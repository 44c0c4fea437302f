//! Timestamps for the corpus: a fixed span, follow-ups after their targets, crowded seconds.

use nostr::Timestamp;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::CorpusSpec;

/// Seconds that many events share, to exercise `until` pagination on timestamp ties.
const CROWDED_SECONDS: usize = 3;

/// Picks `created_at` values inside the span, with deliberate collisions.
#[derive(Debug, Clone)]
pub(super) struct Clock {
    start: u64,
    end: u64,
    crowded: Vec<u64>,
    collision_percent: u8,
}

impl Clock {
    pub(super) fn new(rng: &mut StdRng, spec: &CorpusSpec) -> Self {
        let end = spec.end.as_secs();
        let start = end.saturating_sub(spec.span_days * 86_400);
        let crowded = (0..CROWDED_SECONDS)
            .map(|_| rng.random_range(start + (end - start) / 2..=end))
            .collect();
        Self {
            start,
            end,
            crowded,
            collision_percent: spec.collision_percent,
        }
    }

    /// Early in the span: when repos get announced.
    pub(super) fn early(&self, rng: &mut StdRng) -> Timestamp {
        Timestamp::from(rng.random_range(self.start..=self.end.min(self.start + 7 * 86_400)))
    }

    /// At or after `t`, or on a crowded second (which may predate `t`, like a skewed clock).
    pub(super) fn after(&self, rng: &mut StdRng, t: Timestamp) -> Timestamp {
        if rng.random_range(0..100) < self.collision_percent {
            return Timestamp::from(*self.crowded.choose(rng).expect("non-empty"));
        }
        Timestamp::from(rng.random_range(t.as_secs().min(self.end)..=self.end))
    }
}
