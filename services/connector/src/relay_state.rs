//! `ngit_sync_relay_state`: what a relay's owner must remember so the next session (or the next
//! owner) continues where this one stopped. Choosing the sync plan from it is pure; writing it
//! is a small task so a session never waits on KV.

use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::RelayState;
use ngit_sync_shared::status::SyncPlan;
use ngit_sync_shared::Bus;
use nostr::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How a session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartPlan {
    pub plan: SyncPlan,
    /// Quick reconnect: history of confirmed items is asked from here.
    pub since: Option<Timestamp>,
}

/// Quick reconnect when the relay was disconnected less than `window` ago, measured from the
/// disconnect (not from the connect, as the anchor did), with `since` = the last connection
/// whose catch-up completed minus `overlap`. Anything unknown (never connected, no disconnect
/// known: [`load`] supplies one for an owner that died) is a fresh start: more work, never a gap.
pub fn choose_plan(
    state: &RelayState,
    now_ms: u64,
    window: Duration,
    overlap: Duration,
) -> StartPlan {
    let fresh = StartPlan {
        plan: SyncPlan::Fresh,
        since: None,
    };
    let (Some(connected), Some(disconnected)) = (state.last_connected_ms, state.disconnected_ms)
    else {
        return fresh;
    };
    let has_confirmed = state.confirmed_l1
        || !state.confirmed_repos.is_empty()
        || !state.confirmed_roots.is_empty();
    if disconnected < connected
        || now_ms.saturating_sub(disconnected) >= window.as_millis() as u64
        || !has_confirmed
    {
        return fresh;
    }
    let since_ms = connected.saturating_sub(overlap.as_millis() as u64);
    StartPlan {
        plan: SyncPlan::Quick,
        since: Some(Timestamp::from(since_ms / 1000)),
    }
}

/// Reads a relay's state; trouble reading is a fresh start, not a stop. A state left by an
/// owner that ended without writing its disconnect (killed, or cut off from NATS) gets the
/// latest moment its session surely still ran, see [`assume_disconnect`].
pub async fn load(bus: &Bus, key: &str) -> RelayState {
    let fresh = |e: &dyn std::fmt::Display| {
        tracing::warn!(relay = key, error = %e, "cannot read relay state; starting fresh");
        RelayState::default()
    };
    let entry = match bus.buckets.relay_state.entry(key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => entry,
        Ok(_) => return RelayState::default(),
        Err(e) => return fresh(&e),
    };
    let mut state = match codec::decode::<RelayState>(&entry.value) {
        Ok(state) => state,
        Err(e) => return fresh(&e),
    };
    let written_ms = u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).ok();
    assume_disconnect(&mut state, written_ms);
    state
}

/// An owner that died mid-session wrote no disconnect, and [`choose_plan`] would start the
/// relay over from zero. Its session ran at least until the state was last written (and since
/// the connection it counts from), so that moment is a safe lower bound of the disconnect: the
/// quick-reconnect window is judged from it, and the catch-up still asks from the last
/// connection minus the overlap, which covers whatever the dead owner had not passed on.
pub fn assume_disconnect(state: &mut RelayState, written_ms: Option<u64>) {
    let Some(connected) = state.last_connected_ms else {
        return;
    };
    if state.disconnected_ms.is_some_and(|d| d >= connected) {
        return;
    }
    state.disconnected_ms = Some(written_ms.unwrap_or(0).max(connected));
}

/// Deletes a relay's state: discovery forgot the relay, and nothing would ever read or
/// replace the entry again. Trouble is logged; the entry then stays, harmless.
pub async fn forget(bus: &Bus, key: &str) {
    if let Err(e) = bus.buckets.relay_state.delete(key).await {
        tracing::warn!(relay = key, error = %e, "cannot delete the state of a forgotten relay");
    }
}

/// Writes the newest state in the background; older unsaved states are skipped.
pub struct StateWriter {
    tx: mpsc::UnboundedSender<RelayState>,
    handle: JoinHandle<()>,
}

