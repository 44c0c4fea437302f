//! `TestRelay`: an in-process nostr-relay-builder relay that can really go down and come back.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nostr::util::BoxedFuture;
use nostr::{Event, EventId, Filter, RelayUrl};
use nostr_relay_builder::builder::{PolicyResult, QueryPolicy, WritePolicy};
use nostr_relay_builder::prelude::{MemoryDatabase, MemoryDatabaseOptions, NostrDatabase};
use nostr_relay_builder::{LocalRelay, RelayBuilder};

use crate::counting_stream::CountingStream;
use crate::handshake;
use crate::net::bind_loopback;
use crate::server_thread::ServerThread;

pub use nostr_relay_builder::builder::RateLimit;

/// Events per minute per connection for [`TestRelayOptions::home`]: the sink bulk-writes, and
/// nostr-relay-builder's default of 60 would reject almost all of it.
pub const HOME_NOTES_PER_MINUTE: u32 = 1_000_000;

/// Knobs of a [`TestRelay`]; `None` keeps nostr-relay-builder's default.
#[derive(Debug, Clone, Default)]
pub struct TestRelayOptions {
    /// Max open REQs per connection and accepted EVENTs per minute per connection
    /// (default 500 / 60).
    pub rate_limit: Option<RateLimit>,
    /// Connections beyond this are accepted and then dropped.
    pub max_connections: Option<usize>,
    /// Limit applied to filters without one (default 500).
    pub default_filter_limit: Option<usize>,
    /// Cap on any filter's limit (default none).
    pub max_filter_limit: Option<usize>,
    /// Reject every client EVENT with `OK false "blocked: <reason>"`.
    pub reject_writes: Option<String>,
    /// Port to bind (default: a free one).
    pub port: Option<u16>,
}

impl TestRelayOptions {
    /// nostr-relay-builder defaults: a realistic remote relay.
    pub fn new() -> Self {
        Self::default()
    }

    /// A home relay that accepts bulk writes.
    pub fn home() -> Self {
        Self::new().rate_limit(RateLimit::default().max_reqs, HOME_NOTES_PER_MINUTE)
    }

    /// Max open REQs per connection and EVENTs per minute per connection.
    pub fn rate_limit(mut self, max_reqs: usize, notes_per_minute: u32) -> Self {
        self.rate_limit = Some(RateLimit {
            max_reqs,
            notes_per_minute,
        });
        self
    }

    /// Max simultaneous connections.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Limit for filters that carry none.
    pub fn default_filter_limit(mut self, limit: usize) -> Self {
        self.default_filter_limit = Some(limit);
        self
    }

    /// Cap on filter limits, to force clients to paginate.
    pub fn max_filter_limit(mut self, limit: usize) -> Self {
        self.max_filter_limit = Some(limit);
        self
    }

    /// Reject all client writes with this reason.
    pub fn reject_writes(mut self, reason: impl Into<String>) -> Self {
        self.reject_writes = Some(reason.into());
        self
    }

    /// Bind this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
}

/// What the relay saw; shared with the policies and the accept loop, kept across restarts.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicUsize,
    open_connections: AtomicUsize,
    writes: AtomicUsize,
    queries: Mutex<Vec<Filter>>,
    /// Shared with every connection's [`CountingStream`].
    bytes_sent: Arc<AtomicU64>,
}

/// Records each filter nostr-relay-builder is about to run; it has no other hook on REQs.
#[derive(Debug)]
struct QueryRecorder(Arc<Stats>);

impl QueryPolicy for QueryRecorder {
    fn admit_query<'a>(
        &'a self,
        query: &'a Filter,
        _: &'a SocketAddr,
    ) -> BoxedFuture<'a, PolicyResult> {
        self.0
            .queries
            .lock()
            .expect("stats lock")
            .push(query.clone());
        Box::pin(async { PolicyResult::Accept })
    }
}

