//! One relay this worker owns: claim its lease and keep renewing it, try to connect (backing
//! off after failures, never giving up while the relay is wanted), run sessions, and on stop
//! close, persist, release. A lost lease stops everything at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ngit_sync_shared::messages::{
    now_ms, HealthReport, LeaseEntry, RelayBody, RelayEntry, RelayState,
};
use ngit_sync_shared::status::AttemptResult;
use ngit_sync_shared::{Bus, RelayUrl};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health::{Backoff, HealthRules, HealthTracker};
use crate::lease::{self, LeaseError};
use crate::ownership::{Ended, ReleaseReason};
use crate::relay_state::{self, StateWriter};
use crate::session;
use crate::targets_watcher::Targets;
use ngit_sync_shared::socket::{self, SocketReader as Reader, SocketWriter as Writer};

/// Bound on each step of a wind-down (state write, news), so shutdown fits its grace.
const WIND_DOWN_STEP: Duration = Duration::from_secs(2);
/// How long the last news of an owner that lost its lease keeps trying to reach the stream.
const LOST_NEWS_WITHIN: Duration = Duration::from_secs(60);

/// What every owner task shares.
pub struct OwnerContext {
    pub bus: Bus,
    /// Event bytes in transit, shared by every session of the worker.
    pub publish_budget: Arc<crate::publish_budget::PublishBudget>,
    pub config: Arc<Config>,
    pub targets: Targets,
    /// Session numbers; starting at the process start time keeps ids unique across restarts.
    pub sessions: AtomicU64,
}

/// Asks an owner to stop; the first reason given is the one reported.
#[derive(Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl StopSignal {
    pub fn stop(&self, reason: &str) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert_with(|| reason.to_string());
        self.token.cancel();
    }

    pub fn reason(&self) -> String {
        let r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.clone().unwrap_or_else(|| "stopped".into())
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}

/// The owner's view of its relay, lent to each session.
pub struct Owned {
    pub url: RelayUrl,
    pub key: String,
    pub worker: String,
    pub health: HealthTracker,
    pub state: RelayState,
    pub news: crate::news::News,
    writer: StateWriter,
    last_health: Option<HealthReport>,
}

impl Owned {
    /// Publishes the health report if it differs from the last one.
    pub fn report_health(&mut self, now_ms: u64) {
        let report = self.health.report(now_ms);
        if self.last_health.as_ref() != Some(&report) {
            self.news.send(RelayBody::Health(report.clone()));
            self.last_health = Some(report);
        }
    }

    pub fn persist(&mut self) {
        self.state.health = Some(self.health.snapshot());
        self.writer.save(&self.state);
    }
}

