//! One WebSocket session with a relay: feeds the [`Syncer`] with frames, publish acks, target
//! changes and ticks, and carries out what it asks (REQ/CLOSE, news, event publishes with
//! many acks in flight, state writes). Reading pauses while too many acks are owed, never
//! for anything else. The daily reconciliation happens here too: a fresh start on the open
//! connection, as a new session, so no disconnect is counted.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use ngit_sync_shared::bus::Published;
use ngit_sync_shared::messages::{now_ms, RelayBody, SyncedEvent};
use ngit_sync_shared::status::SyncPlan;
use ngit_sync_shared::{Bus, BusError, RelayUrl};
use tokio::time::Instant;

use crate::config::Config;
use crate::historic;
use crate::index_client;
use crate::relay_owner::{Owned, OwnerContext, StopSignal};
use crate::relay_state;
use crate::syncer::{Action, IndexAnswer, PublishJob, Syncer, SyncerConfig};
use ngit_sync_shared::socket::{SocketReader as Reader, SocketWriter as Writer};

/// Timer resolution of the syncer (EOSE deadlines, rate-limit ends, retries).
const TICK: Duration = Duration::from_millis(250);
/// Target changes come in bursts (discovery writes many keys); act once they settle.
const TARGETS_SETTLE: Duration = Duration::from_millis(200);
/// Dropped-event counts go out at most this often outside batch news.
const DROPPED_REPORT: Duration = Duration::from_secs(5);
/// At the end of a session, acks in flight get this long to land.
const ACK_DRAIN: Duration = Duration::from_secs(2);
/// Tries per event publish before the session gives up on the bus.
const PUBLISH_ATTEMPTS: u32 = 3;

/// Why a session ended.
#[derive(Debug)]
pub struct SessionEnd {
    pub reason: String,
    /// The relay (or the network to it) ended it, as opposed to us.
    pub relay_fault: bool,
}

type PublishDone = (Option<String>, Result<Published, BusError>);
type Publishes = FuturesUnordered<Pin<Box<dyn Future<Output = PublishDone> + Send>>>;
/// Negentropy: home index answers `(batch, filter index, items)` on their way to the syncer.
type IndexDone = (String, usize, IndexAnswer);
type IndexRequests = FuturesUnordered<Pin<Box<dyn Future<Output = IndexDone> + Send>>>;

pub fn syncer_config(config: &Config) -> SyncerConfig {
    SyncerConfig {
        page_limit: config.page_limit,
        max_filters_per_req: config.max_filters_per_req,
        max_historic_subscriptions: config.max_historic_subscriptions,
        eose_timeout_ms: config.eose_timeout.as_millis() as u64,
        rate_limit_cooldown_ms: config.rate_limit_cooldown.as_millis() as u64,
        batch_retry_ms: config.batch_retry.as_millis() as u64,
        max_event_bytes: config.max_event_bytes,
        dropped_report_ms: DROPPED_REPORT.as_millis() as u64,
        live_filter_consolidation: config.live_filter_consolidation,
    }
}

