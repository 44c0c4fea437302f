//! Final verdicts turned into `OutcomeBatch` contents: one group per outcome, split so every
//! message stays well inside NATS' payload limit (announcements and patches travel inside).

use ngit_sync_shared::messages::OutcomeItem;
use ngit_sync_shared::nip34::DISCOVERY_KINDS;
use ngit_sync_shared::status::Outcome;
use nostr::{Event, JsonUtil};

use crate::ledger::{Held, Verdict};

/// Most items in one batch; also the count that triggers an early flush.
pub const MAX_ITEMS: usize = 200;

/// Event JSON carried in one batch: an event may be up to 512 KiB, NATS' default payload limit
/// is 1 MiB, so a batch holds one big event or several small ones.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The items of one `OutcomeBatch` and the stream sequences they answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub outcome: Outcome,
    pub items: Vec<OutcomeItem>,
    pub seqs: Vec<u64>,
}

/// Groups `finals` by outcome (saved, duplicate, rejected), keeping stream order in each group.
pub fn chunks<'a>(finals: impl IntoIterator<Item = (&'a Held, &'a Verdict)>) -> Vec<Chunk> {
    let finals: Vec<(&Held, &Verdict)> = finals.into_iter().collect();
    let mut out = Vec::new();
    for outcome in Outcome::ALL {
        let mut chunk = empty(outcome);
        let mut bytes = 0;
        for (held, verdict) in finals.iter().filter(|(_, v)| v.outcome == outcome) {
            let item = item(held, verdict);
            let size = item.event.as_ref().map_or(0, String::len);
            let full = chunk.items.len() >= MAX_ITEMS || bytes + size > MAX_EVENT_BYTES;
            if full && !chunk.items.is_empty() {
                out.push(std::mem::replace(&mut chunk, empty(outcome)));
                bytes = 0;
            }
            bytes += size;
            chunk.seqs.push(held.seq);
            chunk.items.push(item);
        }
        if !chunk.items.is_empty() {
            out.push(chunk);
        }
    }
    out
}

fn empty(outcome: Outcome) -> Chunk {
    Chunk {
        outcome,
        items: Vec::new(),
        seqs: Vec::new(),
    }
}

/// The event JSON travels whole for the kinds discovery reads; every other event travels as a
/// sketch (content emptied) so discovery's home index learns its time and tags in step with
/// the watermark, for saved and duplicate (have) and rejected (do not fetch again) alike.
fn item(held: &Held, verdict: &Verdict) -> OutcomeItem {
    OutcomeItem {
        id: held.id.clone(),
        kind: held.kind,
        seq: held.seq,
        relay: held.relay.clone(),
        reason: verdict.reason.clone(),
        event: match DISCOVERY_KINDS.contains(&held.kind) {
            true => Some(held.json.clone()),
            false => sketch(&held.json),
        },
    }
}

/// The event without its content: what a filter can select it by. Its id no longer matches
/// its content; readers use it for matching only.
fn sketch(json: &str) -> Option<String> {
    let event = Event::from_json(json).ok()?;
    let sketch = Event::new(
        event.id,
        event.pubkey,
        event.created_at,
        event.kind,
        event.tags,
        "",
        event.sig,
    );
    Some(sketch.as_json())
}

#[cfg(test)]
mod tests {
    use ngit_sync_shared::nip34::KIND_REPO_ANNOUNCEMENT;
    use ngit_sync_shared::RelayUrl;

    use super::*;

    fn held(seq: u64, kind: u16, json_len: usize) -> Held {
        Held {
            seq,
            id: format!("{seq:064x}"),
            kind,
            relay: RelayUrl::parse("wss://remote.example").unwrap(),
            json: "x".repeat(json_len),
        }
    }

    fn verdict(outcome: Outcome, reason: Option<&str>) -> Verdict {
        Verdict {
            outcome,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn finals_are_grouped_by_outcome_in_stream_order() {
        let finals = [
            (
                held(1, 1111, 10),
                verdict(Outcome::Duplicate, Some("duplicate: x")),
            ),
            (held(2, 1111, 10), verdict(Outcome::Saved, None)),
            (
                held(3, 1111, 10),
                verdict(Outcome::Rejected, Some("blocked: y")),
            ),
            (held(4, 1111, 10), verdict(Outcome::Saved, None)),
        ];
        let chunks = chunks(finals.iter().map(|(h, v)| (h, v)));
        let shape: Vec<(Outcome, Vec<u64>)> =
            chunks.iter().map(|c| (c.outcome, c.seqs.clone())).collect();
        assert_eq!(
            shape,
            vec![
                (Outcome::Saved, vec![2, 4]),
                (Outcome::Duplicate, vec![1]),
                (Outcome::Rejected, vec![3]),
            ]
        );
        assert_eq!(chunks[1].items[0].reason.as_deref(), Some("duplicate: x"));
        assert_eq!(chunks[0].items[0].reason, None);
    }

    #[test]
    fn other_kinds_carry_a_sketch_without_content() {
        let event = nostr::EventBuilder::new(nostr::Kind::Custom(1111), "x".repeat(4_000))
            .tags([nostr::Tag::parse(["a", "30617:abc:repo"]).unwrap()])
            .sign_with_keys(&nostr::Keys::generate())
            .unwrap();
        let mut h = held(1, 1111, 0);
        h.json = event.as_json();
        let finals = [(h, verdict(Outcome::Rejected, Some("blocked: no repo")))];
        let chunks = chunks(finals.iter().map(|(h, v)| (h, v)));
        let sketch = Event::from_json(chunks[0].items[0].event.as_deref().unwrap()).unwrap();
        assert_eq!((sketch.id, &sketch.tags), (event.id, &event.tags));
        assert!(sketch.content.is_empty());
    }

    #[test]
    fn only_discovery_kinds_carry_their_json() {
        let finals = [
            (
                held(1, KIND_REPO_ANNOUNCEMENT, 5),
                verdict(Outcome::Saved, None),
            ),
            (held(2, 1111, 5), verdict(Outcome::Saved, None)),
        ];
        let chunks = chunks(finals.iter().map(|(h, v)| (h, v)));
        assert_eq!(chunks[0].items[0].event.as_deref(), Some("xxxxx"));
        assert_eq!(chunks[0].items[1].event, None, "not an event: no sketch");
    }

    #[test]
    fn big_groups_are_split_by_count_and_by_size() {
        let many: Vec<(Held, Verdict)> = (1..=450)
            .map(|seq| (held(seq, 1111, 100), verdict(Outcome::Saved, None)))
            .collect();
        let sizes: Vec<usize> = chunks(many.iter().map(|(h, v)| (h, v)))
            .iter()
            .map(|c| c.items.len())
            .collect();
        assert_eq!(sizes, [200, 200, 50]);

        let patches: Vec<(Held, Verdict)> = (1..=3)
            .map(|seq| (held(seq, 1617, 200 * 1024), verdict(Outcome::Saved, None)))
            .collect();
        let sizes: Vec<usize> = chunks(patches.iter().map(|(h, v)| (h, v)))
            .iter()
            .map(|c| c.items.len())
            .collect();
        assert_eq!(sizes, [1, 1, 1], "each big patch travels alone");
    }
}
