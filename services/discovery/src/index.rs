//! The RepoSyncIndex: repos, their relays and root events, and the relay set derived from
//! them. A plain state machine fed events; what changed is diffed against KV in [`crate::changes`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ngit_sync_shared::constants::MAX_RELAYS_PER_ANNOUNCEMENT;
use ngit_sync_shared::messages::RelayEntry;
use ngit_sync_shared::nip34::{self, Announcement};
use ngit_sync_shared::RelayUrl;
use nostr::{Event, EventId};

/// What shapes the index besides the events.
#[derive(Debug, Clone, Default)]
pub struct IndexSettings {
    /// Relays in the set even with no repo.
    pub bootstrap: Vec<RelayUrl>,
    /// Our own URLs: never in the set, whoever lists them.
    pub own_urls: Vec<RelayUrl>,
    /// Count a repo only when its `relays` tag lists this URL.
    pub require_listed: Option<RelayUrl>,
}

/// The newest announcement of one coordinate.
#[derive(Debug, Clone)]
struct Repo {
    created_at: u64,
    id: EventId,
    /// Relays it lists (and GRASP clone hosts), without our own URLs.
    relays: Vec<RelayUrl>,
    /// False when `require_listed` is set and the announcement does not list it.
    counted: bool,
}

/// Sizes, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexCounts {
    pub repos: usize,
    pub roots: usize,
    pub relays: usize,
}

#[derive(Debug, Default)]
pub struct RepoSyncIndex {
    bootstrap: BTreeSet<RelayUrl>,
    own: BTreeSet<RelayUrl>,
    require_listed: Option<RelayUrl>,
    repos: HashMap<String, Repo>,
    /// Root event id → kind, by repo coordinate. Kept whether or not the repo is announced
    /// (yet): a root event may reach us before its announcement and must not be lost.
    roots: HashMap<String, BTreeMap<String, u16>>,
    /// How many counted repos list each relay.
    relay_repos: BTreeMap<RelayUrl, u32>,
    /// Coordinates whose counted repo or root events changed since [`Self::clear_dirty`].
    dirty: BTreeSet<String>,
}

impl RepoSyncIndex {
    pub fn new(settings: IndexSettings) -> RepoSyncIndex {
        let own: BTreeSet<RelayUrl> = settings.own_urls.into_iter().collect();
        RepoSyncIndex {
            bootstrap: settings
                .bootstrap
                .into_iter()
                .filter(|u| !own.contains(u))
                .collect(),
            own,
            require_listed: settings.require_listed,
            ..RepoSyncIndex::default()
        }
    }

    /// Folds an event read from the home relay or carried by a sink outcome; true if what
    /// discovery publishes may have changed. Folding an event twice changes nothing.
    pub fn fold(&mut self, event: &Event) -> bool {
        let kind = event.kind.as_u16();
        if kind == nip34::KIND_REPO_ANNOUNCEMENT {
            nip34::read_announcement(event).is_some_and(|a| self.fold_announcement(a, event))
        } else if nip34::is_root_kind(kind) {
            let id = event.id.to_hex();
            let mut changed = false;
            for coord in nip34::repo_coords_of(event) {
                changed |= self.fold_root(coord, &id, kind);
            }
            changed
        } else {
            false
        }
    }

    fn fold_announcement(&mut self, announcement: Announcement, event: &Event) -> bool {
        if let Some(old) = self.repos.get(&announcement.coord) {
            // Replaceable event rules (NIP-01): newest wins, the lowest id on a tie.
            let newer = announcement.created_at > old.created_at
                || (announcement.created_at == old.created_at && event.id < old.id);
            if !newer {
                return false;
            }
        }
        let counted = self
            .require_listed
            .as_ref()
            .is_none_or(|url| lists_relay(event, url));
        let relays: Vec<RelayUrl> = announcement
            .relays
            .into_iter()
            .filter(|u| !self.own.contains(u))
            .collect();
        let new = Repo {
            created_at: announcement.created_at,
            id: event.id,
            relays,
            counted,
        };
        let after = new.counted.then(|| new.relays.clone());
        let old = self.repos.insert(announcement.coord.clone(), new);
        let before = old.filter(|r| r.counted).map(|r| r.relays);
        if before == after {
            return false;
        }
        for url in before.iter().flatten() {
            if let Some(n) = self.relay_repos.get_mut(url) {
                *n -= 1;
                if *n == 0 {
                    self.relay_repos.remove(url);
                }
            }
        }
        for url in after.iter().flatten() {
            *self.relay_repos.entry(url.clone()).or_default() += 1;
        }
        self.dirty.insert(announcement.coord);
        true
    }

