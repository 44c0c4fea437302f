//! `ngit-sync-bench seed`: publishes a seeded corpus to running relays (a compose deployment,
//! a staging setup) and prints, as JSON, what the home relay should end up with.

use std::collections::HashSet;

use ngit_sync_test_support::{Corpus, CorpusSpec};
use nostr::EventId;
use serde::Serialize;

use crate::args::SeedArgs;
use crate::ingest;
use crate::world::announce;

/// Rounds of re-sending events a relay answered `rate-limited:`.
const RATE_LIMIT_ROUNDS: u32 = 5;

#[derive(Debug, Serialize)]
pub struct SeedReport {
    /// Related events generated (announcements and states included).
    pub events: usize,
    /// Distinct ids the home relay should hold after a complete sync: the events, with the
    /// announcements published to `--home` in place of the corpus' own (if `--home` was given).
    pub expected_home_ids: usize,
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

pub async fn run(args: &SeedArgs) -> anyhow::Result<SeedReport> {
    let corpus = Corpus::generate(
        CorpusSpec::new(args.seed)
            .repos(args.repos)
            .total_events(args.events)
            .patch_kib(2, args.patch_kib.max(2)),
    );
    let shares = corpus.spread(args.relays.len(), args.max_copies);
    let mut relays = Vec::new();
    for (url, share) in args.relays.iter().zip(&shares) {
        let outcome = ingest::write_all_patiently(url, share, RATE_LIMIT_ROUNDS).await?;
        relays.push(RelaySeed {
            url: url.clone(),
            sent: share.len(),
            accepted: outcome.accepted,
            rejected: outcome.rejected.len(),
            first_rejection: outcome.rejected.first().map(|(_, m)| m.clone()),
        });
    }
    let related = corpus.all_related();
    let mut expected: HashSet<EventId> = related.iter().map(|e| e.id).collect();
    let mut home_announcements = None;
    if let Some(home) = &args.home {
        let listed = if args.announce_relays.is_empty() {
            &args.relays
        } else {
            &args.announce_relays
        };
        let ours: Vec<_> = corpus.repos().iter().map(|r| announce(r, listed)).collect();
        let outcome = ingest::write_all_patiently(home, &ours, RATE_LIMIT_ROUNDS).await?;
        home_announcements = Some(outcome.accepted);
        for replaced in corpus.announcements() {
            expected.remove(&replaced.id);
        }
        expected.extend(ours.iter().map(|e| e.id));
    }
    Ok(SeedReport {
        events: related.len(),
        expected_home_ids: expected.len(),
        relays,
        home_announcements,
    })
}
