//! NIP-34 filters of the three sync layers (DESIGN.md section 3) and filter matching.

use nostr::filter::MatchEventOptions;
use nostr::{Alphabet, Event, Filter, Kind, SingleLetterTag};

use crate::constants::FILTER_CHUNK;
use crate::nip34::{KIND_REPO_ANNOUNCEMENT, KIND_REPO_STATE};

/// L1: every repository announcement and state.
pub fn l1() -> Filter {
    Filter::new().kinds([
        Kind::Custom(KIND_REPO_ANNOUNCEMENT),
        Kind::Custom(KIND_REPO_STATE),
    ])
}

/// L2: events tagging these repository coordinates through `#a`, `#A` or `#q`, in separate
/// filters of at most [`FILTER_CHUNK`] values.
pub fn l2(coords: &[String]) -> Vec<Filter> {
    tagged(
        coords,
        [
            SingleLetterTag::lowercase(Alphabet::A),
            SingleLetterTag::uppercase(Alphabet::A),
            SingleLetterTag::lowercase(Alphabet::Q),
        ],
    )
}

/// L3: events tagging these root event ids through `#e`, `#E` or `#q`.
pub fn l3(ids: &[String]) -> Vec<Filter> {
    tagged(
        ids,
        [
            SingleLetterTag::lowercase(Alphabet::E),
            SingleLetterTag::uppercase(Alphabet::E),
            SingleLetterTag::lowercase(Alphabet::Q),
        ],
    )
}

fn tagged(values: &[String], tags: [SingleLetterTag; 3]) -> Vec<Filter> {
    let mut sorted: Vec<&String> = values.iter().collect();
    sorted.sort();
    sorted.dedup();
    sorted
        .chunks(FILTER_CHUNK)
        .flat_map(|chunk| {
            tags.iter()
                .map(move |tag| Filter::new().custom_tags(*tag, chunk.iter().map(|s| s.as_str())))
        })
        .collect()
}

/// The live form of a filter: only new events.
pub fn live(filter: Filter) -> Filter {
    filter.limit(0)
}

/// Does the event match the filter's kinds, authors, ids and tags (ignoring `limit`)?
pub fn matches(filter: &Filter, event: &Event) -> bool {
    filter.match_event(event, MatchEventOptions::new())
}

pub fn matches_any<'a>(filters: impl IntoIterator<Item = &'a Filter>, event: &Event) -> bool {
    filters.into_iter().any(|f| matches(f, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, JsonUtil, Keys, Tag};
    use proptest::prelude::*;

    #[test]
    fn l2_filters_match_events_tagging_the_repo_in_any_of_three_ways() {
        let coord = "30617:abcd:repo".to_string();
        let filters = l2(&[coord.clone()]);
        assert_eq!(filters.len(), 3);
        let keys = Keys::generate();
        for tag in ["a", "A", "q"] {
            let ev = EventBuilder::new(Kind::GitIssue, "x")
                .tag(Tag::parse([tag, coord.as_str()]).unwrap())
                .sign_with_keys(&keys)
                .unwrap();
            assert!(matches_any(&filters, &ev), "#{tag}");
        }
        let other = EventBuilder::new(Kind::GitIssue, "x")
            .tag(Tag::parse(["a", "30617:abcd:other"]).unwrap())
            .sign_with_keys(&keys)
            .unwrap();
        assert!(!matches_any(&filters, &other));
        assert!(filters[0].as_json().contains("\"#a\""));
    }

    #[test]
    fn l1_matches_announcements_only() {
        let keys = Keys::generate();
        let ann = EventBuilder::new(Kind::GitRepoAnnouncement, "")
            .tag(Tag::identifier("x"))
            .sign_with_keys(&keys)
            .unwrap();
        let note = EventBuilder::text_note("hi").sign_with_keys(&keys).unwrap();
        assert!(matches(&l1(), &ann));
        assert!(!matches(&l1(), &note));
    }

    proptest! {
        #[test]
        fn chunking_keeps_every_value_once_and_respects_the_chunk_size(n in 0usize..450) {
            let ids: Vec<String> = (0..n).map(|i| format!("{i:064x}")).collect();
            let filters = l3(&ids);
            prop_assert_eq!(filters.len(), n.div_ceil(FILTER_CHUNK) * 3);
            let mut seen = 0;
            for f in filters.iter().step_by(3) {
                let values = f.generic_tags.get(&SingleLetterTag::lowercase(Alphabet::E)).unwrap();
                prop_assert!(values.len() <= FILTER_CHUNK);
                seen += values.len();
            }
            prop_assert_eq!(seen, n);
        }
    }
}
