//! Registration with the NATS service API, so `nats micro ls` lists every running service.
//! Each instance carries its host and pid as metadata: with several replicas of a service,
//! `ngit-sync ping <service> --here` (a container's health check) finds its own.

use std::collections::HashMap;

use async_nats::service::{Service, ServiceExt};

use crate::subjects::Names;

/// Metadata key of the instance's hostname.
pub const META_HOST: &str = "host";
/// Metadata key of the instance's process id.
pub const META_PID: &str = "pid";

/// Starts the service-API responder of `service`; keep the returned handle alive while running.
pub async fn register(
    client: &async_nats::Client,
    names: &Names,
    service: &str,
    description: &str,
) -> Result<Service, async_nats::Error> {
    let mut metadata = HashMap::from([(META_PID.to_string(), std::process::id().to_string())]);
    if let Some(host) = crate::host::hostname(&crate::config::env()) {
        metadata.insert(META_HOST.to_string(), host);
    }
    client
        .service_builder()
        .description(description)
        .metadata(metadata)
        .start(
            names.service_name(service),
            env!("CARGO_PKG_VERSION").to_string(),
        )
        .await
}
