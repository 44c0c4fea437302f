//! What KV holds ([`Published`]) and what must change there to match the index ([`ChangeSet`]).
//! Pure: the diff is computed here, written by [`crate::store`], and committed back here only
//! once KV took it, so a failed write is simply diffed again.

use std::collections::{BTreeMap, HashMap, HashSet};

use ngit_sync_shared::messages::{RelayEntry, RepoEntry, RootEntry};
use ngit_sync_shared::nip34::repo_key;
use ngit_sync_shared::RelayUrl;

use crate::index::RepoSyncIndex;

/// One root event key in `ngit_sync_repos`: `<repo key>.<event id>` ([`ngit_sync_shared::nip34::root_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootKey {
    pub repo_key: String,
    pub id: String,
}

impl RootKey {
    /// Splits a KV key; `None` for repo keys (they hold no `.`).
    pub fn parse(key: &str) -> Option<RootKey> {
        let (repo_key, id) = key.split_once('.')?;
        Some(RootKey {
            repo_key: repo_key.to_string(),
            id: id.to_string(),
        })
    }

    pub fn kv_key(&self) -> String {
        format!("{}.{}", self.repo_key, self.id)
    }
}

/// The changes one window flush writes to KV and announces on the RELAYS stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub repos_added: Vec<RepoEntry>,
    pub repos_changed: Vec<RepoEntry>,
    /// Coordinates of repos that no longer count.
    pub repos_removed: Vec<String>,
    pub roots_added: Vec<RootEntry>,
    pub roots_removed: Vec<RootKey>,
    pub relays_added: Vec<RelayEntry>,
    /// Relays whose repo count or bootstrap flag changed.
    pub relays_changed: Vec<RelayEntry>,
    pub relays_removed: Vec<RelayUrl>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.repos_added.is_empty()
            && self.repos_changed.is_empty()
            && self.repos_removed.is_empty()
            && self.roots_added.is_empty()
            && self.roots_removed.is_empty()
            && self.relays_added.is_empty()
            && self.relays_changed.is_empty()
            && self.relays_removed.is_empty()
    }
}

/// What `ngit_sync_repos` and `ngit_sync_relays` hold, as far as discovery knows.
#[derive(Debug, Default)]
pub struct Published {
    /// By repo key.
    repos: HashMap<String, RepoEntry>,
    /// Root event ids by repo key (a root key alone does not say its coordinate).
    roots: HashMap<String, HashSet<String>>,
    relays: BTreeMap<RelayUrl, RelayEntry>,
    /// False until the first diff against the whole index was committed: after a start, KV
    /// may hold repos and relays that vanished while discovery was down.
    reconciled: bool,
}

impl Published {
    /// What KV held at start; the next diff compares everything, not only dirty coordinates.
    pub fn from_kv(
        repos: impl IntoIterator<Item = RepoEntry>,
        roots: impl IntoIterator<Item = RootKey>,
        relays: impl IntoIterator<Item = RelayEntry>,
    ) -> Published {
        let mut published = Published {
            repos: repos.into_iter().map(|r| (repo_key(&r.coord), r)).collect(),
            relays: relays.into_iter().map(|r| (r.url.clone(), r)).collect(),
            ..Published::default()
        };
        for root in roots {
            published
                .roots
                .entry(root.repo_key)
                .or_default()
                .insert(root.id);
        }
        published
    }

    /// Whether a diff may find something to write.
    pub fn has_pending(&self, index: &RepoSyncIndex) -> bool {
        !self.reconciled || index.has_dirty()
    }

    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// What KV must change to match the index: the dirty coordinates, or after a start everything.
    pub fn diff(&self, index: &RepoSyncIndex) -> ChangeSet {
        let mut changes = ChangeSet::default();
        if self.reconciled {
            for coord in index.dirty() {
                self.diff_repo(index, coord, &mut changes);
            }
        } else {
            let mut seen = HashSet::new();
            for coord in index.coords() {
                seen.insert(repo_key(coord));
                self.diff_repo(index, coord, &mut changes);
            }
            for (key, entry) in &self.repos {
                if !seen.contains(key) {
                    changes.repos_removed.push(entry.coord.clone());
                }
            }
            for (key, ids) in &self.roots {
                if !seen.contains(key) {
                    changes.roots_removed.extend(ids.iter().map(|id| RootKey {
                        repo_key: key.clone(),
                        id: id.clone(),
                    }));
                }
            }
        }
        self.diff_relays(index, &mut changes);
        changes
    }

