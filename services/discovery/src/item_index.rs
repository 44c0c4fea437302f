//! The in-memory home index: events (sketches) with posting lists by tag value and by kind, so
//! a filter's negentropy items are found from the few events its tag values name instead of
//! matching every held event. The final say is nostr's own `Filter::match_event`, so a filter
//! selects exactly what it selects in a relay's store.
//!
//! Why not `nostr_database::MemoryDatabase`: it answers a tag filter by matching every event;
//! with 20,000 events, 50 relays and an L3 filter per 20 root ids that was 78 % of discovery's
//! CPU in the bench (`Filter::tag_match`), and `nostr-lmdb` was slower still at that size.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use nostr::filter::MatchEventOptions;
use nostr::{Event, EventId, Filter, Kind, PublicKey, SingleLetterTag, Timestamp};

/// A replaceable or addressable event's slot: only its newest version is held, as a relay does.
type Coordinate = (Kind, PublicKey, String);

#[derive(Debug, Default)]
pub struct ItemIndex {
    events: HashMap<EventId, Event>,
    by_tag: HashMap<SingleLetterTag, HashMap<String, HashSet<EventId>>>,
    by_kind: HashMap<Kind, HashSet<EventId>>,
    current: HashMap<Coordinate, EventId>,
}

fn coordinate(event: &Event) -> Option<Coordinate> {
    if event.kind.is_replaceable() {
        Some((event.kind, event.pubkey, String::new()))
    } else if event.kind.is_addressable() {
        let d = event.tags.identifier().unwrap_or_default().to_string();
        Some((event.kind, event.pubkey, d))
    } else {
        None
    }
}

/// NIP-01: the newer version wins; on equal time, the lower id.
fn supersedes(new: &Event, old: &Event) -> bool {
    (new.created_at, Reverse(new.id)) > (old.created_at, Reverse(old.id))
}

