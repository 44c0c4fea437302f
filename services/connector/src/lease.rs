//! Relay leases in `ngit_sync_leases` (compare-and-set, bucket TTL) and worker heartbeats in
//! `ngit_sync_workers`: the only two ways a connector claims anything.

use async_nats::jetstream::kv::{CreateErrorKind, Operation};
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{LeaseEntry, WorkerEntry};
use ngit_sync_shared::{Bus, BusError};

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease held by {0}")]
    Busy(String),
    #[error("lease {key}: {message}")]
    Kv { key: String, message: String },
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

fn kv_error(key: &str, e: impl std::fmt::Display) -> LeaseError {
    LeaseError::Kv {
        key: key.to_string(),
        message: e.to_string(),
    }
}

/// Creates the lease (fails if anyone holds it). A lease of this very worker id, left by an
/// earlier run of it, is taken over rather than waited out.
pub async fn claim(bus: &Bus, key: &str, lease: &LeaseEntry) -> Result<u64, LeaseError> {
    let store = &bus.buckets.leases;
    let payload = codec::encode(bus.wire, lease)?;
    match store.create(key, payload.clone()).await {
        Ok(revision) => Ok(revision),
        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
            let entry = store.entry(key).await.map_err(|e| kv_error(key, e))?;
            let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
                return Err(LeaseError::Busy("someone (just released)".into()));
            };
            let holder = codec::decode::<LeaseEntry>(&entry.value)
                .map(|l| l.worker)
                .unwrap_or_else(|_| "an unreadable lease".into());
            if holder != lease.worker {
                return Err(LeaseError::Busy(holder));
            }
            store
                .update(key, payload, entry.revision)
                .await
                .map_err(|e| kv_error(key, e))
        }
        Err(e) => Err(kv_error(key, e)),
    }
}

/// Renews the lease at `revision`; an error means the lease may be lost.
pub async fn renew(
    bus: &Bus,
    key: &str,
    lease: &LeaseEntry,
    revision: u64,
) -> Result<u64, LeaseError> {
    let payload = codec::encode(bus.wire, lease)?;
    bus.buckets
        .leases
        .update(key, payload, revision)
        .await
        .map_err(|e| kv_error(key, e))
}

/// Deletes the lease if it is still ours (at `revision`).
pub async fn release(bus: &Bus, key: &str, revision: u64) -> Result<(), LeaseError> {
    bus.buckets
        .leases
        .delete_expect_revision(key, Some(revision))
        .await
        .map_err(|e| kv_error(key, e))
}

pub async fn heartbeat(bus: &Bus, entry: &WorkerEntry) -> Result<u64, BusError> {
    bus.put(&bus.buckets.workers, &entry.worker, entry).await
}

/// Removes this worker's heartbeat so the others take its relays at once.
pub async fn retire(bus: &Bus, worker: &str) -> Result<(), LeaseError> {
    bus.buckets
        .workers
        .delete(worker)
        .await
        .map_err(|e| kv_error(worker, e))
}
