//! The sink's durable pull consumer on the EVENTS stream and the task that pulls from it.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::SyncedEvent;
use ngit_sync_shared::Bus;
use nostr::JsonUtil;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ledger::Held;
use crate::{Error, SERVICE};

/// The stream redelivers a message unacked for this long. Held messages get an in-progress
/// ack every [`PROGRESS_EVERY`], so only a dead sink's messages come back, and soon.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How often held messages are marked as still in progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Pause before pulling again after a failed pull.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Messages asked for per pull request.
const MAX_BATCH: usize = 100;
/// A pull request waits this long for messages. Short, so that stopping (which lets the
/// current request run out rather than abandon messages on their way) is quick.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// A message handed back on shutdown is redelivered only after this: later than the last pull
/// request of the stopping sink can run, so it goes to the next sink, not back to this one.
pub const GIVE_BACK_DELAY: Duration = Duration::from_secs(2);

/// What the intake hands to the landing loop.
#[derive(Debug)]
pub enum Intake {
    Message(Box<Message>),
    /// Deliveries may have been lost on the way (the NATS connection dropped); they come back
    /// after [`ACK_WAIT`], which the watermark must allow for.
    Trouble(String),
}

/// Creates or updates the durable consumer. `max_ack_pending` = `in_flight`: the server never
/// hands out more than the sink holds, so everything delivered is tracked and kept alive.
pub async fn open_consumer(bus: &Bus, in_flight: usize) -> Result<PullConsumer, Error> {
    let names = &bus.names;
    let fail = |e: &dyn std::fmt::Display| Error::Consumer(e.to_string());
    let stream = bus
        .js
        .get_stream(names.stream_events())
        .await
        .map_err(|e| fail(&e))?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(names.consumer(SERVICE)),
            description: Some("sink: writes events to the home relay".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: in_flight as i64,
            ..Default::default()
        })
        .await
        .map_err(|e| fail(&e))
}

/// Pulls messages until `stop`, one bounded pull request at a time. A request under way when
/// `stop` comes runs out, and whatever it still brings is handed back to the stream at once.
pub async fn run(bus: Bus, in_flight: usize, tx: mpsc::Sender<Intake>, stop: CancellationToken) {
    let batch_size = in_flight.clamp(1, MAX_BATCH);
    let mut consumer: Option<PullConsumer> = None;
    let mut disconnected = false;
    while !stop.is_cancelled() {
        if bus.client.connection_state() != State::Connected {
            disconnected = true;
            pause(&stop).await;
            continue;
        }
        if std::mem::take(&mut disconnected) {
            let trouble = Intake::Trouble("the NATS connection dropped".into());
            if tx.send(trouble).await.is_err() {
                return;
            }
        }
        let pulling = match &consumer {
            Some(c) => c,
            None => match open_consumer(&bus, in_flight).await {
                Ok(c) => consumer.insert(c),
                Err(error) => {
                    tracing::warn!(%error, "cannot open the events consumer");
                    pause(&stop).await;
                    continue;
                }
            },
        };
        let request = pulling
            .batch()
            .max_messages(batch_size)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match request {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "cannot pull from the events stream");
                consumer = None;
                pause(&stop).await;
                continue;
            }
        };
        while let Some(item) = batch.next().await {
            match item {
                Ok(message) => forward(message, &tx, &stop).await,
                Err(error) => {
                    // A status such as "consumer deleted" or "exceeded max ack pending".
                    tracing::debug!(%error, "pull request ended early");
                    consumer = None;
                    pause(&stop).await;
                }
            }
        }
    }
}

/// Hands a message to the landing loop, or back to the stream once the sink is stopping.
async fn forward(message: Message, tx: &mpsc::Sender<Intake>, stop: &CancellationToken) {
    let refused = if stop.is_cancelled() {
        Some(message)
    } else {
        match tx.send(Intake::Message(Box::new(message))).await {
            Ok(()) => None,
            Err(mpsc::error::SendError(Intake::Message(message))) => Some(*message),
            Err(_) => None,
        }
    };
    if let Some(message) = refused {
        give_back(&message).await;
    }
}

/// Hands an unfinished message back to the stream for the next sink.
pub async fn give_back(message: &Message) {
    if let Err(error) = message.ack_with(AckKind::Nak(Some(GIVE_BACK_DELAY))).await {
        tracing::debug!(%error, "cannot hand a message back to the stream");
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(RETRY_DELAY) => {}
    }
}

/// The sink's view of one stream message: the event's id and kind, the JSON untouched.
pub fn read_event(seq: u64, payload: &[u8]) -> Result<Held, String> {
    let synced: SyncedEvent = codec::decode(payload).map_err(|e| e.to_string())?;
    let event = nostr::Event::from_json(&synced.event).map_err(|e| format!("event JSON: {e}"))?;
    Ok(Held {
        seq,
        id: event.id.to_hex(),
        kind: event.kind.as_u16(),
        relay: synced.relay,
        json: synced.event,
    })
}

#[cfg(test)]
mod tests {
    use ngit_sync_shared::codec::{encode, Wire};
    use ngit_sync_shared::RelayUrl;
    use nostr::{EventBuilder, Keys};

    use super::*;

    #[test]
    fn a_message_yields_id_kind_and_the_untouched_json() {
        let event = EventBuilder::text_note("hello")
            .sign_with_keys(&Keys::generate())
            .unwrap();
        // Spacing nostr would not produce: the JSON must travel exactly as received.
        let json = event.as_json().replace(",\"", ", \"");
        let synced = SyncedEvent {
            relay: RelayUrl::parse("wss://remote.example").unwrap(),
            received_ms: 1,
            event: json.clone(),
        };
        for wire in [Wire::Bincode, Wire::Json] {
            let held = read_event(7, &encode(wire, &synced).unwrap()).unwrap();
            assert_eq!(held.seq, 7);
            assert_eq!(held.id, event.id.to_hex());
            assert_eq!(held.kind, 1);
            assert_eq!(held.relay, synced.relay);
            assert_eq!(held.json, json);
        }
    }

    #[test]
    fn unreadable_messages_are_errors() {
        assert!(read_event(1, b"").is_err());
        assert!(read_event(1, b"\x00junk").is_err());
        let synced = SyncedEvent {
            relay: RelayUrl::parse("wss://remote.example").unwrap(),
            received_ms: 1,
            event: "{\"not\":\"an event\"}".into(),
        };
        let error = read_event(1, &encode(Wire::Json, &synced).unwrap()).unwrap_err();
        assert!(error.starts_with("event JSON"), "{error}");
    }
}