impl ItemIndex {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.events.contains_key(id)
    }

    /// Holds `event`. Returns false when it was held already or an older version of a
    /// replaceable event held; a newer version replaces the older one.
    pub fn insert(&mut self, event: Event) -> bool {
        if self.events.contains_key(&event.id) {
            return false;
        }
        if let Some(coord) = coordinate(&event) {
            if let Some(old) = self.current.get(&coord).copied() {
                if !supersedes(&event, &self.events[&old]) {
                    return false;
                }
                self.remove(&old);
            }
            self.current.insert(coord, event.id);
        }
        for (tag, values) in event.tags.indexes() {
            let postings = self.by_tag.entry(*tag).or_default();
            for value in values {
                postings.entry(value.clone()).or_default().insert(event.id);
            }
        }
        self.by_kind.entry(event.kind).or_default().insert(event.id);
        self.events.insert(event.id, event);
        true
    }

    pub fn remove(&mut self, id: &EventId) -> Option<Event> {
        let event = self.events.remove(id)?;
        for (tag, values) in event.tags.indexes() {
            if let Some(postings) = self.by_tag.get_mut(tag) {
                for value in values {
                    if let Some(ids) = postings.get_mut(value) {
                        ids.remove(id);
                        if ids.is_empty() {
                            postings.remove(value);
                        }
                    }
                }
            }
        }
        if let Some(ids) = self.by_kind.get_mut(&event.kind) {
            ids.remove(id);
        }
        if let Some(coord) = coordinate(&event) {
            if self.current.get(&coord) == Some(id) {
                self.current.remove(&coord);
            }
        }
        Some(event)
    }

    /// `(id, created_at)` of every held event `filter` matches.
    pub fn items(&self, filter: &Filter) -> Vec<(EventId, Timestamp)> {
        if let Some(ids) = &filter.ids {
            return self.select(ids.iter(), filter);
        }
        // Every tag of the filter must match, so the narrowest one's postings suffice.
        let narrowest = filter
            .generic_tags
            .iter()
            .map(|(tag, values)| (self.by_tag.get(tag), values))
            .min_by_key(|(postings, values)| {
                postings.map_or(0, |p| {
                    values
                        .iter()
                        .map(|v| p.get(v).map_or(0, HashSet::len))
                        .sum()
                })
            });
        if let Some((postings, values)) = narrowest {
            let Some(postings) = postings else {
                return Vec::new();
            };
            let candidates: HashSet<&EventId> = values
                .iter()
                .filter_map(|v| postings.get(v))
                .flatten()
                .collect();
            return self.select(candidates.into_iter(), filter);
        }
        match &filter.kinds {
            Some(kinds) if !kinds.is_empty() => self.select(
                kinds.iter().filter_map(|k| self.by_kind.get(k)).flatten(),
                filter,
            ),
            _ => self.select(self.events.keys(), filter),
        }
    }

    /// The candidates (each at most once) that `filter` really matches.
    fn select<'a>(
        &'a self,
        candidates: impl Iterator<Item = &'a EventId>,
        filter: &Filter,
    ) -> Vec<(EventId, Timestamp)> {
        candidates
            .filter_map(|id| self.events.get(id))
            .filter(|e| filter.match_event(e, MatchEventOptions::new()))
            .map(|e| (e.id, e.created_at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{Alphabet, EventBuilder, Keys, Tag};
    use proptest::prelude::*;

    fn signed(keys: &Keys, kind: u16, at: u64, tags: Vec<Tag>) -> Event {
        signed_with(keys, kind, at, tags, "")
    }

    fn signed_with(keys: &Keys, kind: u16, at: u64, tags: Vec<Tag>, content: &str) -> Event {
        EventBuilder::new(Kind::Custom(kind), content)
            .tags(tags)
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(keys)
            .unwrap()
    }

    fn sorted(mut items: Vec<(EventId, Timestamp)>) -> Vec<(EventId, Timestamp)> {
        items.sort();
        items
    }

    #[test]
    fn a_newer_version_replaces_the_older_and_an_older_one_is_refused() {
        let keys = Keys::generate();
        let d = || Tag::identifier("repo");
        let v1 = signed(&keys, 30617, 100, vec![d()]);
        let v2 = signed(&keys, 30617, 200, vec![d()]);
        let mut ix = ItemIndex::default();
        assert!(ix.insert(v1.clone()));
        assert!(ix.insert(v2.clone()));
        assert!(!ix.insert(v1.clone()), "older than what is held");
        assert_eq!(ix.len(), 1);
        let l1 = Filter::new().kind(Kind::Custom(30617));
        assert_eq!(ix.items(&l1), vec![(v2.id, v2.created_at)]);
        // Another identifier is another slot.
        let other = signed(&keys, 30617, 50, vec![Tag::identifier("other")]);
        assert!(ix.insert(other));
        assert_eq!(ix.items(&l1).len(), 2);
    }

    #[test]
    fn remove_takes_an_event_out_of_every_posting() {
        let keys = Keys::generate();
        let tag = Tag::parse(["e", &"ab".repeat(32)]).unwrap();
        let ev = signed(&keys, 1111, 10, vec![tag]);
        let mut ix = ItemIndex::default();
        ix.insert(ev.clone());
        let f = Filter::new().custom_tag(SingleLetterTag::lowercase(Alphabet::E), "ab".repeat(32));
        assert_eq!(ix.items(&f).len(), 1);
        assert!(ix.remove(&ev.id).is_some());
        assert!(ix.items(&f).is_empty());
        assert!(ix.is_empty());
        assert!(ix.by_tag.values().all(HashMap::is_empty));
    }

    /// Events over a few kinds, times and tag values, so filters hit and miss.
    fn world(picks: &[(u8, u8, u8, u8)]) -> Vec<Event> {
        let keys = Keys::generate();
        let kinds = [1617u16, 1621, 1111, 30617, 1630];
        let tags = ["a", "A", "e", "q"];
        picks
            .iter()
            .enumerate()
            .map(|(i, (k, t, v, at))| {
                let kind = kinds[*k as usize % kinds.len()];
                let mut tag_list = vec![Tag::parse([
                    tags[*t as usize % tags.len()],
                    &format!("v{}", v % 6),
                ])
                .unwrap()];
                if kind == 30617 {
                    tag_list.push(Tag::identifier(format!("d{i}")));
                }
                // Distinct content: two picks alike must still be two events.
                signed_with(
                    &keys,
                    kind,
                    1_000 + (*at as u64 % 50),
                    tag_list,
                    &i.to_string(),
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn items_equal_a_scan_with_match_event(
            picks in prop::collection::vec((0u8..5, 0u8..4, 0u8..8, 0u8..60), 1..60),
            tag in 0usize..4,
            values in prop::collection::btree_set(0u8..8, 1..4),
            kind in prop::option::of(0usize..5),
            since in prop::option::of(1_000u64..1_050),
        ) {
            let events = world(&picks);
            let mut ix = ItemIndex::default();
            for e in &events {
                ix.insert(e.clone());
            }
            let letters = [
                SingleLetterTag::lowercase(Alphabet::A),
                SingleLetterTag::uppercase(Alphabet::A),
                SingleLetterTag::lowercase(Alphabet::E),
                SingleLetterTag::lowercase(Alphabet::Q),
            ];
            let mut f = Filter::new()
                .custom_tags(letters[tag], values.iter().map(|v| format!("v{v}")));
            if let Some(k) = kind {
                f = f.kind(Kind::Custom([1617u16, 1621, 1111, 30617, 1630][k]));
            }
            if let Some(s) = since {
                f = f.since(Timestamp::from(s));
            }
            let scan: Vec<(EventId, Timestamp)> = events
                .iter()
                .filter(|e| f.match_event(e, MatchEventOptions::new()))
                .map(|e| (e.id, e.created_at))
                .collect();
            prop_assert_eq!(sorted(ix.items(&f)), sorted(scan.clone()));
            // Without the tag, through the kind postings or the full scan.
            let mut g = Filter::new();
            if let Some(k) = kind {
                g = g.kind(Kind::Custom([1617u16, 1621, 1111, 30617, 1630][k]));
            }
            let scan_g: Vec<(EventId, Timestamp)> = events
                .iter()
                .filter(|e| g.match_event(e, MatchEventOptions::new()))
                .map(|e| (e.id, e.created_at))
                .collect();
            prop_assert_eq!(sorted(ix.items(&g)), sorted(scan_g));
        }
    }
}
