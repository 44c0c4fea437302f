//! The Prometheus metrics (DESIGN.md section 8 plus the operator metrics of
//! `docs/monitoring.md`), projected from the [`View`] at every scrape.
//!
//! Every gauge and counter is reset and set again from the view, so aggregates never drift
//! and a forgotten relay's series disappear with it. Only the histogram is fed as batches end,
//! because an observation cannot be recomputed.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use ngit_sync_shared::status::Outcome;

use crate::view::{self, BatchDone, View};

/// Bucket bounds of `ngit_sync_historic_sync_seconds`: an L1 REQ on a small relay takes well
/// under a second, an L3 negentropy run on a big one can take many minutes, a batch without
/// EOSE fails at 60 s.
const SYNC_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

pub struct Metrics {
    registry: Registry,
    relay_connected: IntGaugeVec,
    connection_attempts: IntCounterVec,
    relay_status: IntGaugeVec,
    relay_failures: IntGaugeVec,
    events_synced: IntCounter,
    relays_tracked: IntGauge,
    relays_connected: IntGauge,
    relays_dead: IntGauge,
    events_received: IntCounterVec,
    events_dropped: IntCounterVec,
    batches_open: IntGaugeVec,
    batches: IntCounterVec,
    historic_sync: HistogramVec,
    /// A vector without labels, so the series is absent until the stream was read once.
    sink_lag: IntGaugeVec,
    workers: IntGauge,
    relays_per_worker: IntGaugeVec,
    lease_handoffs: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            reg(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            reg(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            reg(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let events_synced = IntCounter::new(
            "ngit_sync_events_synced_total",
            "Events newly saved on the home relay",
        )?;
        registry.register(Box::new(events_synced.clone()))?;
        let lease_handoffs = IntCounter::new(
            "ngit_sync_lease_handoffs_total",
            "Relays claimed by a worker other than the one that claimed them last",
        )?;
        registry.register(Box::new(lease_handoffs.clone()))?;
        let historic_sync = HistogramVec::new(
            HistogramOpts::new(
                "ngit_sync_historic_sync_seconds",
                "Time from batch.opened to batch.confirmed or batch.failed",
            )
            .buckets(SYNC_BUCKETS.to_vec()),
            &["layer", "result"],
        )?;
        registry.register(Box::new(historic_sync.clone()))?;
        Ok(Metrics {
            relay_connected: gauge_vec(
                "ngit_sync_relay_connected",
                "ConnectionStatus: 0 disconnected, 1 connecting, 2 syncing, 3 connected, 4 connected degraded",
                &["relay"],
            )?,
            connection_attempts: counter_vec(
                "ngit_sync_connection_attempts_total",
                "Finished connection attempts by result",
                &["relay", "result"],
            )?,
            relay_status: gauge_vec(
                "ngit_sync_relay_status",
                "Health: 1 healthy, 2 disconnected, 3 degraded, 4 dead, 5 rate limited",
                &["relay"],
            )?,
            relay_failures: gauge_vec(
                "ngit_sync_relay_failures",
                "Consecutive failed connection attempts",
                &["relay"],
            )?,
            events_synced,
            relays_tracked: gauge("ngit_sync_relays_tracked_total", "Relays discovered")?,
            relays_connected: gauge(
                "ngit_sync_relays_connected_total",
                "Relays with status syncing or better",
            )?,
            relays_dead: gauge("ngit_sync_relays_dead_total", "Relays in health Dead")?,
            events_received: counter_vec(
                "ngit_sync_events_received_total",
                "Final home relay answers by outcome",
                &["outcome"],
            )?,
            events_dropped: counter_vec(
                "ngit_sync_events_dropped_total",
                "Events a connector refused from a relay, by reason",
                &["relay", "reason"],
            )?,
            batches_open: gauge_vec(
                "ngit_sync_batches_open",
                "Historic batches open in the relay's current session",
                &["relay"],
            )?,
            batches: counter_vec(
                "ngit_sync_batches_total",
                "Historic batches opened, confirmed and failed",
                &["layer", "method", "result"],
            )?,
            historic_sync,
            sink_lag: gauge_vec(
                "ngit_sync_sink_lag",
                "Events in the events stream without a final home relay answer yet",
                &[],
            )?,
            workers: gauge("ngit_sync_workers", "Live connector workers")?,
            relays_per_worker: gauge_vec(
                "ngit_sync_relays_per_worker",
                "Relay leases held by each live worker",
                &["worker"],
            )?,
            lease_handoffs,
            registry,
        })
    }

    /// Records one ended batch.
    pub fn observe(&self, done: &BatchDone) {
        self.historic_sync
            .with_label_values(&[done.layer.as_str(), done.result.as_str()])
            .observe(done.seconds);
    }

    /// Sets every gauge and counter from the view.
    pub fn project(&self, view: &View, now_ms: u64) {
        let relays = view.relays(now_ms);
        for vec in [
            &self.relay_connected,
            &self.relay_status,
            &self.relay_failures,
            &self.batches_open,
            &self.sink_lag,
            &self.relays_per_worker,
        ] {
            vec.reset();
        }
        for vec in [
            &self.connection_attempts,
            &self.events_received,
            &self.events_dropped,
            &self.batches,
        ] {
            vec.reset();
        }
        for r in &relays {
            let relay = r.url.as_str();
            self.relay_connected
                .with_label_values(&[relay])
                .set(r.status.gauge());
            self.batches_open
                .with_label_values(&[relay])
                .set(i64::from(r.open_batches));
            self.connection_attempts
                .with_label_values(&[relay, "success"])
                .inc_by(r.attempts_success);
            self.connection_attempts
                .with_label_values(&[relay, "failure"])
                .inc_by(r.attempts_failure);
            if let Some(h) = &r.health {
                self.relay_status
                    .with_label_values(&[relay])
                    .set(h.state.gauge());
                self.relay_failures
                    .with_label_values(&[relay])
                    .set(i64::from(h.consecutive_failures));
            }
            // Only reasons that happened: five zero series per relay would be noise.
            for (reason, n) in r.dropped.iter().filter(|(_, n)| *n > 0) {
                self.events_dropped
                    .with_label_values(&[relay, reason])
                    .inc_by(*n);
            }
        }
        self.relays_tracked.set(view.tracked() as i64);
        self.relays_connected.set(view::connected(&relays) as i64);
        self.relays_dead.set(view::dead(&relays) as i64);

        self.events_synced.reset();
        self.events_synced.inc_by(view.outcomes(Outcome::Saved));
        for outcome in Outcome::ALL {
            self.events_received
                .with_label_values(&[outcome.as_str()])
                .inc_by(view.outcomes(outcome));
        }
        for (layer, method, result, n) in view.batches() {
            self.batches
                .with_label_values(&[layer.as_str(), method.as_str(), result.as_str()])
                .inc_by(n);
        }
        if let Some(lag) = view.sink_lag() {
            self.sink_lag
                .with_label_values::<&str>(&[])
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        self.workers.set(view.workers(now_ms) as i64);
        self.lease_handoffs.reset();
        self.lease_handoffs.inc_by(view.lease_handoffs());
        for (worker, n) in view.relays_per_worker(now_ms) {
            self.relays_per_worker
                .with_label_values(&[&worker])
                .set(n as i64);
        }
    }

    /// The registry in the Prometheus text format 0.0.4 ([`prometheus::TEXT_FORMAT`]).
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::messages::{HealthReport, RelayBody, RelayEntry, RelayNews};
    use ngit_sync_shared::status::{AttemptResult, Health, Layer};
    use ngit_sync_shared::RelayUrl;
    use std::time::Duration;

    use crate::relay_view::BatchResult;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_forgotten_relay_loses_every_series() {
        let metrics = Metrics::new().unwrap();
        let mut view = View::new(Duration::from_secs(10), Duration::from_secs(10));
        let url = RelayUrl::parse("wss://a.example").unwrap();
        view.put_relay(
            url.key().as_str(),
            &RelayEntry {
                url: url.clone(),
                bootstrap: false,
                repos: 1,
            },
        );
        let news = |body| RelayNews {
            relay: url.clone(),
            at_ms: 1,
            body,
        };
        view.apply_news(&news(RelayBody::Attempted {
            worker: "w".into(),
            attempt: 1,
            result: AttemptResult::Failure,
            error: None,
        }));
        view.apply_news(&news(RelayBody::Health(HealthReport {
            state: Health::Dead,
            consecutive_failures: 7,
            next_attempt_ms: None,
            rate_limited_until_ms: None,
        })));
        metrics.project(&view, 0);
        let text = metrics.encode().unwrap();
        let relay = r#"relay="wss://a.example""#;
        assert_eq!(
            line_value(&text, &format!("ngit_sync_relay_status{{{relay}}}")),
            Some(4.0)
        );
        assert_eq!(line_value(&text, "ngit_sync_relays_dead_total"), Some(1.0));
        // Projecting twice does not double counters.
        metrics.project(&view, 0);
        let text = metrics.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                &format!("ngit_sync_connection_attempts_total{{{relay},result=\"failure\"}}")
            ),
            Some(1.0)
        );

        view.apply_news(&news(RelayBody::Forgotten));
        view.delete_relay(url.key().as_str());
        metrics.project(&view, 0);
        let text = metrics.encode().unwrap();
        assert!(!text.contains("wss://a.example"), "{text}");
        assert_eq!(line_value(&text, "ngit_sync_relays_dead_total"), Some(0.0));
        assert_eq!(
            line_value(&text, "ngit_sync_relays_tracked_total"),
            Some(0.0)
        );
    }

    #[test]
    fn observations_land_in_the_histogram_and_lag_appears_once_known() {
        let metrics = Metrics::new().unwrap();
        let mut view = View::new(Duration::from_secs(10), Duration::from_secs(10));
        metrics.observe(&BatchDone {
            layer: Layer::L3,
            result: BatchResult::Confirmed,
            seconds: 3.0,
        });
        metrics.project(&view, 0);
        let text = metrics.encode().unwrap();
        assert_eq!(
            line_value(
                &text,
                r#"ngit_sync_historic_sync_seconds_count{layer="l3",result="confirmed"}"#
            ),
            Some(1.0)
        );
        assert!(!text.contains("ngit_sync_sink_lag "), "{text}");
        assert_eq!(
            line_value(&text, "ngit_sync_events_synced_total"),
            Some(0.0)
        );
        view.set_events_last_seq(5);
        metrics.project(&view, 0);
        assert_eq!(
            line_value(&metrics.encode().unwrap(), "ngit_sync_sink_lag"),
            Some(5.0)
        );
    }
}