    fn fold_root(&mut self, coord: String, id: &str, kind: u16) -> bool {
        let new = self
            .roots
            .entry(coord.clone())
            .or_default()
            .insert(id.to_string(), kind)
            .is_none();
        // A root of a repo that does not count yet is kept for when it does; nothing to publish.
        if new && self.counted_relays(&coord).is_some() {
            self.dirty.insert(coord);
            return true;
        }
        false
    }

    /// The relays of a repo that counts; `None` for unknown or uncounted coordinates.
    pub fn counted_relays(&self, coord: &str) -> Option<&[RelayUrl]> {
        self.repos
            .get(coord)
            .filter(|r| r.counted)
            .map(|r| r.relays.as_slice())
    }

    /// Root events (id, kind) the index holds for a coordinate, counted or not.
    pub fn roots_of(&self, coord: &str) -> impl Iterator<Item = (&str, u16)> + '_ {
        self.roots
            .get(coord)
            .into_iter()
            .flatten()
            .map(|(id, kind)| (id.as_str(), *kind))
    }

    /// Every announced coordinate, counted or not.
    pub fn coords(&self) -> impl Iterator<Item = &str> + '_ {
        self.repos.keys().map(String::as_str)
    }

    /// The relay set: every relay a counted repo lists, plus bootstrap, minus our own URLs.
    pub fn relay_entries(&self) -> BTreeMap<RelayUrl, RelayEntry> {
        let mut out: BTreeMap<RelayUrl, RelayEntry> = self
            .relay_repos
            .iter()
            .map(|(url, n)| {
                let entry = RelayEntry {
                    url: url.clone(),
                    bootstrap: self.bootstrap.contains(url),
                    repos: *n,
                };
                (url.clone(), entry)
            })
            .collect();
        for url in &self.bootstrap {
            out.entry(url.clone()).or_insert_with(|| RelayEntry {
                url: url.clone(),
                bootstrap: true,
                repos: 0,
            });
        }
        out
    }

    /// Coordinates changed since the last [`Self::clear_dirty`].
    pub fn dirty(&self) -> impl Iterator<Item = &str> + '_ {
        self.dirty.iter().map(String::as_str)
    }

    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    pub fn counts(&self) -> IndexCounts {
        IndexCounts {
            repos: self.repos.values().filter(|r| r.counted).count(),
            roots: self.roots.values().map(BTreeMap::len).sum(),
            relays: self.relay_entries().len(),
        }
    }
}

/// Does the announcement's `relays` tag (not its clone URLs) list `url`?
fn lists_relay(event: &Event, url: &RelayUrl) -> bool {
    event
        .tags
        .iter()
        .filter(|t| t.as_slice().first().map(String::as_str) == Some("relays"))
        .flat_map(|t| t.as_slice()[1..].iter())
        .take(MAX_RELAYS_PER_ANNOUNCEMENT)
        .any(|raw| RelayUrl::parse(raw).is_ok_and(|u| &u == url))
}

#[cfg(test)]
pub(crate) mod tests {
    use nostr::{EventBuilder, Keys, Kind, Tag, Timestamp};

    use super::*;

    pub fn url(s: &str) -> RelayUrl {
        RelayUrl::parse(s).unwrap()
    }

    /// An announcement of `d` by `keys` at `at` listing `relays`.
    pub fn announcement(keys: &Keys, d: &str, at: u64, relays: &[&str]) -> Event {
        let mut tag = vec!["relays"];
        tag.extend_from_slice(relays);
        EventBuilder::new(Kind::GitRepoAnnouncement, "")
            .tags([Tag::parse(["d", d]).unwrap(), Tag::parse(tag).unwrap()])
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(keys)
            .unwrap()
    }

    pub fn coord(keys: &Keys, d: &str) -> String {
        format!("30617:{}:{d}", keys.public_key().to_hex())
    }

    /// An issue tagging every coordinate in `coords`.
    pub fn issue(coords: &[&str], content: &str) -> Event {
        EventBuilder::new(Kind::GitIssue, content)
            .tags(coords.iter().map(|c| Tag::parse(["a", c]).unwrap()))
            .sign_with_keys(&Keys::generate())
            .unwrap()
    }

    fn index(bootstrap: &[&str], require_listed: Option<&str>) -> RepoSyncIndex {
        RepoSyncIndex::new(IndexSettings {
            bootstrap: bootstrap.iter().map(|s| url(s)).collect(),
            own_urls: [Some("wss://home.example"), require_listed]
                .into_iter()
                .flatten()
                .map(url)
                .collect(),
            require_listed: require_listed.map(url),
        })
    }

    fn relays(index: &RepoSyncIndex) -> Vec<(String, bool, u32)> {
        index
            .relay_entries()
            .into_values()
            .map(|e| (e.url.to_string(), e.bootstrap, e.repos))
            .collect()
    }

