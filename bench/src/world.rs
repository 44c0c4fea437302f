//! The world a run syncs from: source relays on loopback (most with NIP-77, a share without),
//! a seeded NIP-34 corpus spread over them, and the announcements the home relay starts with.

use std::collections::HashSet;

use ngit_sync_test_support::corpus::spread_events;
use ngit_sync_test_support::{Corpus, CorpusSpec, RawRelay, RawRelayOptions, Repo, TestRelay};
use nostr::{Event, EventId, Timestamp};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

/// Keeps the relay choice independent of the corpus' own randomness.
const LISTING_SALT: u64 = 0x0be4_c4ed_11a7;

/// How big a world to build; same spec, same world.
#[derive(Debug, Clone)]
pub struct WorldSpec {
    pub relays: usize,
    pub no_nip77_percent: u8,
    pub repos: usize,
    /// Related events of the corpus (announcements and states included).
    pub events: usize,
    pub max_copies: usize,
    /// Each repo lists 1..=n relays (0: all).
    pub relays_per_repo: usize,
    pub patch_kib: usize,
    pub seed: u64,
    /// Sources carry the corpus' own, older announcement of each repo (as relays in the field
    /// carry superseded versions); otherwise they carry the home relay's current one.
    pub stale_announcements: bool,
}

/// One source relay.
pub enum Source {
    /// nostr-relay-builder: NIP-01 and NIP-77, live subscriptions.
    Nip77(Box<TestRelay>),
    /// Scripted relay refusing NEG-OPEN like strfry without negentropy; history only.
    Plain(RawRelay),
}

impl Source {
    pub fn url(&self) -> String {
        match self {
            Source::Nip77(r) => r.url(),
            Source::Plain(r) => r.url(),
        }
    }

    pub fn bytes_sent(&self) -> u64 {
        match self {
            Source::Nip77(r) => r.bytes_sent(),
            Source::Plain(r) => r.bytes_sent(),
        }
    }

    async fn hold(&self, events: &[Event]) -> anyhow::Result<()> {
        match self {
            Source::Nip77(r) => {
                r.publish(events).await?;
            }
            Source::Plain(r) => r.add_events(events.iter().map(nostr::JsonUtil::as_json)),
        }
        Ok(())
    }
}

pub struct World {
    pub spec: WorldSpec,
    pub sources: Vec<Source>,
    pub corpus: Corpus,
    /// Per repo (corpus order), indexes into `sources` of the relays its announcement lists.
    pub listings: Vec<Vec<usize>>,
    /// One announcement per repo by its owner listing only its source relays: what the home
    /// relay holds before a run. The corpus' own announcements also name a clone host that does
    /// not exist here; these are newer and replace them.
    pub announcements: Vec<Event>,
    /// Events the home relay must receive: the related events except the corpus' announcements.
    pub to_sync: Vec<Event>,
    /// Ids the home relay must hold at the end: `to_sync` plus `announcements`.
    pub want: HashSet<EventId>,
}

