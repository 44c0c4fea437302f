//! The home index (DESIGN.md sections 1 and 5): every event the home relay holds that a sync
//! filter can match, plus the events it rejected, kept in real nostr stores so a filter selects
//! exactly what a remote relay's store would select. It is the "our side" of every negentropy
//! reconciliation ([`crate::index_server`]).
//!
//! Held events live in `nostr-lmdb` under `NGIT_SYNC_HOME_INDEX_PATH`, or in memory when it is
//! not set ([`ItemIndex`], posting lists by tag value); either way the index is refilled from
//! the home relay's history at every start.
//! Only what filters look at is stored (the content is dropped). Rejected events are kept in
//! memory and count as "have" until an event they reference (a repo coordinate or a root id
//! in their `a`/`A`/`e`/`E`/`q` tags) is held: then the home relay may accept them, and they
//! are fetched again. A restart forgets rejections, which costs one more fetch of each.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use ngit_sync_shared::nip34::{KIND_REPO_ANNOUNCEMENT, KIND_REPO_STATE};
use ngit_sync_shared::status::Outcome;
use nostr::{Event, EventId, Filter, JsonUtil, Timestamp};
use nostr_database::{DatabaseError, NostrDatabase};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::feed::Feed;
use crate::item_index::ItemIndex;

/// Tags through which L2 and L3 filters select events (DESIGN.md section 3).
const SYNC_TAGS: [&str; 5] = ["a", "A", "e", "E", "q"];

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot open the home index at {path}: {error}")]
    Open { path: PathBuf, error: String },
    #[error("home index store: {0}")]
    Store(#[from] DatabaseError),
}

/// Where held events live.
enum Held {
    Memory(RwLock<ItemIndex>),
    Lmdb(nostr_lmdb::NostrLMDB),
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Held::Memory(_) => "Held::Memory",
            Held::Lmdb(_) => "Held::Lmdb",
        })
    }
}

/// The stores, shared by the writer and the server.
#[derive(Debug, Clone)]
pub struct IndexStore {
    held: Arc<Held>,
    rejected: Arc<RwLock<ItemIndex>>,
    /// The home relay's history was read once: before that the index is partial.
    ready: Arc<AtomicBool>,
}

