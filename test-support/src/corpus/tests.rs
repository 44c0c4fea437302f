//! Tests for the corpus: determinism, NIP-34 shape, sizes, spreading and noise.

use std::collections::{HashMap, HashSet};

use nostr::filter::MatchEventOptions;
use nostr::{Alphabet, EventId, Filter, JsonUtil, Kind, SingleLetterTag, TagKind};

use super::*;

const RELAYS: [&str; 2] = ["ws://127.0.0.1:7001", "ws://127.0.0.1:7002"];

fn spec() -> CorpusSpec {
    CorpusSpec::new(42)
        .repos(3)
        .events_per_repo(60)
        .relays(RELAYS)
}

fn tag_value(event: &Event, name: &str) -> Option<String> {
    event
        .tags
        .iter()
        .find(|t| t.kind() == TagKind::custom(name) || t.kind().as_str() == name)
        .and_then(|t| t.content().map(str::to_owned))
}

#[test]
fn same_seed_gives_identical_events_and_another_seed_differs() {
    let a = Corpus::generate(spec());
    let b = Corpus::generate(spec());
    let json = |c: &Corpus| {
        c.all_related()
            .iter()
            .map(JsonUtil::as_json)
            .collect::<Vec<_>>()
    };
    assert_eq!(json(&a), json(&b));
    assert_eq!(a.unrelated(4), b.unrelated(4));
    assert_eq!(a.bad_events().wrong_id, b.bad_events().wrong_id);

    let c = Corpus::generate(CorpusSpec { seed: 43, ..spec() });
    let ids = |c: &Corpus| c.all_related().iter().map(|e| e.id).collect::<HashSet<_>>();
    assert!(ids(&a).is_disjoint(&ids(&c)));
}

#[test]
fn corpus_has_the_nip34_shape() {
    let corpus = Corpus::generate(spec());
    assert_eq!(corpus.announcements().len(), 3);
    let all = corpus.all_related();
    assert_eq!(all.len(), 3 * 62);
    let end = DEFAULT_END;
    let start = end - 180 * 86_400;
    for event in &all {
        assert!(event.verify().is_ok(), "{} does not verify", event.id);
        assert!((start..=end).contains(&event.created_at.as_secs()));
    }
    let kinds: HashSet<u16> = all.iter().map(|e| e.kind.as_u16()).collect();
    for kind in [30617, 30618, 1617, 1618, 1621, 1111] {
        assert!(kinds.contains(&kind), "no kind {kind} in {kinds:?}");
    }
    assert!(kinds.iter().any(|k| (1630..=1633).contains(k)));

    for repo in corpus.repos() {
        let a = repo.coordinate.to_string();
        let ann = &repo.announcement;
        assert_eq!(ann.kind, Kind::GitRepoAnnouncement);
        assert_eq!(tag_value(ann, "d").as_deref(), Some(repo.identifier()));
        assert!(tag_value(ann, "name").is_some());
        let clone = tag_value(ann, "clone").unwrap();
        assert!(
            clone.starts_with("https://git.example.com/npub1") && clone.ends_with(".git"),
            "{clone}"
        );
        let relays: Vec<&str> = ann
            .tags
            .iter()
            .find(|t| t.kind().as_str() == "relays")
            .unwrap()
            .as_slice()[1..]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(relays, RELAYS);

        let roots: HashMap<EventId, Kind> = repo.roots().iter().map(|e| (e.id, e.kind)).collect();
        let repo_filter = Filter::new().coordinate(&repo.coordinate);
        for event in &repo.events {
            let k = event.kind.as_u16();
            if roots.contains_key(&event.id) || (1630..=1633).contains(&k) {
                assert_eq!(tag_value(event, "a"), Some(a.clone()));
                assert!(repo_filter.match_event(event, MatchEventOptions::new()));
            }
            if (1630..=1633).contains(&k) {
                let root: EventId = tag_value(event, "e").unwrap().parse().unwrap();
                assert!(roots.contains_key(&root));
            }
            if k == 1111 {
                let root: EventId = tag_value(event, "E").unwrap().parse().unwrap();
                assert_eq!(
                    tag_value(event, "K").unwrap(),
                    roots[&root].as_u16().to_string()
                );
                assert_eq!(tag_value(event, "A"), Some(a.clone()));
                let by_root = Filter::new()
                    .custom_tag(SingleLetterTag::uppercase(Alphabet::E), root.to_hex());
                assert!(by_root.match_event(event, MatchEventOptions::new()));
            }
            if k == 1617 {
                let size = event.content.len();
                assert!(
                    (2 * 1024..=50 * 1024).contains(&size),
                    "patch of {size} bytes"
                );
                if !roots.contains_key(&event.id) {
                    let root: EventId = tag_value(event, "e").unwrap().parse().unwrap();
                    assert_eq!(roots.get(&root), Some(&Kind::GitPatch));
                }
            }
        }
    }

    let mut per_second: HashMap<u64, usize> = HashMap::new();
    for event in &all {
        *per_second.entry(event.created_at.as_secs()).or_default() += 1;
    }
    assert!(
        per_second.values().max().unwrap() >= &5,
        "no crowded second"
    );
}

#[test]
fn total_events_sizes_all_related_exactly() {
    let corpus = Corpus::generate(
        CorpusSpec::new(7)
            .repos(4)
            .total_events(503)
            .patch_kib(1, 2),
    );
    assert_eq!(corpus.all_related().len(), 503);
    let coordinate = &corpus.coordinates()[1];
    let of_repo = corpus.events_of_repo(coordinate);
    assert_eq!(of_repo.len(), corpus.repos()[1].events.len() + 2);
}

#[test]
fn spread_puts_every_event_on_one_to_k_relays_deterministically() {
    let corpus = Corpus::generate(CorpusSpec::new(1).patch_kib(2, 3));
    let spread = corpus.spread(4, 2);
    assert_eq!(spread, corpus.spread(4, 2));
    assert_eq!(spread.len(), 4);
    let mut copies: HashMap<EventId, usize> = HashMap::new();
    for relay in &spread {
        for event in relay {
            *copies.entry(event.id).or_default() += 1;
        }
    }
    assert_eq!(copies.len(), corpus.all_related().len());
    assert!(copies.values().all(|&n| (1..=2).contains(&n)));
    assert!(copies.values().any(|&n| n == 2));
}

#[test]
fn bad_events_fail_verification_and_unrelated_ones_match_no_repo_filter() {
    let corpus = Corpus::generate(CorpusSpec::new(5).patch_kib(2, 3));
    let bad = corpus.bad_events();
    let bad_sig = Event::from_json(&bad.bad_signature).unwrap();
    assert!(bad_sig.verify_id());
    assert!(!bad_sig.verify_signature());
    let wrong_id = Event::from_json(&bad.wrong_id).unwrap();
    assert!(!wrong_id.verify_id());
    assert!(
        wrong_id.verify_signature(),
        "the signature covers the wrong id"
    );
    assert!(bad.unrelated.verify().is_ok());

    let repo_filter = Filter::new().coordinates(corpus.coordinates().iter());
    assert!(repo_filter.match_event(&bad_sig, MatchEventOptions::new()));
    let unrelated = corpus.unrelated(6);
    assert_eq!(unrelated[..3], corpus.unrelated(3)[..]);
    for event in unrelated.iter().chain([&bad.unrelated]) {
        assert!(event.verify().is_ok());
        assert!(!repo_filter.match_event(event, MatchEventOptions::new()));
    }
    assert!(unrelated.iter().any(|e| e.kind == Kind::GitIssue));
}
