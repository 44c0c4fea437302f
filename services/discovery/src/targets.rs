//! The task that owns the RepoSyncIndex: folds what it is fed, writes the targets to KV once
//! per window, and advances the discovery watermark once the changes it waited for are written.

use std::time::Instant;

use ngit_sync_shared::messages::OutcomeBatch;
use ngit_sync_shared::status::Outcome;
use ngit_sync_shared::Bus;
use nostr::{Event, JsonUtil};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::changes::Published;
use crate::feed::Feed;
use crate::index::RepoSyncIndex;
use crate::store;
use crate::watermark::WatermarkGate;
use crate::window::Window;

pub struct Targets {
    bus: Bus,
    index: RepoSyncIndex,
    published: Published,
    window: Window,
    gate: WatermarkGate,
    /// The home relay's history was read once. Before that the index is partial, and writing
    /// it would forget relays that are merely not read yet.
    ready: bool,
}

impl Targets {
    pub fn new(
        bus: Bus,
        index: RepoSyncIndex,
        published: Published,
        window: Window,
        watermark: u64,
    ) -> Targets {
        Targets {
            bus,
            index,
            published,
            window,
            gate: WatermarkGate::new(watermark),
            ready: false,
        }
    }

    /// Runs until `shutdown`, then writes what is pending (sparing the next start a window).
    pub async fn run(mut self, mut feed: mpsc::Receiver<Feed>, shutdown: CancellationToken) {
        loop {
            let flush_at = self.window.closes_at().filter(|_| self.ready);
            let sleep = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now).into());
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = sleep, if flush_at.is_some() => self.flush().await,
                next = feed.recv() => match next {
                    Some(input) => self.on_feed(input).await,
                    None => break,
                },
            }
        }
        if self.ready && self.published.has_pending(&self.index) {
            self.flush().await;
        }
    }

    async fn on_feed(&mut self, input: Feed) {
        match input {
            Feed::Home(event) => self.take_event(&event),
            Feed::HistoryComplete {
                events,
                sink_watermark,
            } => {
                let counts = self.index.counts();
                tracing::info!(
                    events,
                    repos = counts.repos,
                    roots = counts.roots,
                    relays = counts.relays,
                    "index holds the home relay's history"
                );
                if !self.ready {
                    self.ready = true;
                    self.flush().await;
                }
                if let Some(seq) = sink_watermark {
                    self.folded_through(seq).await;
                }
            }
            Feed::Outcomes { batch, folded } => {
                self.take_outcomes(&batch);
                let _ = folded.send(());
                self.folded_through(batch.watermark).await;
            }
        }
    }

    fn take_outcomes(&mut self, batch: &OutcomeBatch) {
        if !matches!(batch.outcome, Outcome::Saved | Outcome::Duplicate) {
            return;
        }
        for item in &batch.items {
            let Some(json) = &item.event else { continue };
            match Event::from_json(json) {
                Ok(event) => self.take_event(&event),
                Err(e) => tracing::debug!(id = item.id, error = %e, "outcome event does not parse"),
            }
        }
    }

    /// Every event discovery learns enters here, whatever its source.
    fn take_event(&mut self, event: &Event) {
        if self.index.fold(event) {
            self.window.changed(Instant::now());
        }
    }

    /// Everything up to `seq` is folded: store it now, or after the pending changes are written.
    async fn folded_through(&mut self, seq: u64) {
        let pending = self.published.has_pending(&self.index);
        if let Some(seq) = self.gate.folded(seq, pending) {
            self.write_watermark(seq).await;
        }
    }

    async fn flush(&mut self) {
        let changes = self.published.diff(&self.index);
        if !changes.is_empty() {
            if let Err(e) = store::apply(&self.bus, &changes).await {
                tracing::warn!(error = %e, "writing targets failed; retrying after a window");
                self.window.retry(Instant::now());
                return;
            }
            tracing::info!(
                repos_added = changes.repos_added.len(),
                repos_changed = changes.repos_changed.len(),
                repos_removed = changes.repos_removed.len(),
                roots_added = changes.roots_added.len(),
                roots_removed = changes.roots_removed.len(),
                relays_added = changes.relays_added.len(),
                relays_changed = changes.relays_changed.len(),
                relays_removed = changes.relays_removed.len(),
                "targets written"
            );
        }
        self.published.commit(&changes);
        self.index.clear_dirty();
        self.window.flushed();
        if let Some(seq) = self.gate.flushed() {
            self.write_watermark(seq).await;
        }
    }

    async fn write_watermark(&mut self, seq: u64) {
        match store::write_watermark(&self.bus, seq).await {
            Ok(()) => {
                tracing::debug!(seq, "discovery watermark stored");
                self.gate.written(seq);
            }
            Err(e) => {
                tracing::warn!(seq, error = %e, "cannot store the discovery watermark; retrying");
                self.gate.hold(seq);
                self.window.retry(Instant::now());
            }
        }
    }
}
