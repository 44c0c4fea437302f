//! The sink's one connection to the home relay: writes EVENT frames as they come, reports every
//! `OK`, and reconnects with backoff when the relay drops or refuses the connection.

use std::time::{Duration, Instant};

use ngit_sync_shared::constants::CONNECT_TIMEOUT;
use ngit_sync_shared::socket::{self, Incoming, SocketReader, SocketWriter};
use ngit_sync_shared::RelayUrl;
use nostr::RelayMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::retry::RetryPolicy;

/// A connection that lasted this long resets the reconnect backoff; one that drops at once
/// must not.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// News from the link, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Connected: writes go out from now on.
    Up,
    /// The connection is gone; writes without an answer will not get one.
    Down { reason: String },
    /// `["OK", id, accepted, message]`.
    Answer {
        id: String,
        accepted: bool,
        message: String,
    },
}

/// How a connection ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// Holds the connection until `stop`. `outgoing` carries complete `["EVENT", …]` texts; what is
/// queued while the link is down is dropped, because the landing loop retries every write it
/// has no answer for when it hears `Down`.
pub async fn run(
    url: RelayUrl,
    retry: RetryPolicy,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    events: mpsc::UnboundedSender<LinkEvent>,
    stop: CancellationToken,
) {
    let mut failures: u32 = 0;
    loop {
        while outgoing.try_recv().is_ok() {}
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = socket::connect(&url, CONNECT_TIMEOUT) => connected,
        };
        let reason = match connected {
            Err(e) => e.to_string(),
            Ok((mut writer, reader, _traffic)) => {
                tracing::info!(relay = %url, "connected to the home relay");
                if events.send(LinkEvent::Up).is_err() {
                    return;
                }
                let started = Instant::now();
                let ended = session(&mut writer, reader, &mut outgoing, &events, &stop).await;
                writer.close().await;
                if started.elapsed() >= STABLE_AFTER {
                    failures = 0;
                }
                match ended {
                    Ended::Stopped => return,
                    Ended::Lost(reason) => {
                        if events
                            .send(LinkEvent::Down {
                                reason: reason.clone(),
                            })
                            .is_err()
                        {
                            return;
                        }
                        reason
                    }
                }
            }
        };
        failures = failures.saturating_add(1);
        let delay = retry.delay(failures);
        tracing::warn!(relay = %url, %reason, retry_in = ?delay, "home relay unavailable");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Writes until the connection breaks or `stop`; answers are read by a task of their own so a
/// slow write never keeps the relay's answers waiting.
async fn session(
    writer: &mut SocketWriter,
    reader: SocketReader,
    outgoing: &mut mpsc::UnboundedReceiver<String>,
    events: &mpsc::UnboundedSender<LinkEvent>,
    stop: &CancellationToken,
) -> Ended {
    let mut answers = tokio::spawn(read_answers(reader, events.clone()));
    let ended = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ended::Stopped,
            read = &mut answers => {
                break Ended::Lost(read.unwrap_or_else(|e| format!("reader failed: {e}")));
            }
            text = outgoing.recv() => match text {
                None => break Ended::Stopped,
                Some(text) => {
                    if let Err(e) = writer.send_text(text).await {
                        break Ended::Lost(e.to_string());
                    }
                }
            },
        }
    };
    answers.abort();
    ended
}

/// Forwards every `OK` until the connection ends; returns why it ended.
async fn read_answers(
    mut reader: SocketReader,
    events: mpsc::UnboundedSender<LinkEvent>,
) -> String {
    loop {
        let message = match reader.next().await {
            Err(e) => return e.to_string(),
            Ok(Incoming::Malformed { error, .. }) => {
                tracing::debug!(%error, "unreadable frame from the home relay");
                continue;
            }
            Ok(Incoming::Message(message)) => message,
        };
        match message {
            RelayMessage::Ok {
                event_id,
                status,
                message,
            } => {
                let answer = LinkEvent::Answer {
                    id: event_id.to_hex(),
                    accepted: status,
                    message: message.into_owned(),
                };
                if events.send(answer).is_err() {
                    return "sink stopped".into();
                }
            }
            RelayMessage::Notice(notice) => {
                tracing::info!(notice = %notice, "notice from the home relay");
            }
            RelayMessage::Auth { .. } => {
                tracing::warn!("the home relay asks for NIP-42 auth, which the sink does not do");
            }
            _ => {}
        }
    }
}
