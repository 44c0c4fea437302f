//! The optimal writer: one WebSocket to a relay, EVENTs pipelined with many OKs outstanding.
//! It is the `limit` scenario's client and the `seed` tool's publisher.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ngit_sync_shared::socket::{self, Incoming};
use ngit_sync_shared::RelayUrl;
use nostr::{ClientMessage, Event, EventId, JsonUtil, RelayMessage};
use tokio::sync::Semaphore;

/// EVENTs sent ahead of their OK: enough to keep the pipe full on loopback.
pub const WINDOW: usize = 500;
/// Longer than this without any OK means the relay stopped answering.
const STALL: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a relay answered a set of EVENTs.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `OK true` (new or duplicate).
    pub accepted: usize,
    /// `OK true` with a `duplicate:` message.
    pub duplicates: usize,
    /// `OK false`, by id, with the message.
    pub rejected: Vec<(EventId, String)>,
    pub seconds: f64,
}

impl Outcome {
    /// Rejections the relay meant as "try later".
    pub fn rate_limited(&self) -> Vec<EventId> {
        self.rejected
            .iter()
            .filter(|(_, m)| m.starts_with("rate-limited:"))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Sends `events` over one connection with up to [`WINDOW`] unanswered, until every one has
/// its OK. The messages are serialized before the clock starts: the figure is the relay's.
pub async fn write_all(url: &str, events: &[Event]) -> anyhow::Result<Outcome> {
    let url = RelayUrl::parse(url).with_context(|| format!("relay URL {url:?}"))?;
    let messages: Vec<String> = events
        .iter()
        .map(|e| ClientMessage::event(e.clone()).as_json())
        .collect();
    let (mut writer, mut reader, _traffic) = socket::connect(&url, CONNECT_TIMEOUT)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let started = Instant::now();
    let window = Arc::new(Semaphore::new(WINDOW));
    let send_window = Arc::clone(&window);
    let sender = tokio::spawn(async move {
        for message in messages {
            send_window
                .acquire()
                .await
                .expect("the window is never closed")
                .forget();
            writer.send_text(message).await?;
        }
        Ok::<_, anyhow::Error>(writer)
    });
    let mut pending: HashSet<EventId> = events.iter().map(|e| e.id).collect();
    let mut outcome = Outcome::default();
    while !pending.is_empty() {
        let next = tokio::time::timeout(STALL, reader.next())
            .await
            .with_context(|| format!("{url} sent no OK for {STALL:?}"))??;
        let Incoming::Message(RelayMessage::Ok {
            event_id,
            status,
            message,
        }) = next
        else {
            continue;
        };
        if !pending.remove(&event_id) {
            continue;
        }
        window.add_permits(1);
        if status {
            outcome.accepted += 1;
            if message.starts_with("duplicate:") {
                outcome.duplicates += 1;
            }
        } else {
            outcome.rejected.push((event_id, message.to_string()));
        }
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    let mut writer = sender.await??;
    writer.close().await;
    Ok(outcome)
}

/// [`write_all`], then again for events answered `rate-limited:`, pausing longer each round.
pub async fn write_all_patiently(
    url: &str,
    events: &[Event],
    rounds: u32,
) -> anyhow::Result<Outcome> {
    let mut total = write_all(url, events).await?;
    for round in 1..=rounds {
        let again: Vec<EventId> = total.rate_limited();
        if again.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(u64::from(round))).await;
        let retry: Vec<Event> = events
            .iter()
            .filter(|e| again.contains(&e.id))
            .cloned()
            .collect();
        let next = write_all(url, &retry).await?;
        total.rejected.retain(|(id, _)| !again.contains(id));
        total.accepted += next.accepted;
        total.duplicates += next.duplicates;
        total.rejected.extend(next.rejected);
        total.seconds += next.seconds;
    }
    Ok(total)
}
