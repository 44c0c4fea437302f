//! `ngit-sync-bench seed`: publishes a seeded corpus to running relays (a compose deployment,
//! a staging setup) and prints, as JSON, what the home relay should end up with; `--check`
//! rebuilds the same corpus and counts what the home relay misses.

use std::collections::HashSet;
use std::time::Duration;

use ngit_sync_shared::socket::{self, Incoming};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::{Corpus, CorpusSpec};
use nostr::{ClientMessage, Event, EventId, Filter, RelayMessage, SubscriptionId};
use serde::Serialize;

use crate::args::SeedArgs;
use crate::ingest;
use crate::world::announce;

/// Rounds of re-sending events a relay answered `rate-limited:`.
const RATE_LIMIT_ROUNDS: u32 = 5;
/// Ids per REQ when checking the home relay.
const CHECK_CHUNK: usize = 100;
/// One answer of the home relay while checking.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct SeedReport {
    /// Related events published to the relays (the corpus' own announcements left out).
    pub related: usize,
    /// Unrelated events published to the relays (must never reach the home relay).
    pub unrelated: usize,
    pub relays: Vec<RelaySeed>,
    /// Announcements accepted by the home relay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_announcements: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct RelaySeed {
    pub url: String,
    pub sent: usize,
    pub accepted: usize,
    pub rejected: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_rejection: Option<String>,
}

/// What `--check` found on the home relay.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub related: usize,
    pub missing: usize,
    pub unrelated: usize,
}

impl CheckReport {
    pub fn complete(&self) -> bool {
        self.missing == 0 && self.unrelated == 0
    }
}

/// The corpus of these arguments, split into what goes to the relays: related events without
/// the corpus' own announcements (their GRASP clone URLs name a host that is not ours), and
/// one unrelated event for every ten related ones.
struct Seeded {
    corpus: Corpus,
    related: Vec<Event>,
    unrelated: Vec<Event>,
}

fn seeded(args: &SeedArgs) -> Seeded {
    let corpus = Corpus::generate(
        CorpusSpec::new(args.seed)
            .repos(args.repos)
            .total_events(args.events)
            .patch_kib(2, args.patch_kib.max(2)),
    );
    let stale: HashSet<EventId> = corpus.announcements().iter().map(|e| e.id).collect();
    let related: Vec<Event> = corpus
        .all_related()
        .into_iter()
        .filter(|e| !stale.contains(&e.id))
        .collect();
    let unrelated = corpus.unrelated(args.events / 10);
    Seeded {
        corpus,
        related,
        unrelated,
    }
}

pub async fn run(args: &SeedArgs) -> anyhow::Result<SeedReport> {
    let seeded = seeded(args);
    // Announcements first: a relay synced before its announcement reached home could hand over
    // events of repos nobody announced yet.
    let mut home_announcements = None;
    if let Some(home) = &args.home {
        let listed = if args.announce_relays.is_empty() {
            &args.relays
        } else {
            &args.announce_relays
        };
        let ours: Vec<Event> = seeded
            .corpus
            .repos()
            .iter()
            .map(|r| announce(r, listed))
            .collect();
        let outcome = ingest::write_all_patiently(home, &ours, RATE_LIMIT_ROUNDS).await?;
        home_announcements = Some(outcome.accepted);
    }
    let shares = ngit_sync_test_support::corpus::spread_events(
        &seeded.related,
        args.relays.len(),
        args.max_copies,
        args.seed,
    );
    let mut relays = Vec::new();
    for (i, (url, share)) in args.relays.iter().zip(&shares).enumerate() {
        let mut events = share.clone();
        events.extend(
            seeded
                .unrelated
                .iter()
                .skip(i)
                .step_by(args.relays.len())
                .cloned(),
        );
        let outcome = ingest::write_all_patiently(url, &events, RATE_LIMIT_ROUNDS).await?;
        relays.push(RelaySeed {
            url: url.clone(),
            sent: events.len(),
            accepted: outcome.accepted,
            rejected: outcome.rejected.len(),
            first_rejection: outcome.rejected.first().map(|(_, m)| m.clone()),
        });
    }
    Ok(SeedReport {
        related: seeded.related.len(),
        unrelated: seeded.unrelated.len(),
        relays,
        home_announcements,
    })
}

/// Counts the related events the home relay misses and the unrelated ones it holds.
pub async fn check(args: &SeedArgs) -> anyhow::Result<CheckReport> {
    let home = args
        .home
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--check needs --home"))?;
    let seeded = seeded(args);
    let related: Vec<EventId> = seeded.related.iter().map(|e| e.id).collect();
    let unrelated: Vec<EventId> = seeded.unrelated.iter().map(|e| e.id).collect();
    let held_related = held(home, &related).await?;
    let held_unrelated = held(home, &unrelated).await?;
    Ok(CheckReport {
        related: related.len(),
        missing: related.len() - held_related,
        unrelated: held_unrelated,
    })
}

/// How many of `ids` the relay holds, asked by id in chunks.
async fn held(url: &str, ids: &[EventId]) -> anyhow::Result<usize> {
    let url = RelayUrl::parse(url)?;
    let (mut writer, mut reader, _) = socket::connect(&url, CHECK_TIMEOUT).await?;
    let mut found = 0;
    for (n, chunk) in ids.chunks(CHECK_CHUNK).enumerate() {
        let sub = SubscriptionId::new(format!("check-{n}"));
        let filter = Filter::new().ids(chunk.iter().copied());
        writer
            .send(&ClientMessage::req(sub.clone(), vec![filter]))
            .await?;
        loop {
            match tokio::time::timeout(CHECK_TIMEOUT, reader.next()).await?? {
                Incoming::Message(RelayMessage::Event {
                    subscription_id, ..
                }) if *subscription_id == sub => found += 1,
                Incoming::Message(RelayMessage::EndOfStoredEvents(id)) if *id == sub => break,
                // A relay may answer an earlier CLOSE with a CLOSED; only ours ends the query.
                Incoming::Message(RelayMessage::Closed {
                    subscription_id,
                    message,
                }) if *subscription_id == sub => {
                    anyhow::bail!("the home relay closed the query: {message}")
                }
                _ => {}
            }
        }
        writer.send(&ClientMessage::close(sub)).await?;
    }
    writer.close().await;
    Ok(found)
}
