//! `ngit-sync ping <service>`: a NATS service-API ping, the health check of a service container.

use std::time::Duration;

use ngit_sync_shared::Names;

/// Services that register with the service API.
pub const SERVICES: [&str; 5] = [
    "discovery",
    "connector",
    "sink",
    "batch-tracker",
    "metrics-exporter",
];

const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The service API's subject prefix (ADR-32); async-nats keeps its constant private.
const SERVICE_API_PREFIX: &str = "$SRV";

/// Ok when an instance of `service` answers `$SRV.PING.<name>` within 2 s.
/// Needs only a connection: a health check run every few seconds must not provision anything.
pub async fn ping(client: &async_nats::Client, names: &Names, service: &str) -> Result<(), String> {
    if !SERVICES.contains(&service) {
        return Err(format!(
            "unknown service {service:?} (one of {})",
            SERVICES.join(", ")
        ));
    }
    let subject = format!(
        "{}.PING.{}",
        SERVICE_API_PREFIX,
        names.service_name(service)
    );
    match tokio::time::timeout(PING_TIMEOUT, client.request(subject, bytes::Bytes::new())).await {
        Ok(Ok(reply)) => {
            println!("{}", String::from_utf8_lossy(&reply.payload));
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{service} did not answer: {e}")),
        Err(_) => Err(format!("{service} did not answer within {PING_TIMEOUT:?}")),
    }
}
