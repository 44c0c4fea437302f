//! Harness of the connector's integration tests: a real nats-server, the connector under test,
//! readers of the RELAYS and EVENTS streams, KV writers standing in for discovery, and a tiny
//! scripted relay for answers the shared fixtures do not give.

#![allow(dead_code)]

pub mod script_relay;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use ngit_sync_connector::{run, Config, Error};
use ngit_sync_shared::messages::{
    RelayBody, RelayEntry, RelayNews, RepoEntry, RootEntry, SyncedEvent,
};
use ngit_sync_shared::{nip34, Bus, CommonConfig, RelayUrl};
use ngit_sync_test_support::{init_tracing, NatsServer};
use nostr::{Event, JsonUtil};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(15);
pub const WORKER: &str = "test-worker";

/// Test settings: private relays allowed, short timers.
pub fn config(nats: &NatsServer, worker: &str) -> Config {
    let mut c = Config::new(CommonConfig::for_url(nats.url()));
    c.worker_id = worker.to_string();
    c.allow_private = true;
    c.lease_renew = Duration::from_millis(500);
    c.backoff_base = Duration::from_millis(200);
    c.backoff_cap = Duration::from_secs(1);
    c.connect_timeout = Duration::from_secs(2);
    c.shutdown_grace = Duration::from_secs(5);
    c
}

/// A running connector.
pub struct Connector {
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), Error>>,
}

impl Connector {
    pub async fn start(nats: &NatsServer, config: Config) -> anyhow::Result<Connector> {
        let client = nats.client().await?;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run(config, client, shutdown.clone()));
        Ok(Connector { shutdown, handle })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(12), self.handle)
            .await
            .context("connector did not stop in time")??
            .context("connector returned an error")
    }
}

/// The bus as the tests see it: discovery's writes, the streams' contents.
pub struct World {
    pub nats: NatsServer,
    pub bus: Bus,
    relays: StreamLog<RelayNews>,
    events: StreamLog<SyncedEvent>,
}

impl World {
    pub async fn start() -> anyhow::Result<World> {
        init_tracing();
        let nats = NatsServer::start().await?;
        let common = CommonConfig::for_url(nats.url());
        let bus = ngit_sync_shared::bus_for(nats.client().await?, &common).await?;
        let relays = StreamLog::new(&bus, &bus.names.stream_relays()).await?;
        let events = StreamLog::new(&bus, &bus.names.stream_events()).await?;
        Ok(World {
            nats,
            bus,
            relays,
            events,
        })
    }

    /// What discovery would write: `url` is a relay to sync.
    pub async fn want_relay(&self, url: &str) -> anyhow::Result<RelayUrl> {
        let url = RelayUrl::parse(url)?;
        let entry = RelayEntry {
            url: url.clone(),
            bootstrap: false,
            repos: 1,
        };
        self.bus
            .put(&self.bus.buckets.relays, url.key().as_str(), &entry)
            .await?;
        Ok(url)
    }

    pub async fn forget_relay(&self, url: &RelayUrl) -> anyhow::Result<()> {
        self.bus.buckets.relays.delete(url.key().as_str()).await?;
        Ok(())
    }

    pub async fn want_repo(&self, coord: &str, relays: &[&RelayUrl]) -> anyhow::Result<()> {
        let entry = RepoEntry {
            coord: coord.to_string(),
            relays: relays.iter().map(|r| (*r).clone()).collect(),
        };
        self.bus
            .put(&self.bus.buckets.repos, &nip34::repo_key(coord), &entry)
            .await?;
        Ok(())
    }

    pub async fn want_root(&self, coord: &str, root: &Event) -> anyhow::Result<()> {
        let entry = RootEntry {
            coord: coord.to_string(),
            id: root.id.to_hex(),
            kind: root.kind.as_u16(),
        };
        let key = nip34::root_key(coord, &entry.id);
        self.bus.put(&self.bus.buckets.repos, &key, &entry).await?;
        Ok(())
    }

