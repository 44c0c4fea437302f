//! The bus contract of ngit-sync, shared by every service (DESIGN.md section 2).
//!
//! - [`subjects`]: subject, stream and bucket names from one prefix
//! - [`messages`]: payload types of every subject and KV value
//! - [`codec`]: bincode or JSON, readable either way
//! - [`headers`]: the readable `Ngit-*` headers
//! - [`bus`]: a service's handle on NATS with the publish helpers
//! - [`provision`]: idempotent creation of streams and buckets
//! - [`relay_url`]: relay URL normalization, validation and the relay key
//! - [`nip34`]: reading announcements and root events
//! - [`filters`]: layer L1–L3 filters and matching
//! - [`pagination`]: REQ + EOSE paging of a historic filter
//! - [`socket`]: a plain nostr WebSocket client
//! - [`status`]: ConnectionStatus, Health, layers, outcomes
//! - [`config`]: settings every service shares, and their parsing
//! - [`constants`]: every number of the design, named once
//! - [`process`]: tracing, signals, exit codes for the binaries
//! - [`service_api`]: NATS service API registration

pub mod bus;
pub mod codec;
pub mod config;
pub mod constants;
pub mod filters;
pub mod headers;
pub mod host;
pub mod messages;
pub mod nip34;
pub mod pagination;
pub mod process;
pub mod provision;
pub mod relay_url;
pub mod service_api;
pub mod socket;
pub mod status;
pub mod subjects;

pub use bus::{Bus, BusError};
pub use codec::Wire;
pub use config::{CommonConfig, ConfigError};
pub use relay_url::{RelayKey, RelayUrl};
pub use subjects::Names;

/// Connects to NATS and provisions every stream and bucket: the start of every service.
pub async fn connect_bus(config: &CommonConfig, service: &str) -> Result<Bus, StartError> {
    let client = config
        .nats
        .connect(service)
        .await
        .map_err(|e| StartError::Nats(e.to_string()))?;
    bus_for(client, config).await
}

/// Provisions the bus objects on an existing client.
pub async fn bus_for(client: async_nats::Client, config: &CommonConfig) -> Result<Bus, StartError> {
    let js = async_nats::jetstream::new(client.clone());
    let buckets = provision::provision(&js, &config.names, &config.bus).await?;
    Ok(Bus {
        client,
        js,
        names: config.names.clone(),
        wire: config.wire,
        buckets,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Provision(#[from] provision::ProvisionError),
}
