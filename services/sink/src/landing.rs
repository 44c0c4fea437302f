//! The landing loop: the one owner of the ledger and the watermark. It admits delivered
//! messages, writes them through the home link, applies answers, publishes outcomes, and only
//! then acks; on shutdown it drains briefly and gives back what has no answer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{AckKind, Message};
use ngit_sync_shared::messages::{now_ms, OutcomeBatch, Watermark};
use ngit_sync_shared::status::Outcome;
use ngit_sync_shared::Bus;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::home_link::LinkEvent;
use crate::intake::{give_back, read_event, Intake, PROGRESS_EVERY};
use crate::ledger::{Ledger, RetryReason, Step};
use crate::outcomes::{self, MAX_ITEMS};
use crate::watermark::LandingWatermark;
use crate::{Error, WATERMARK_KEY};

/// How long shutdown waits for answers to writes already made.
pub const DRAIN: Duration = Duration::from_secs(3);
/// The consumer's ack floor is read at most this often while the watermark depends on it.
const ACK_FLOOR_EVERY: Duration = Duration::from_secs(1);
/// The KV watermark is rewritten at least this often even when it has not moved, so its
/// `at_ms` shows the sink is alive.
const WATERMARK_REFRESH: Duration = Duration::from_secs(10);

pub struct Landing {
    pub bus: Bus,
    pub consumer: PullConsumer,
    pub flush_interval: Duration,
    pub ledger: Ledger,
    pub watermark: LandingWatermark,
    /// The channels to and from the home link.
    pub to_link: mpsc::UnboundedSender<String>,
    pub from_link: mpsc::UnboundedReceiver<LinkEvent>,
    pub intake: mpsc::Receiver<Intake>,
    /// Cancelled to stop pulling when shutdown begins.
    pub stop_intake: CancellationToken,
}

/// The loop's mutable state besides what [`Landing`] was given.
struct State {
    landing: Landing,
    /// The stream message of every held sequence, to ack it (or keep it alive).
    messages: HashMap<u64, Message>,
    connected: bool,
    /// Watermark last written to KV, and when.
    stored: Option<(u64, Instant)>,
    /// The last outcome publish failed (NATS trouble): no early flushes until one succeeds.
    publish_failing: bool,
    /// Pulling had trouble; check whether deliveries went missing.
    suspect: bool,
    ack_floor_read: Option<Instant>,
}

impl Landing {
    /// Runs until `shutdown`, then drains for at most [`DRAIN`].
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut state = State {
            landing: self,
            messages: HashMap::new(),
            connected: false,
            stored: None,
            publish_failing: false,
            suspect: false,
            ack_floor_read: None,
        };
        let result = state.run(shutdown).await;
        state.finish().await;
        result
    }
}