    /// Every RELAYS message so far about `relay`.
    pub async fn news(&mut self, relay: &RelayUrl) -> anyhow::Result<Vec<RelayBody>> {
        Ok(self
            .relays
            .refresh()
            .await?
            .iter()
            .filter(|n| &n.relay == relay)
            .map(|n| n.body.clone())
            .collect())
    }

    /// Every RELAYS message so far about `relay`, with its publisher's time (ms).
    pub async fn news_stamped(
        &mut self,
        relay: &RelayUrl,
    ) -> anyhow::Result<Vec<(u64, RelayBody)>> {
        Ok(self
            .relays
            .refresh()
            .await?
            .iter()
            .filter(|n| &n.relay == relay)
            .map(|n| (n.at_ms, n.body.clone()))
            .collect())
    }

    /// Every EVENTS message so far (duplicates would appear twice).
    pub async fn synced(&mut self) -> anyhow::Result<Vec<SyncedEvent>> {
        Ok(self.events.refresh().await?.to_vec())
    }

    /// Ids of the events in the EVENTS stream, asserting none is there twice.
    pub async fn synced_ids(&mut self) -> anyhow::Result<HashSet<String>> {
        let mut ids = HashSet::new();
        for e in self.synced().await? {
            let event = Event::from_json(&e.event)?;
            assert!(
                ids.insert(event.id.to_hex()),
                "event {} stored twice",
                event.id
            );
        }
        Ok(ids)
    }

    /// Waits until every id of `events` is in the EVENTS stream.
    pub async fn wait_synced(&mut self, events: &[Event], what: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = self.synced_ids().await?;
            let missing = events
                .iter()
                .filter(|e| !got.contains(&e.id.to_hex()))
                .count();
            if missing == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "timed out waiting for {what}: {missing} of {} missing",
                    events.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a RELAYS message about `relay` that `pick` accepts, and returns its value.
    pub async fn wait_news<T>(
        &mut self,
        relay: &RelayUrl,
        what: &str,
        pick: impl Fn(&[RelayBody]) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let news = self.news(relay).await?;
            if let Some(v) = pick(&news) {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                let kinds: Vec<&str> = news.iter().map(RelayBody::suffix).collect();
                anyhow::bail!("timed out waiting for {what}; news so far: {kinds:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads a stream from its start, message by message, remembering where it stopped.
pub struct StreamLog<T> {
    stream: jetstream::stream::Stream,
    next: u64,
    items: Vec<T>,
}

impl<T: DeserializeOwned> StreamLog<T> {
    pub async fn new(bus: &Bus, name: &str) -> anyhow::Result<StreamLog<T>> {
        Ok(StreamLog {
            stream: bus.js.get_stream(name).await?,
            next: 1,
            items: Vec::new(),
        })
    }

    pub async fn refresh(&mut self) -> anyhow::Result<&[T]> {
        let last = self.stream.get_info().await?.state.last_sequence;
        while self.next <= last {
            // A missing sequence (deleted message) is skipped.
            if let Ok(m) = self.stream.get_raw_message(self.next).await {
                self.items
                    .push(ngit_sync_shared::codec::decode(&m.payload)?);
            }
            self.next += 1;
        }
        Ok(&self.items)
    }
}

/// Layers of the batches opened so far, in order.
pub fn opened_layers(news: &[RelayBody]) -> Vec<ngit_sync_shared::status::Layer> {
    news.iter()
        .filter_map(|n| match n {
            RelayBody::BatchOpened(b) => Some(b.layer),
            _ => None,
        })
        .collect()
}

/// Number of confirmed batches so far.
pub fn confirmed(news: &[RelayBody]) -> usize {
    news.iter()
        .filter(|n| matches!(n, RelayBody::BatchConfirmed { .. }))
        .count()
}

/// Position of the first message with this subject suffix.
pub fn first(news: &[RelayBody], suffix: &str) -> Option<usize> {
    news.iter().position(|n| n.suffix() == suffix)
}
