//! One session's bookkeeping of work and the three-way diff: targets − pending − confirmed
//! = new work. [`WorkSets`] knows what is confirmed, in flight, carried over from an earlier
//! session (awaiting its catch-up), or failed (and when to try again).

use std::collections::{BTreeMap, BTreeSet};

use crate::targets::RelayTargets;

/// One unit of sync work.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    L1,
    Repo(String),
    Root(String),
}

/// A set of work items: L1, repos (L2), roots (L3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Items {
    pub l1: bool,
    pub repos: BTreeSet<String>,
    pub roots: BTreeSet<String>,
}

impl Items {
    pub fn is_empty(&self) -> bool {
        !self.l1 && self.repos.is_empty() && self.roots.is_empty()
    }

    pub fn contains(&self, item: &Item) -> bool {
        match item {
            Item::L1 => self.l1,
            Item::Repo(c) => self.repos.contains(c),
            Item::Root(id) => self.roots.contains(id),
        }
    }

    pub fn add(&mut self, other: &Items) {
        self.l1 |= other.l1;
        self.repos.extend(other.repos.iter().cloned());
        self.roots.extend(other.roots.iter().cloned());
    }

    pub fn remove(&mut self, other: &Items) {
        self.l1 &= !other.l1;
        self.repos.retain(|c| !other.repos.contains(c));
        self.roots.retain(|id| !other.roots.contains(id));
    }

    pub fn iter(&self) -> impl Iterator<Item = Item> + '_ {
        self.l1
            .then_some(Item::L1)
            .into_iter()
            .chain(self.repos.iter().cloned().map(Item::Repo))
            .chain(self.roots.iter().cloned().map(Item::Root))
    }

    /// Drops repos and roots that are no longer targets; true if anything went.
    fn retain_targets(&mut self, targets: &RelayTargets) -> bool {
        let before = (self.repos.len(), self.roots.len());
        self.repos.retain(|c| targets.repos.contains(c));
        self.roots.retain(|id| targets.roots.contains(id));
        before != (self.repos.len(), self.roots.len())
    }
}

/// One session's bookkeeping of work.
#[derive(Debug, Clone, Default)]
pub struct WorkSets {
    /// History confirmed by this session (or, after a fresh start, nothing).
    pub confirmed: Items,
    /// Confirmed by an earlier session, waiting for this session's catch-up (quick reconnect).
    pub carried: Items,
    /// In an open batch of this session.
    pub pending: Items,
    /// Failed in this session: not tried again before the time (ms).
    failed: BTreeMap<Item, u64>,
}

impl WorkSets {
    /// A session continuing from `carried` (empty for a fresh start).
    pub fn carrying(carried: Items) -> WorkSets {
        WorkSets {
            carried,
            ..WorkSets::default()
        }
    }

    /// A batch for `items` opened; catch-up batches work on carried items.
    pub fn begin(&mut self, items: &Items, catch_up: bool) {
        for item in items.iter() {
            self.failed.remove(&item);
        }
        if !catch_up {
            self.pending.add(items);
        }
    }

    /// A batch ended, confirmed (`ok`) or failed (retry after `retry_at_ms`).
    pub fn finish(&mut self, items: &Items, catch_up: bool, ok: bool, retry_at_ms: u64) {
        if catch_up {
            self.carried.remove(items);
        } else {
            self.pending.remove(items);
        }
        if ok {
            self.confirmed.add(items);
        } else {
            for item in items.iter() {
                self.failed.insert(item, retry_at_ms);
            }
        }
    }

    /// What to persist as confirmed: an unfinished catch-up still counts as of the earlier
    /// session's connection time, which stays persisted until the catch-up completes.
    pub fn persisted(&self) -> Items {
        let mut all = self.confirmed.clone();
        all.add(&self.carried);
        all
    }

    pub fn catch_up_done(&self) -> bool {
        self.carried.is_empty()
    }

    /// Forgets confirmed and carried items that are no longer targets; true if any went.
    pub fn prune(&mut self, targets: &RelayTargets) -> bool {
        let a = self.confirmed.retain_targets(targets);
        let b = self.carried.retain_targets(targets);
        a || b
    }

