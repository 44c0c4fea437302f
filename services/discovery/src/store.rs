//! Discovery's side of KV and the RELAYS stream: reading what the buckets hold at start,
//! writing a [`ChangeSet`] and announcing its relays, and the watermarks.

use async_nats::jetstream::kv;
use futures::TryStreamExt;
use ngit_sync_shared::messages::{now_ms, RelayBody, RelayEntry, RelayNews, RepoEntry, Watermark};
use ngit_sync_shared::nip34::{repo_key, root_key};
use ngit_sync_shared::{Bus, BusError, RelayUrl};

use crate::changes::{ChangeSet, Published, RootKey};

/// Key of discovery's watermark in `ngit_sync_watermarks`.
pub const WATERMARK_KEY: &str = "discovery";
/// Key of the sink's watermark in `ngit_sync_watermarks`.
pub const SINK_WATERMARK_KEY: &str = "sink";

/// KV writes in flight at once: a first flush may write tens of thousands of keys.
const KV_CONCURRENCY: usize = 64;

/// What the repos and relays buckets hold now.
pub async fn load(bus: &Bus) -> Result<Published, BusError> {
    let mut repos = Vec::new();
    let mut roots = Vec::new();
    for key in keys(&bus.buckets.repos).await? {
        match RootKey::parse(&key) {
            Some(root) => roots.push(root),
            None => match bus.get::<RepoEntry>(&bus.buckets.repos, &key).await {
                Ok(Some(entry)) if repo_key(&entry.coord) == key => repos.push(entry),
                Ok(Some(_)) | Err(BusError::Codec(_)) => {
                    tracing::warn!(key, "ignoring a repos entry discovery did not write")
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            },
        }
    }
    let mut relays = Vec::new();
    for key in keys(&bus.buckets.relays).await? {
        match bus.get::<RelayEntry>(&bus.buckets.relays, &key).await {
            Ok(Some(entry)) if entry.url.key().as_str() == key => relays.push(entry),
            Ok(Some(_)) | Err(BusError::Codec(_)) => {
                tracing::warn!(key, "ignoring a relays entry discovery did not write")
            }
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    tracing::info!(
        repos = repos.len(),
        roots = roots.len(),
        relays = relays.len(),
        "read the targets KV holds"
    );
    Ok(Published::from_kv(repos, roots, relays))
}

async fn keys(store: &kv::Store) -> Result<Vec<String>, BusError> {
    let err = |e: &dyn std::fmt::Display| BusError::Kv {
        bucket: store.name.clone(),
        key: ">".into(),
        message: e.to_string(),
    };
    let keys = store.keys().await.map_err(|e| err(&e))?;
    keys.try_collect().await.map_err(|e| err(&e))
}

/// Writes the changes (repos before their roots, both before the relays that point at them;
/// removals the other way round), then announces new, changed and forgotten relays.
pub async fn apply(bus: &Bus, changes: &ChangeSet) -> Result<(), BusError> {
    let repos = &bus.buckets.repos;
    let repo_puts = changes.repos_added.iter().chain(&changes.repos_changed);
    put_all(bus, repos, repo_puts.map(|r| (repo_key(&r.coord), r))).await?;
    let root_puts = changes.roots_added.iter();
    put_all(
        bus,
        repos,
        root_puts.map(|r| (root_key(&r.coord, &r.id), r)),
    )
    .await?;
    delete_all(repos, changes.roots_removed.iter().map(RootKey::kv_key)).await?;
    delete_all(repos, changes.repos_removed.iter().map(|c| repo_key(c))).await?;
    let relays = &bus.buckets.relays;
    let relay_puts = changes.relays_added.iter().chain(&changes.relays_changed);
    put_all(
        bus,
        relays,
        relay_puts.map(|r| (r.url.key().to_string(), r)),
    )
    .await?;
    delete_all(
        relays,
        changes.relays_removed.iter().map(|u| u.key().to_string()),
    )
    .await?;

    for entry in changes.relays_added.iter().chain(&changes.relays_changed) {
        let body = RelayBody::Discovered {
            bootstrap: entry.bootstrap,
            repos: entry.repos,
        };
        publish(bus, &entry.url, body).await?;
    }
    for url in &changes.relays_removed {
        publish(bus, url, RelayBody::Forgotten).await?;
    }
    Ok(())
}

async fn publish(bus: &Bus, relay: &RelayUrl, body: RelayBody) -> Result<(), BusError> {
    let news = RelayNews {
        relay: relay.clone(),
        at_ms: now_ms(),
        body,
    };
    bus.publish_relay(&news).await.map(|_| ())
}

async fn put_all<'a, T: serde::Serialize + 'a>(
    bus: &Bus,
    store: &kv::Store,
    items: impl Iterator<Item = (String, &'a T)>,
) -> Result<(), BusError> {
    futures::stream::iter(items.map(Ok))
        .try_for_each_concurrent(KV_CONCURRENCY, |(key, value)| async move {
            bus.put(store, &key, value).await.map(|_| ())
        })
        .await
}

async fn delete_all(store: &kv::Store, keys: impl Iterator<Item = String>) -> Result<(), BusError> {
    futures::stream::iter(keys.map(Ok))
        .try_for_each_concurrent(KV_CONCURRENCY, |key| async move {
            store.delete(&key).await.map_err(|e| BusError::Kv {
                bucket: store.name.clone(),
                key,
                message: e.to_string(),
            })
        })
        .await
}

/// A watermark's sequence, 0 when there is none yet.
pub async fn read_watermark(bus: &Bus, key: &str) -> Result<u64, BusError> {
    let value: Option<Watermark> = bus.get(&bus.buckets.watermarks, key).await?;
    Ok(value.map_or(0, |w| w.seq))
}

pub async fn write_watermark(bus: &Bus, seq: u64) -> Result<(), BusError> {
    let value = Watermark {
        seq,
        at_ms: now_ms(),
    };
    bus.put(&bus.buckets.watermarks, WATERMARK_KEY, &value)
        .await
        .map(|_| ())
}
