//! The `ngit_sync_status` bucket and `.status` subject as batch-tracker writes them: a report
//! goes out only when it differs from what the bucket holds, and a failed write is retried.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use ngit_sync_shared::messages::{self, RelayBody, RelayNews, StatusReport};
use ngit_sync_shared::{codec, Bus, RelayKey};

use crate::status_machine::{differs, StatusMachine};
use crate::Error;

pub struct StatusStore {
    bus: Bus,
    /// What the bucket holds: this service is its only writer, so the copy stays true.
    stored: HashMap<RelayKey, StatusReport>,
    /// Relays whose report may differ from `stored`.
    dirty: BTreeSet<RelayKey>,
}

impl StatusStore {
    /// Reads every report in the bucket.
    pub async fn load(bus: Bus) -> Result<StatusStore, Error> {
        let bucket = &bus.buckets.status;
        let read_err = |e: &dyn std::fmt::Display| Error::Kv {
            bucket: bucket.name.clone(),
            message: e.to_string(),
        };
        let mut keys = bucket.keys().await.map_err(|e| read_err(&e))?;
        let mut stored = HashMap::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| read_err(&e))?;
            let Some(bytes) = bucket.get(&key).await.map_err(|e| read_err(&e))? else {
                continue;
            };
            match codec::decode::<StatusReport>(&bytes) {
                Ok(report) => {
                    stored.insert(RelayKey::from_raw(key), report);
                }
                // Rewritten from the replay, or deleted when no relay claims the key.
                Err(e) => tracing::warn!(key, error = %e, "unreadable status in the bucket"),
            }
        }
        Ok(StatusStore {
            bus,
            stored,
            dirty: BTreeSet::new(),
        })
    }

    pub fn stored(&self) -> &HashMap<RelayKey, StatusReport> {
        &self.stored
    }

    pub fn mark(&mut self, keys: impl IntoIterator<Item = RelayKey>) {
        self.dirty.extend(keys);
    }

    /// Marks every relay the machine or the bucket knows, for the first write after replay.
    pub fn mark_all(&mut self, machine: &StatusMachine) {
        let keys: Vec<RelayKey> = machine.keys().chain(self.stored.keys()).cloned().collect();
        self.mark(keys);
    }

    /// Writes every marked relay whose report differs from the bucket: `.status` first, then
    /// the bucket, so a crash between them re-publishes rather than loses the message.
    /// Relays the machine no longer knows leave the bucket. Stops at the first failure and
    /// leaves the rest marked for the next call.
    pub async fn flush(&mut self, machine: &mut StatusMachine) {
        while let Some(key) = self.dirty.first().cloned() {
            match self.write(&key, machine).await {
                Ok(()) => {
                    self.dirty.remove(&key);
                }
                Err(e) => {
                    tracing::warn!(relay = %key, error = %e, "cannot write status; will retry");
                    return;
                }
            }
        }
    }

    async fn write(&mut self, key: &RelayKey, machine: &mut StatusMachine) -> Result<(), Error> {
        let bucket = &self.bus.buckets.status;
        let Some(track) = machine.get(key) else {
            if self.stored.contains_key(key) {
                bucket.delete(key.as_str()).await.map_err(|e| Error::Kv {
                    bucket: bucket.name.clone(),
                    message: e.to_string(),
                })?;
                self.stored.remove(key);
                tracing::info!(relay = %key, "relay forgotten; status removed");
            }
            return Ok(());
        };
        let report = track.report();
        let stored = self.stored.get(key);
        if let Some(stored) = stored {
            if !differs(Some(stored), Some(&report)) {
                machine.adopt_since(key, stored);
                return Ok(());
            }
        }
        let status_changed = stored.is_none_or(|s| s.status != report.status);
        let news = RelayNews {
            relay: track.url().clone(),
            at_ms: messages::now_ms(),
            body: RelayBody::Status(report.clone()),
        };
        self.bus.publish_relay(&news).await?;
        self.bus.put(bucket, key.as_str(), &report).await?;
        // Status changes are what an operator follows; batch counts move all the time.
        if status_changed {
            tracing::info!(relay = %news.relay, status = report.status.as_str(), owner = report.owner.as_deref().unwrap_or(""), "status");
        } else {
            tracing::debug!(relay = %news.relay, status = report.status.as_str(), open = report.open_batches, failed = report.failed_batches, "status report");
        }
        self.stored.insert(key.clone(), report);
        Ok(())
    }
}
