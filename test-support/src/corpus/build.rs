//! Builders for each event kind the corpus emits, and deterministic keys and signatures.

use nostr::hashes::sha1::Hash as Sha1Hash;
use nostr::hashes::Hash;
use nostr::nips::nip01::Coordinate;
use nostr::nips::nip34::{
    GitIssue, GitPatch, GitPatchCommitter, GitPatchContent, GitRepositoryAnnouncement,
};
use nostr::secp256k1::schnorr::Signature;
use nostr::secp256k1::{Keypair, Message, SECP256K1};
use nostr::{
    Event, EventBuilder, EventId, Keys, Kind, PublicKey, RelayUrl, SecretKey, Tag, Timestamp, Url,
};
use rand::rngs::StdRng;
use rand::Rng;

use super::text;

/// NIP-34 kinds nostr 0.44 has no name for.
pub const KIND_PULL_REQUEST: u16 = 1618;
pub const KIND_REPO_STATE: u16 = 30618;

/// An event others point at: a root (patch, PR, issue) or a comment in its thread.
#[derive(Debug, Clone, Copy)]
pub(super) struct Anchor {
    pub id: EventId,
    pub kind: Kind,
    pub author: PublicKey,
    pub created_at: Timestamp,
}

impl Anchor {
    pub fn of(event: &Event) -> Self {
        Self {
            id: event.id,
            kind: event.kind,
            author: event.pubkey,
            created_at: event.created_at,
        }
    }
}

/// Signing identity from the seeded RNG, so every run signs with the same keys.
#[derive(Debug, Clone)]
pub(super) struct Author {
    pub keys: Keys,
    /// Kept because nostr 0.44 only exposes the keypair through a deprecated accessor.
    keypair: Keypair,
}

impl Author {
    pub fn new(rng: &mut StdRng) -> Self {
        loop {
            let bytes: [u8; 32] = rng.random();
            // Fails only for the zero key or one above the curve order: practically never.
            if let Ok(secret) = SecretKey::from_slice(&bytes) {
                let keypair = Keypair::from_secret_key(SECP256K1, &secret);
                return Self {
                    keys: Keys::new(secret),
                    keypair,
                };
            }
        }
    }

    pub fn public_key(&self) -> PublicKey {
        self.keys.public_key()
    }
}

/// Signs without auxiliary randomness, so the same seed gives byte-identical events.
///
/// Skips `EventBuilder::sign_with_keys`, which draws from the OS RNG and re-verifies every
/// event; that verification is half the cost of a big corpus.
pub(super) fn sign(builder: EventBuilder, author: &Author, created_at: Timestamp) -> Event {
    let mut unsigned = builder
        .custom_created_at(created_at)
        .build(author.public_key());
    let id = unsigned.id();
    Event::new(
        id,
        unsigned.pubkey,
        unsigned.created_at,
        unsigned.kind,
        unsigned.tags.to_vec(),
        unsigned.content,
        signature_over(&id, author),
    )
}

/// A valid schnorr signature over `id`, whether or not `id` is the event's real hash.
pub(super) fn signature_over(id: &EventId, author: &Author) -> Signature {
    let message = Message::from_digest(id.to_bytes());
    SECP256K1.sign_schnorr_no_aux_rand(&message, &author.keypair)
}

pub(super) fn sha1(rng: &mut StdRng) -> Sha1Hash {
    Sha1Hash::from_byte_array(rng.random())
}

fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().copied()).expect("a non-empty tag")
}

/// What a repo announcement says.
pub(super) struct RepoInfo<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub owner: PublicKey,
    pub git_host: &'a str,
    pub relays: Vec<RelayUrl>,
    pub euc: Sha1Hash,
    pub maintainers: Vec<PublicKey>,
}

impl RepoInfo<'_> {
    /// `https://<host>/<npub>/<id>.git`.
    pub fn clone_url(&self) -> Url {
        use nostr::nips::nip19::ToBech32;
        let npub = self.owner.to_bech32().expect("bech32 of a valid key");
        Url::parse(&format!("https://{}/{npub}/{}.git", self.git_host, self.id))
            .expect("a valid clone URL")
    }
}

pub(super) fn announcement(rng: &mut StdRng, repo: &RepoInfo<'_>) -> EventBuilder {
    let web = Url::parse(&format!("https://{}/{}", repo.git_host, repo.id)).expect("valid URL");
    EventBuilder::git_repository_announcement(GitRepositoryAnnouncement {
        id: repo.id.to_owned(),
        name: Some(repo.name.to_owned()),
        description: Some(text::prose(rng, 2)),
        web: vec![web],
        clone: vec![repo.clone_url()],
        relays: repo.relays.clone(),
        euc: Some(repo.euc),
        maintainers: repo.maintainers.clone(),
    })
    .expect("a repo id is never empty")
}