/// Counts client EVENTs that passed the relay's checks, and rejects them when asked to.
#[derive(Debug)]
struct WriteRecorder {
    stats: Arc<Stats>,
    reject: Option<String>,
}

impl WritePolicy for WriteRecorder {
    fn admit_event<'a>(&'a self, _: &'a Event, _: &'a SocketAddr) -> BoxedFuture<'a, PolicyResult> {
        self.stats.writes.fetch_add(1, Ordering::SeqCst);
        let result = match &self.reject {
            Some(reason) => PolicyResult::Reject(reason.clone()),
            None => PolicyResult::Accept,
        };
        Box::pin(async move { result })
    }
}

/// Decrements the open-connection gauge however the connection task ends, including when the
/// runtime is torn down under it.
struct OpenConnection(Arc<Stats>);

impl OpenConnection {
    fn new(stats: Arc<Stats>) -> Self {
        stats.connections.fetch_add(1, Ordering::SeqCst);
        stats.open_connections.fetch_add(1, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A live relay: the thread field comes first so dropping tears the runtime down before the
/// `LocalRelay` handle goes.
#[derive(Debug)]
struct Running {
    thread: ServerThread,
    relay: LocalRelay,
}

/// An in-process relay on 127.0.0.1 (NIP-01 + NIP-77 from nostr-relay-builder 0.44.1).
///
/// It runs on its own runtime so [`stop`](Self::stop) closes the listener and cuts every open
/// connection, and [`start_again`](Self::start_again) serves the same database on the same port.
/// Stopped on drop.
#[derive(Debug)]
pub struct TestRelay {
    opts: TestRelayOptions,
    port: u16,
    database: MemoryDatabase,
    stats: Arc<Stats>,
    running: Option<Running>,
}

impl TestRelay {
    /// Starts a relay with `opts`.
    pub async fn start(opts: TestRelayOptions) -> anyhow::Result<Self> {
        let mut relay = Self {
            port: opts.port.unwrap_or(0),
            opts,
            // Unbounded: the default relay database is an LRU that would evict a big corpus.
            database: MemoryDatabase::with_opts(MemoryDatabaseOptions {
                events: true,
                max_events: None,
            }),
            stats: Arc::default(),
            running: None,
        };
        relay.start_again().await?;
        Ok(relay)
    }

    /// A home relay: accepts bulk writes ([`TestRelayOptions::home`]).
    pub async fn home() -> anyhow::Result<Self> {
        Self::start(TestRelayOptions::home()).await
    }

    /// A remote relay with nostr-relay-builder's defaults.
    pub async fn remote() -> anyhow::Result<Self> {
        Self::start(TestRelayOptions::new()).await
    }

    /// `ws://127.0.0.1:<port>`, no trailing slash.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// [`url`](Self::url) as a nostr `RelayUrl`.
    pub fn relay_url(&self) -> RelayUrl {
        RelayUrl::parse(&self.url()).expect("a loopback ws URL is valid")
    }

    /// The bound port; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the relay is accepting connections.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Closes the listener and cuts every connection; returns once the port refuses connections.
    /// The stored events are kept.
    pub fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.thread.stop();
        }
    }

    /// Serves the same events on the same port again; a no-op if running.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = bind_loopback(self.port).await?;
        self.port = listener.local_addr()?.port();
        let relay = LocalRelay::new(self.builder());
        let thread = ServerThread::start(&format!("relay-{}", self.port))?;
        thread.handle().spawn(accept_loop(
            listener,
            relay.clone(),
            Arc::clone(&self.stats),
        ));
        self.running = Some(Running { thread, relay });
        Ok(())
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start_again().await
    }