    fn diff_repo(&self, index: &RepoSyncIndex, coord: &str, changes: &mut ChangeSet) {
        let key = repo_key(coord);
        let published = self.repos.get(&key);
        let published_roots = self.roots.get(&key);
        let Some(relays) = index.counted_relays(coord) else {
            if published.is_some() {
                changes.repos_removed.push(coord.to_string());
            }
            changes
                .roots_removed
                .extend(published_roots.into_iter().flatten().map(|id| RootKey {
                    repo_key: key.clone(),
                    id: id.clone(),
                }));
            return;
        };
        let entry = RepoEntry {
            coord: coord.to_string(),
            relays: relays.to_vec(),
        };
        match published {
            None => changes.repos_added.push(entry),
            Some(p) if p.relays != entry.relays => changes.repos_changed.push(entry),
            Some(_) => {}
        }
        let current: HashSet<&str> = index.roots_of(coord).map(|(id, _)| id).collect();
        for (id, kind) in index.roots_of(coord) {
            if !published_roots.is_some_and(|p| p.contains(id)) {
                changes.roots_added.push(RootEntry {
                    coord: coord.to_string(),
                    id: id.to_string(),
                    kind,
                });
            }
        }
        for id in published_roots.into_iter().flatten() {
            if !current.contains(id.as_str()) {
                changes.roots_removed.push(RootKey {
                    repo_key: key.clone(),
                    id: id.clone(),
                });
            }
        }
    }

    fn diff_relays(&self, index: &RepoSyncIndex, changes: &mut ChangeSet) {
        let current = index.relay_entries();
        for (url, entry) in &current {
            match self.relays.get(url) {
                None => changes.relays_added.push(entry.clone()),
                Some(p) if p != entry => changes.relays_changed.push(entry.clone()),
                Some(_) => {}
            }
        }
        for url in self.relays.keys() {
            if !current.contains_key(url) {
                changes.relays_removed.push(url.clone());
            }
        }
    }

    /// Records that KV now holds `changes`.
    pub fn commit(&mut self, changes: &ChangeSet) {
        for entry in changes.repos_added.iter().chain(&changes.repos_changed) {
            self.repos.insert(repo_key(&entry.coord), entry.clone());
        }
        for coord in &changes.repos_removed {
            self.repos.remove(&repo_key(coord));
        }
        for root in &changes.roots_added {
            self.roots
                .entry(repo_key(&root.coord))
                .or_default()
                .insert(root.id.clone());
        }
        for root in &changes.roots_removed {
            if let Some(ids) = self.roots.get_mut(&root.repo_key) {
                ids.remove(&root.id);
                if ids.is_empty() {
                    self.roots.remove(&root.repo_key);
                }
            }
        }
        for entry in changes.relays_added.iter().chain(&changes.relays_changed) {
            self.relays.insert(entry.url.clone(), entry.clone());
        }
        for url in &changes.relays_removed {
            self.relays.remove(url);
        }
        self.reconciled = true;
    }
}

#[cfg(test)]
mod tests {
    use nostr::Keys;

    use super::*;
    use crate::index::tests::{announcement, coord, issue, url};
    use crate::index::IndexSettings;

    fn index(bootstrap: &[&str]) -> RepoSyncIndex {
        RepoSyncIndex::new(IndexSettings {
            bootstrap: bootstrap.iter().map(|s| url(s)).collect(),
            ..IndexSettings::default()
        })
    }

    /// Diffs, commits, clears dirty: what a successful flush does.
    fn flush(published: &mut Published, ix: &mut RepoSyncIndex) -> ChangeSet {
        let changes = published.diff(ix);
        published.commit(&changes);
        ix.clear_dirty();
        changes
    }

    fn urls(entries: &[RelayEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.url.as_str()).collect()
    }

    #[test]
    fn a_first_flush_adds_repos_roots_and_relays() {
        let mut ix = index(&["wss://boot.example"]);
        let k = Keys::generate();
        ix.fold(&announcement(&k, "r", 10, &["wss://a.example"]));
        ix.fold(&issue(&[&coord(&k, "r")], "bug"));
        let mut published = Published::default();
        let c = flush(&mut published, &mut ix);
        assert_eq!(c.repos_added.len(), 1);
        assert_eq!(c.roots_added.len(), 1);
        assert_eq!(
            urls(&c.relays_added),
            ["wss://a.example", "wss://boot.example"]
        );
        assert!(flush(&mut published, &mut ix).is_empty(), "nothing twice");
    }

