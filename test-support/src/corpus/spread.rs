//! Deterministic placement of events on several relays, some on more than one.

use nostr::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Corpus;

/// Keeps the placement independent of how much randomness generation consumed.
const SPREAD_SALT: u64 = 0x005e_ed0f_5b4e_ad00;

/// Places each event on between 1 and `max_copies` (at most `relays`) distinct relays.
///
/// Returns one list per relay, in input order; every event lands somewhere. Same inputs, same
/// placement. `relays == 0` gives no lists.
pub fn spread_events(
    events: &[Event],
    relays: usize,
    max_copies: usize,
    seed: u64,
) -> Vec<Vec<Event>> {
    let mut out = vec![Vec::new(); relays];
    if relays == 0 {
        return out;
    }
    let max_copies = max_copies.clamp(1, relays);
    let mut rng =
        StdRng::seed_from_u64(seed ^ SPREAD_SALT ^ ((relays as u64) << 32) ^ max_copies as u64);
    for event in events {
        let copies = rng.random_range(1..=max_copies);
        for relay in rand::seq::index::sample(&mut rng, relays, copies) {
            out[relay].push(event.clone());
        }
    }
    out
}

impl Corpus {
    /// [`all_related`](Corpus::all_related) spread over `relays` relays, each event on
    /// 1..=`max_copies` of them; see [`spread_events`].
    pub fn spread(&self, relays: usize, max_copies: usize) -> Vec<Vec<Event>> {
        spread_events(&self.all_related(), relays, max_copies, self.spec.seed)
    }
}
