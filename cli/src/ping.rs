//! `ngit-sync ping <service> [--here]`: a NATS service-API ping, the health check of a
//! service container. Every instance that answers is listed; `--here` succeeds only if one
//! on this host answered, so among several connector replicas each container checks its own.

use std::time::Duration;

use futures::StreamExt;
use ngit_sync_shared::service_api::{META_HOST, META_PID};
use ngit_sync_shared::Names;

/// Services that register with the service API.
pub const SERVICES: [&str; 5] = [
    "discovery",
    "connector",
    "sink",
    "batch-tracker",
    "metrics-exporter",
];

/// How long the first answer may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// After the first answer, how long the others are gathered.
const GATHER: Duration = Duration::from_millis(300);

/// The service API's subject prefix (ADR-32); async-nats keeps its constant private.
const SERVICE_API_PREFIX: &str = "$SRV";

/// One answering instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub version: String,
    pub host: Option<String>,
    pub pid: Option<String>,
}

impl Instance {
    /// Reads a ping answer (`io.nats.micro.v1.ping_response`).
    pub fn parse(payload: &[u8]) -> Option<Instance> {
        let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_string);
        let meta = |key: &str| {
            v.get("metadata")
                .and_then(|m| m.get(key))
                .and_then(|x| x.as_str())
                .map(str::to_string)
        };
        Some(Instance {
            id: text("id")?,
            version: text("version").unwrap_or_default(),
            host: meta(META_HOST),
            pid: meta(META_PID),
        })
    }

    pub fn line(&self, service: &str) -> String {
        format!(
            "{service} {} id={} host={} pid={}",
            self.version,
            self.id,
            self.host.as_deref().unwrap_or("-"),
            self.pid.as_deref().unwrap_or("-")
        )
    }
}

/// Every instance of `service` that answers: waits up to 2 s for the first, then a moment
/// for the rest. Needs only a connection: a health check run every few seconds must not
/// provision anything.
pub async fn instances(
    client: &async_nats::Client,
    names: &Names,
    service: &str,
) -> Result<Vec<Instance>, String> {
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
    let inbox = client.new_inbox();
    let fail = |e: &dyn std::fmt::Display| format!("cannot ping {service}: {e}");
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| fail(&e))?;
    client
        .publish_with_reply(subject, inbox, bytes::Bytes::new())
        .await
        .map_err(|e| fail(&e))?;
    let mut found = Vec::new();
    let mut until = tokio::time::Instant::now() + PING_TIMEOUT;
    while let Ok(Some(message)) = tokio::time::timeout_at(until, answers.next()).await {
        if found.is_empty() {
            until = tokio::time::Instant::now() + GATHER;
        }
        match Instance::parse(&message.payload) {
            Some(instance) => found.push(instance),
            None => tracing::debug!(%service, "unreadable ping answer"),
        }
    }
    Ok(found)
}

/// Ok when an instance of `service` answers (on host `here`, when given); prints each.
pub async fn ping(
    client: &async_nats::Client,
    names: &Names,
    service: &str,
    here: Option<&str>,
) -> Result<(), String> {
    let found = instances(client, names, service).await?;
    for instance in &found {
        println!("{}", instance.line(service));
    }
    if found.is_empty() {
        return Err(format!("{service} did not answer within {PING_TIMEOUT:?}"));
    }
    match here {
        Some(host) if !found.iter().any(|i| i.host.as_deref() == Some(host)) => Err(format!(
            "no {service} on host {host:?} answered ({} elsewhere)",
            found.len()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_answer_gives_id_version_host_and_pid() {
        let payload = br#"{"type":"io.nats.micro.v1.ping_response","name":"ngit-sync-connector","id":"abc","version":"0.1.0","metadata":{"host":"box-1","pid":"42"}}"#;
        let i = Instance::parse(payload).unwrap();
        assert_eq!(
            i,
            Instance {
                id: "abc".into(),
                version: "0.1.0".into(),
                host: Some("box-1".into()),
                pid: Some("42".into()),
            }
        );
        assert_eq!(
            i.line("connector"),
            "connector 0.1.0 id=abc host=box-1 pid=42"
        );
        assert!(Instance::parse(b"not json").is_none());
    }
}
