//! Rendezvous (highest-random-weight) hashing: which live worker should sync a relay.
//! A worker joining or leaving moves only the relays whose highest weight it holds.

use nostr::hashes::{sha256, Hash};

/// The weight of `worker` for `relay_key`: the first 8 bytes of SHA-256 of `worker|relay`,
/// stable across processes and versions (never `std`'s randomly seeded hasher).
pub fn weight(worker: &str, relay_key: &str) -> u64 {
    let mut input = Vec::with_capacity(worker.len() + relay_key.len() + 1);
    input.extend_from_slice(worker.as_bytes());
    input.push(b'|');
    input.extend_from_slice(relay_key.as_bytes());
    let digest = sha256::Hash::hash(&input).to_byte_array();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The preferred worker for `relay_key`: highest weight, ties broken by the smaller id.
pub fn preferred<'a>(
    workers: impl IntoIterator<Item = &'a str>,
    relay_key: &str,
) -> Option<&'a str> {
    workers
        .into_iter()
        .map(|w| (weight(w, relay_key), w))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, w)| w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("relay_{i}_example-0000{i:04}"))
            .collect()
    }

    #[test]
    fn the_choice_does_not_depend_on_order() {
        for key in keys(50) {
            let a = preferred(["w1", "w2", "w3"], &key);
            let b = preferred(["w3", "w1", "w2"], &key);
            assert_eq!(a, b);
        }
        assert_eq!(preferred([], "k"), None);
    }

    #[test]
    fn a_joining_worker_takes_only_relays_it_now_wins() {
        let relays = keys(400);
        let before: Vec<&str> = relays
            .iter()
            .map(|k| preferred(["a", "b", "c"], k).unwrap())
            .collect();
        let after: Vec<&str> = relays
            .iter()
            .map(|k| preferred(["a", "b", "c", "d"], k).unwrap())
            .collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(*a, "d", "a relay moved between two old workers");
                moved += 1;
            }
        }
        // About a quarter moves to the new worker; none stays put only by luck of order.
        assert!((60..140).contains(&moved), "moved {moved} of 400");
    }

    #[test]
    fn weights_are_stable_numbers() {
        // Pinned: two connector versions must agree on who owns what.
        assert_eq!(weight("w", "k"), weight("w", "k"));
        assert_ne!(weight("w1", "k"), weight("w2", "k"));
        let digest = sha256::Hash::hash(b"w|k").to_byte_array();
        assert_eq!(weight("w", "k").to_be_bytes(), digest[..8]);
    }
}
