//! Who held each relay's lease and when it was last renewed, to tell when a lease is gone.
//! Pure: the watcher feeds it, time comes in as `now_ms`.
//!
//! The leases bucket frees a dead worker's leases by max age, and JetStream drops aged
//! messages without a delete marker, so no watcher ever sees that delete. A lease not renewed
//! within its TTL is therefore only *suspected* gone; the caller confirms with a read.

use std::collections::HashMap;
use std::time::Duration;

/// Grace past the TTL before a lease is suspected: the server expires it at exactly the TTL,
/// and a renewal may be a moment late on the wire.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    worker: String,
    renewed_ms: u64,
}

#[derive(Debug, Clone)]
pub struct LeaseBook {
    deadline_ms: u64,
    held: HashMap<String, Held>,
}

impl LeaseBook {
    pub fn new(ttl: Duration) -> LeaseBook {
        LeaseBook {
            deadline_ms: (ttl + EXPIRY_GRACE).as_millis() as u64,
            held: HashMap::new(),
        }
    }

    /// A put of the lease `key` by `worker` at `at_ms` (the bucket's timestamp).
    pub fn renewed(&mut self, key: &str, worker: &str, at_ms: u64) {
        let held = self.held.entry(key.to_string()).or_insert_with(|| Held {
            worker: worker.to_string(),
            renewed_ms: at_ms,
        });
        if held.worker != worker || at_ms >= held.renewed_ms {
            held.worker = worker.to_string();
            held.renewed_ms = at_ms;
        }
    }

    /// A delete or purge of `key`: returns its last holder, if one was seen.
    pub fn removed(&mut self, key: &str) -> Option<String> {
        self.held.remove(key).map(|h| h.worker)
    }

    /// Leases not renewed within TTL + grace, as `(key, worker)`; they leave the book
    /// (a confirming read puts a live one back with [`LeaseBook::renewed`]).
    pub fn overdue(&mut self, now_ms: u64) -> Vec<(String, String)> {
        let deadline = self.deadline_ms;
        let mut gone: Vec<(String, String)> = self
            .held
            .iter()
            .filter(|(_, h)| now_ms >= h.renewed_ms.saturating_add(deadline))
            .map(|(k, h)| (k.clone(), h.worker.clone()))
            .collect();
        for (key, _) in &gone {
            self.held.remove(key);
        }
        gone.sort();
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn a_renewed_lease_is_never_overdue() {
        let mut book = LeaseBook::new(TTL);
        book.renewed("r1", "w1", 0);
        book.renewed("r1", "w1", 3_000);
        book.renewed("r1", "w1", 6_000);
        assert!(book.overdue(12_000).is_empty());
        assert!(book.overdue(16_999).is_empty());
        assert_eq!(book.overdue(17_000), vec![("r1".into(), "w1".into())]);
        assert!(book.overdue(30_000).is_empty(), "reported once");
    }

    #[test]
    fn removal_names_the_last_holder() {
        let mut book = LeaseBook::new(TTL);
        book.renewed("r1", "w1", 0);
        book.renewed("r1", "w2", 100);
        assert_eq!(book.removed("r1").as_deref(), Some("w2"));
        assert_eq!(book.removed("r1"), None);
        assert!(book.overdue(1_000_000).is_empty());
    }

    #[test]
    fn a_late_delivered_older_put_does_not_rewind_the_renewal() {
        let mut book = LeaseBook::new(TTL);
        book.renewed("r1", "w1", 9_000);
        book.renewed("r1", "w1", 3_000);
        assert!(book.overdue(15_000).is_empty());
    }

    #[test]
    fn overdue_leases_come_sorted_and_the_rest_stay() {
        let mut book = LeaseBook::new(TTL);
        book.renewed("b", "w1", 0);
        book.renewed("a", "w2", 0);
        book.renewed("c", "w1", 5_000);
        assert_eq!(
            book.overdue(11_000),
            vec![("a".into(), "w2".into()), ("b".into(), "w1".into())]
        );
        assert_eq!(book.overdue(16_000), vec![("c".into(), "w1".into())]);
    }
}
