//! The embedded home relay of `ngit-sync up`: nostr-relay-builder over nostr-lmdb, on loopback.

use std::net::{IpAddr, Ipv4Addr};
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
    pub async fn start(data_dir: &Path) -> Result<HomeRelay, HomeRelayError> {
        let path = data_dir.join("home-relay");
        std::fs::create_dir_all(&path).map_err(|e| HomeRelayError::Database(path.display().to_string(), e.to_string()))?;
        let db = nostr_lmdb::NostrLMDB::open(&path).map_err(|e| HomeRelayError::Database(path.display().to_string(), e.to_string()))?;
        let port = pick_port(PREFERRED_PORT);
        let builder = RelayBuilder::default()
            .addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .port(port)
            .database(db)
            .rate_limit(RateLimit { max_reqs: 500, notes_per_minute: WRITES_PER_MINUTE });
        let relay = LocalRelay::new(builder);
        relay.run().await.map_err(|e| HomeRelayError::Start(e.to_string()))?;
        let url = relay.url().await.to_string().trim_end_matches('/').to_string();
        tracing::info!(%url, db = %path.display(), "embedded home relay started");
        Ok(HomeRelay { relay, url })
    }

    pub fn stop(&self) {
        self.relay.shutdown();
    }
}
