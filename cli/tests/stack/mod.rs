//! The whole system in one test process: a real nats-server, a real home relay, and every
//! service running from its library `run`, each stoppable and restartable on its own.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{RelayNews, StatusReport};
use ngit_sync_shared::status::ConnectionStatus;
use ngit_sync_shared::{Bus, CommonConfig, RelayUrl};
use ngit_sync_test_support::{eventually, free_port, http_get, NatsServer, TestRelay};
use nostr::EventId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The services of DESIGN.md section 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Discovery,
    Connector,
    Sink,
    BatchTracker,
    MetricsExporter,
}

pub const ALL: [Service; 5] = [
    Service::Sink,
    Service::Discovery,
    Service::BatchTracker,
    Service::MetricsExporter,
    Service::Connector,
];

/// A new announcement of `repo` listing `relays`, newer than the corpus' own.
pub fn announce(repo: &ngit_sync_test_support::Repo, relays: &[String]) -> nostr::Event {
    repo.announcement_listing(relays, nostr::Timestamp::now())
}

pub fn ids(events: &[nostr::Event]) -> HashSet<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// How long a status must hold before [`Stack::wait_status`] takes it as reached.
pub const STATUS_SETTLED: Duration = Duration::from_secs(1);

struct Running {
    stop: CancellationToken,
    handle: JoinHandle<Result<(), String>>,
}

pub struct Stack {
    pub nats: NatsServer,
    pub home: TestRelay,
    pub settings: HashMap<String, String>,
    pub metrics_addr: SocketAddr,
    pub bus: Bus,
    running: HashMap<Service, Running>,
}

