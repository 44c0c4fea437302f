//! The state the input tasks write and the HTTP handlers read: the [`View`], the metrics, and
//! whether the inputs are running.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::connection::State;
use ngit_sync_shared::messages::{OutcomeBatch, RelayNews};
use ngit_sync_shared::provision::BusOptions;

use crate::metrics::Metrics;
use crate::page::{self, Totals};
use crate::view::{self, View};

pub struct Exporter {
    view: Mutex<View>,
    metrics: Metrics,
    client: async_nats::Client,
    inputs_running: AtomicUsize,
    inputs_expected: usize,
}

/// Held by a running input; dropping it marks the input stopped.
pub struct Running(Arc<Exporter>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.inputs_running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Exporter {
    pub fn new(
        client: async_nats::Client,
        bus: &BusOptions,
        inputs_expected: usize,
    ) -> Result<Exporter, prometheus::Error> {
        Ok(Exporter {
            view: Mutex::new(View::new(bus.worker_ttl, bus.lease_ttl)),
            metrics: Metrics::new()?,
            client,
            inputs_running: AtomicUsize::new(0),
            inputs_expected,
        })
    }

    /// The view, even if a thread panicked while holding it: the view stays consistent after
    /// every single call, so there is nothing half-done to fear.
    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn apply_news(&self, news: &RelayNews) {
        let mut view = self.view();
        if let Some(done) = view.apply_news(news) {
            self.metrics.observe(&done);
        }
    }

    pub fn apply_outcomes(&self, batch: &OutcomeBatch) {
        self.view().apply_outcomes(batch);
    }

    /// Marks one input as running until the returned guard drops.
    pub fn input_running(self: &Arc<Self>) -> Running {
        self.inputs_running.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }

    /// `Ok` when NATS is connected and every input runs; otherwise why not.
    pub fn health(&self) -> Result<(), String> {
        let state = self.client.connection_state();
        if state != State::Connected {
            return Err(format!("NATS connection is {state:?}"));
        }
        let running = self.inputs_running.load(Ordering::SeqCst);
        if running < self.inputs_expected {
            return Err(format!(
                "{running} of {} inputs running",
                self.inputs_expected
            ));
        }
        Ok(())
    }

    /// The metrics in the Prometheus text format.
    pub fn render_metrics(&self, now_ms: u64) -> Result<String, prometheus::Error> {
        // Project and encode under one lock, so two scrapes never see each other's reset.
        let view = self.view();
        self.metrics.project(&view, now_ms);
        self.metrics.encode()
    }

    pub fn render_page(&self, now_ms: u64) -> String {
        let view = self.view();
        let relays = view.relays(now_ms);
        let totals = Totals {
            tracked: view.tracked(),
            connected: view::connected(&relays),
            dead: view::dead(&relays),
            workers: view.workers(now_ms),
            sink_lag: view.sink_lag(),
        };
        page::render(&relays, &totals, now_ms)
    }
}
