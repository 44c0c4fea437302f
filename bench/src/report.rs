//! The figures of one run: one JSON object on stdout and a short summary for people on stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Everything a run measured. Fields that do not apply to the scenario are left out of the JSON.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// Source relays in the world.
    pub relays: usize,
    /// Of those, relays without NIP-77.
    pub relays_without_nip77: usize,
    pub repos: usize,
    /// Events the home relay had to receive (related events not already there).
    pub events: usize,
    pub seed: u64,
    /// The scenario's own duration (see docs/benchmarks.md for what each one times).
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<f64>,
    /// cold: start → the home relay holds every event (the rest of `seconds` is status settling).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_events_seconds: Option<f64>,
    /// Bytes the source relays sent during the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_from_sources: Option<u64>,
    /// Of those, bytes from the relays without NIP-77 (always synced by REQ).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_from_sources_without_nip77: Option<u64>,
    /// Peak resident memory (VmHWM) of each service process.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub peak_rss_bytes: BTreeMap<String, u64>,
    /// CPU time (user + system) of each service process over the run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_seconds: BTreeMap<String, f64>,
    /// Memory nats-server reported at the end (`/varz` mem).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_server_rss_bytes: Option<u64>,
    /// Whether the home relay ended with exactly the expected id set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold_bytes_from_sources: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub naive_seconds: Option<f64>,
    /// cold seconds / limit seconds (1.0 would be as fast as the home relay can ingest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_limit: Option<f64>,
    /// naive seconds / cold seconds (how many times faster than a hand-written script).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_naive: Option<f64>,
    /// Bytes from sources of this scenario / of cold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_ratio_vs_cold: Option<f64>,
    /// Seconds of this scenario / of cold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_ratio_vs_cold: Option<f64>,

    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms_p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms_max: Option<f64>,

    /// scale: connector memory growth per relay session once all are idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_idle_session: Option<u64>,
    /// scale: relay sessions held (all Connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_sessions: Option<usize>,
    /// scale: CPU of all connectors while idle, percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_cpu_percent: Option<f64>,

    /// failover: SIGKILL → every relay of the killed worker Connected again under a new owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover_seconds: Option<f64>,
    /// failover: SIGKILL → every relay of the killed worker leased by another worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takeover_seconds: Option<f64>,
    /// failover: related events missing from the home relay at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_lost: Option<usize>,
    /// failover: busiest worker's relay count / mean, before the kill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_relay_share_vs_mean: Option<f64>,
    /// failover: relays the killed worker held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relays_moved: Option<usize>,

    /// Whether sources carry superseded announcements (see `--no-stale-announcements`).
    pub stale_announcements: bool,
    /// Settings given to the services beyond the defaults.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
}

impl Report {
    /// The JSON object, on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// A few lines for a person.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {:.2} s{} (world: {} events, {} relays, {} without NIP-77)",
            self.scenario,
            self.seconds,
            self.events_per_second
                .map(|r| format!(", {r:.0} events/s"))
                .unwrap_or_default(),
            self.events,
            self.relays,
            self.relays_without_nip77,
        );
        if let Some(b) = self.bytes_from_sources {
            let _ = writeln!(s, "  bytes from sources: {}", mib(b));
        }
        if !self.peak_rss_bytes.is_empty() {
            let list: Vec<String> = self
                .peak_rss_bytes
                .iter()
                .map(|(k, v)| format!("{k} {}", mib(*v)))
                .collect();
            let _ = writeln!(s, "  peak RSS: {}", list.join(", "));
        }
        let figures = [
            ("cold/limit", self.ratio_vs_limit, "target ≤ 1.5"),
            ("naive/cold", self.ratio_vs_naive, "target ≥ 3"),
            ("bytes vs cold", self.bytes_ratio_vs_cold, "target < 0.02"),
            ("latency p50 ms", self.latency_ms_p50, ""),
            ("latency p99 ms", self.latency_ms_p99, "target < 1000"),
            ("failover s", self.failover_seconds, "target ≤ 15"),
            (
                "max share/mean",
                self.max_relay_share_vs_mean,
                "target ≤ 1.2",
            ),
            ("idle CPU %", self.idle_cpu_percent, ""),
        ];
        for (name, value, target) in figures {
            if let Some(v) = value {
                let _ = writeln!(s, "  {name}: {v} {target}");
            }
        }
        if let Some(b) = self.bytes_per_idle_session {
            let _ = writeln!(
                s,
                "  memory per idle session: {:.1} KiB (target < 200 KiB)",
                b as f64 / 1024.0
            );
        }
        if let Some(lost) = self.events_lost {
            let _ = writeln!(s, "  events lost: {lost}");
        }
        if self.complete == Some(false) {
            let _ = writeln!(
                s,
                "  INCOMPLETE: the home relay does not hold the expected set"
            );
        }
        s
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_issue_fields_and_leaves_out_what_does_not_apply() {
        let mut report = Report {
            scenario: "limit".into(),
            relays: 20,
            events: 5_000,
            seconds: 2.5,
            events_per_second: Some(2_000.0),
            bytes_from_sources: Some(123),
            ratio_vs_limit: Some(1.4),
            ..Report::default()
        };
        report.peak_rss_bytes.insert("sink".into(), 42);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for key in [
            "scenario",
            "relays",
            "events",
            "seconds",
            "events_per_second",
            "bytes_from_sources",
            "peak_rss_bytes",
            "ratio_vs_limit",
        ] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert_eq!(json["peak_rss_bytes"]["sink"], 42);
        assert!(json.get("latency_ms_p99").is_none());
        assert!(json.get("failover_seconds").is_none());
        assert!(report.summary().contains("cold/limit: 1.4"));
    }
}
