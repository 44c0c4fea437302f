//! The tracker task, sole owner of the status machine: rebuilds it from the status bucket and
//! the RELAYS stream, then follows the stream, discovery's watermark and the leases live.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::Operation;
use futures::StreamExt;
use ngit_sync_shared::messages::{now_ms, LeaseEntry, RelayBody, RelayEntry, RelayNews, Watermark};
use ngit_sync_shared::{codec, Bus, RelayKey};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::lease_book::LeaseBook;
use crate::status_machine::StatusMachine;
use crate::status_store::StatusStore;
use crate::{Config, Error};

/// Key of discovery's landing watermark in `ngit_sync_watermarks` (DESIGN.md section 2).
pub const DISCOVERY_WATERMARK: &str = "discovery";

/// During the replay, this long without a message means the stream has nothing older left
/// (its last messages may have aged out after we read its last sequence).
const REPLAY_IDLE: Duration = Duration::from_secs(1);

type Feed = pull::Ordered;

struct Tracker {
    bus: Bus,
    machine: StatusMachine,
    store: StatusStore,
    leases: LeaseBook,
}

/// Runs until `shutdown` is cancelled; an error means the task cannot go on.
pub async fn track(bus: Bus, config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let store = StatusStore::load(bus.clone()).await?;
    let mut tracker = Tracker {
        machine: StatusMachine::new(config.quiet),
        leases: LeaseBook::new(config.common.bus.lease_ttl),
        store,
        bus,
    };
    tracker.seed().await?;
    let (mut feed, last_seq) = tracker.open_feed().await?;
    let replayed = tokio::select! {
        r = tracker.replay(&mut feed, last_seq) => r?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(
        messages = replayed,
        relays = tracker.machine.keys().count(),
        watermark = tracker.machine.watermark(),
        "replayed the relay stream"
    );
    tracker.caught_up().await?;
    tracker.follow(feed, config.tick(), shutdown).await
}

impl Tracker {
    /// Starts every relay of the status bucket from its last report, and reads the
    /// watermark: the stream holds 24 h, a session may be older.
    async fn seed(&mut self) -> Result<(), Error> {
        let stored: Vec<_> = self
            .store
            .stored()
            .iter()
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        for (key, report) in stored {
            // The report has no URL: discovery's relay list or the lease has it. A relay in
            // neither is known again only if the stream mentions it; otherwise it is removed.
            let url = match self
                .bus
                .get::<RelayEntry>(&self.bus.buckets.relays, key.as_str())
                .await?
            {
                Some(entry) => Some(entry.url),
                None => self
                    .bus
                    .get::<LeaseEntry>(&self.bus.buckets.leases, key.as_str())
                    .await?
                    .map(|lease| lease.relay),
            };
            if let Some(url) = url.filter(|u| u.key() == key) {
                self.machine.seed(url, &report);
            }
        }
        let watermarks = &self.bus.buckets.watermarks;
        if let Some(w) = self
            .bus
            .get::<Watermark>(watermarks, DISCOVERY_WATERMARK)
            .await?
        {
            self.machine.set_watermark(w.seq, now_ms());
        }
        Ok(())
    }

    /// One ordered consumer over the whole RELAYS stream: the replay, then the live feed.
    /// Returns it with the stream's last sequence at this moment (the end of the replay).
    async fn open_feed(&self) -> Result<(Feed, Option<u64>), Error> {
        let name = self.bus.names.stream_relays();
        let err = |e: &dyn std::fmt::Display| Error::Stream {
            stream: name.clone(),
            message: e.to_string(),
        };
        let mut stream = self.bus.js.get_stream(&name).await.map_err(|e| err(&e))?;
        let state = stream.info().await.map_err(|e| err(&e))?.state.clone();
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.bus.names.relay_all(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| err(&e))?;
        let feed = consumer.messages().await.map_err(|e| err(&e))?;
        let last = (state.messages > 0).then_some(state.last_sequence);
        Ok((feed, last))
    }

    /// Applies the stream up to `last_seq` without writing anything, each message at the
    /// instant the stream stored it, so the quiet timer runs as it did live. Returns the
    /// number of messages read.
    async fn replay(&mut self, feed: &mut Feed, last_seq: Option<u64>) -> Result<u64, Error> {
        let Some(last_seq) = last_seq else {
            return Ok(0);
        };
        let mut read = 0;
        loop {
            let message = match tokio::time::timeout(REPLAY_IDLE, feed.next()).await {
                Err(_) => return Ok(read),
                Ok(None) => return Err(Error::FeedEnded("relay stream")),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "relay stream consumer");
                    continue;
                }
                Ok(Some(Ok(message))) => message,
            };
            read += 1;
            let (seq, pending, at) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending, millis(info.published)),
                Err(e) => {
                    tracing::warn!(error = %e, "relay stream message without metadata");
                    continue;
                }
            };
            self.take(&message, at);
            if seq >= last_seq || pending == 0 {
                return Ok(read);
            }
        }
    }

    /// After the replay: checks that every owner still holds its lease (it may have died
    /// while we were down), then writes every relay whose report differs from the bucket.
    async fn caught_up(&mut self) -> Result<(), Error> {
        let now = now_ms();
        self.machine.tick(now);
        for (key, owner) in self.machine.owned() {
            self.confirm_lease(&key, &owner, now).await;
        }
        self.store.mark_all(&self.machine);
        self.store.flush(&mut self.machine).await;
        Ok(())
    }

    async fn follow(
        &mut self,
        mut feed: Feed,
        tick: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let kv_err = |bucket: &str, e: &dyn std::fmt::Display| Error::Kv {
            bucket: bucket.to_string(),
            message: e.to_string(),
        };
        let watermarks = self.bus.buckets.watermarks.clone();
        let mut watermark_feed = watermarks
            .watch(DISCOVERY_WATERMARK)
            .await
            .map_err(|e| kv_err(&watermarks.name, &e))?;
        let leases = self.bus.buckets.leases.clone();
        let mut lease_feed = leases
            .watch_all()
            .await
            .map_err(|e| kv_err(&leases.name, &e))?;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = feed.next() => match next {
                    None => return Err(Error::FeedEnded("relay stream")),
                    Some(Err(e)) => tracing::warn!(error = %e, "relay stream consumer"),
                    Some(Ok(message)) => {
                        let changed = self.take(&message, now_ms());
                        self.store.mark(changed);
                    }
                },
                next = watermark_feed.next() => match next {
                    None => return Err(Error::FeedEnded("watermark watch")),
                    Some(Err(e)) => tracing::warn!(error = %e, "watermark watch"),
                    Some(Ok(entry)) if entry.operation == Operation::Put => {
                        match codec::decode::<Watermark>(&entry.value) {
                            Ok(w) => {
                                let now = now_ms();
                                let mut changed = self.machine.tick(now);
                                changed.extend(self.machine.set_watermark(w.seq, now));
                                self.store.mark(changed);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable watermark"),
                        }
                    }
                    Some(Ok(_)) => {}
                },
                next = lease_feed.next() => match next {
                    None => return Err(Error::FeedEnded("lease watch")),
                    Some(Err(e)) => tracing::warn!(error = %e, "lease watch"),
                    Some(Ok(entry)) => self.lease_news(entry),
                },
                _ = ticker.tick() => {
                    let now = now_ms();
                    let changed = self.machine.tick(now);
                    self.store.mark(changed);
                    for (key, worker) in self.leases.overdue(now) {
                        self.confirm_lease(&RelayKey::from_raw(key), &worker, now).await;
                    }
                }
            }
            self.store.flush(&mut self.machine).await;
        }
    }

    /// Applies one RELAYS message at `now`; our own `.status` messages are skipped.
    fn take(&mut self, message: &async_nats::jetstream::Message, now: u64) -> Vec<RelayKey> {
        let news: RelayNews = match codec::decode(&message.payload) {
            Ok(news) => news,
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "unreadable relay news");
                return Vec::new();
            }
        };
        if matches!(news.body, RelayBody::Status(_)) {
            return Vec::new();
        }
        tracing::debug!(relay = %news.relay, kind = news.body.suffix(), "relay news");
        let mut changed = self.machine.tick(now);
        changed.extend(self.machine.apply(&news, now));
        changed
    }

    fn lease_news(&mut self, entry: async_nats::jetstream::kv::Entry) {
        let now = now_ms();
        match entry.operation {
            Operation::Put => match codec::decode::<LeaseEntry>(&entry.value) {
                Ok(lease) => {
                    self.leases
                        .renewed(&entry.key, &lease.worker, millis(entry.created));
                }
                Err(e) => tracing::warn!(key = entry.key, error = %e, "unreadable lease"),
            },
            Operation::Delete | Operation::Purge => {
                let worker = self.leases.removed(&entry.key);
                let key = RelayKey::from_raw(entry.key);
                let changed = self.machine.lease_lost(&key, worker.as_deref(), now);
                if !changed.is_empty() {
                    tracing::info!(relay = %key, worker, "lease deleted; relay disconnected");
                }
                self.store.mark(changed);
            }
        }
    }

    /// Reads the lease of `key`: if `worker` no longer holds it, the relay is disconnected.
    async fn confirm_lease(&mut self, key: &RelayKey, worker: &str, now: u64) {
        let leases = &self.bus.buckets.leases;
        let entry = match leases.entry(key.as_str()).await {
            Ok(entry) => entry,
            Err(e) => {
                // Unknown: look again one TTL later rather than disconnect on a hiccup.
                tracing::warn!(relay = %key, error = %e, "cannot read lease");
                self.leases.renewed(key.as_str(), worker, now);
                return;
            }
        };
        let held = entry
            .filter(|e| e.operation == Operation::Put)
            .and_then(|e| {
                let lease = codec::decode::<LeaseEntry>(&e.value).ok()?;
                Some((lease.worker, millis(e.created)))
            });
        match held {
            Some((holder, at)) if holder == worker => self.leases.renewed(key.as_str(), worker, at),
            _ => {
                let changed = self.machine.lease_lost(key, Some(worker), now);
                if !changed.is_empty() {
                    tracing::info!(relay = %key, worker, "lease expired; relay disconnected");
                }
                self.store.mark(changed);
            }
        }
    }
}

/// Milliseconds since the epoch of a server timestamp.
fn millis(t: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