    #[test]
    fn dropping_a_relay_changes_the_repo_and_removes_the_relay() {
        let mut ix = index(&[]);
        let (k1, k2) = (Keys::generate(), Keys::generate());
        ix.fold(&announcement(
            &k1,
            "r",
            10,
            &["wss://a.example", "wss://b.example"],
        ));
        ix.fold(&announcement(&k2, "s", 10, &["wss://a.example"]));
        let mut published = Published::default();
        flush(&mut published, &mut ix);
        ix.fold(&announcement(&k1, "r", 20, &["wss://a.example"]));
        let c = flush(&mut published, &mut ix);
        assert_eq!(c.repos_changed.len(), 1);
        assert_eq!(c.relays_removed, [url("wss://b.example")]);
        assert!(c.relays_changed.is_empty(), "a is still listed twice");
        ix.fold(&announcement(&k2, "s", 20, &[]));
        let c = flush(&mut published, &mut ix);
        assert_eq!(urls(&c.relays_changed), ["wss://a.example"]);
        assert_eq!(c.relays_changed[0].repos, 1);
    }

    #[test]
    fn a_restart_with_the_same_index_writes_nothing() {
        let mut ix = index(&["wss://boot.example"]);
        let k = Keys::generate();
        ix.fold(&announcement(&k, "r", 10, &["wss://a.example"]));
        ix.fold(&issue(&[&coord(&k, "r")], "bug"));
        let mut before = Published::default();
        let first = flush(&mut before, &mut ix);
        let roots = first.roots_added.iter().map(|r| RootKey {
            repo_key: repo_key(&r.coord),
            id: r.id.clone(),
        });
        let relays = first.relays_added.iter().cloned();
        let mut after = Published::from_kv(first.repos_added.clone(), roots, relays);
        assert!(after.has_pending(&ix), "a fresh start always diffs once");
        assert!(flush(&mut after, &mut ix).is_empty());
        assert!(!after.has_pending(&ix));
    }

    #[test]
    fn a_restart_removes_what_vanished_while_down() {
        let gone = RepoEntry {
            coord: "30617:aa:gone".into(),
            relays: vec![url("wss://old.example")],
        };
        let stray = RootKey::parse("orphan_key-12345678.abcd").unwrap();
        let gone_root = RootKey {
            repo_key: repo_key(&gone.coord),
            id: "ef01".into(),
        };
        let relays = [
            RelayEntry {
                url: url("wss://old.example"),
                bootstrap: false,
                repos: 1,
            },
            RelayEntry {
                url: url("wss://boot.example"),
                bootstrap: true,
                repos: 0,
            },
        ];
        let mut published =
            Published::from_kv([gone.clone()], [stray.clone(), gone_root.clone()], relays);
        let mut ix = index(&["wss://boot.example"]);
        let c = flush(&mut published, &mut ix);
        assert_eq!(c.repos_removed, [gone.coord]);
        let mut removed = c.roots_removed.clone();
        removed.sort();
        let mut expected = vec![stray, gone_root];
        expected.sort();
        assert_eq!(removed, expected);
        assert_eq!(
            c.relays_removed,
            [url("wss://old.example")],
            "bootstrap stays"
        );
        assert_eq!(published.relay_count(), 1);
    }

    #[test]
    fn an_uncounted_repo_leaves_with_its_roots_and_comes_back_with_them() {
        let us = "wss://us.example";
        let mut ix = RepoSyncIndex::new(IndexSettings {
            require_listed: Some(url(us)),
            own_urls: vec![url(us)],
            ..IndexSettings::default()
        });
        let k = Keys::generate();
        ix.fold(&announcement(&k, "r", 10, &["wss://a.example", us]));
        let root = issue(&[&coord(&k, "r")], "bug");
        ix.fold(&root);
        let mut published = Published::default();
        flush(&mut published, &mut ix);
        ix.fold(&announcement(&k, "r", 20, &["wss://a.example"]));
        let c = flush(&mut published, &mut ix);
        assert_eq!(c.repos_removed, [coord(&k, "r")]);
        assert_eq!(
            c.roots_removed[0].kv_key(),
            ngit_sync_shared::nip34::root_key(&coord(&k, "r"), &root.id.to_hex())
        );
        assert_eq!(c.relays_removed, [url("wss://a.example")]);
        ix.fold(&announcement(&k, "r", 30, &["wss://a.example", us]));
        let c = flush(&mut published, &mut ix);
        assert_eq!((c.repos_added.len(), c.roots_added.len()), (1, 1));
    }
}