    #[test]
    fn announcements_give_relays_with_counts_and_never_our_own() {
        let mut ix = index(&["wss://boot.example", "wss://home.example"], None);
        let (k1, k2) = (Keys::generate(), Keys::generate());
        let a = ["wss://a.example", "wss://home.example/"];
        assert!(ix.fold(&announcement(&k1, "one", 10, &a)));
        assert!(ix.fold(&announcement(
            &k2,
            "two",
            10,
            &["wss://a.example", "wss://boot.example"]
        )));
        assert_eq!(
            relays(&ix),
            [
                ("wss://a.example".to_string(), false, 2),
                ("wss://boot.example".to_string(), true, 1),
            ]
        );
        assert_eq!(
            ix.counted_relays(&coord(&k1, "one")).unwrap(),
            [url("wss://a.example")]
        );
        assert_eq!(ix.dirty().count(), 2);
    }

    #[test]
    fn the_newest_announcement_wins_and_folding_twice_changes_nothing() {
        let mut ix = index(&[], None);
        let k = Keys::generate();
        let new = announcement(&k, "r", 20, &["wss://b.example"]);
        assert!(ix.fold(&new));
        ix.clear_dirty();
        assert!(!ix.fold(&new));
        assert!(!ix.fold(&announcement(&k, "r", 10, &["wss://a.example"])));
        assert_eq!(relays(&ix), [("wss://b.example".to_string(), false, 1)]);
        assert!(ix.fold(&announcement(&k, "r", 30, &["wss://c.example"])));
        assert_eq!(relays(&ix), [("wss://c.example".to_string(), false, 1)]);
        assert!(
            !ix.fold(&announcement(&k, "r", 40, &["wss://c.example"])),
            "same relays"
        );
    }

    #[test]
    fn a_timestamp_tie_goes_to_the_lowest_id_in_any_order() {
        let k = Keys::generate();
        let x = announcement(&k, "r", 10, &["wss://x.example"]);
        let y = announcement(&k, "r", 10, &["wss://y.example"]);
        let winner = if x.id < y.id {
            "wss://x.example"
        } else {
            "wss://y.example"
        };
        for order in [[&x, &y], [&y, &x]] {
            let mut ix = index(&[], None);
            order.iter().for_each(|e| {
                ix.fold(e);
            });
            assert_eq!(relays(&ix)[0].0, winner);
        }
    }

    #[test]
    fn a_root_event_before_its_announcement_is_kept_and_attached() {
        let mut ix = index(&[], None);
        let k = Keys::generate();
        let c = coord(&k, "r");
        let other = coord(&Keys::generate(), "x");
        let root = issue(&[&c, &other], "early");
        assert!(!ix.fold(&root), "no counted repo yet: nothing to publish");
        assert!(!ix.has_dirty());
        assert!(ix.fold(&announcement(&k, "r", 10, &["wss://a.example"])));
        let roots: Vec<(&str, u16)> = ix.roots_of(&c).collect();
        assert_eq!(roots, [(root.id.to_hex().as_str(), 1621)]);
        assert_eq!(ix.roots_of(&other).count(), 1, "every `a` tag is kept");
        ix.clear_dirty();
        assert!(!ix.fold(&root));
        assert!(ix.fold(&issue(&[&c], "later")));
        assert_eq!(ix.dirty().collect::<Vec<_>>(), [c.as_str()]);
    }

    #[test]
    fn require_listed_counts_only_announcements_listing_us() {
        let us = "wss://us.example";
        let mut ix = index(&[], Some(us));
        let k = Keys::generate();
        assert!(!ix.fold(&announcement(&k, "r", 10, &["wss://a.example"])));
        assert!(relays(&ix).is_empty());
        assert!(ix.fold(&announcement(&k, "r", 20, &["wss://a.example", us])));
        assert_eq!(relays(&ix), [("wss://a.example".to_string(), false, 1)]);
        assert_eq!(ix.counts().repos, 1);
        ix.clear_dirty();
        assert!(ix.fold(&announcement(&k, "r", 30, &["wss://a.example"])));
        assert!(
            relays(&ix).is_empty(),
            "a version that drops us removes the repo"
        );
        assert_eq!(ix.counted_relays(&coord(&k, "r")), None);
        assert!(ix.has_dirty());
    }

    #[test]
    fn other_kinds_change_nothing() {
        let mut ix = index(&[], None);
        let note = EventBuilder::text_note("hi")
            .sign_with_keys(&Keys::generate())
            .unwrap();
        assert!(!ix.fold(&note));
        assert_eq!(
            ix.counts(),
            IndexCounts {
                repos: 0,
                roots: 0,
                relays: 0
            }
        );
    }
}
