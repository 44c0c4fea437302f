//! Registration with the NATS service API, so `nats micro ls` lists every running service.

use async_nats::service::{Service, ServiceExt};

use crate::subjects::Names;

/// Starts the service-API responder of `service`; keep the returned handle alive while running.
pub async fn register(
    client: &async_nats::Client,
    names: &Names,
    service: &str,
    description: &str,
) -> Result<Service, async_nats::Error> {
    client
        .service_builder()
        .description(description)
        .start(
            names.service_name(service),
            env!("CARGO_PKG_VERSION").to_string(),
        )
        .await
}
