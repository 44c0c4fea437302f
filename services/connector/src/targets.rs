//! What each relay should sync: [`TargetIndex`] mirrors `ngit_sync_repos` (repos with their
//! relays, root events per repo) and cuts it into per-relay [`RelayTargets`]. The three-way
//! diff against what a session has done lives in [`crate::work`].

use std::collections::{BTreeSet, HashMap};

use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{RepoEntry, RootEntry};
use ngit_sync_shared::RelayUrl;

/// One relay's share of the RepoSyncIndex (L1 is everyone's and not listed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayTargets {
    /// False until the whole bucket was read once: a partial view must not drive work.
    pub ready: bool,
    /// Repository coordinates listing this relay (L2).
    pub repos: BTreeSet<String>,
    /// Root event ids of those repositories (L3).
    pub roots: BTreeSet<String>,
}

/// The `ngit_sync_repos` bucket in memory.
#[derive(Debug, Default)]
pub struct TargetIndex {
    repos: HashMap<String, RepoEntry>,
    /// Repo key → root event ids. Kept when the repo goes, so a repo that comes back finds them.
    roots: HashMap<String, BTreeSet<String>>,
    by_relay: HashMap<RelayUrl, BTreeSet<String>>,
}

impl TargetIndex {
    /// A key was put; returns the relays whose slice may have changed.
    pub fn apply_put(&mut self, key: &str, value: &[u8]) -> Vec<RelayUrl> {
        match key.split_once('.') {
            Some((repo_key, id)) => match codec::decode::<RootEntry>(value) {
                Ok(root) if root.id == id => {
                    let new = self
                        .roots
                        .entry(repo_key.to_string())
                        .or_default()
                        .insert(root.id);
                    if new {
                        self.relays_of(repo_key)
                    } else {
                        Vec::new()
                    }
                }
                Ok(root) => {
                    tracing::warn!(key, id = %root.id, "root entry id differs from its key; ignored");
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "undecodable root entry ignored");
                    Vec::new()
                }
            },
            None => match codec::decode::<RepoEntry>(value) {
                Ok(repo) => {
                    let mut affected = self.remove_repo(key);
                    for relay in &repo.relays {
                        self.by_relay
                            .entry(relay.clone())
                            .or_default()
                            .insert(key.to_string());
                        affected.push(relay.clone());
                    }
                    self.repos.insert(key.to_string(), repo);
                    affected.sort();
                    affected.dedup();
                    affected
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "undecodable repo entry ignored");
                    Vec::new()
                }
            },
        }
    }

    /// A key was deleted or purged; returns the relays whose slice may have changed.
    pub fn apply_delete(&mut self, key: &str) -> Vec<RelayUrl> {
        match key.split_once('.') {
            Some((repo_key, id)) => {
                let removed = self
                    .roots
                    .get_mut(repo_key)
                    .is_some_and(|ids| ids.remove(id));
                if removed {
                    self.relays_of(repo_key)
                } else {
                    Vec::new()
                }
            }
            None => self.remove_repo(key),
        }
    }

    fn remove_repo(&mut self, key: &str) -> Vec<RelayUrl> {
        let Some(old) = self.repos.remove(key) else {
            return Vec::new();
        };
        for relay in &old.relays {
            if let Some(keys) = self.by_relay.get_mut(relay) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_relay.remove(relay);
                }
            }
        }
        old.relays
    }

    fn relays_of(&self, repo_key: &str) -> Vec<RelayUrl> {
        self.repos
            .get(repo_key)
            .map(|r| r.relays.clone())
            .unwrap_or_default()
    }

    /// The relay's slice (`ready` is the caller's to set).
    pub fn slice(&self, relay: &RelayUrl) -> RelayTargets {
        let mut out = RelayTargets::default();
        for key in self.by_relay.get(relay).into_iter().flatten() {
            if let Some(repo) = self.repos.get(key) {
                out.repos.insert(repo.coord.clone());
            }
            if let Some(ids) = self.roots.get(key) {
                out.roots.extend(ids.iter().cloned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::codec::{encode, Wire};

    fn url(s: &str) -> RelayUrl {
        RelayUrl::parse(s).unwrap()
    }

    fn put_repo(index: &mut TargetIndex, key: &str, coord: &str, relays: &[&str]) -> Vec<RelayUrl> {
        let entry = RepoEntry {
            coord: coord.into(),
            relays: relays.iter().map(|r| url(r)).collect(),
        };
        index.apply_put(key, &encode(Wire::Bincode, &entry).unwrap())
    }

    fn put_root(index: &mut TargetIndex, repo_key: &str, coord: &str, id: &str) -> Vec<RelayUrl> {
        let entry = RootEntry {
            coord: coord.into(),
            id: id.into(),
            kind: 1621,
        };
        index.apply_put(
            &format!("{repo_key}.{id}"),
            &encode(Wire::Json, &entry).unwrap(),
        )
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_relay_sees_the_repos_listing_it_and_their_roots() {
        let mut index = TargetIndex::default();
        let a = url("wss://a.example");
        put_repo(
            &mut index,
            "k1",
            "30617:p:one",
            &["wss://a.example", "wss://b.example"],
        );
        put_repo(&mut index, "k2", "30617:p:two", &["wss://b.example"]);
        assert_eq!(put_root(&mut index, "k1", "30617:p:one", "e1").len(), 2);
        put_root(&mut index, "k2", "30617:p:two", "e2");
        let slice = index.slice(&a);
        assert_eq!(slice.repos, set(&["30617:p:one"]));
        assert_eq!(slice.roots, set(&["e1"]));
        // The repo drops relay a: a's slice empties, b keeps both.
        let affected = put_repo(&mut index, "k1", "30617:p:one", &["wss://b.example"]);
        assert!(affected.contains(&a));
        assert!(index.slice(&a).repos.is_empty());
        assert_eq!(
            index.slice(&url("wss://b.example")).roots,
            set(&["e1", "e2"])
        );
        index.apply_delete("k2.e2");
        assert_eq!(index.slice(&url("wss://b.example")).roots, set(&["e1"]));
        index.apply_delete("k1");
        assert!(index.slice(&url("wss://b.example")).roots.is_empty());
    }

    #[test]
    fn a_root_arriving_before_its_repo_counts_once_the_repo_comes() {
        let mut index = TargetIndex::default();
        assert!(put_root(&mut index, "k1", "30617:p:one", "e1").is_empty());
        put_repo(&mut index, "k1", "30617:p:one", &["wss://a.example"]);
        assert_eq!(index.slice(&url("wss://a.example")).roots, set(&["e1"]));
    }
}