/// Owns `entry` until `stop` (or a lost lease); returns how it ended.
pub async fn own(ctx: Arc<OwnerContext>, entry: RelayEntry, stop: StopSignal) -> Ended {
    let (bus, config) = (&ctx.bus, &ctx.config);
    let url = entry.url.clone();
    let key = url.key().to_string();
    let lease_entry = LeaseEntry {
        worker: config.worker_id.clone(),
        relay: url.clone(),
        since_ms: now_ms(),
    };
    let claim_sent = tokio::time::Instant::now();
    let revision = match lease::claim(bus, &key, &lease_entry).await {
        Ok(revision) => revision,
        Err(LeaseError::Busy(holder)) => {
            tracing::debug!(relay = %url, %holder, "lease held elsewhere");
            return Ended::LeaseBusy;
        }
        Err(e) => {
            tracing::warn!(relay = %url, error = %e, "cannot claim lease");
            return Ended::LeaseBusy;
        }
    };
    tracing::info!(relay = %url, bootstrap = entry.bootstrap, "relay claimed");
    let news = crate::news::News::spawn(bus.clone(), url.clone());
    news.send(RelayBody::Claimed {
        worker: config.worker_id.clone(),
    });
    let state = relay_state::load(bus, &key).await;
    let health = match &state.health {
        Some(s) => HealthTracker::restore(health_rules(config), s),
        None => HealthTracker::new(health_rules(config)),
    };
    let mut owned = Owned {
        writer: StateWriter::spawn(bus.clone(), key.clone()),
        url,
        key,
        worker: config.worker_id.clone(),
        health,
        state,
        news,
        last_health: None,
    };
    let renewer = tokio::spawn(keep_lease(
        bus.clone(),
        owned.key.clone(),
        lease_entry,
        LeaseClock {
            revision,
            valid_until: claim_sent + trusted_for(config),
        },
        config.lease_renew,
        trusted_for(config),
        stop.clone(),
    ));

    connect_loop(&ctx, &mut owned, &stop).await;

    let held = renewer.await.ok().flatten();
    // With the lease lost, a new owner may be writing the state already: leave it alone.
    if held.is_some() {
        owned.persist();
    }
    let Owned {
        url,
        key,
        worker,
        news,
        writer,
        ..
    } = owned;
    writer.finish(WIND_DOWN_STEP).await;
    let reason = stop.reason();
    // Deleted while the lease is still ours, so an owner that claims the relay again (listed
    // anew) starts from nothing rather than from a state half gone.
    if held.is_some() && reason == ReleaseReason::Forgotten.as_str() {
        relay_state::forget(bus, &key).await;
    }
    // `released` is on the stream before the lease goes, so on the RELAYS stream every
    // worker's `released` precedes the next owner's `claimed`.
    news.send(RelayBody::Released {
        worker,
        reason: reason.clone(),
    });
    if held.is_some() {
        news.finish(WIND_DOWN_STEP).await;
    } else {
        // A lost lease mostly means NATS is away: the news (stamped when they happened) goes
        // out when it is back, without holding the relay up now.
        tokio::spawn(news.finish(LOST_NEWS_WITHIN));
    }
    let ended = match held {
        Some(revision) => {
            if let Err(e) = lease::release(bus, &key, revision).await {
                tracing::warn!(relay = %url, error = %e, "lease not deleted; it expires with its TTL");
            }
            Ended::Stopped
        }
        None => Ended::LeaseLost,
    };
    tracing::info!(relay = %url, %reason, "relay released");
    ended
}

/// How long after sending a successful claim or renewal the lease is surely still ours: the
/// bucket's max age counts from when the server stored it, which is after we sent it; one
/// renewal period is kept as margin for the session to close.
fn trusted_for(config: &Config) -> Duration {
    config
        .common
        .bus
        .lease_ttl
        .saturating_sub(config.lease_renew)
}

/// The lease's revision and until when it is surely ours.
struct LeaseClock {
    revision: u64,
    valid_until: tokio::time::Instant,
}

/// The health numbers of DESIGN.md section 5, as configured.
pub fn health_rules(config: &Config) -> HealthRules {
    HealthRules {
        backoff: Backoff {
            base: config.backoff_base,
            cap: config.backoff_cap,
            jitter: ngit_sync_shared::constants::BACKOFF_JITTER,
        },
        stable_after: config.stable_after,
        dead_after: config.dead_after,
        dead_retry: config.dead_retry,
    }
}

/// Renews the lease until `stop`; returns its revision, or `None` (after stopping the owner)
/// when a renewal failed or got no answer while the lease was surely ours. Without that bound
/// an owner cut off from NATS would go on syncing after its lease expired and another worker
/// took the relay.
async fn keep_lease(
    bus: Bus,
    key: String,
    entry: LeaseEntry,
    mut clock: LeaseClock,
    every: Duration,
    trusted: Duration,
    stop: StopSignal,
) -> Option<u64> {
    loop {
        tokio::select! {
            _ = stop.stopped() => return Some(clock.revision),
            _ = tokio::time::sleep(every) => {}
        }
        let sent = tokio::time::Instant::now();
        let renewed = tokio::time::timeout_at(
            clock.valid_until,
            lease::renew(&bus, &key, &entry, clock.revision),
        )
        .await;
        match renewed {
            Ok(Ok(r)) => {
                clock = LeaseClock {
                    revision: r,
                    valid_until: sent + trusted,
                };
            }
            Ok(Err(e)) => {
                tracing::warn!(relay = %entry.relay, error = %e, "lease renewal failed; stopping at once");
                stop.stop("lease lost");
                return None;
            }
            Err(_) => {
                tracing::warn!(relay = %entry.relay, "lease renewal unanswered until the lease could expire; stopping at once");
                stop.stop("lease lost");
                return None;
            }
        }
    }
}

