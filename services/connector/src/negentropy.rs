//! The client side of NIP-77 negentropy, without I/O: one reconciliation of a filter against
//! the home index's items, how a relay's refusals read, and when fetching the ids a relay
//! advertised has gone on long enough. The syncer drives it (`syncer/reconcile.rs`).

use std::collections::BTreeSet;

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::{EventId, Filter, Timestamp};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NegError {
    #[error("index item {0:?} is not a 64-hex event id")]
    BadItem(String),
    #[error("relay sent a negentropy message that is not hex")]
    NotHex,
    #[error("negentropy: {0}")]
    Protocol(String),
}

impl From<negentropy::Error> for NegError {
    fn from(e: negentropy::Error) -> Self {
        NegError::Protocol(e.to_string())
    }
}

/// One filter's reconciliation: our items in, the relay's messages in, ids to fetch out.
pub struct Reconciliation {
    neg: Negentropy<'static, NegentropyStorageVector>,
    need: BTreeSet<EventId>,
}

impl std::fmt::Debug for Reconciliation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciliation")
            .field("need", &self.need.len())
            .finish()
    }
}

/// What to do after a relay's `NEG-MSG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this hex message in a `NEG-MSG`.
    Continue(String),
    /// Reconciled: fetch [`Reconciliation::need`].
    Done,
}

impl Reconciliation {
    /// Builds our side from `(created_at, id hex)` items; returns it with the `NEG-OPEN` message
    /// (hex). `frame_limit` bounds every message we send, in bytes before hex encoding.
    pub fn start(
        items: &[(u64, String)],
        frame_limit: usize,
    ) -> Result<(Reconciliation, String), NegError> {
        let mut storage = NegentropyStorageVector::with_capacity(items.len());
        for (created_at, id) in items {
            let bytes = decode_hex(id)
                .filter(|b| b.len() == 32)
                .ok_or_else(|| NegError::BadItem(id.clone()))?;
            storage.insert(*created_at, Id::from_slice(&bytes)?)?;
        }
        storage.seal()?;
        let mut neg = Negentropy::owned(storage, frame_limit as u64)?;
        let first = encode_hex(&neg.initiate()?);
        let recon = Reconciliation {
            neg,
            need: BTreeSet::new(),
        };
        Ok((recon, first))
    }

    /// The relay's answer (hex): ids it has and we lack are collected.
    pub fn on_message(&mut self, hex: &str) -> Result<Step, NegError> {
        let query = decode_hex(hex).ok_or(NegError::NotHex)?;
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = self.neg.reconcile_with_ids(&query, &mut have, &mut need)?;
        self.need
            .extend(need.iter().map(|id| EventId::from_byte_array(**id)));
        Ok(match next {
            Some(message) => Step::Continue(encode_hex(&message)),
            None => Step::Done,
        })
    }

    pub fn need(&self) -> &BTreeSet<EventId> {
        &self.need
    }
}

/// How a relay said no to a `NEG-OPEN` or `NEG-MSG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The result set is too large (strfry: `blocked: too many query results`): split the range.
    TooMany,
    /// The relay does not do NIP-77 (or not for us).
    Unsupported,
}

/// Reads a `NEG-ERR` or `CLOSED` reason.
pub fn classify(reason: &str) -> Refusal {
    let lower = reason.to_ascii_lowercase();
    if ["too many", "too big", "too large", "too much"]
        .iter()
        .any(|w| lower.contains(w))
    {
        Refusal::TooMany
    } else {
        Refusal::Unsupported
    }
}

/// Whether a NOTICE, arriving while a `NEG-OPEN` waits for its first answer, says the relay does
/// not understand NIP-77 (strfry without negentropy: `ERROR: bad msg: ...`; nostr-rs-relay:
/// `could not parse command`).
pub fn notice_refuses(notice: &str) -> bool {
    let lower = notice.to_ascii_lowercase();
    [
        "bad msg",
        "could not parse",
        "unknown cmd",
        "unknown command",
        "unknown message",
        "unsupported",
        "negentropy",
        "neg-open",
        "invalid command",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// Halves a filter's time range for a relay that found the whole too large. `now` stands in
/// for an open upper end; the lower end defaults to the epoch. `None` when the range is a
/// single second (nothing left to split).
pub fn split_range(filter: &Filter, now: Timestamp) -> Option<(Filter, Filter)> {
    let lo = filter.since.map_or(0, |t| t.as_secs());
    let hi = filter.until.unwrap_or(now).as_secs();
    if hi <= lo {
        return None;
    }
    let mid = lo + (hi - lo) / 2;
    let older = filter.clone().until(Timestamp::from(mid));
    let newer = filter.clone().since(Timestamp::from(mid + 1));
    let newer = match filter.until {
        Some(u) => newer.until(u),
        None => newer,
    };
    Some((older, newer))
}

/// Rounds of fetching the ids one reconciliation found. A round asks for every id still
/// missing; one that brings some goes on. A retry that brings none ends it: as failed when
/// the relay never served any of the ids it advertised (a relay that lies must not make us
/// loop), as answered when it served the others (those few are gone from the relay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    missing: BTreeSet<EventId>,
    rounds: u32,
    served_any: bool,
}

/// After a fetch round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEnd {
    /// Everything arrived.
    Complete,
    /// Ask again for these.
    Again(Vec<EventId>),
    /// The relay served the rest but not these, twice: it no longer has them.
    AnsweredMissing { missing: usize },
    /// The relay returned none of the ids it advertised when asked again.
    Lying { missing: usize },
}

impl Fetch {
    pub fn new(need: &BTreeSet<EventId>) -> Fetch {
        Fetch {
            missing: need.clone(),
            rounds: 0,
            served_any: false,
        }
    }