impl World {
    /// Starts the relays and fills them.
    pub async fn build(spec: WorldSpec) -> anyhow::Result<World> {
        anyhow::ensure!(spec.relays > 0, "a world needs at least one source relay");
        let plain = (spec.relays * usize::from(spec.no_nip77_percent.min(100))).div_ceil(100);
        let mut sources = Vec::with_capacity(spec.relays);
        for i in 0..spec.relays {
            sources.push(if i < plain {
                Source::Plain(RawRelay::start(Vec::<String>::new(), RawRelayOptions::new()).await?)
            } else {
                Source::Nip77(Box::new(TestRelay::remote().await?))
            });
        }
        let corpus = Corpus::generate(
            CorpusSpec::new(spec.seed)
                .repos(spec.repos)
                .total_events(spec.events)
                .patch_kib(2, spec.patch_kib.max(2)),
        );
        let listings = listings(&spec);
        let urls: Vec<String> = sources.iter().map(Source::url).collect();
        let announcements: Vec<Event> = corpus
            .repos()
            .iter()
            .zip(&listings)
            .map(|(repo, listed)| {
                let relays: Vec<String> = listed.iter().map(|&i| urls[i].clone()).collect();
                announce(repo, &relays)
            })
            .collect();
        let mut shares: Vec<Vec<Event>> = vec![Vec::new(); sources.len()];
        for (index, (repo, listed)) in corpus.repos().iter().zip(&listings).enumerate() {
            let mut events = repo.all_events();
            if !spec.stale_announcements {
                events[0] = announcements[index].clone();
            }
            let placed = spread_events(
                &events,
                listed.len(),
                spec.max_copies,
                spec.seed ^ index as u64,
            );
            for (slot, events) in placed.into_iter().enumerate() {
                shares[listed[slot]].extend(events);
            }
        }
        for (source, share) in sources.iter().zip(&shares) {
            source.hold(share).await?;
        }
        let replaced: HashSet<EventId> = corpus.announcements().iter().map(|e| e.id).collect();
        let to_sync: Vec<Event> = corpus
            .all_related()
            .into_iter()
            .filter(|e| !replaced.contains(&e.id))
            .collect();
        let want = to_sync.iter().chain(&announcements).map(|e| e.id).collect();
        Ok(World {
            spec,
            sources,
            corpus,
            listings,
            announcements,
            to_sync,
            want,
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.sources.iter().map(Source::url).collect()
    }

    /// Relays without NIP-77.
    pub fn plain_count(&self) -> usize {
        self.sources
            .iter()
            .filter(|s| matches!(s, Source::Plain(_)))
            .count()
    }

    /// Bytes all sources sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sources.iter().map(Source::bytes_sent).sum()
    }

    /// Bytes the sources without NIP-77 sent so far.
    pub fn bytes_sent_plain(&self) -> u64 {
        self.sources
            .iter()
            .filter(|s| matches!(s, Source::Plain(_)))
            .map(Source::bytes_sent)
            .sum()
    }

    /// Repos (by index) with at least one NIP-77 relay listed, each with those relays: where
    /// live events can be published.
    pub fn live_targets(&self) -> Vec<(usize, Vec<&TestRelay>)> {
        self.listings
            .iter()
            .enumerate()
            .filter_map(|(repo, listed)| {
                let relays: Vec<&TestRelay> = listed
                    .iter()
                    .filter_map(|&i| match &self.sources[i] {
                        Source::Nip77(r) => Some(r.as_ref()),
                        Source::Plain(_) => None,
                    })
                    .collect();
                (!relays.is_empty()).then_some((repo, relays))
            })
            .collect()
    }
}

/// Which relays each repo lists: a seeded random 1..=n of them, and every relay listed by at
/// least one repo (relay `j` by repo `j mod repos`) so no source sits unused.
pub fn listings(spec: &WorldSpec) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ LISTING_SALT);
    let mut out: Vec<Vec<usize>> = (0..spec.repos)
        .map(|_| {
            if spec.relays_per_repo == 0 {
                return (0..spec.relays).collect();
            }
            let n = rng.random_range(1..=spec.relays_per_repo.min(spec.relays));
            sample(&mut rng, spec.relays, n).into_vec()
        })
        .collect();
    if spec.repos > 0 {
        for relay in 0..spec.relays {
            let listed = &mut out[relay % spec.repos];
            if !listed.contains(&relay) {
                listed.push(relay);
            }
        }
    }
    for listed in &mut out {
        listed.sort_unstable();
    }
    out
}

/// A fresh announcement of `repo` by its owner listing `relays` and nothing else, newer than
/// the corpus' own so it replaces that one wherever both meet.
pub fn announce(repo: &Repo, relays: &[String]) -> Event {
    repo.announcement_listing(relays, Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(relays: usize, repos: usize, per_repo: usize) -> WorldSpec {
        WorldSpec {
            relays,
            no_nip77_percent: 20,
            repos,
            events: 100,
            max_copies: 3,
            relays_per_repo: per_repo,
            patch_kib: 4,
            seed: 7,
            stale_announcements: true,
        }
    }

    #[test]
    fn every_relay_is_listed_and_listings_are_seeded() {
        for (relays, repos, per_repo) in [(60, 5, 3), (20, 50, 5), (3, 1, 1), (10, 10, 0)] {
            let s = spec(relays, repos, per_repo);
            let l = listings(&s);
            assert_eq!(l.len(), repos);
            let listed: HashSet<usize> = l.iter().flatten().copied().collect();
            assert_eq!(listed.len(), relays, "{relays} relays, {repos} repos");
            assert!(l.iter().all(|r| !r.is_empty()));
            assert_eq!(l, listings(&s), "same spec, same listings");
        }
    }
}