/// Kind 30618: branch heads and HEAD.
pub(super) fn state(rng: &mut StdRng, repo_id: &str) -> EventBuilder {
    let main = text::hex(rng, 20);
    let dev = text::hex(rng, 20);
    EventBuilder::new(Kind::from(KIND_REPO_STATE), "").tags([
        Tag::identifier(repo_id),
        tag(&["refs/heads/main", &main]),
        tag(&["refs/heads/dev", &dev]),
        tag(&["HEAD", "ref: refs/heads/main"]),
    ])
}

pub(super) fn issue(rng: &mut StdRng, repo: &Coordinate) -> EventBuilder {
    let labels = if rng.random_bool(0.5) {
        vec!["bug".to_owned()]
    } else {
        Vec::new()
    };
    EventBuilder::git_issue(GitIssue {
        repository: repo.clone(),
        content: {
            let sentences = rng.random_range(2..8);
            text::prose(rng, sentences)
        },
        subject: Some(text::title(rng)),
        labels,
    })
    .expect("a 30617 coordinate")
}

/// A patch of `bytes` bytes; a root (`["t","root"]`) or a revision replying to `reply_to`.
pub(super) fn patch(
    rng: &mut StdRng,
    repo: &Coordinate,
    euc: Sha1Hash,
    bytes: usize,
    reply_to: Option<&Anchor>,
) -> EventBuilder {
    let commit = sha1(rng);
    let (name, email) = text::person(rng);
    let subject = text::title(rng);
    let content = text::patch(rng, (&name, &email), &commit.to_string(), &subject, bytes);
    let builder = EventBuilder::git_patch(GitPatch {
        repository: repo.clone(),
        content: GitPatchContent::Patch {
            content,
            commit,
            parent_commit: sha1(rng),
            commit_pgp_sig: None,
            committer: GitPatchCommitter {
                name: Some(name),
                email: Some(email),
                timestamp: Timestamp::from(1_741_000_000 + rng.random_range(0..1_000_000)),
                offset_minutes: 60,
            },
        },
        euc,
        labels: Vec::new(),
    })
    .expect("a 30617 coordinate");
    match reply_to {
        None => builder.tags([Tag::hashtag("root")]),
        Some(root) => builder.tags([
            tag(&["e", &root.id.to_hex(), "", "reply"]),
            Tag::public_key(root.author),
        ]),
    }
}

/// Kind 1618.
pub(super) fn pull_request(
    rng: &mut StdRng,
    repo: &Coordinate,
    euc: Sha1Hash,
    clone: &Url,
) -> EventBuilder {
    let tip = text::hex(rng, 20);
    let branch = format!("pr/{}", text::hex(rng, 3));
    EventBuilder::new(Kind::from(KIND_PULL_REQUEST), text::prose(rng, 3)).tags([
        Tag::coordinate(repo.clone(), None),
        Tag::public_key(repo.public_key),
        Tag::reference(euc.to_string()),
        tag(&["subject", &text::title(rng)]),
        tag(&["c", &tip]),
        tag(&["clone", clone.as_str()]),
        tag(&["branch-name", &branch]),
    ])
}

/// Kinds 1630–1633 on `root`.
pub(super) fn status(
    rng: &mut StdRng,
    repo: &Coordinate,
    euc: Sha1Hash,
    root: &Anchor,
) -> EventBuilder {
    let kind = rng.random_range(1630..=1633u16);
    let content = match kind {
        1630 => "Reopened.",
        1631 => "Applied, thanks!",
        1632 => "Closing: superseded.",
        _ => "Marked as draft.",
    };
    EventBuilder::new(Kind::from(kind), content).tags([
        tag(&["e", &root.id.to_hex(), "", "root"]),
        Tag::public_key(root.author),
        Tag::public_key(repo.public_key),
        Tag::coordinate(repo.clone(), None),
        Tag::reference(euc.to_string()),
    ])
}

/// NIP-22 kind 1111 under `root`, replying to `parent` (the root itself or a comment).
pub(super) fn comment(
    rng: &mut StdRng,
    repo: &Coordinate,
    root: &Anchor,
    parent: &Anchor,
) -> EventBuilder {
    let sentences = rng.random_range(1..4);
    EventBuilder::new(Kind::Comment, text::prose(rng, sentences)).tags([
        tag(&["E", &root.id.to_hex(), "", &root.author.to_hex()]),
        tag(&["K", &root.kind.as_u16().to_string()]),
        tag(&["P", &root.author.to_hex()]),
        tag(&["A", &repo.to_string()]),
        tag(&["e", &parent.id.to_hex(), "", &parent.author.to_hex()]),
        tag(&["k", &parent.kind.as_u16().to_string()]),
        tag(&["p", &parent.author.to_hex()]),
    ])
}