impl IndexStore {
    /// In memory, or LMDB at `path`.
    pub fn open(path: Option<&PathBuf>) -> Result<IndexStore, IndexError> {
        let held = match path {
            None => Held::Memory(RwLock::default()),
            Some(path) => {
                std::fs::create_dir_all(path).map_err(|e| IndexError::Open {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
                let lmdb = nostr_lmdb::NostrLMDB::open(path).map_err(|e| IndexError::Open {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
                Held::Lmdb(lmdb)
            }
        };
        Ok(IndexStore {
            held: Arc::new(held),
            rejected: Arc::default(),
            ready: Arc::default(),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// `(created_at, id)` of every held or rejected event matching `filter`.
    pub async fn items(&self, filter: &Filter) -> Result<Vec<(EventId, Timestamp)>, IndexError> {
        let mut items = match &*self.held {
            Held::Memory(index) => read(index).items(filter),
            Held::Lmdb(db) => db.negentropy_items(filter.clone()).await?,
        };
        items.extend(read(&self.rejected).items(filter));
        Ok(items)
    }

    async fn hold(&self, sketch: Event) -> Result<(), IndexError> {
        match &*self.held {
            Held::Memory(index) => {
                write(index).insert(sketch);
            }
            Held::Lmdb(db) => {
                db.save_event(&sketch).await?;
            }
        }
        Ok(())
    }
}

// A poisoned lock is used anyway: at worst the index misses an item or holds a stale one,
// which costs one extra fetch or one missed reconciliation item, not a stopped discovery.
fn read(index: &RwLock<ItemIndex>) -> std::sync::RwLockReadGuard<'_, ItemIndex> {
    index.read().unwrap_or_else(|e| e.into_inner())
}

fn write(index: &RwLock<ItemIndex>) -> std::sync::RwLockWriteGuard<'_, ItemIndex> {
    index.write().unwrap_or_else(|e| e.into_inner())
}

/// Whether some sync filter (L1 kinds, L2/L3 tags) can select the event.
pub fn indexable(event: &Event) -> bool {
    let kind = event.kind.as_u16();
    kind == KIND_REPO_ANNOUNCEMENT
        || kind == KIND_REPO_STATE
        || event
            .tags
            .iter()
            .any(|t| SYNC_TAGS.contains(&t.kind().as_str()))
}

/// What a filter can see of an event: everything but the content.
fn sketch(event: &Event) -> Event {
    Event::new(
        event.id,
        event.pubkey,
        event.created_at,
        event.kind,
        event.tags.clone(),
        "",
        event.sig,
    )
}

/// Values of the event's sync tags: what a rejection may be waiting for.
fn references(event: &Event) -> Vec<String> {
    event
        .tags
        .iter()
        .filter(|t| SYNC_TAGS.contains(&t.kind().as_str()))
        .filter_map(|t| t.content().map(str::to_string))
        .collect()
}

/// The keys under which other events reference this one: its id and, if addressable, its
/// coordinate.
fn keys_of(event: &Event) -> Vec<String> {
    let mut keys = vec![event.id.to_hex()];
    if event.kind.is_addressable() {
        let d = event.tags.identifier().unwrap_or_default();
        keys.push(format!("{}:{}:{d}", event.kind.as_u16(), event.pubkey));
    }
    keys
}

/// The only writer of the index: the [`Feed`] passes through it on its way to the targets task.
pub struct IndexWriter {
    store: IndexStore,
    /// Reference key → rejected events waiting for it.
    waiting: HashMap<String, Vec<EventId>>,
}

impl IndexWriter {
    pub fn new(store: IndexStore) -> IndexWriter {
        IndexWriter {
            store,
            waiting: HashMap::new(),
        }
    }

    /// Takes its copy of one feed message.
    pub async fn take(&mut self, input: &Feed) -> Result<(), IndexError> {
        match input {
            Feed::Home(event) => self.hold(event).await?,
            Feed::HistoryComplete { .. } => {
                if !self.store.ready.swap(true, Ordering::AcqRel) {
                    tracing::info!("home index ready");
                }
            }
            Feed::Outcomes { batch, .. } => {
                for item in &batch.items {
                    let Some(event) = item.event.as_deref().and_then(|j| Event::from_json(j).ok())
                    else {
                        continue;
                    };
                    match batch.outcome {
                        Outcome::Saved | Outcome::Duplicate => self.hold(&event).await?,
                        Outcome::Rejected => self.reject(&event).await?,
                    }
                }
            }
        }
        Ok(())
    }

    /// The home relay holds `event`; rejections waiting on it may now be accepted.
    pub async fn hold(&mut self, event: &Event) -> Result<(), IndexError> {
        if !indexable(event) {
            return Ok(());
        }
        self.store.hold(sketch(event)).await?;
        let released: Vec<EventId> = keys_of(event)
            .iter()
            .filter_map(|k| self.waiting.remove(k))
            .flatten()
            .collect();
        if !released.is_empty() {
            tracing::debug!(
                count = released.len(),
                "rejected events may be accepted now"
            );
            let mut rejected = write(&self.store.rejected);
            for id in &released {
                rejected.remove(id);
            }
        }
        Ok(())
    }

    /// The home relay refused `event` for good: not fetched again until what it references changes.
    pub async fn reject(&mut self, event: &Event) -> Result<(), IndexError> {
        if !indexable(event) {
            return Ok(());
        }
        write(&self.store.rejected).insert(sketch(event));
        for key in references(event) {
            self.waiting.entry(key).or_default().push(event.id);
        }
        Ok(())
    }
}

/// Copies every feed message into the index, then hands it on to the targets task.
pub async fn run(
    mut writer: IndexWriter,
    mut input: mpsc::Receiver<Feed>,
    output: mpsc::Sender<Feed>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = input.recv() => next,
        };
        let Some(feed) = next else { return };
        if let Err(e) = writer.take(&feed).await {
            // A missing item costs one duplicate fetch later; the targets must go on.
            tracing::warn!(error = %e, "home index write failed");
        }
        if output.send(feed).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind, Tag};

    fn event(keys: &Keys, kind: u16, tags: Vec<Tag>) -> Event {
        EventBuilder::new(Kind::Custom(kind), "body")
            .tags(tags)
            .sign_with_keys(keys)
            .unwrap()
    }

    #[tokio::test]
    async fn filters_select_held_and_rejected_events_and_a_new_dependency_releases_them() {
        let keys = Keys::generate();
        let coord = format!("30617:{}:repo", keys.public_key());
        let a_tag = || Tag::parse(["a", coord.as_str()]).unwrap();
        let patch = event(&keys, 1617, vec![a_tag()]);
        let note = event(&keys, 1, vec![]);
        let store = IndexStore::open(None).unwrap();
        let mut writer = IndexWriter::new(store.clone());
        writer.hold(&patch).await.unwrap();
        writer.hold(&note).await.unwrap();
        let l2 = Filter::new().custom_tag(
            nostr::SingleLetterTag::lowercase(nostr::Alphabet::A),
            coord.clone(),
        );
        let items = store.items(&l2).await.unwrap();
        assert_eq!(items, vec![(patch.id, patch.created_at)]);
        assert!(store
            .items(&Filter::new().kind(Kind::TextNote))
            .await
            .unwrap()
            .is_empty());

        let issue = event(&keys, 1621, vec![a_tag()]);
        writer.reject(&issue).await.unwrap();
        assert_eq!(
            store.items(&l2).await.unwrap().len(),
            2,
            "rejected counts as have"
        );

        let announcement = event(&keys, 30617, vec![Tag::identifier("repo")]);
        writer.hold(&announcement).await.unwrap();
        let ids: Vec<EventId> = store
            .items(&l2)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            ids,
            vec![patch.id],
            "the repo arrived: the issue may be fetched again"
        );
    }

    #[tokio::test]
    async fn an_lmdb_index_keeps_what_it_holds_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home-index");
        let keys = Keys::generate();
        let state = event(&keys, 30618, vec![Tag::identifier("repo")]);
        {
            let store = IndexStore::open(Some(&path)).unwrap();
            IndexWriter::new(store).hold(&state).await.unwrap();
        }
        let store = IndexStore::open(Some(&path)).unwrap();
        let items = store
            .items(&Filter::new().kind(Kind::Custom(30618)))
            .await
            .unwrap();
        assert_eq!(items, vec![(state.id, state.created_at)]);
    }
}
