//! `RawRelay`: a scripted relay over tokio-tungstenite serving a fixed set of raw events.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nostr::{Event, JsonUtil};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use self::protocol::{respond, Reply, StoredEvent};
use crate::net::bind_loopback;
use crate::server_thread::ServerThread;

/// The reply to a NIP-77 `NEG-OPEN`, i.e. how a relay without negentropy says so
/// (deps-spike §6.4 lists what nostr-sdk 0.44 makes of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NegBehaviour {
    /// strfry style `["NOTICE","ERROR: bad msg: unknown cmd"]`:
    /// nostr-sdk fails at once with `NegentropyNotSupported`.
    #[default]
    NoticeBadMsg,
    /// nostr-rs-relay style `["NOTICE","could not parse command"]`: nostr-sdk times out.
    NoticeUnparsable,
    /// `["NEG-ERR",<sub>,"blocked: negentropy disabled"]`: nostr-sdk returns `RelayMessage`.
    NegErr,
    /// `["CLOSED",<sub>,"unsupported: negentropy"]`: nostr-sdk ignores it and times out.
    Closed,
    /// No reply at all: nostr-sdk times out.
    Silence,
    /// Drops the connection.
    Disconnect,
    /// Speaks NIP-77 truthfully over the stored events, then answers every REQ for `ids` with
    /// EOSE alone: a relay that advertises events it never serves.
    Lie,
}

/// Behaviour of a [`RawRelay`].
#[derive(Debug, Clone, Default)]
pub struct RawRelayOptions {
    /// Reply to `NEG-OPEN`.
    pub neg: NegBehaviour,
    /// Answer the first N REQs (counted over all connections and restarts) with
    /// `["CLOSED",<sub>,"rate-limited: slow down"]`.
    pub rate_limit_reqs_first: usize,
    /// Send events that do not parse as nostr events with every REQ (subject to `since`/`until`
    /// when they carry a numeric `created_at`); otherwise they are never sent.
    pub serve_unconditionally: bool,
    /// Answer every REQ with every stored event in its time range, whatever else the filter
    /// says: a relay that sends what nobody asked for.
    pub ignore_filters: bool,
    /// Complete the WebSocket handshake, then close at once.
    pub accept_then_close: bool,
    /// Cap on events per filter, like a relay's configured maximum, to force pagination.
    pub max_limit: Option<usize>,
    /// Port to bind (default: a free one).
    pub port: Option<u16>,
}

impl RawRelayOptions {
    /// Defaults: serve parseable events, strfry-style NOTICE on `NEG-OPEN`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reply to `NEG-OPEN`.
    pub fn neg(mut self, neg: NegBehaviour) -> Self {
        self.neg = neg;
        self
    }

    /// Refuse the first `n` REQs as rate-limited.
    pub fn rate_limit_reqs_first(mut self, n: usize) -> Self {
        self.rate_limit_reqs_first = n;
        self
    }

    /// Also send events that do not parse.
    pub fn serve_unconditionally(mut self) -> Self {
        self.serve_unconditionally = true;
        self
    }

    /// Send every stored event with every REQ, ignoring kinds, tags and authors.
    pub fn ignore_filters(mut self) -> Self {
        self.ignore_filters = true;
        self
    }

    /// Close every connection right after the handshake.
    pub fn accept_then_close(mut self) -> Self {
        self.accept_then_close = true;
        self
    }

    /// At most `max` events per filter.
    pub fn max_limit(mut self, max: usize) -> Self {
        self.max_limit = Some(max);
        self
    }

    /// Bind this port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// One REQ as the relay received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedReq {
    /// Subscription id (empty if the client sent none).
    pub subscription_id: String,
    /// The filters, untouched.
    pub filters: Vec<Value>,
}

/// State shared by all connections; survives restarts.
#[derive(Debug, Default)]
struct Shared {
    opts: RawRelayOptions,
    events: Mutex<Vec<StoredEvent>>,
    connections: AtomicUsize,
    bytes_sent: AtomicU64,
    reqs: Mutex<Vec<RecordedReq>>,
    received: Mutex<Vec<String>>,
}