impl State {
    async fn run(&mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let mut flush = tokio::time::interval(self.landing.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(until) = drain_until {
                let answered = self.landing.ledger.sent_count() == 0;
                if now >= until || answered || !self.connected {
                    break;
                }
            }
            self.pump(now)?;
            let wake = self
                .landing
                .ledger
                .next_wakeup(now, self.connected)
                .into_iter()
                .chain(drain_until)
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            let draining = drain_until.is_some();
            tokio::select! {
                _ = shutdown.cancelled(), if !draining => {
                    tracing::info!(held = self.landing.ledger.len(), "sink stopping");
                    self.landing.stop_intake.cancel();
                    drain_until = Some(Instant::now() + DRAIN);
                }
                item = self.landing.intake.recv(), if !draining => match item {
                    Some(Intake::Message(message)) => self.admit(*message).await,
                    Some(Intake::Trouble(_)) => self.suspect = true,
                    None => return Err(Error::TaskDied("intake")),
                },
                event = self.landing.from_link.recv() => match event {
                    Some(event) => self.on_link(event),
                    None => return Err(Error::TaskDied("home relay link")),
                },
                _ = flush.tick() => self.flush().await,
                _ = progress.tick() => self.keep_alive().await,
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            if !self.publish_failing && self.landing.ledger.final_count() >= MAX_ITEMS {
                self.flush().await;
            }
        }
        Ok(())
    }

    /// Retries overdue writes and writes what is due.
    fn pump(&mut self, now: Instant) -> Result<(), Error> {
        for step in self.landing.ledger.expire(now) {
            log_step(&self.landing.ledger, &step);
        }
        if !self.connected {
            return Ok(());
        }
        for seq in self.landing.ledger.take_sendable(now) {
            let Some(held) = self.landing.ledger.get(seq) else {
                continue;
            };
            // The JSON exactly as received: re-serializing could change the bytes the id
            // was computed over.
            let frame = format!("[\"EVENT\",{}]", held.json);
            if self.landing.to_link.send(frame).is_err() {
                return Err(Error::TaskDied("home relay link"));
            }
        }
        Ok(())
    }

    async fn admit(&mut self, message: Message) {
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(error) => {
                tracing::warn!(%error, "a message without JetStream metadata, ignored");
                return;
            }
        };
        self.landing.watermark.delivered(seq);
        match read_event(seq, &message.payload) {
            Ok(held) => {
                // A redelivery of a sequence we hold keeps the newest handle for the ack.
                self.landing.ledger.admit(held, Instant::now());
                self.messages.insert(seq, message);
            }
            Err(reason) => {
                // Retrying cannot make it readable; no outcome, but the watermark moves on.
                tracing::warn!(seq, %reason, "unreadable message on the events stream, dropped");
                if let Err(error) = message.ack().await {
                    tracing::warn!(seq, %error, "cannot ack an unreadable message");
                }
                self.landing.watermark.settled(seq);
            }
        }
    }

    fn on_link(&mut self, event: LinkEvent) {
        let now = Instant::now();
        match event {
            LinkEvent::Up => self.connected = true,
            LinkEvent::Down { reason } => {
                self.connected = false;
                let unanswered = self.landing.ledger.connection_lost(now);
                tracing::debug!(%reason, unanswered, "writes without answer will be retried");
            }
            LinkEvent::Answer {
                id,
                accepted,
                message,
            } => {
                if let Some(step) = self.landing.ledger.answer(&id, accepted, &message, now) {
                    log_step(&self.landing.ledger, &step);
                }
            }
        }
    }

    /// Publishes final outcomes grouped by kind, then acks their messages; moves the watermark
    /// and records it in KV.
    async fn flush(&mut self) {
        let chunks = outcomes::chunks(self.landing.ledger.finals());
        for chunk in chunks {
            let watermark = self.landing.watermark.with_published(&chunk.seqs);
            let batch = OutcomeBatch {
                outcome: chunk.outcome,
                watermark,
                items: chunk.items,
            };
            if !self.publish(&batch).await {
                return;
            }
            self.landing.watermark.published(&chunk.seqs, watermark);
            for seq in chunk.seqs {
                self.landing.ledger.remove(seq);
                if let Some(message) = self.messages.remove(&seq) {
                    // A lost ack only means the event comes back and is answered `duplicate`.
                    if let Err(error) = message.ack().await {
                        tracing::warn!(seq, %error, "cannot ack a landed event");
                    }
                }
            }
        }
        self.read_ack_floor().await;
        if let Some(watermark) = self.landing.watermark.unannounced() {
            // The watermark moved without outcomes (unreadable messages, the ack floor):
            // an empty batch tells the readers of OUTCOMES.
            let batch = OutcomeBatch {
                outcome: Outcome::Saved,
                watermark,
                items: Vec::new(),
            };
            if self.publish(&batch).await {
                self.landing.watermark.published(&[], watermark);
            }
        }
        self.store_watermark().await;
    }

