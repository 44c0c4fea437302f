//! A relay WebSocket that hands frames over as raw text, so an event's JSON can be published
//! exactly as the relay sent it. Same shape and limits as `ngit_sync_shared::socket`, whose
//! reader parses every frame and drops the text; this stays until that reader can return it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use ngit_sync_shared::socket::{SocketError, Traffic, MAX_FRAME_BYTES};
use ngit_sync_shared::RelayUrl;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A send that takes longer means the relay stopped reading: the session is over.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Writer {
    sink: SplitSink<Ws, Message>,
    traffic: Arc<Traffic>,
}

pub struct Reader {
    stream: SplitStream<Ws>,
    traffic: Arc<Traffic>,
}

/// Opens the WebSocket within `timeout`; frames up to `max_frame` bytes (at least the shared
/// default) are accepted, bigger events are refused later by size.
pub async fn connect(
    url: &RelayUrl,
    timeout: Duration,
    max_frame: usize,
) -> Result<(Writer, Reader), SocketError> {
    let limit = max_frame.max(MAX_FRAME_BYTES);
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let fut = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false);
    let (ws, _response) = match tokio::time::timeout(timeout, fut).await {
        Err(_) => return Err(SocketError::ConnectTimeout(timeout)),
        Ok(Err(e)) => return Err(SocketError::Connect(e.to_string())),
        Ok(Ok(pair)) => pair,
    };
    let traffic = Arc::new(Traffic::default());
    let (sink, stream) = ws.split();
    Ok((
        Writer {
            sink,
            traffic: traffic.clone(),
        },
        Reader { stream, traffic },
    ))
}

impl Writer {
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

impl Reader {
    /// The next text frame; `Err` when the connection is gone.
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
                    return Err(SocketError::Lost(
                        reason
                            .map(|r| r.reason.to_string())
                            .filter(|r| !r.is_empty())
                            .unwrap_or_else(|| "closed by relay".into()),
                    ))
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
