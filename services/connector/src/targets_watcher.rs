//! One watcher of `ngit_sync_repos` per worker, feeding every session its relay's slice of
//! the targets through a `watch` channel (only the newest slice matters to a session).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream::kv::{Entry, Operation};
use ngit_sync_shared::{Bus, RelayUrl};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::kv_feed::{Feed, KvFeed};
use crate::targets::{RelayTargets, TargetIndex};

#[derive(Default)]
struct Inner {
    index: TargetIndex,
    ready: bool,
    senders: HashMap<RelayUrl, watch::Sender<Arc<RelayTargets>>>,
    dirty: HashSet<RelayUrl>,
}

impl Inner {
    fn slice(&self, relay: &RelayUrl) -> Arc<RelayTargets> {
        Arc::new(RelayTargets {
            ready: self.ready,
            ..self.index.slice(relay)
        })
    }
}

/// The shared targets; cheap to clone.
#[derive(Clone, Default)]
pub struct Targets {
    inner: Arc<Mutex<Inner>>,
}

impl Targets {
    pub fn new() -> Targets {
        Targets::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; recover the data if something ever did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The relay's slice now and whenever it changes.
    pub fn subscribe(&self, relay: &RelayUrl) -> watch::Receiver<Arc<RelayTargets>> {
        let mut inner = self.lock();
        let slice = inner.slice(relay);
        match inner.senders.get(relay) {
            Some(tx) => {
                tx.send_replace(slice);
                tx.subscribe()
            }
            None => {
                let (tx, rx) = watch::channel(slice);
                inner.senders.insert(relay.clone(), tx);
                rx
            }
        }
    }

    fn apply(&self, entry: &Entry) {
        let mut inner = self.lock();
        let affected = match entry.operation {
            Operation::Put => inner.index.apply_put(&entry.key, &entry.value),
            Operation::Delete | Operation::Purge => inner.index.apply_delete(&entry.key),
        };
        inner.dirty.extend(affected);
    }

    /// Sends the new slices of relays that changed (once the bucket was read whole).
    fn flush(&self) {
        let mut inner = self.lock();
        if !inner.ready {
            return;
        }
        let dirty: Vec<RelayUrl> = inner.dirty.drain().collect();
        for relay in dirty {
            let Some(tx) = inner.senders.get(&relay) else {
                continue;
            };
            if tx.receiver_count() == 0 {
                inner.senders.remove(&relay);
                continue;
            }
            let slice = inner.slice(&relay);
            if let Some(tx) = inner.senders.get(&relay) {
                tx.send_replace(slice);
            }
        }
    }

    fn mark_ready(&self) {
        let mut inner = self.lock();
        inner.ready = true;
        inner.dirty.clear();
        let relays: Vec<RelayUrl> = inner.senders.keys().cloned().collect();
        for relay in relays {
            let slice = inner.slice(&relay);
            if let Some(tx) = inner.senders.get(&relay) {
                tx.send_replace(slice);
            }
        }
    }
}

/// Follows `ngit_sync_repos` until `shutdown`.
pub async fn run(bus: Bus, targets: Targets, shutdown: CancellationToken) -> Result<(), Error> {
    let mut feed = KvFeed::open(&bus.buckets.repos).await?;
    loop {
        let item = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            item = feed.next() => item?,
        };
        match item {
            Feed::Entry(entry) => {
                targets.apply(&entry);
                // A burst of changes becomes one update per relay once it is all in.
                if entry.delta == 0 {
                    targets.flush();
                }
            }
            Feed::Current => {
                tracing::debug!("repos bucket read; targets ready");
                targets.mark_ready();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_before_the_bucket_is_read_sees_not_ready_then_ready() {
        let targets = Targets::new();
        let relay = RelayUrl::parse("wss://a.example").unwrap();
        let mut rx = targets.subscribe(&relay);
        assert!(!rx.borrow_and_update().ready);
        targets.mark_ready();
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().ready);
    }
}
