//! A mirror of a KV bucket whose entries expire (worker heartbeats, leases).
//!
//! NATS removes an expired KV entry silently: a watch sees no delete marker. So the mirror
//! remembers when each value was written (the server's timestamp of the KV entry) and treats it
//! as gone once the bucket's max age has passed, exactly when the server drops it.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Expiring<V> {
    /// 0: entries never expire (a bucket without max age).
    ttl_ms: u64,
    entries: HashMap<String, (V, u64)>,
}

impl<V> Expiring<V> {
    pub fn new(ttl: Duration) -> Expiring<V> {
        Expiring {
            ttl_ms: ttl.as_millis() as u64,
            entries: HashMap::new(),
        }
    }

    /// A put seen on the watch; `written_ms` is the entry's server timestamp.
    pub fn put(&mut self, key: &str, value: V, written_ms: u64) {
        self.entries.insert(key.to_string(), (value, written_ms));
    }

    pub fn delete(&mut self, key: &str) {
        self.entries.remove(key);
    }

    fn alive(&self, written_ms: u64, now_ms: u64) -> bool {
        self.ttl_ms == 0 || written_ms.saturating_add(self.ttl_ms) > now_ms
    }

    /// Entries the server still holds at `now_ms`.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = (&str, &V)> {
        self.entries
            .iter()
            .filter(move |(_, (_, written))| self.alive(*written, now_ms))
            .map(|(k, (v, _))| (k.as_str(), v))
    }

    pub fn get(&self, key: &str, now_ms: u64) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(_, written)| self.alive(*written, now_ms))
            .map(|(v, _)| v)
    }

    /// Forgets expired entries, so keys of long-gone workers do not pile up.
    pub fn prune(&mut self, now_ms: u64) {
        let ttl_ms = self.ttl_ms;
        self.entries
            .retain(|_, (_, written)| ttl_ms == 0 || written.saturating_add(ttl_ms) > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_vanish_when_the_bucket_max_age_passes() {
        let mut m = Expiring::new(Duration::from_secs(10));
        m.put("w1", 1, 1_000);
        m.put("w2", 2, 5_000);
        assert_eq!(m.live(10_999).count(), 2);
        assert_eq!(m.live(11_000).count(), 1);
        assert_eq!(m.get("w1", 11_000), None);
        assert_eq!(m.get("w2", 11_000), Some(&2));
        m.put("w1", 3, 12_000);
        assert_eq!(m.get("w1", 12_500), Some(&3));
        m.prune(15_000);
        assert_eq!(m.entries.len(), 1);
    }

    #[test]
    fn deletes_are_immediate_and_zero_ttl_never_expires() {
        let mut m = Expiring::new(Duration::ZERO);
        m.put("a", (), 0);
        assert_eq!(m.live(u64::MAX).count(), 1);
        m.delete("a");
        assert_eq!(m.live(0).count(), 0);
    }
}
