//! What the sink's integration tests share: a NATS + home relay + sink setup, publishing
//! corpus events to the EVENTS stream, and reading back OUTCOMES and the stream.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use ngit_sync_shared::messages::{now_ms, OutcomeBatch, OutcomeItem, SyncedEvent, Watermark};
use ngit_sync_shared::status::Outcome;
use ngit_sync_shared::{codec, Bus, CommonConfig, RelayUrl};
use ngit_sync_sink::{Config, Error, WATERMARK_KEY};
use ngit_sync_test_support::{Corpus, CorpusSpec, NatsServer};
use nostr::{Event, JsonUtil};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every wait on the sink is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

/// The remote relay the test events claim to come from.
pub fn remote() -> RelayUrl {
    RelayUrl::parse("wss://remote.example").expect("a valid URL")
}

/// `n` realistic NIP-34 events (announcements, states, patches, PRs, issues, comments).
pub fn corpus(seed: u64, n: usize) -> (Corpus, Vec<Event>) {
    let corpus = Corpus::generate(
        CorpusSpec::new(seed)
            .repos(n.div_ceil(50).max(1))
            .total_events(n)
            .patch_kib(1, 8),
    );
    let events = corpus.all_related();
    assert_eq!(events.len(), n);
    (corpus, events)
}

/// A bus on `nats` with the default prefix, provisioned.
pub async fn bus(nats: &NatsServer) -> anyhow::Result<Bus> {
    let client = nats.client().await?;
    Ok(ngit_sync_shared::bus_for(client, &CommonConfig::for_url(nats.url())).await?)
}

/// Sink settings for tests: quick retries, flushes and timeouts.
pub fn config(nats: &NatsServer, home: &str) -> Config {
    let mut config = Config::new(
        CommonConfig::for_url(nats.url()),
        RelayUrl::parse(home).expect("home relay URL"),
    );
    config.retry_base = Duration::from_millis(100);
    config.retry_cap = Duration::from_secs(1);
    config.ok_timeout = Duration::from_secs(3);
    config.flush_interval = Duration::from_millis(50);
    config
}

/// A sink running in the background.
pub struct RunningSink {
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), Error>>,
}

impl RunningSink {
    pub async fn start(nats: &NatsServer, config: Config) -> anyhow::Result<RunningSink> {
        let client = nats.client().await?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(ngit_sync_sink::run(config, client, shutdown.clone()));
        Ok(RunningSink { shutdown, handle })
    }

    /// Cancels and waits (bounded) for `run` to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .context("sink did not stop within 10 s")??
            .context("sink failed")
    }
}

/// Publishes `events` as a connector would; returns the stream sequences.
pub async fn publish(bus: &Bus, events: &[Event]) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(events.len());
    for event in events {
        seqs.push(publish_json(bus, &event.as_json(), event).await?);
    }
    Ok(seqs)
}

/// Publishes `json` under the id and kind of `event` (the same JSON, or a forged variant).
pub async fn publish_json(bus: &Bus, json: &str, event: &Event) -> anyhow::Result<u64> {
    let synced = SyncedEvent {
        relay: remote(),
        received_ms: now_ms(),
        event: json.to_string(),
    };
    let published = bus
        .publish_event(&event.id.to_hex(), event.kind.as_u16(), &synced)
        .await?;
    Ok(published.seq)
}

/// Messages in the EVENTS stream: published and not yet acked.
pub async fn events_in_stream(bus: &Bus) -> u64 {
    match bus.js.get_stream(bus.names.stream_events()).await {
        Ok(mut stream) => stream.info().await.map_or(u64::MAX, |i| i.state.messages),
        Err(_) => u64::MAX,
    }
}

/// The sink's watermark as stored in KV.
pub async fn stored_watermark(bus: &Bus) -> Option<u64> {
    bus.get::<Watermark>(&bus.buckets.watermarks, WATERMARK_KEY)
        .await
        .ok()
        .flatten()
        .map(|w| w.seq)
}

/// Every `OutcomeBatch` published so far, from the OUTCOMES stream.
#[derive(Debug, Default)]
pub struct OutcomeLog {
    pub batches: Vec<OutcomeBatch>,
}

impl OutcomeLog {
    pub async fn read(bus: &Bus) -> anyhow::Result<OutcomeLog> {
        let mut stream = bus.js.get_stream(bus.names.stream_outcomes()).await?;
        let last = stream.info().await?.state.last_sequence;
        let mut batches = Vec::new();
        for seq in 1..=last {
            let message = stream.get_raw_message(seq).await?;
            batches.push(codec::decode(&message.payload)?);
        }
        Ok(OutcomeLog { batches })
    }

    /// Items published so far (0 if the stream cannot be read right now).
    pub async fn count_now(bus: &Bus) -> usize {
        OutcomeLog::read(bus).await.map_or(0, |log| log.count())
    }

    pub fn items(&self, outcome: Outcome) -> Vec<&OutcomeItem> {
        self.batches
            .iter()
            .filter(|b| b.outcome == outcome)
            .flat_map(|b| &b.items)
            .collect()
    }

    /// Ids with this outcome; panics if one is reported twice.
    pub fn ids(&self, outcome: Outcome) -> HashSet<String> {
        let items = self.items(outcome);
        let ids: HashSet<String> = items.iter().map(|i| i.id.clone()).collect();
        assert_eq!(
            ids.len(),
            items.len(),
            "an id reported twice as {outcome:?}"
        );
        ids
    }

    /// Items of every outcome.
    pub fn count(&self) -> usize {
        self.batches.iter().map(|b| b.items.len()).sum()
    }

    pub fn last_watermark(&self) -> u64 {
        self.batches.last().map_or(0, |b| b.watermark)
    }
}

/// Hex ids of `events`.
pub fn ids(events: &[Event]) -> HashSet<String> {
    events.iter().map(|e| e.id.to_hex()).collect()
}