/// A relay that serves a fixed set of raw events and replies to NIP-77 in a chosen way.
///
/// REQs get the matching events newest first (ties by id), honouring `limit`, `since` and
/// `until`, then EOSE; subscriptions end there (no live events). `EVENT`s are refused as
/// read-only. Every message received is recorded. Runs on its own runtime: stopping cuts every
/// connection. Stopped on drop.
#[derive(Debug)]
pub struct RawRelay {
    shared: Arc<Shared>,
    port: u16,
    thread: Option<ServerThread>,
}

impl RawRelay {
    /// Starts serving `events`, raw JSON strings (e.g. `serde_json::Value::to_string()`), which
    /// may be invalid: bad signature, wrong id, not even an event.
    pub async fn start(
        events: impl IntoIterator<Item = String>,
        opts: RawRelayOptions,
    ) -> anyhow::Result<Self> {
        let port = opts.port.unwrap_or(0);
        let shared = Shared {
            events: Mutex::new(events.into_iter().map(StoredEvent::new).collect()),
            opts,
            ..Default::default()
        };
        let mut relay = Self {
            shared: Arc::new(shared),
            port,
            thread: None,
        };
        relay.start_again().await?;
        Ok(relay)
    }

    /// Starts serving valid events.
    pub async fn serving(events: &[Event], opts: RawRelayOptions) -> anyhow::Result<Self> {
        Self::start(events.iter().map(JsonUtil::as_json), opts).await
    }

    /// `ws://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The bound port; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the relay accepts connections.
    pub fn is_running(&self) -> bool {
        self.thread.is_some()
    }

    /// Adds events to the served set.
    pub fn add_events(&self, events: impl IntoIterator<Item = String>) {
        let mut stored = self.shared.events.lock().expect("events lock");
        stored.extend(events.into_iter().map(StoredEvent::new));
    }

    /// Closes the listener and every connection; returns once the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut thread) = self.thread.take() {
            thread.stop();
        }
    }

    /// Listens again on the same port; a no-op if running.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.thread.is_some() {
            return Ok(());
        }
        let listener = bind_loopback(self.port).await?;
        self.port = listener.local_addr()?.port();
        let thread = ServerThread::start(&format!("raw-relay-{}", self.port))?;
        thread
            .handle()
            .spawn(accept_loop(listener, Arc::clone(&self.shared)));
        self.thread = Some(thread);
        Ok(())
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again().await
    }

    /// TCP connections accepted (WebSocket handshake not necessarily completed).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// REQ messages received (one per REQ, whatever its number of filters).
    pub fn req_count(&self) -> usize {
        self.shared.reqs.lock().expect("reqs lock").len()
    }

    /// Every REQ received, in order.
    pub fn reqs(&self) -> Vec<RecordedReq> {
        self.shared.reqs.lock().expect("reqs lock").clone()
    }

    /// Bytes of text frames sent to clients.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.bytes_sent.load(Ordering::SeqCst)
    }

    /// Every text message received, in order.
    pub fn received(&self) -> Vec<String> {
        self.shared.received.lock().expect("received lock").clone()
    }
}

impl Drop for RawRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("raw relay cannot adopt its listener: {e}");
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                shared.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            Err(e) => {
                tracing::warn!("raw relay accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    if shared.opts.accept_then_close {
        let _ = ws.close(None).await;
        return;
    }
    let mut lying = lying::Sessions::default();
    while let Some(Ok(message)) = ws.next().await {
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        shared
            .received
            .lock()
            .expect("received lock")
            .push(text.clone());
        let reply = lying
            .handle(&shared, &text)
            .unwrap_or_else(|| respond(&shared, &text));
        match reply {
            Reply::Disconnect => return,
            Reply::Send(messages) => {
                for message in messages {
                    shared
                        .bytes_sent
                        .fetch_add(message.len() as u64, Ordering::SeqCst);
                    if ws.feed(Message::text(message)).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

mod lying;
mod protocol;
#[cfg(test)]
mod tests;
