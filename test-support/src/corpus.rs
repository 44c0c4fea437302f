//! `Corpus`: a seeded generator of realistic, signed NIP-34 events.

use nostr::nips::nip01::Coordinate;
use nostr::{Event, Keys, Kind, RelayUrl, Timestamp};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use self::build::{Anchor, RepoInfo};

mod build;
mod noise;
mod spread;
mod text;

pub use self::build::{KIND_PULL_REQUEST, KIND_REPO_STATE};
pub use self::noise::BadEvents;
pub use self::spread::spread_events;

/// Default end of the corpus' time span (2025-10-09): fixed, so ids never depend on the clock.
pub const DEFAULT_END: u64 = 1_760_000_000;

/// Size of the pool of non-owner authors (maintainers, contributors).
const CONTRIBUTORS: usize = 8;

/// Seconds that many events share, to exercise `until` pagination on timestamp ties.
const CROWDED_SECONDS: usize = 3;

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
        Self { seed, ..Self::default() }
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
                (0..self.repos).map(|i| each + usize::from(i < rest)).collect()
            }
        }
    }
}

/// Picks `created_at` values inside the span, with deliberate collisions.
#[derive(Debug, Clone)]
struct Clock {
    start: u64,
    end: u64,
    crowded: Vec<u64>,
    collision_percent: u8,
}

impl Clock {
    fn new(rng: &mut StdRng, spec: &CorpusSpec) -> Self {
        let end = spec.end.as_secs();
        let start = end.saturating_sub(spec.span_days * 86_400);
        let crowded = (0..CROWDED_SECONDS)
            .map(|_| rng.random_range(start + (end - start) / 2..=end))
            .collect();
        Self { start, end, crowded, collision_percent: spec.collision_percent }
    }

    /// Early in the span: when repos get announced.
    fn early(&self, rng: &mut StdRng) -> Timestamp {
        Timestamp::from(rng.random_range(self.start..=self.end.min(self.start + 7 * 86_400)))
    }

    /// At or after `t`, or on a crowded second (which may predate `t`, like a skewed clock).
    fn after(&self, rng: &mut StdRng, t: Timestamp) -> Timestamp {
        if rng.random_range(0..100) < self.collision_percent {
            return Timestamp::from(*self.crowded.choose(rng).expect("non-empty"));
        }
        Timestamp::from(rng.random_range(t.as_secs().min(self.end)..=self.end))
    }
}

/// One announced repository and everything tied to it.
#[derive(Debug, Clone)]
pub struct Repo {
    /// `30617:<owner hex>:<d>`.
    pub coordinate: Coordinate,
    /// The announcing (owner) keys.
    pub owner: Keys,
    /// Kind 30617.
    pub announcement: Event,
    /// Kind 30618.
    pub state: Event,
    /// Patches, PRs, issues, statuses, comments and patch revisions, in generation order.
    pub events: Vec<Event>,
}

impl Repo {
    /// The `d` tag.
    pub fn identifier(&self) -> &str {
        &self.coordinate.identifier
    }

    /// Announcement, state and events.
    pub fn all_events(&self) -> Vec<Event> {
        let mut all = vec![self.announcement.clone(), self.state.clone()];
        all.extend(self.events.iter().cloned());
        all
    }

    /// Root events: issues, PRs and root patches (`["t","root"]`); they carry the repo's `a` tag.
    pub fn roots(&self) -> Vec<Event> {
        self.events.iter().filter(|e| is_root(e)).cloned().collect()
    }
}

fn is_root(event: &Event) -> bool {
    match event.kind {
        Kind::GitIssue => true,
        Kind::GitPatch => event.tags.hashtags().any(|t| t == "root"),
        kind => kind.as_u16() == KIND_PULL_REQUEST,
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
        let contributors: Vec<Keys> = (0..CONTRIBUTORS).map(|_| build::keys(&mut rng)).collect();
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
                RepoGenerator { rng: &mut rng, spec: &spec, clock: &clock, contributors: &contributors }
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
}

/// Generates one repo; borrows the corpus-wide RNG so the whole corpus follows one seed.
struct RepoGenerator<'a> {
    rng: &'a mut StdRng,
    spec: &'a CorpusSpec,
    clock: &'a Clock,
    contributors: &'a [Keys],
}