impl StateWriter {
    pub fn spawn(bus: Bus, key: String) -> StateWriter {
        let (tx, mut rx) = mpsc::unbounded_channel::<RelayState>();
        let handle = tokio::spawn(async move {
            while let Some(mut state) = rx.recv().await {
                while let Ok(newer) = rx.try_recv() {
                    state = newer;
                }
                if let Err(e) = bus.put(&bus.buckets.relay_state, &key, &state).await {
                    tracing::warn!(relay = %key, error = %e, "cannot persist relay state");
                }
            }
        });
        StateWriter { tx, handle }
    }

    pub fn save(&self, state: &RelayState) {
        // The task lives as long as the writer; a send can only fail after it panicked.
        let _ = self.tx.send(state.clone());
    }

    /// Waits (at most `within`) for the last state to be written.
    pub async fn finish(self, within: Duration) {
        drop(self.tx);
        let mut handle = self.handle;
        if tokio::time::timeout(within, &mut handle).await.is_err() {
            tracing::warn!("relay state not persisted within {within:?}");
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn state(connected: Option<u64>, disconnected: Option<u64>) -> RelayState {
        RelayState {
            confirmed_l1: true,
            last_connected_ms: connected,
            disconnected_ms: disconnected,
            ..Default::default()
        }
    }

    fn plan(s: &RelayState, now: u64) -> StartPlan {
        choose_plan(s, now, Duration::from_secs(900), Duration::from_secs(600))
    }

    #[test]
    fn a_relay_never_seen_starts_fresh() {
        assert_eq!(plan(&RelayState::default(), 1_000).plan, SyncPlan::Fresh);
    }

    #[test]
    fn a_recent_disconnect_continues_from_the_last_connection_minus_the_overlap() {
        // Connected for two hours, dropped 5 minutes ago: the window counts from the drop.
        let s = state(Some(100 * MIN), Some(220 * MIN));
        let p = plan(&s, 225 * MIN);
        assert_eq!(p.plan, SyncPlan::Quick);
        assert_eq!(p.since, Some(Timestamp::from((90 * MIN) / 1000)));
    }

    #[test]
    fn a_long_disconnect_or_an_unknown_end_starts_fresh() {
        assert_eq!(
            plan(&state(Some(0), Some(10 * MIN)), 26 * MIN).plan,
            SyncPlan::Fresh
        );
        assert_eq!(
            plan(&state(Some(10 * MIN), None), 11 * MIN).plan,
            SyncPlan::Fresh
        );
        let nothing_confirmed = RelayState {
            last_connected_ms: Some(0),
            disconnected_ms: Some(MIN),
            ..Default::default()
        };
        assert_eq!(plan(&nothing_confirmed, 2 * MIN).plan, SyncPlan::Fresh);
    }

    #[test]
    fn a_relay_whose_owner_died_continues_quickly_when_its_session_was_seen_recently() {
        // Connected at 10 min, state last written at 40 min, the owner killed since.
        let mut s = state(Some(10 * MIN), None);
        assume_disconnect(&mut s, Some(40 * MIN));
        assert_eq!(s.disconnected_ms, Some(40 * MIN));
        let p = plan(&s, 50 * MIN);
        assert_eq!(p.plan, SyncPlan::Quick);
        assert_eq!(p.since, Some(Timestamp::from(0)));
        // Last seen alive over the window ago: the disconnect may be as old, start fresh.
        assert_eq!(plan(&s, 56 * MIN).plan, SyncPlan::Fresh);
        // A written disconnect is kept; a relay never connected stays unknown.
        let mut ended = state(Some(10 * MIN), Some(12 * MIN));
        assume_disconnect(&mut ended, Some(40 * MIN));
        assert_eq!(ended.disconnected_ms, Some(12 * MIN));
        let mut never = RelayState::default();
        assume_disconnect(&mut never, Some(40 * MIN));
        assert_eq!(never.disconnected_ms, None);
    }
}
