//! A live copy of `ngit_sync_status` (batch-tracker's view of every relay), with the moment each
//! value arrived, so phases are timed by what the system itself reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_nats::jetstream::kv::Operation;
use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::StatusReport;
use ngit_sync_shared::status::ConnectionStatus;
use ngit_sync_shared::{Bus, RelayUrl};
use tokio::task::JoinHandle;

/// A relay's latest status and when the bench saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub report: StatusReport,
    pub at: Instant,
}

type Statuses = Arc<Mutex<HashMap<String, Seen>>>;

/// Follows the status bucket until dropped.
pub struct StatusWatch {
    statuses: Statuses,
    task: JoinHandle<()>,
}

impl StatusWatch {
    pub async fn start(bus: &Bus) -> anyhow::Result<Self> {
        let mut entries = bus.buckets.status.watch_with_history(">").await?;
        let statuses: Statuses = Arc::default();
        let shared = Arc::clone(&statuses);
        let task = tokio::spawn(async move {
            while let Some(Ok(entry)) = entries.next().await {
                let mut map = shared.lock().expect("status lock");
                if entry.operation != Operation::Put {
                    map.remove(&entry.key);
                    continue;
                }
                match codec::decode::<StatusReport>(&entry.value) {
                    Ok(report) => {
                        map.insert(
                            entry.key.clone(),
                            Seen {
                                report,
                                at: Instant::now(),
                            },
                        );
                    }
                    Err(e) => tracing::warn!(key = %entry.key, error = %e, "undecodable status"),
                }
            }
        });
        Ok(Self { statuses, task })
    }

    /// The latest status of every relay in `keys` (missing ones are absent).
    pub fn get(&self, keys: &[String]) -> Vec<Option<Seen>> {
        let map = self.statuses.lock().expect("status lock");
        keys.iter().map(|k| map.get(k).cloned()).collect()
    }

    /// Whether every relay in `keys` satisfies `pred`.
    pub fn all(&self, keys: &[String], pred: impl Fn(&Seen) -> bool) -> bool {
        self.get(keys).iter().all(|s| s.as_ref().is_some_and(&pred))
    }

    /// Whether every relay in `keys` is Connected (ConnectedDegraded counts: sync is over).
    pub fn all_connected(&self, keys: &[String]) -> bool {
        self.all(keys, |s| is_done(s.report.status))
    }

    /// How many relays in `keys` are in each status, for progress and error messages.
    pub fn census(&self, keys: &[String]) -> String {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for seen in self.get(keys) {
            let name = seen.map_or("unknown".to_string(), |s| format!("{:?}", s.report.status));
            *counts.entry(name).or_default() += 1;
        }
        let mut parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        parts.sort();
        parts.join(", ")
    }

    /// Relays in `keys` that ended ConnectedDegraded.
    pub fn degraded(&self, keys: &[String]) -> usize {
        self.get(keys)
            .iter()
            .filter(|s| {
                s.as_ref()
                    .is_some_and(|s| s.report.status == ConnectionStatus::ConnectedDegraded)
            })
            .count()
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connected or ConnectedDegraded: no sync is running for the relay.
pub fn is_done(status: ConnectionStatus) -> bool {
    matches!(
        status,
        ConnectionStatus::Connected | ConnectionStatus::ConnectedDegraded
    )
}

/// The status bucket's keys of relay URLs.
pub fn keys_of(urls: &[String]) -> anyhow::Result<Vec<String>> {
    urls.iter()
        .map(|u| Ok(RelayUrl::parse(u)?.key().as_str().to_string()))
        .collect()
}
