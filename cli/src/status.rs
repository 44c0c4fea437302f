//! `ngit-sync status`: one line per relay (URL, status, health, failures, owner, last change),
//! read from the KV buckets.

use std::collections::BTreeMap;

use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{LeaseEntry, RelayEntry, StatusReport};
use ngit_sync_shared::Bus;

/// What `status` knows of one relay.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayLine {
    pub url: String,
    pub bootstrap: bool,
    pub repos: u32,
    pub status: Option<StatusReport>,
    pub owner: Option<String>,
}

async fn values<T: serde::de::DeserializeOwned>(
    store: &async_nats::jetstream::kv::Store,
) -> Result<BTreeMap<String, T>, String> {
    let mut out = BTreeMap::new();
    let mut keys = store.keys().await.map_err(|e| e.to_string())?.boxed();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        if let Some(bytes) = store.get(&key).await.map_err(|e| e.to_string())? {
            if let Ok(v) = codec::decode::<T>(&bytes) {
                out.insert(key, v);
            }
        }
    }
    Ok(out)
}

/// Reads every relay known to discovery, batch-tracker or the leases.
pub async fn collect(bus: &Bus) -> Result<Vec<RelayLine>, String> {
    let relays: BTreeMap<String, RelayEntry> = values(&bus.buckets.relays).await?;
    let statuses: BTreeMap<String, StatusReport> = values(&bus.buckets.status).await?;
    let leases: BTreeMap<String, LeaseEntry> = values(&bus.buckets.leases).await?;
    let mut lines: Vec<RelayLine> = relays
        .iter()
        .map(|(key, r)| RelayLine {
            url: r.url.to_string(),
            bootstrap: r.bootstrap,
            repos: r.repos,
            status: statuses.get(key).cloned(),
            owner: leases
                .get(key)
                .map(|l| l.worker.clone())
                .or_else(|| statuses.get(key).and_then(|s| s.owner.clone())),
        })
        .collect();
    lines.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(lines)
}

/// Formats lines as a table a person can read.
pub fn render(lines: &[RelayLine], now_ms: u64) -> String {
    let mut out = format!(
        "{:<48} {:<18} {:<13} {:>8} {:<24} {}\n",
        "RELAY", "STATUS", "HEALTH", "FAILURES", "OWNER", "LAST CHANGE"
    );
    for l in lines {
        let (status, health, failures, since) = match &l.status {
            Some(s) => (
                s.status.as_str(),
                s.health.as_ref().map_or("-", |h| h.state.as_str()),
                s.health.as_ref().map_or(0, |h| h.consecutive_failures),
                ago(now_ms.saturating_sub(s.since_ms)),
            ),
            None => ("unknown", "-", 0, "-".to_string()),
        };
        let url = if l.bootstrap {
            format!("{} (bootstrap)", l.url)
        } else {
            l.url.clone()
        };
        out.push_str(&format!(
            "{url:<48} {status:<18} {health:<13} {failures:>8} {:<24} {since}\n",
            l.owner.as_deref().unwrap_or("-")
        ));
    }
    if lines.is_empty() {
        out.push_str("(no relays: discovery has found none yet)\n");
    }
    out
}

fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::messages::HealthReport;
    use ngit_sync_shared::status::{ConnectionStatus, Health};

    #[test]
    fn a_line_shows_status_health_failures_owner_and_age() {
        let line = RelayLine {
            url: "wss://relay.example".into(),
            bootstrap: false,
            repos: 2,
            status: Some(StatusReport {
                status: ConnectionStatus::Connected,
                since_ms: 1_000,
                session: None,
                open_batches: 0,
                failed_batches: 0,
                owner: Some("w1".into()),
                health: Some(HealthReport {
                    state: Health::Healthy,
                    consecutive_failures: 3,
                    next_attempt_ms: None,
                    rate_limited_until_ms: None,
                }),
            }),
            owner: Some("w1".into()),
        };
        let text = render(&[line], 121_000);
        let row = text.lines().nth(1).unwrap();
        for part in [
            "wss://relay.example",
            "connected",
            "healthy",
            "3",
            "w1",
            "2m ago",
        ] {
            assert!(row.contains(part), "{part} missing in {row}");
        }
        assert!(render(&[], 0).contains("no relays"));
    }
}
