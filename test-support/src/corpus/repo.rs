//! One repository's events: announcement, state, roots and their follow-ups.

use nostr::nips::nip01::Coordinate;
use nostr::{Event, EventBuilder, Keys, Kind, RelayUrl, Tag, Timestamp};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use super::build::{self, Anchor, Author, RepoInfo, KIND_PULL_REQUEST};
use super::clock::Clock;
use super::text;
use super::CorpusSpec;

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

    /// A new announcement of this repo by its owner, made at `at`, listing exactly `relays` and
    /// no clone URL. Tests and the bench put it on the home relay in place of the corpus' own,
    /// whose GRASP-shaped clone URL names a host that does not exist here.
    pub fn announcement_listing(&self, relays: &[String], at: Timestamp) -> Event {
        let mut relays_tag = vec!["relays".to_string()];
        relays_tag.extend(relays.iter().cloned());
        let tags = [
            Tag::identifier(self.identifier()),
            Tag::parse(["name", self.identifier()]).expect("a name tag parses"),
            Tag::parse(relays_tag).expect("a relays tag parses"),
        ];
        EventBuilder::new(Kind::GitRepoAnnouncement, "")
            .tags(tags)
            .custom_created_at(at)
            .sign_with_keys(&self.owner)
            .expect("signing with the owner's keys")
    }

    /// Root events: issues, PRs and root patches (`["t","root"]`); they carry the repo's `a` tag.
    pub fn roots(&self) -> Vec<Event> {
        self.events.iter().filter(|e| is_root(e)).cloned().collect()
    }
}

pub(super) fn is_root(event: &Event) -> bool {
    match event.kind {
        Kind::GitIssue => true,
        Kind::GitPatch => event.tags.hashtags().any(|t| t == "root"),
        kind => kind.as_u16() == KIND_PULL_REQUEST,
    }
}

/// Generates one repo; borrows the corpus-wide RNG so the whole corpus follows one seed.
pub(super) struct RepoGenerator<'a> {
    pub rng: &'a mut StdRng,
    pub spec: &'a CorpusSpec,
    pub clock: &'a Clock,
    pub contributors: &'a [Author],
}

impl RepoGenerator<'_> {
    pub(super) fn repo(mut self, index: usize, relays: &[RelayUrl], budget: usize) -> Repo {
        let owner = Author::new(self.rng);
        let (id, name) = text::repo_name(self.rng, index);
        let info = RepoInfo {
            id: &id,
            name: &name,
            owner: owner.public_key(),
            git_host: &self.spec.git_host,
            relays: self.pick_relays(relays),
            euc: build::sha1(self.rng),
            maintainers: {
                let n = self.rng.random_range(0..=2);
                self.contributors
                    .choose_multiple(self.rng, n)
                    .map(Author::public_key)
                    .collect()
            },
        };
        let announced_at = self.clock.early(self.rng);
        let announcement = build::sign(build::announcement(self.rng, &info), &owner, announced_at);
        let coordinate =
            Coordinate::new(Kind::GitRepoAnnouncement, owner.public_key()).identifier(&id);
        let state_at = self.clock.after(self.rng, announced_at);
        let state = build::sign(build::state(self.rng, &id), &owner, state_at);
        let events = self.body(&coordinate, &info, &owner, announced_at, budget);
        Repo {
            coordinate,
            owner: owner.keys,
            announcement,
            state,
            events,
        }
    }

    fn pick_relays(&mut self, relays: &[RelayUrl]) -> Vec<RelayUrl> {
        match self.spec.max_relays_per_repo {
            Some(max) if !relays.is_empty() => {
                let n = self.rng.random_range(1..=max.clamp(1, relays.len()));
                let mut picked: Vec<RelayUrl> =
                    relays.choose_multiple(self.rng, n).cloned().collect();
                picked.shuffle(self.rng);
                picked
            }
            _ => relays.to_vec(),
        }
    }

    /// Roots first, then a mix of new roots and follow-ups on earlier ones.
    fn body(
        &mut self,
        repo: &Coordinate,
        info: &RepoInfo<'_>,
        owner: &Author,
        since: Timestamp,
        budget: usize,
    ) -> Vec<Event> {
        let mut threads = Threads::default();
        let mut events = Vec::with_capacity(budget);
        for _ in 0..budget {
            let author = if self.rng.random_bool(0.2) {
                owner
            } else {
                self.contributors.choose(self.rng).expect("non-empty")
            };
            let (builder, after, thread) = self.next_event(repo, info, &threads, since);
            let created_at = self.clock.after(self.rng, after);
            let event = build::sign(builder, author, created_at);
            threads.record(&event, thread);
            events.push(event);
        }
        events
    }

    /// The next event's builder, the time it should follow, and the thread it joins.
    fn next_event(
        &mut self,
        repo: &Coordinate,
        info: &RepoInfo<'_>,
        threads: &Threads,
        since: Timestamp,
    ) -> (EventBuilder, Timestamp, Option<usize>) {
        // Until a root exists, only roots can be made.
        let roll = if threads.roots.is_empty() {
            self.rng.random_range(0..35)
        } else {
            self.rng.random_range(0..100)
        };
        match roll {
            0..16 => (build::issue(self.rng, repo), since, None),
            16..30 => {
                let bytes = self.patch_bytes();
                (
                    build::patch(self.rng, repo, info.euc, bytes, None),
                    since,
                    None,
                )
            }
            30..35 => (
                build::pull_request(self.rng, repo, info.euc, &info.clone_url()),
                since,
                None,
            ),
            35..50 => {
                let (root, _) = threads.roots.choose(self.rng).expect("a root exists");
                (
                    build::status(self.rng, repo, info.euc, root),
                    root.created_at,
                    None,
                )
            }
            50..80 => {
                let index = self.rng.random_range(0..threads.roots.len());
                let (root, comments) = &threads.roots[index];
                let parent = match comments.choose(self.rng) {
                    Some(comment) if self.rng.random_bool(0.5) => comment,
                    _ => root,
                };
                let builder = build::comment(self.rng, repo, root, parent);
                (builder, parent.created_at, Some(index))
            }
            _ => {
                let bytes = self.patch_bytes();
                match threads.patches.choose(self.rng) {
                    Some(root) => {
                        let builder = build::patch(self.rng, repo, info.euc, bytes, Some(root));
                        (builder, root.created_at, None)
                    }
                    None => (
                        build::patch(self.rng, repo, info.euc, bytes, None),
                        since,
                        None,
                    ),
                }
            }
        }
    }

    /// A size within the spec's KiB range, leaving room for the patch trailer.
    fn patch_bytes(&mut self) -> usize {
        let (min, max) = self.spec.patch_kib;
        let (min, max) = (min * 1024, (max * 1024).saturating_sub(128).max(min * 1024));
        self.rng.random_range(min..=max)
    }
}

/// Roots made so far, each with its comments, and the root patches among them.
#[derive(Default)]
struct Threads {
    roots: Vec<(Anchor, Vec<Anchor>)>,
    patches: Vec<Anchor>,
}

impl Threads {
    fn record(&mut self, event: &Event, thread: Option<usize>) {
        let anchor = Anchor::of(event);
        if is_root(event) {
            self.roots.push((anchor, Vec::new()));
            if event.kind == Kind::GitPatch {
                self.patches.push(anchor);
            }
        } else if let Some(index) = thread {
            self.roots[index].1.push(anchor);
        }
    }
}