    fn builder(&self) -> RelayBuilder {
        let mut builder = RelayBuilder::default()
            .addr(std::net::Ipv4Addr::LOCALHOST.into())
            .port(self.port)
            .database(self.database.clone())
            .query_policy(QueryRecorder(Arc::clone(&self.stats)))
            .write_policy(WriteRecorder {
                stats: Arc::clone(&self.stats),
                reject: self.opts.reject_writes.clone(),
            });
        if let Some(rate_limit) = &self.opts.rate_limit {
            builder = builder.rate_limit(rate_limit.clone());
        }
        if let Some(max) = self.opts.max_connections {
            builder = builder.max_connections(max);
        }
        if let Some(limit) = self.opts.default_filter_limit {
            builder = builder.default_filter_limit(limit);
        }
        if let Some(limit) = self.opts.max_filter_limit {
            builder = builder.max_filter_limit(limit);
        }
        builder
    }

    /// Stores `events` straight into the database (no rate limit, no verification, works while
    /// stopped) and hands new ones to live subscriptions. Returns how many were new.
    ///
    /// Live delivery goes through a 1024-slot broadcast channel, so subscribers may miss events
    /// of a large batch; the stored set is always complete.
    pub async fn publish(&self, events: &[Event]) -> anyhow::Result<usize> {
        let mut new = 0;
        for event in events {
            if self.database.save_event(event).await?.is_success() {
                new += 1;
                if let Some(running) = &self.running {
                    running.relay.notify_event(event.clone());
                }
            }
        }
        Ok(new)
    }

    /// Stored events matching `filter`, newest first (the filter's limit applies; none means all).
    pub async fn events(&self, filter: Filter) -> anyhow::Result<Vec<Event>> {
        Ok(self.database.query(filter).await?.into_iter().collect())
    }

    /// Ids of every stored event.
    pub async fn event_ids(&self) -> anyhow::Result<HashSet<EventId>> {
        Ok(self
            .database
            .query(Filter::new())
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect())
    }

    /// Number of stored events.
    pub async fn count(&self) -> anyhow::Result<usize> {
        Ok(self.database.count(Filter::new()).await?)
    }

    /// The backing database, shared across restarts.
    pub fn database(&self) -> &MemoryDatabase {
        &self.database
    }

    /// WebSocket connections accepted since start (across restarts).
    pub fn connection_count(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.stats.open_connections.load(Ordering::SeqCst)
    }

    /// REQ filters the relay ran against its database: a REQ with three filters counts three.
    /// REQs refused earlier (too many REQs, over-long sub id) and NIP-77 NEG-OPENs are not counted.
    pub fn req_count(&self) -> usize {
        self.stats.queries.lock().expect("stats lock").len()
    }

    /// The filters behind [`req_count`](Self::req_count), in arrival order, with the relay's
    /// default/max limit already applied.
    pub fn queries(&self) -> Vec<Filter> {
        self.stats.queries.lock().expect("stats lock").clone()
    }

    /// Client EVENTs that passed rate limit, id and signature checks (duplicates included).
    pub fn write_count(&self) -> usize {
        self.stats.writes.load(Ordering::SeqCst)
    }

    /// Bytes sent to clients after the WebSocket upgrade, framing included (across restarts).
    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes_sent.load(Ordering::Relaxed)
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: std::net::TcpListener, relay: LocalRelay, stats: Arc<Stats>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("test relay cannot adopt its listener: {e}");
            return;
        }
    };
    loop {
        let (mut stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Transient (e.g. EMFILE); back off instead of spinning.
                tracing::warn!("test relay accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let relay = relay.clone();
        let open = OpenConnection::new(Arc::clone(&stats));
        let written = Arc::clone(&stats.bytes_sent);
        tokio::spawn(async move {
            let _open = open;
            if let Err(e) = handshake::upgrade(&mut stream).await {
                tracing::debug!(%addr, "test relay upgrade failed: {e:#}");
                return;
            }
            let stream = CountingStream::new(stream, written);
            if let Err(e) = relay.take_connection(stream, addr).await {
                tracing::debug!(%addr, "test relay connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests;
