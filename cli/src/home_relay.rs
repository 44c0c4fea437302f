//! The embedded home relay of `ngit-sync up` and `ngit-sync relay`: nostr-relay-builder over
//! nostr-lmdb.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use nostr_relay_builder::builder::RateLimit;
use nostr_relay_builder::{LocalRelay, RelayBuilder};

use crate::local_nats::pick_port;

/// The port the embedded relay prefers; another free one is taken when it is busy.
pub const PREFERRED_PORT: u16 = 7777;

/// Writes per minute per connection: the sink writes in bulk, the builder's default is 60.
const WRITES_PER_MINUTE: u32 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum HomeRelayError {
    #[error("cannot open the home relay database at {0}: {1}")]
    Database(String, String),
    #[error("cannot start the home relay: {0}")]
    Start(String),
}

pub struct HomeRelay {
    relay: LocalRelay,
    pub url: String,
}

impl HomeRelay {
    /// On loopback, at the preferred port or a free one.
    pub async fn start(data_dir: &Path) -> Result<HomeRelay, HomeRelayError> {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), pick_port(PREFERRED_PORT));
        Self::start_on(addr, &data_dir.join("home-relay")).await
    }

    /// At `addr`, storing events in an LMDB database at `path`.
    pub async fn start_on(addr: SocketAddr, path: &Path) -> Result<HomeRelay, HomeRelayError> {
        let path = path.to_path_buf();
        std::fs::create_dir_all(&path)
            .map_err(|e| HomeRelayError::Database(path.display().to_string(), e.to_string()))?;
        let db = nostr_lmdb::NostrLMDB::open(&path)
            .map_err(|e| HomeRelayError::Database(path.display().to_string(), e.to_string()))?;
        let builder = RelayBuilder::default()
            .addr(addr.ip())
            .port(addr.port())
            .database(db)
            .rate_limit(RateLimit {
                max_reqs: 500,
                notes_per_minute: WRITES_PER_MINUTE,
            });
        let relay = LocalRelay::new(builder);
        relay
            .run()
            .await
            .map_err(|e| HomeRelayError::Start(e.to_string()))?;
        let url = relay
            .url()
            .await
            .to_string()
            .trim_end_matches('/')
            .to_string();
        tracing::info!(%url, db = %path.display(), "embedded home relay started");
        Ok(HomeRelay { relay, url })
    }

    pub fn stop(&self) {
        self.relay.shutdown();
    }
}
