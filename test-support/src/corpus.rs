//! `Corpus`: a seeded generator of realistic, signed NIP-34 events.

use nostr::nips::nip01::Coordinate;
use std::collections::HashSet;

use nostr::{Event, EventId, RelayUrl, Timestamp};
use rand::rngs::StdRng;
use rand::SeedableRng;

use self::clock::Clock;
use self::repo::RepoGenerator;

mod build;
mod clock;
mod noise;
mod repo;
mod spread;
mod text;

pub use self::build::{KIND_PULL_REQUEST, KIND_REPO_STATE};
pub use self::noise::BadEvents;
pub use self::repo::Repo;
pub use self::spread::spread_events;

/// Default end of the corpus' time span (2025-10-09): fixed, so ids never depend on the clock.
pub const DEFAULT_END: u64 = 1_760_000_000;

/// Size of the pool of non-owner authors (maintainers, contributors).
const CONTRIBUTORS: usize = 8;

/// What to generate. Same spec, same events, byte for byte.
#[derive(Debug, Clone)]
pub struct CorpusSpec {
    /// Seeds the RNG, the keys, and hence every id.
    pub seed: u64,
    /// Announced repositories (kind 30617), each with a state event (30618).
    pub repos: usize,
    /// Events per repo besides its announcement and state.
    pub events_per_repo: usize,
    /// If set, overrides `events_per_repo`: `all_related().len()` equals this (given at least
    /// two per repo).
    pub total_events: Option<usize>,
    /// Relay URLs for the announcements' `relays` tag.
    pub relays: Vec<String>,
    /// If set, each announcement lists 1..=n of `relays`; otherwise all of them.
    pub max_relays_per_repo: Option<usize>,
    /// Host in `clone` and `web` URLs.
    pub git_host: String,
    /// Patch content size range in KiB, inclusive.
    pub patch_kib: (usize, usize),
    /// Latest `created_at`.
    pub end: Timestamp,
    /// Days before `end` over which events are spread.
    pub span_days: u64,
    /// Percentage of events placed on one of a few shared seconds.
    pub collision_percent: u8,
}

impl Default for CorpusSpec {
    fn default() -> Self {
        Self {
            seed: 0,
            repos: 3,
            events_per_repo: 20,
            total_events: None,
            relays: Vec::new(),
            max_relays_per_repo: None,
            git_host: "git.example.com".to_owned(),
            patch_kib: (2, 50),
            end: Timestamp::from(DEFAULT_END),
            span_days: 180,
            collision_percent: 10,
        }
    }
}

impl CorpusSpec {
    /// Defaults with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Number of repositories.
    pub fn repos(mut self, repos: usize) -> Self {
        self.repos = repos;
        self
    }

    /// Events per repo besides announcement and state.
    pub fn events_per_repo(mut self, n: usize) -> Self {
        self.events_per_repo = n;
        self
    }

    /// Exact size of `all_related()`.
    pub fn total_events(mut self, n: usize) -> Self {
        self.total_events = Some(n);
        self
    }

    /// Relay URLs to announce.
    pub fn relays<S: Into<String>>(mut self, relays: impl IntoIterator<Item = S>) -> Self {
        self.relays = relays.into_iter().map(Into::into).collect();
        self
    }

    /// Announce a random 1..=n of the relays per repo.
    pub fn max_relays_per_repo(mut self, n: usize) -> Self {
        self.max_relays_per_repo = Some(n);
        self
    }

    /// Patch content size range in KiB; small values keep big corpora fast.
    pub fn patch_kib(mut self, min: usize, max: usize) -> Self {
        self.patch_kib = (min, max.max(min));
        self
    }

    /// Share of events on crowded seconds.
    pub fn collision_percent(mut self, percent: u8) -> Self {
        self.collision_percent = percent.min(100);
        self
    }

    /// Body events for each repo.
    fn budgets(&self) -> Vec<usize> {
        match self.total_events {
            None => vec![self.events_per_repo; self.repos],
            Some(_) if self.repos == 0 => Vec::new(),
            Some(total) => {
                let body = total.saturating_sub(2 * self.repos);
                let (each, rest) = (body / self.repos, body % self.repos);
                (0..self.repos)
                    .map(|i| each + usize::from(i < rest))
                    .collect()
            }
        }
    }
}

/// A generated corpus. See [`CorpusSpec`]; everything derives from its seed.
#[derive(Debug, Clone)]
pub struct Corpus {
    spec: CorpusSpec,
    clock: Clock,
    repos: Vec<Repo>,
}

impl Corpus {
    /// Generates the corpus. Panics on a relay URL that does not parse.
    pub fn generate(spec: CorpusSpec) -> Self {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let contributors: Vec<build::Author> = (0..CONTRIBUTORS)
            .map(|_| build::Author::new(&mut rng))
            .collect();
        let clock = Clock::new(&mut rng, &spec);
        let relays: Vec<RelayUrl> = spec
            .relays
            .iter()
            .map(|url| RelayUrl::parse(url).unwrap_or_else(|e| panic!("relay URL {url:?}: {e}")))
            .collect();
        let repos = spec
            .budgets()
            .into_iter()
            .enumerate()
            .map(|(index, budget)| {
                RepoGenerator {
                    rng: &mut rng,
                    spec: &spec,
                    clock: &clock,
                    contributors: &contributors,
                }
                .repo(index, &relays, budget)
            })
            .collect();
        Self { spec, clock, repos }
    }

    /// The spec it was generated from.
    pub fn spec(&self) -> &CorpusSpec {
        &self.spec
    }

    /// Every repo with its events.
    pub fn repos(&self) -> &[Repo] {
        &self.repos
    }

    /// The kind 30617 events.
    pub fn announcements(&self) -> Vec<Event> {
        self.repos.iter().map(|r| r.announcement.clone()).collect()
    }

    /// The repos' coordinates.
    pub fn coordinates(&self) -> Vec<Coordinate> {
        self.repos.iter().map(|r| r.coordinate.clone()).collect()
    }

    /// Announcement, state and events of the repo at `coordinate` (empty if unknown).
    pub fn events_of_repo(&self, coordinate: &Coordinate) -> Vec<Event> {
        self.repos
            .iter()
            .find(|r| &r.coordinate == coordinate)
            .map(Repo::all_events)
            .unwrap_or_default()
    }

    /// Everything tied to an announced repo, announcements included.
    pub fn all_related(&self) -> Vec<Event> {
        self.repos.iter().flat_map(Repo::all_events).collect()
    }

    /// What a home relay holds after a complete sync when `ours` (see
    /// [`Repo::announcement_listing`]) replaced the corpus' announcements there.
    pub fn expected_home(&self, ours: &[Event]) -> HashSet<EventId> {
        let replaced: HashSet<EventId> = self.announcements().iter().map(|e| e.id).collect();
        let mut want: HashSet<EventId> = self
            .all_related()
            .iter()
            .map(|e| e.id)
            .filter(|id| !replaced.contains(id))
            .collect();
        want.extend(ours.iter().map(|e| e.id));
        want
    }
}

#[cfg(test)]
mod tests;
