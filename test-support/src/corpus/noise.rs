//! Events a sync must not take: unrelated ones and broken ones.

use nostr::nips::nip01::Coordinate;
use nostr::{Event, EventBuilder, EventId, JsonUtil, Kind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::{build, text, Corpus};

/// Salts keep these streams independent of the main generation and of each other.
const UNRELATED_SALT: u64 = 0x0def_ace0_0001;
const BAD_SALT: u64 = 0x0def_ace0_0002;

/// Broken or unwanted events. The first two are issues on the first repo (an orphan repo if
/// the corpus has none), so a repo filter fetches them and verification must drop them.
#[derive(Debug, Clone)]
pub struct BadEvents {
    /// Correct id, signature that does not verify. Raw JSON: nostr won't build it.
    pub bad_signature: String,
    /// Id that is not the hash of the event, with a valid signature over that wrong id.
    pub wrong_id: String,
    /// A valid kind-1 note that matches no NIP-34 filter of the corpus.
    pub unrelated: Event,
}

impl BadEvents {
    /// The two broken events as raw JSON.
    pub fn broken(&self) -> Vec<String> {
        vec![self.bad_signature.clone(), self.wrong_id.clone()]
    }
}

impl Corpus {
    /// `n` valid events outside the corpus: alternately kind-1 notes and issues tagging a
    /// coordinate nobody announced. Prefix-stable: `unrelated(3)` starts `unrelated(5)`.
    pub fn unrelated(&self, n: usize) -> Vec<Event> {
        let mut rng = StdRng::seed_from_u64(self.spec.seed ^ UNRELATED_SALT);
        let stranger = build::Author::new(&mut rng);
        (0..n)
            .map(|i| {
                let early = self.clock.early(&mut rng);
                let created_at = self.clock.after(&mut rng, early);
                let builder = if i % 2 == 0 {
                    EventBuilder::text_note(text::prose(&mut rng, 2))
                } else {
                    let orphan = Coordinate::new(Kind::GitRepoAnnouncement, stranger.public_key())
                        .identifier(format!("orphan-{i}"));
                    build::issue(&mut rng, &orphan)
                };
                build::sign(builder, &stranger, created_at)
            })
            .collect()
    }

    /// One event with a bad signature, one with a wrong id, one valid but unrelated.
    pub fn bad_events(&self) -> BadEvents {
        let mut rng = StdRng::seed_from_u64(self.spec.seed ^ BAD_SALT);
        let forger = build::Author::new(&mut rng);
        let repo = match self.repos.first() {
            Some(repo) => repo.coordinate.clone(),
            None => {
                Coordinate::new(Kind::GitRepoAnnouncement, forger.public_key()).identifier("orphan")
            }
        };
        let early = self.clock.early(&mut rng);
        let created_at = self.clock.after(&mut rng, early);

        let mut bad_signature = json_of(&build::sign(
            build::issue(&mut rng, &repo),
            &forger,
            created_at,
        ));
        let sig = bad_signature["sig"].as_str().expect("sig is a string");
        // Flipping one hex digit keeps the JSON well-formed but breaks verification.
        let flipped = if sig.ends_with('0') { '1' } else { '0' };
        bad_signature["sig"] = Value::from(format!("{}{flipped}", &sig[..sig.len() - 1]));

        let mut wrong_id = json_of(&build::sign(
            build::issue(&mut rng, &repo),
            &forger,
            created_at,
        ));
        let id = EventId::from_slice(&rng.random::<[u8; 32]>()).expect("32 bytes");
        wrong_id["id"] = Value::from(id.to_hex());
        wrong_id["sig"] = Value::from(build::signature_over(&id, &forger).to_string());

        let note = EventBuilder::text_note(text::prose(&mut rng, 1));
        BadEvents {
            bad_signature: bad_signature.to_string(),
            wrong_id: wrong_id.to_string(),
            unrelated: build::sign(note, &forger, created_at),
        }
    }
}

fn json_of(event: &Event) -> Value {
    serde_json::from_str(&event.as_json()).expect("an event serializes to JSON")
}
