//! A plain nostr WebSocket client: connect with a timeout, send client messages, read relay
//! messages, count bytes. The services build their protocol logic on top; nothing here
//! de-duplicates or re-connects behind the caller's back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use nostr::{ClientMessage, JsonUtil, RelayMessage};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::relay_url::RelayUrl;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest frame we accept; bigger events are refused later by size, this only bounds memory.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("send failed: {0}")]
    Send(String),
    #[error("connection lost: {0}")]
    Lost(String),
}

/// Bytes and frames on one connection, shared by both halves.
#[derive(Debug, Default)]
pub struct Traffic {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_in: AtomicU64,
}

impl Traffic {
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
}

pub struct SocketWriter {
    sink: SplitSink<Ws, Message>,
    traffic: Arc<Traffic>,
}

pub struct SocketReader {
    stream: SplitStream<Ws>,
    traffic: Arc<Traffic>,
}

/// What arrived on the socket.
#[derive(Debug)]
pub enum Incoming {
    Message(RelayMessage<'static>),
    /// Text that is not a relay message we understand (kept for counting and logs).
    Malformed {
        text: String,
        error: String,
    },
}

/// A send that takes longer means the peer stopped reading: the connection is over.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a WebSocket to the relay within `timeout`.
pub async fn connect(
    url: &RelayUrl,
    timeout: Duration,
) -> Result<(SocketWriter, SocketReader, Arc<Traffic>), SocketError> {
    connect_with_limit(url, timeout, MAX_FRAME_BYTES).await
}

/// Read chunk of a socket, allocated per connection. tungstenite's default of 128 KiB made an
/// idle relay session cost about a quarter of a megabyte; larger frames still arrive whole.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Like [`connect`], accepting frames up to `max_frame` bytes (never less than [`MAX_FRAME_BYTES`]).
pub async fn connect_with_limit(
    url: &RelayUrl,
    timeout: Duration,
    max_frame: usize,
) -> Result<(SocketWriter, SocketReader, Arc<Traffic>), SocketError> {
    let limit = max_frame.max(MAX_FRAME_BYTES);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .read_buffer_size(READ_BUFFER_BYTES);
    let fut = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false);
    let (ws, _response) = match tokio::time::timeout(timeout, fut).await {
        Err(_) => return Err(SocketError::ConnectTimeout(timeout)),
        Ok(Err(e)) => return Err(SocketError::Connect(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    let traffic = Arc::new(Traffic::default());
    let (sink, stream) = ws.split();
    Ok((
        SocketWriter {
            sink,
            traffic: traffic.clone(),
        },
        SocketReader {
            stream,
            traffic: traffic.clone(),
        },
        traffic,
    ))
}

impl SocketWriter {
    pub async fn send(&mut self, msg: &ClientMessage<'_>) -> Result<(), SocketError> {
        self.send_text(msg.as_json()).await
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), SocketError> {
        self.traffic
            .bytes_out
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::text(text))).await {
            Ok(result) => result.map_err(|e| SocketError::Send(e.to_string())),
            Err(_) => Err(SocketError::Send(format!(
                "no progress for {SEND_TIMEOUT:?}"
            ))),
        }
    }

    /// Sends a close frame; errors are irrelevant at this point.
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
    }
}

impl SocketReader {
    /// The next relay message; `Err` when the connection is gone.
    pub async fn next(&mut self) -> Result<Incoming, SocketError> {
        let text = self.next_text().await?;
        Ok(match RelayMessage::from_json(&text) {
            Ok(msg) => Incoming::Message(msg),
            Err(e) => Incoming::Malformed {
                error: e.to_string(),
                text,
            },
        })
    }

    /// The next text frame exactly as received, for callers that forward event JSON unchanged.
    pub async fn next_text(&mut self) -> Result<String, SocketError> {
        loop {
            let frame = match self.stream.next().await {
                None => return Err(SocketError::Lost("closed".into())),
                Some(Err(e)) => return Err(SocketError::Lost(e.to_string())),
                Some(Ok(frame)) => frame,
            };
            let text = match frame {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Close(reason) => {
                    let reason = reason
                        .map(|r| r.reason.to_string())
                        .filter(|r| !r.is_empty());
                    return Err(SocketError::Lost(
                        reason.unwrap_or_else(|| "closed by relay".into()),
                    ));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            self.traffic
                .bytes_in
                .fetch_add(text.len() as u64, Ordering::Relaxed);
            self.traffic.frames_in.fetch_add(1, Ordering::Relaxed);
            return Ok(text);
        }
    }
}