    async fn publish(&mut self, batch: &OutcomeBatch) -> bool {
        let published = self.landing.bus.publish_outcomes(batch).await;
        self.publish_failing = published.is_err();
        match published {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, items = batch.items.len(), "cannot publish outcomes, keeping them for the next flush");
                false
            }
        }
    }

    async fn store_watermark(&mut self) {
        let seq = self.landing.watermark.announced();
        let now = Instant::now();
        let fresh = |(stored, at): (u64, Instant)| {
            stored == seq && now.duration_since(at) < WATERMARK_REFRESH
        };
        if self.stored.is_some_and(fresh) {
            return;
        }
        let value = Watermark {
            seq,
            at_ms: now_ms(),
        };
        let bus = &self.landing.bus;
        match bus
            .put(&bus.buckets.watermarks, WATERMARK_KEY, &value)
            .await
        {
            Ok(_) => self.stored = Some((seq, now)),
            Err(error) => tracing::warn!(%error, "cannot store the sink watermark"),
        }
    }

    /// While deliveries may be missing from our view (an earlier run, a broken pull), the
    /// server's ack floor is what moves the watermark.
    async fn read_ack_floor(&mut self) {
        if !self.suspect && !self.landing.watermark.is_inherited() {
            return;
        }
        let now = Instant::now();
        if self
            .ack_floor_read
            .is_some_and(|at| now.duration_since(at) < ACK_FLOOR_EVERY)
        {
            return;
        }
        self.ack_floor_read = Some(now);
        let info = match self.landing.consumer.info().await {
            Ok(info) => info.clone(),
            Err(error) => {
                tracing::debug!(%error, "cannot read the consumer's ack floor");
                return;
            }
        };
        if self.suspect && info.num_ack_pending > self.messages.len() {
            self.landing
                .watermark
                .inherit(info.delivered.stream_sequence);
        }
        self.suspect = false;
        self.landing
            .watermark
            .server_ack_floor(info.ack_floor.stream_sequence);
    }

    /// Tells the stream we still work on long-held messages so it does not redeliver them.
    async fn keep_alive(&mut self) {
        let stale = self
            .landing
            .ledger
            .take_stale(Instant::now(), PROGRESS_EVERY);
        for seq in stale {
            if let Some(message) = self.messages.get(&seq) {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(seq, %error, "cannot extend a held message");
                }
            }
        }
    }

    /// End of the run: publish and ack what is final, hand back the rest for redelivery.
    async fn finish(&mut self) {
        self.landing.stop_intake.cancel();
        self.flush().await;
        let unfinished = self.landing.ledger.unfinished();
        for seq in &unfinished {
            self.landing.ledger.remove(*seq);
            if let Some(message) = self.messages.remove(seq) {
                give_back(&message).await;
            }
        }
        self.landing.intake.close();
        let mut pulled = 0;
        while let Ok(item) = self.landing.intake.try_recv() {
            if let Intake::Message(message) = item {
                give_back(&message).await;
                pulled += 1;
            }
        }
        // Finals whose publish failed stay unacked and come back as duplicates.
        tracing::info!(
            unanswered = unfinished.len(),
            not_started = pulled,
            unpublished = self.messages.len(),
            watermark = self.landing.watermark.announced(),
            "sink stopped; unanswered events go back to the stream"
        );
    }
}

fn log_step(ledger: &Ledger, step: &Step) {
    match step {
        Step::Final { seq, verdict } => {
            let Some(held) = ledger.get(*seq) else {
                return;
            };
            let reason = verdict.reason.as_deref().unwrap_or("");
            match verdict.outcome {
                Outcome::Rejected => tracing::warn!(
                    event = %held.id, kind = held.kind, seq, %reason,
                    "home relay rejected an event"
                ),
                outcome => {
                    tracing::trace!(event = %held.id, seq, outcome = outcome.as_str(), "landed")
                }
            }
        }
        Step::Retry { seq, delay, reason } => {
            let event = ledger.get(*seq).map(|h| h.id.as_str()).unwrap_or("");
            match reason {
                RetryReason::RateLimited(message) => tracing::debug!(
                    event, seq, retry_in = ?delay, %message, "home relay is rate limiting"
                ),
                RetryReason::RelayError(message) => tracing::info!(
                    event, seq, retry_in = ?delay, %message, "home relay error, retrying"
                ),
                RetryReason::Timeout => tracing::info!(
                    event, seq, retry_in = ?delay, "no OK from the home relay in time, retrying"
                ),
                RetryReason::ConnectionLost => {
                    tracing::debug!(event, seq, retry_in = ?delay, "connection lost, retrying")
                }
            }
        }
    }
}