    /// The ids of the next round.
    pub fn round(&mut self) -> Vec<EventId> {
        self.rounds += 1;
        self.missing.iter().copied().collect()
    }

    /// The round ended; `received` says which ids arrived (any superset is fine).
    pub fn end_round(&mut self, received: impl Fn(&EventId) -> bool) -> FetchEnd {
        let before = self.missing.len();
        self.missing.retain(|id| !received(id));
        let progress = self.missing.len() < before;
        self.served_any |= progress;
        let missing = self.missing.len();
        if missing == 0 {
            FetchEnd::Complete
        } else if self.rounds >= 2 && !progress && self.served_any {
            FetchEnd::AnsweredMissing { missing }
        } else if self.rounds >= 2 && !progress {
            FetchEnd::Lying { missing }
        } else {
            FetchEnd::Again(self.missing.iter().copied().collect())
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::hashes::{sha256, Hash};

    fn id(n: u64) -> EventId {
        EventId::from_byte_array(sha256::Hash::hash(&n.to_le_bytes()).to_byte_array())
    }

    fn items(range: std::ops::Range<u64>) -> Vec<(u64, String)> {
        range.map(|n| (1_000 + n, id(n).to_hex())).collect()
    }

    /// A relay's side, as nostr-relay-builder runs it.
    fn relay(items: &[(u64, String)]) -> Negentropy<'static, NegentropyStorageVector> {
        let mut storage = NegentropyStorageVector::new();
        for (t, h) in items {
            let bytes = decode_hex(h).unwrap();
            storage.insert(*t, Id::from_slice(&bytes).unwrap()).unwrap();
        }
        storage.seal().unwrap();
        Negentropy::owned(storage, 60_000).unwrap()
    }

    fn reconcile(ours: &[(u64, String)], theirs: &[(u64, String)]) -> (BTreeSet<EventId>, usize) {
        let (mut recon, mut msg) = Reconciliation::start(ours, 60_000).unwrap();
        let mut server = relay(theirs);
        let mut bytes = msg.len();
        loop {
            assert!(msg.len() / 2 <= 60_000, "frame limit kept");
            let answer = encode_hex(&server.reconcile(&decode_hex(&msg).unwrap()).unwrap());
            bytes += answer.len();
            match recon.on_message(&answer).unwrap() {
                Step::Continue(next) => {
                    bytes += next.len();
                    msg = next;
                }
                Step::Done => return (recon.need().clone(), bytes),
            }
        }
    }

    #[test]
    fn finds_exactly_what_the_relay_has_and_we_lack() {
        let (need, _) = reconcile(&items(0..900), &items(50..1_000));
        let expected: BTreeSet<EventId> = (900..1_000).map(id).collect();
        assert_eq!(need, expected);
    }

    #[test]
    fn equal_sets_cost_a_few_bytes_and_big_ones_stay_in_frame() {
        let all = items(0..20_000);
        let (need, bytes) = reconcile(&all, &all);
        assert!(need.is_empty());
        assert!(bytes < 2_000, "{bytes} bytes for equal sets");
        let (need, _) = reconcile(&[], &all);
        assert_eq!(need.len(), 20_000);
    }

    #[test]
    fn bad_items_and_bad_hex_are_errors() {
        let bad = vec![(1, "zz".to_string())];
        assert!(matches!(
            Reconciliation::start(&bad, 60_000),
            Err(NegError::BadItem(_))
        ));
        let (mut recon, _) = Reconciliation::start(&items(0..3), 60_000).unwrap();
        assert_eq!(recon.on_message("xyz"), Err(NegError::NotHex));
    }

    #[test]
    fn refusals_read_as_too_many_or_unsupported() {
        assert_eq!(
            classify("blocked: too many query results"),
            Refusal::TooMany
        );
        assert_eq!(
            classify("blocked: negentropy disabled"),
            Refusal::Unsupported
        );
        assert_eq!(classify("unsupported: negentropy"), Refusal::Unsupported);
        assert!(notice_refuses("ERROR: bad msg: unknown cmd"));
        assert!(notice_refuses("could not parse command"));
        assert!(!notice_refuses("rate-limited: slow down"));
    }

    #[test]
    fn ranges_split_in_halves_until_a_second() {
        let now = Timestamp::from(100);
        let (a, b) = split_range(&Filter::new(), now).unwrap();
        assert_eq!((a.since, a.until), (None, Some(Timestamp::from(50))));
        assert_eq!((b.since, b.until), (Some(Timestamp::from(51)), None));
        let one = Filter::new()
            .since(Timestamp::from(7))
            .until(Timestamp::from(7));
        assert_eq!(split_range(&one, now), None);
    }

    #[test]
    fn a_retry_that_brings_nothing_ends_the_fetch() {
        let need: BTreeSet<EventId> = (0..4).map(id).collect();
        let mut f = Fetch::new(&need);
        assert_eq!(f.round().len(), 4);
        // The relay capped its answer: two came, the rest is asked again.
        let got = [id(0), id(1)];
        assert_eq!(
            f.end_round(|i| got.contains(i)),
            FetchEnd::Again(
                vec![id(2), id(3)]
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            )
        );
        assert_eq!(f.round().len(), 2);
        // It served the others: these two are gone from the relay, not lies.
        assert_eq!(
            f.end_round(|_| false),
            FetchEnd::AnsweredMissing { missing: 2 }
        );

        let mut liar = Fetch::new(&need);
        liar.round();
        assert!(matches!(liar.end_round(|_| false), FetchEnd::Again(_)));
        liar.round();
        assert_eq!(liar.end_round(|_| false), FetchEnd::Lying { missing: 4 });

        let mut g = Fetch::new(&need);
        g.round();
        assert_eq!(g.end_round(|_| true), FetchEnd::Complete);
    }
}