async fn connect_loop(ctx: &OwnerContext, owned: &mut Owned, stop: &StopSignal) {
    let mut refusal_logged = false;
    // A new owner says at once how the relay is (a restored backoff or Dead state included).
    owned.report_health(now_ms());
    while !stop.is_stopped() {
        let now = now_ms();
        let wake = owned.health.next_wake_at(now);
        if wake > now {
            tokio::select! {
                _ = stop.stopped() => break,
                _ = tokio::time::sleep(Duration::from_millis(wake - now)) => {
                    // The wait may end by turning Dead rather than in an attempt: say so.
                    owned.health.tick(now_ms());
                    owned.report_health(now_ms());
                    continue;
                }
            }
        }
        let attempt = owned.health.consecutive_failures() + 1;
        owned.news.send(attempted(
            &owned.worker,
            attempt,
            AttemptResult::Started,
            None,
        ));
        let connected = tokio::select! {
            _ = stop.stopped() => break,
            c = open_socket(&ctx.config, &owned.url) => c,
        };
        match connected {
            Err(failure) => {
                let now = now_ms();
                let delay = owned.health.record_failure(now, rand::random::<f64>());
                if failure.refused && refusal_logged {
                    tracing::debug!(relay = %owned.url, error = %failure.error, "relay refused");
                } else {
                    refusal_logged |= failure.refused;
                    tracing::info!(relay = %owned.url, attempt, error = %failure.error, retry_in = ?delay, "connection attempt failed");
                }
                let error = Some(failure.error);
                owned.news.send(attempted(
                    &owned.worker,
                    attempt,
                    AttemptResult::Failure,
                    error,
                ));
                owned.report_health(now);
                owned.persist();
            }
            Ok((writer, reader)) => {
                owned.news.send(attempted(
                    &owned.worker,
                    attempt,
                    AttemptResult::Success,
                    None,
                ));
                let n = ctx.sessions.fetch_add(1, Ordering::Relaxed);
                let session = format!("{}-{n}", owned.worker);
                let end = session::run(ctx, owned, writer, reader, session.clone(), stop).await;
                let now = now_ms();
                owned
                    .health
                    .record_disconnected(now, end.relay_fault, rand::random::<f64>());
                owned.state.disconnected_ms = Some(now);
                tracing::info!(relay = %owned.url, session = %session, reason = %end.reason, "disconnected");
                owned.news.send(RelayBody::Disconnected {
                    worker: owned.worker.clone(),
                    session,
                    reason: end.reason,
                });
                owned.report_health(now);
                owned.persist();
            }
        }
    }
}

struct ConnectFailure {
    error: String,
    /// Our own refusal (private address, unresolvable name), not the relay's answer.
    refused: bool,
}

async fn open_socket(config: &Config, url: &RelayUrl) -> Result<(Writer, Reader), ConnectFailure> {
    if let Err(e) = url.check_reachable_target(config.allow_private).await {
        return Err(ConnectFailure {
            error: format!("refused: {e}"),
            refused: true,
        });
    }
    // A frame carries the event plus its envelope; leave room above the event limit.
    let max_frame = config.max_event_bytes.saturating_add(64 * 1024);
    socket::connect_with_limit(url, config.connect_timeout, max_frame)
        .await
        .map(|(writer, reader, _traffic)| (writer, reader))
        .map_err(|e| ConnectFailure {
            error: e.to_string(),
            refused: false,
        })
}

fn attempted(
    worker: &str,
    attempt: u32,
    result: AttemptResult,
    error: Option<String>,
) -> RelayBody {
    RelayBody::Attempted {
        worker: worker.to_string(),
        attempt,
        result,
        error,
    }
}