    /// Failed items whose retry time came are eligible again.
    pub fn forget_due_failures(&mut self, now_ms: u64) {
        self.failed.retain(|_, t| *t > now_ms);
    }

    /// Earliest retry time among failed items, if any.
    pub fn next_retry_ms(&self) -> Option<u64> {
        self.failed.values().min().copied()
    }

    fn busy(&self, item: &Item, now_ms: u64) -> bool {
        self.confirmed.contains(item)
            || self.carried.contains(item)
            || self.pending.contains(item)
            || self.failed.get(item).is_some_and(|t| *t > now_ms)
    }
}

/// The three-way diff: L1 (always a target) plus, once `targets` is ready, its repos and
/// roots, minus what is confirmed, carried, pending, or failed and not yet due.
pub fn diff(targets: Option<&RelayTargets>, work: &WorkSets, now_ms: u64) -> Items {
    let mut new = Items {
        l1: !work.busy(&Item::L1, now_ms),
        ..Items::default()
    };
    if let Some(t) = targets.filter(|t| t.ready) {
        new.repos = t
            .repos
            .iter()
            .filter(|c| !work.busy(&Item::Repo((*c).clone()), now_ms))
            .cloned()
            .collect();
        new.roots = t
            .roots
            .iter()
            .filter(|id| !work.busy(&Item::Root((*id).clone()), now_ms))
            .cloned()
            .collect();
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn ready(repos: &[&str], roots: &[&str]) -> RelayTargets {
        RelayTargets {
            ready: true,
            repos: set(repos),
            roots: set(roots),
        }
    }

    #[test]
    fn the_diff_subtracts_pending_and_confirmed() {
        let mut work = WorkSets::default();
        let t = ready(&["r1", "r2"], &["e1"]);
        let first = diff(Some(&t), &work, 0);
        assert!(first.l1);
        assert_eq!(first.repos, set(&["r1", "r2"]));
        work.begin(&first, false);
        assert!(diff(Some(&t), &work, 0).is_empty());
        work.finish(&first, false, true, 0);
        let t2 = ready(&["r1", "r2", "r3"], &["e1", "e2"]);
        let second = diff(Some(&t2), &work, 0);
        assert!(!second.l1);
        assert_eq!(second.repos, set(&["r3"]));
        assert_eq!(second.roots, set(&["e2"]));
    }

    #[test]
    fn targets_not_ready_give_only_l1() {
        let work = WorkSets::default();
        let mut t = ready(&["r1"], &[]);
        t.ready = false;
        let d = diff(Some(&t), &work, 0);
        assert!(d.l1 && d.repos.is_empty());
    }

    #[test]
    fn failed_items_wait_for_their_retry_time() {
        let mut work = WorkSets::default();
        let t = ready(&["r1"], &[]);
        let items = diff(Some(&t), &work, 0);
        work.begin(&items, false);
        work.finish(&items, false, false, 5_000);
        assert!(diff(Some(&t), &work, 4_999).is_empty());
        assert_eq!(work.next_retry_ms(), Some(5_000));
        assert_eq!(diff(Some(&t), &work, 5_000), items);
    }

    #[test]
    fn carried_items_stay_persisted_until_their_catch_up_ends() {
        let carried = Items {
            l1: true,
            repos: set(&["r1", "r2"]),
            roots: BTreeSet::new(),
        };
        let mut work = WorkSets::carrying(carried.clone());
        assert_eq!(work.persisted(), carried);
        assert!(work.prune(&ready(&["r1"], &[])));
        let catch_up = work.carried.clone();
        work.begin(&catch_up, true);
        assert!(diff(Some(&ready(&["r1"], &[])), &work, 0).is_empty());
        let r1 = Items {
            repos: set(&["r1"]),
            ..Items::default()
        };
        work.finish(&r1, true, false, 10);
        assert!(!work.persisted().repos.contains("r1"));
        assert!(!work.catch_up_done());
        work.finish(
            &Items {
                l1: true,
                ..Items::default()
            },
            true,
            true,
            0,
        );
        assert!(work.catch_up_done());
        assert!(work.persisted().l1);
    }
}