pub async fn run(
    ctx: &OwnerContext,
    owned: &mut Owned,
    mut writer: Writer,
    mut reader: Reader,
    session: String,
    stop: &StopSignal,
) -> SessionEnd {
    let config = &ctx.config;
    let mut started = now_ms();
    let start = relay_state::choose_plan(
        &owned.state,
        started,
        config.quick_reconnect_window,
        config.quick_reconnect_overlap,
    );
    let method = match config.negentropy {
        true => historic::method_for(owned.state.negentropy),
        false => historic::HistoricMethod::Req,
    };
    let mut syncer = Syncer::new(
        syncer_config(config),
        session.clone(),
        start,
        &owned.state,
        method,
    );
    tracing::info!(relay = %owned.url, session = %session, plan = start.plan.as_str(), "connected");
    owned.news.send(RelayBody::Connected {
        worker: owned.worker.clone(),
        session: session.clone(),
        plan: start.plan,
    });
    owned.health.record_connected(started);
    owned.report_health(started);
    owned.state.daily_due_ms = match (start.plan, owned.state.daily_due_ms) {
        (SyncPlan::Quick, Some(due)) => Some(due),
        _ => Some(daily_due(config, started)),
    };
    begin_state(owned, start.plan, started);

    let mut targets = ctx.targets.subscribe(&owned.url);
    let mut targets_open = true;
    let mut applied = ctx.targets.applied();
    let mut applied_open = true;
    let mut targets_due: Option<Instant> = None;
    let mut publishes = Publishes::new();
    let mut index_requests = IndexRequests::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    syncer.start(started);
    syncer.on_targets(targets.borrow_and_update().clone(), started);

    let end = loop {
        // Read before looking at the slice: the watcher hands out the slices a watermark
        // depends on before the watermark, so a slice with nothing new pending means the
        // session has every change up to what was read.
        let watermark = *applied.borrow();
        if targets_due.is_none() && !targets.has_changed().unwrap_or(false) {
            syncer.on_applied(watermark);
        }
        if let Err(end) = carry_out(
            &mut syncer,
            &mut writer,
            owned,
            ctx,
            &mut publishes,
            &mut index_requests,
            started,
        )
        .await
        {
            break end;
        }
        let under_own_limit = publishes.len() < config.publish_in_flight;
        let budget_room = ctx.publish_budget.has_room();
        let reading = under_own_limit && budget_room;
        tokio::select! {
            _ = stop.stopped() => break SessionEnd { reason: stop.reason(), relay_fault: false },
            // Only to wake the loop: other sessions' acks made room in the worker's budget.
            _ = ctx.publish_budget.room(), if under_own_limit && !budget_room => {}
            frame = reader.next_text(), if reading => match frame {
                Ok(text) => syncer.on_text(&text, now_ms()),
                Err(e) => break SessionEnd { reason: e.to_string(), relay_fault: true },
            },
            Some((batch, idx, items)) = index_requests.next(), if !index_requests.is_empty() => {
                syncer.on_index_items(&batch, idx, items, now_ms());
            }
            Some((batch, result)) = publishes.next(), if !publishes.is_empty() => match result {
                Ok(published) => syncer.on_ack(batch.as_deref(), published.seq, now_ms()),
                Err(e) => break SessionEnd { reason: format!("events stream unavailable: {e}"), relay_fault: false },
            },
            changed = applied.changed(), if applied_open => {
                applied_open = changed.is_ok();
            }
            changed = targets.changed(), if targets_open => match changed {
                Ok(()) => {
                    targets_due.get_or_insert(Instant::now() + TARGETS_SETTLE);
                }
                Err(_) => targets_open = false,
            },
            _ = tick.tick() => {
                let now = now_ms();
                if owned.state.daily_due_ms.is_some_and(|due| due <= now) {
                    started = now;
                    daily_fresh_start(ctx, owned, &mut syncer, now);
                }
                syncer.on_tick(now);
                if targets_due.is_some_and(|due| due <= Instant::now()) {
                    targets_due = None;
                    syncer.on_targets(targets.borrow_and_update().clone(), now);
                }
                if owned.health.tick(now) {
                    owned.report_health(now);
                    owned.persist();
                }
            }
        }
    };

    if end.relay_fault {
        syncer.connection_lost(now_ms());
    }
    // Acks in flight may still confirm batches; live events must not be lost on the way out.
    let deadline = Instant::now() + ACK_DRAIN;
    while !publishes.is_empty() {
        match tokio::time::timeout_at(deadline, publishes.next()).await {
            Ok(Some((batch, Ok(published)))) => {
                syncer.on_ack(batch.as_deref(), published.seq, now_ms())
            }
            Ok(Some((_, Err(_)))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    syncer.abandon(&end.reason, now_ms());
    for action in syncer.drain() {
        match action {
            Action::News(body) => owned.news.send(body),
            Action::StateChanged => record_progress(owned, &syncer, started),
            Action::NegentropyUnsupported => {
                owned.state.negentropy = Some(false);
                owned.persist();
            }
            Action::NegentropySupported => {
                owned.state.negentropy = Some(true);
                owned.persist();
            }
            Action::Send(_)
            | Action::Publish(_)
            | Action::RateLimited(_)
            | Action::IndexItems { .. } => {}
        }
    }
    writer.close().await;
    end
}

/// When the next daily reconciliation is due: uniform between the configured bounds.
fn daily_due(config: &Config, now_ms: u64) -> u64 {
    let (min, max) = (config.daily_min.as_millis(), config.daily_max.as_millis());
    let span = max.saturating_sub(min) as f64;
    let offset = min as f64 + span * rand::random::<f64>();
    now_ms.saturating_add(offset as u64)
}

/// The daily fresh start: a new session id and plan on the same connection; health and the
/// connection status machine see a new session, not a disconnect.
fn daily_fresh_start(ctx: &OwnerContext, owned: &mut Owned, syncer: &mut Syncer, now: u64) {
    let n = ctx
        .sessions
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let session = format!("{}-{n}", owned.worker);
    tracing::info!(relay = %owned.url, session = %session, "daily reconciliation: fresh start");
    // NIP-77 is tried again whatever the relay's state says: its verdict may be a day old.
    let method = match ctx.config.negentropy {
        true => historic::HistoricMethod::Negentropy,
        false => historic::HistoricMethod::Req,
    };
    syncer.daily_fresh_start(session.clone(), method, now);
    owned.news.send(RelayBody::Connected {
        worker: owned.worker.clone(),
        session,
        plan: SyncPlan::Fresh,
    });
    owned.state.daily_due_ms = Some(daily_due(&ctx.config, now));
    begin_state(owned, SyncPlan::Fresh, now);
}

/// A fresh start forgets what earlier sessions confirmed and counts from now; a quick one
/// keeps the earlier connection time until its catch-up is done.
fn begin_state(owned: &mut Owned, plan: SyncPlan, started: u64) {
    owned.state.disconnected_ms = None;
    if plan == SyncPlan::Fresh {
        owned.state.confirmed_l1 = false;
        owned.state.confirmed_repos.clear();
        owned.state.confirmed_roots.clear();
        owned.state.last_connected_ms = Some(started);
    }
    owned.persist();
}

fn record_progress(owned: &mut Owned, syncer: &Syncer, started: u64) {
    let items = syncer.persisted();
    owned.state.confirmed_l1 = items.l1;
    owned.state.confirmed_repos = items.repos.into_iter().collect();
    owned.state.confirmed_roots = items.roots.into_iter().collect();
    if syncer.catch_up_done() {
        owned.state.last_connected_ms = Some(started);
    }
    owned.persist();
}

async fn carry_out(
    syncer: &mut Syncer,
    writer: &mut Writer,
    owned: &mut Owned,
    ctx: &OwnerContext,
    publishes: &mut Publishes,
    index_requests: &mut IndexRequests,
    started: u64,
) -> Result<(), SessionEnd> {
    let mut state_changed = false;
    for action in syncer.drain() {
        match action {
            Action::Send(text) => writer.send_text(text).await.map_err(|e| SessionEnd {
                reason: e.to_string(),
                relay_fault: true,
            })?,
            Action::News(body) => owned.news.send(body),
            Action::Publish(job) => {
                let held = ctx.publish_budget.take(job.json.len());
                publishes.push(publish(ctx.bus.clone(), owned.url.clone(), job, held))
            }
            Action::StateChanged => state_changed = true,
            Action::IndexItems {
                batch,
                filter_idx,
                filter,
            } => {
                let bus = ctx.bus.clone();
                index_requests.push(Box::pin(async move {
                    let items = index_client::items(&bus, &filter)
                        .await
                        .map_err(|e| e.to_string());
                    (batch, filter_idx, items)
                }));
            }
            Action::NegentropyUnsupported => {
                owned.state.negentropy = Some(false);
                state_changed = true;
            }
            Action::NegentropySupported => {
                if owned.state.negentropy != Some(true) {
                    owned.state.negentropy = Some(true);
                    state_changed = true;
                }
            }
            Action::RateLimited(until) => {
                owned.health.record_rate_limited(until);
                owned.report_health(now_ms());
                state_changed = true;
            }
        }
    }
    if state_changed {
        record_progress(owned, syncer, started);
    }
    Ok(())
}

fn publish(
    bus: Bus,
    relay: RelayUrl,
    job: PublishJob,
    held: crate::publish_budget::BudgetGuard,
) -> Pin<Box<dyn Future<Output = PublishDone> + Send>> {
    let event = SyncedEvent {
        relay,
        received_ms: now_ms(),
        event: job.json,
    };
    let (batch, id, kind) = (job.batch, job.id, job.kind);
    Box::pin(async move {
        // Returned to the worker's budget when this future ends, acked or not.
        let _held = held;
        let mut attempt = 1;
        loop {
            match bus.publish_event(&id, kind, &event).await {
                Ok(published) => return (batch, Ok(published)),
                Err(e) if attempt >= PUBLISH_ATTEMPTS => return (batch, Err(e)),
                Err(e) => {
                    tracing::debug!(%id, attempt, error = %e, "event publish failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                    attempt += 1;
                }
            }
        }
    })
}