impl RepoGenerator<'_> {
    fn repo(mut self, index: usize, relays: &[RelayUrl], budget: usize) -> Repo {
        let owner = build::keys(self.rng);
        let (id, name) = text::repo_name(self.rng, index);
        let info = RepoInfo {
            id: &id,
            name: &name,
            owner: owner.public_key(),
            git_host: &self.spec.git_host,
            relays: self.pick_relays(relays),
            euc: build::sha1(self.rng),
            maintainers: self
                .contributors
                .choose_multiple(self.rng, self.rng.random_range(0..=2))
                .map(Keys::public_key)
                .collect(),
        };
        let announced_at = self.clock.early(self.rng);
        let announcement = build::sign(build::announcement(self.rng, &info), &owner, announced_at);
        let coordinate = Coordinate::new(Kind::GitRepoAnnouncement, owner.public_key()).identifier(&id);
        let state_at = self.clock.after(self.rng, announced_at);
        let state = build::sign(build::state(self.rng, &id), &owner, state_at);
        let events = self.body(&coordinate, &info, &owner, announced_at, budget);
        Repo { coordinate, owner, announcement, state, events }
    }

    fn pick_relays(&mut self, relays: &[RelayUrl]) -> Vec<RelayUrl> {
        match self.spec.max_relays_per_repo {
            Some(max) if !relays.is_empty() => {
                let n = self.rng.random_range(1..=max.clamp(1, relays.len()));
                let mut picked: Vec<RelayUrl> = relays.choose_multiple(self.rng, n).cloned().collect();
                picked.shuffle(self.rng);
                picked
            }
            _ => relays.to_vec(),
        }
    }

    /// Roots first, then a mix of new roots and follow-ups on earlier ones.
    fn body(&mut self, repo: &Coordinate, info: &RepoInfo<'_>, owner: &Keys, since: Timestamp, budget: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(budget);
        // Each root with the comments in its thread.
        let mut threads: Vec<(Anchor, Vec<Anchor>)> = Vec::new();
        let mut patches: Vec<Anchor> = Vec::new();
        let (min_kib, max_kib) = self.spec.patch_kib;
        for _ in 0..budget {
            let author = if self.rng.random_bool(0.2) { owner } else { self.contributors.choose(self.rng).expect("non-empty") };
            let roll = if threads.is_empty() { self.rng.random_range(0..35) } else { self.rng.random_range(0..100) };
            let patch_bytes = self.rng.random_range(min_kib * 1024..=(max_kib * 1024).saturating_sub(128).max(min_kib * 1024));
            let (builder, after) = match roll {
                0..16 => (build::issue(self.rng, repo), since),
                16..30 => (build::patch(self.rng, repo, info.euc, patch_bytes, None), since),
                30..35 => (build::pull_request(self.rng, repo, info.euc, &info.clone_url()), since),
                35..50 => {
                    let (root, _) = *threads.choose(self.rng).expect("non-empty");
                    (build::status(self.rng, repo, info.euc, &root), root.created_at)
                }
                50..80 => {
                    let (root, comments) = threads.choose(self.rng).expect("non-empty");
                    let parent = match comments.choose(self.rng) {
                        Some(comment) if self.rng.random_bool(0.5) => *comment,
                        _ => *root,
                    };
                    (build::comment(self.rng, repo, root, &parent), parent.created_at)
                }
                _ => match patches.choose(self.rng) {
                    Some(root) => (build::patch(self.rng, repo, info.euc, patch_bytes, Some(root)), root.created_at),
                    None => (build::patch(self.rng, repo, info.euc, patch_bytes, None), since),
                },
            };
            let created_at = self.clock.after(self.rng, after);
            let event = build::sign(builder, author, created_at);
            let anchor = Anchor::of(&event);
            if is_root(&event) {
                threads.push((anchor, Vec::new()));
                if event.kind == Kind::GitPatch {
                    patches.push(anchor);
                }
            } else if event.kind == Kind::Comment {
                let root_id = event.tags.iter().find(|t| t.kind().as_str() == "E").and_then(|t| t.content());
                if let Some(thread) = threads.iter_mut().find(|(root, _)| Some(root.id.to_hex().as_str()) == root_id) {
                    thread.1.push(anchor);
                }
            }
            events.push(event);
        }
        events
    }
}

#[cfg(test)]
mod tests;