/// Settings with every duration shrunk so tests finish in seconds.
fn test_settings(
    nats: &NatsServer,
    home: &TestRelay,
    metrics: SocketAddr,
) -> HashMap<String, String> {
    [
        ("NATS_URL", nats.url()),
        ("NGIT_SYNC_HOME_RELAY", home.url()),
        ("NGIT_SYNC_ALLOW_PRIVATE_RELAYS", "true".into()),
        ("NGIT_SYNC_DISCOVERY_WINDOW", "200ms".into()),
        ("NGIT_SYNC_COMPLETION_QUIET", "300ms".into()),
        ("NGIT_SYNC_METRICS_ADDR", metrics.to_string()),
        ("NGIT_SYNC_BACKOFF_BASE", "200ms".into()),
        ("NGIT_SYNC_BACKOFF_CAP", "2s".into()),
        ("NGIT_SYNC_SINK_RETRY_CAP", "1s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Stack {
    /// Starts NATS, the home relay (with `seed` on it) and every service.
    pub async fn start(seed: &[nostr::Event]) -> anyhow::Result<Stack> {
        Self::start_with(seed, |_| {}).await
    }

    pub async fn start_with(
        seed: &[nostr::Event],
        tweak: impl FnOnce(&mut HashMap<String, String>),
    ) -> anyhow::Result<Stack> {
        Self::start_without(seed, &[], tweak).await
    }

    /// Like [`start_with`](Self::start_with), but the services in `without` are not started
    /// (e.g. connectors run as separate processes of the built binary instead).
    pub async fn start_without(
        seed: &[nostr::Event],
        without: &[Service],
        tweak: impl FnOnce(&mut HashMap<String, String>),
    ) -> anyhow::Result<Stack> {
        ngit_sync_test_support::init_tracing();
        let nats = NatsServer::start().await?;
        let home = TestRelay::home().await?;
        home.publish(seed).await?;
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut settings = test_settings(&nats, &home, metrics_addr);
        tweak(&mut settings);
        let common = CommonConfig::from_lookup(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
        let bus = ngit_sync_shared::bus_for(nats.client().await?, &common).await?;
        let mut stack = Stack {
            nats,
            home,
            settings,
            metrics_addr,
            bus,
            running: HashMap::new(),
        };
        for s in ALL.into_iter().filter(|s| !without.contains(s)) {
            stack.start_service(s).await?;
        }
        Ok(stack)
    }

    pub async fn start_service(&mut self, service: Service) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let client = self.nats.client().await?;
        let s = &self.settings;
        let err = |e: ngit_sync_shared::ConfigError| anyhow::anyhow!("{e}");
        let token = stop.clone();
        let handle = match service {
            Service::Discovery => {
                let c = ngit_sync_discovery::Config::from_lookup(s).map_err(err)?;
                tokio::spawn(async move {
                    ngit_sync_discovery::run(c, client, token)
                        .await
                        .map_err(|e| e.to_string())
                })
            }
            Service::Connector => {
                let c = ngit_sync_connector::Config::from_lookup(s).map_err(err)?;
                tokio::spawn(async move {
                    ngit_sync_connector::run(c, client, token)
                        .await
                        .map_err(|e| e.to_string())
                })
            }
            Service::Sink => {
                let c = ngit_sync_sink::Config::from_lookup(s).map_err(err)?;
                tokio::spawn(async move {
                    ngit_sync_sink::run(c, client, token)
                        .await
                        .map_err(|e| e.to_string())
                })
            }
            Service::BatchTracker => {
                let c = ngit_sync_batch_tracker::Config::from_lookup(s).map_err(err)?;
                tokio::spawn(async move {
                    ngit_sync_batch_tracker::run(c, client, token)
                        .await
                        .map_err(|e| e.to_string())
                })
            }
            Service::MetricsExporter => {
                let c = ngit_sync_metrics_exporter::Config::from_lookup(s).map_err(err)?;
                tokio::spawn(async move {
                    ngit_sync_metrics_exporter::run(c, client, token)
                        .await
                        .map_err(|e| e.to_string())
                })
            }
        };
        self.running.insert(service, Running { stop, handle });
        Ok(())
    }

    /// Stops one service as abruptly as the runtime allows: its task is aborted, no graceful path.
    pub async fn kill_service(&mut self, service: Service) {
        if let Some(r) = self.running.remove(&service) {
            r.handle.abort();
            let _ = r.handle.await;
        }
    }

    /// Stops one service through its shutdown token; returns its result.
    pub async fn stop_service(&mut self, service: Service) -> anyhow::Result<()> {
        let r = self
            .running
            .remove(&service)
            .context("service not running")?;
        r.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), r.handle)
            .await
            .context("service did not stop within 10 s")??
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Fails if a service ended on its own.
    pub fn assert_services_alive(&self) -> anyhow::Result<()> {
        for (s, r) in &self.running {
            anyhow::ensure!(!r.handle.is_finished(), "{s:?} ended unexpectedly");
        }
        Ok(())
    }

    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for s in ALL {
            if self.running.contains_key(&s) {
                self.stop_service(s)
                    .await
                    .with_context(|| format!("{s:?}"))?;
            }
        }
        Ok(())
    }

    /// The status batch-tracker holds for a relay.
    pub async fn status(&self, relay: &str) -> anyhow::Result<Option<StatusReport>> {
        let url = RelayUrl::parse(relay)?;
        Ok(self
            .bus
            .get(&self.bus.buckets.status, url.key().as_str())
            .await?)
    }

    /// Waits until every relay has had this status, unchanged, for [`STATUS_SETTLED`].
    ///
    /// A relay may leave Connected again when another relay's events unlock new targets for
    /// it (a root event it must fetch replies of), so a status seen once is not yet the end
    /// state of a multi-relay sync.
    pub async fn wait_status(
        &self,
        relays: &[String],
        want: ConnectionStatus,
        within: Duration,
    ) -> anyhow::Result<()> {
        let first_seen = std::sync::Mutex::new(None::<(Vec<u64>, std::time::Instant)>);
        let res = eventually(within, &format!("every relay {want:?}"), || async {
            let mut since = Vec::with_capacity(relays.len());
            for r in relays {
                match self.status(r).await {
                    Ok(Some(s)) if s.status == want => since.push(s.since_ms),
                    _ => {
                        *first_seen.lock().unwrap() = None;
                        return false;
                    }
                }
            }
            let mut seen = first_seen.lock().unwrap();
            match seen.as_ref() {
                Some((prev, at)) if *prev == since => at.elapsed() >= STATUS_SETTLED,
                _ => {
                    *seen = Some((since, std::time::Instant::now()));
                    false
                }
            }
        })
        .await;
        if let Err(e) = res {
            let mut seen = Vec::new();
            for r in relays {
                seen.push(format!("{r}: {:?}", self.status(r).await.ok().flatten()));
            }
            let wm: Option<ngit_sync_shared::messages::Watermark> = self
                .bus
                .get(&self.bus.buckets.watermarks, "discovery")
                .await
                .ok()
                .flatten();
            let sink: Option<ngit_sync_shared::messages::Watermark> = self
                .bus
                .get(&self.bus.buckets.watermarks, "sink")
                .await
                .ok()
                .flatten();
            anyhow::bail!(
                "{e}; statuses: {seen:?}; discovery watermark {wm:?}; sink watermark {sink:?}"
            );
        }
        Ok(())
    }

    /// Waits until the home relay holds at least these ids.
    pub async fn wait_home_has(
        &self,
        ids: &HashSet<EventId>,
        within: Duration,
    ) -> anyhow::Result<()> {
        let res = eventually(within, "home relay holds every expected event", || async {
            self.home
                .event_ids()
                .await
                .map(|have| ids.is_subset(&have))
                .unwrap_or(false)
        })
        .await;
        if res.is_err() {
            let have = self.home.event_ids().await?;
            let missing = ids.difference(&have).count();
            anyhow::bail!(
                "home relay misses {missing} of {} expected events",
                ids.len()
            );
        }
        Ok(())
    }

    /// All messages of the RELAYS stream so far, in order.
    pub async fn relay_news(&self) -> anyhow::Result<Vec<RelayNews>> {
        let stream = self
            .bus
            .js
            .get_stream(self.bus.names.stream_relays())
            .await?;
        let last = stream.get_info().await?.state.last_sequence;
        let mut out = Vec::new();
        if last == 0 {
            return Ok(out);
        }
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        while let Some(Ok(m)) =
            tokio::time::timeout(Duration::from_secs(5), messages.next()).await?
        {
            out.push(codec::decode(&m.payload)?);
            if m.info().map(|i| i.stream_sequence >= last).unwrap_or(true) {
                break;
            }
        }
        Ok(out)
    }

    /// `/metrics` parsed into `(name{labels}) -> value`.
    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let (code, body) = http_get(self.metrics_addr, "/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(Metrics::parse(&body))
    }
}

/// A parsed Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: Vec<(String, HashMap<String, String>, f64)>,
    pub types: HashMap<String, String>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(n), Some(t)) = (parts.next(), parts.next()) {
                    m.types.insert(n.to_string(), t.to_string());
                }
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(p) => p,
                None => continue,
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels: HashMap<String, String> = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            if let Ok(v) = value.parse::<f64>() {
                m.samples.push((name.to_string(), labels, v));
            }
        }
        m
    }

    /// The value of a series whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    pub fn has_type(&self, name: &str, kind: &str) -> bool {
        self.types.get(name).map(String::as_str) == Some(kind)
    }
}

/// Status machine progress of one relay seen on the RELAYS stream.
pub fn statuses_of(news: &[RelayNews], relay: &str) -> Vec<ConnectionStatus> {
    news.iter()
        .filter(|n| n.relay.as_str() == relay)
        .filter_map(|n| match &n.body {
            ngit_sync_shared::messages::RelayBody::Status(s) => Some(s.status),
            _ => None,
        })
        .collect()
}
