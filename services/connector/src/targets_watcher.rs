//! One watcher of `ngit_sync_repos` per worker, feeding every session its relay's slice of
//! the targets through a `watch` channel (only the newest slice matters to a session), and
//! discovery's watermark once every target change it depends on is in those slices
//! ([`crate::applied_watermark`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream::kv::{Entry, Operation, Watch};
use futures::StreamExt;
use ngit_sync_shared::messages::{Watermark, WATERMARK_DISCOVERY};
use ngit_sync_shared::{codec, Bus, RelayUrl};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::applied_watermark::AppliedGate;
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
#[derive(Clone)]
pub struct Targets {
    inner: Arc<Mutex<Inner>>,
    /// Discovery's watermark, once every target change it depends on is in the slices.
    applied: Arc<watch::Sender<u64>>,
}

impl Default for Targets {
    fn default() -> Targets {
        Targets {
            inner: Arc::default(),
            applied: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Targets {
    pub fn new() -> Targets {
        Targets::default()
    }

    /// Discovery's watermark as applied to the slices; a session that has also taken its
    /// slice's latest change has every target change up to it.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn set_applied(&self, watermark: Option<u64>) {
        if let Some(w) = watermark {
            tracing::debug!(watermark = w, "discovery watermark applied");
            self.applied.send_if_modified(|now| {
                let newer = w > *now;
                if newer {
                    *now = w;
                }
                newer
            });
        }
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

/// Follows `ngit_sync_repos` and discovery's watermark until `shutdown`.
pub async fn run(bus: Bus, targets: Targets, shutdown: CancellationToken) -> Result<(), Error> {
    let mut feed = KvFeed::open(&bus.buckets.repos).await?;
    let mut marks = watermark_watch(&bus).await?;
    let mut gate = AppliedGate::default();
    let mut ready = false;
    let mut last_rev = 0;
    // A watermark whose revision could not be read yet (NATS away): tried again shortly.
    let mut unplaced: Option<u64> = None;
    loop {
        if let Some(seq) = unplaced {
            match repos_last_revision(&bus).await {
                Ok(rev) => {
                    unplaced = None;
                    targets.set_applied(gate.watermark(seq, rev));
                }
                Err(e) => tracing::debug!(error = %e, "repos bucket revision unreadable; retrying"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(RETRY_REVISION), if unplaced.is_some() => {}
            item = feed.next() => match item? {
                Feed::Entry(entry) => {
                    last_rev = last_rev.max(entry.revision);
                    targets.apply(&entry);
                    // A burst of changes becomes one update per relay once it is all in.
                    if entry.delta == 0 && ready {
                        targets.flush();
                        targets.set_applied(gate.flushed(last_rev));
                    }
                }
                Feed::Current => {
                    tracing::debug!("repos bucket read; targets ready");
                    ready = true;
                    targets.mark_ready();
                    last_rev = last_rev.max(feed.opened_rev());
                    targets.set_applied(gate.flushed(last_rev));
                }
            },
            mark = marks.next() => match mark {
                None => return Err(watch_error(&bus.buckets.watermarks.name, "watch ended")),
                // The ordered consumer behind the watch recreates itself and goes on.
                Some(Err(e)) => tracing::warn!(error = %e, "watermark watch hiccup"),
                Some(Ok(entry)) if entry.operation == Operation::Put => {
                    match codec::decode::<Watermark>(&entry.value) {
                        Ok(w) => unplaced = Some(unplaced.map_or(w.seq, |u| u.max(w.seq))),
                        Err(e) => tracing::warn!(error = %e, "unreadable discovery watermark"),
                    }
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Pause before asking the repos bucket's revision again after a failure.
const RETRY_REVISION: std::time::Duration = std::time::Duration::from_secs(1);

async fn watermark_watch(bus: &Bus) -> Result<Watch, Error> {
    let bucket = &bus.buckets.watermarks;
    bucket
        .watch_with_history(WATERMARK_DISCOVERY)
        .await
        .map_err(|e| watch_error(&bucket.name, &e.to_string()))
}

/// The repos bucket's newest revision: every change discovery wrote before it stored the
/// watermark we just saw is at or below it.
async fn repos_last_revision(bus: &Bus) -> Result<u64, Error> {
    let bucket = &bus.buckets.repos;
    let info = bucket
        .stream
        .get_info()
        .await
        .map_err(|e| watch_error(&bucket.name, &e.to_string()))?;
    Ok(info.state.last_sequence)
}

fn watch_error(bucket: &str, message: &str) -> Error {
    Error::Watch {
        bucket: bucket.to_string(),
        message: message.to_string(),
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
