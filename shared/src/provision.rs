//! Creates (or updates) the streams and buckets of DESIGN.md section 2. Every service calls
//! [`provision`] at start; it is idempotent, so start order does not matter.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::constants;
use crate::subjects::Names;

/// Settings of the bus objects that every service must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// Duplicate window of the EVENTS stream.
    pub dedup_window: Duration,
    /// Max age of `ngit_sync_leases`.
    pub lease_ttl: Duration,
    /// Max age of `ngit_sync_workers`.
    pub worker_ttl: Duration,
    /// Max age of the RELAYS and OUTCOMES streams.
    pub stream_max_age: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            dedup_window: constants::DEDUP_WINDOW,
            lease_ttl: constants::LEASE_TTL,
            worker_ttl: constants::WORKER_TTL,
            stream_max_age: constants::STREAM_MAX_AGE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("stream {name}: {message}")]
    Stream { name: String, message: String },
    #[error("bucket {name}: {message}")]
    Bucket { name: String, message: String },
}

/// The KV buckets, opened.
#[derive(Clone)]
pub struct Buckets {
    pub repos: kv::Store,
    pub relays: kv::Store,
    pub workers: kv::Store,
    pub leases: kv::Store,
    pub relay_state: kv::Store,
    pub status: kv::Store,
    pub watermarks: kv::Store,
}

/// Attempts per object: two services starting together may race on creation.
const ATTEMPTS: usize = 5;

pub async fn provision(
    js: &jetstream::Context,
    names: &Names,
    opts: &BusOptions,
) -> Result<Buckets, ProvisionError> {
    let streams = [
        stream::Config {
            name: names.stream_relays(),
            subjects: vec![names.relay_all()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: opts.stream_max_age,
            ..Default::default()
        },
        stream::Config {
            name: names.stream_events(),
            subjects: vec![names.event_all()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: opts.dedup_window,
            ..Default::default()
        },
        stream::Config {
            name: names.stream_outcomes(),
            subjects: vec![names.outcome_all()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: opts.stream_max_age,
            ..Default::default()
        },
    ];
    for config in streams {
        let name = config.name.clone();
        retry(|| async { js.create_or_update_stream(config.clone()).await.map(|_| ()) })
            .await
            .map_err(|message| ProvisionError::Stream { name, message })?;
    }
    let bucket = |name: String, max_age: Duration| kv::Config {
        bucket: name,
        history: 1,
        max_age,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let open = |config: kv::Config| async move {
        let name = config.bucket.clone();
        retry(|| async { js.create_or_update_key_value(config.clone()).await })
            .await
            .map_err(|message| ProvisionError::Bucket { name, message })
    };
    Ok(Buckets {
        repos: open(bucket(names.bucket_repos(), Duration::ZERO)).await?,
        relays: open(bucket(names.bucket_relays(), Duration::ZERO)).await?,
        workers: open(bucket(names.bucket_workers(), opts.worker_ttl)).await?,
        leases: open(bucket(names.bucket_leases(), opts.lease_ttl)).await?,
        relay_state: open(bucket(names.bucket_relay_state(), Duration::ZERO)).await?,
        status: open(bucket(names.bucket_status(), Duration::ZERO)).await?,
        watermarks: open(bucket(names.bucket_watermarks(), Duration::ZERO)).await?,
    })
}

async fn retry<T, E, F, Fut>(mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(100 * (attempt as u64 + 1))).await;
            }
        }
    }
    Err(last)
}
