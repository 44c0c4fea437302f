//! A running batch-tracker on a real nats-server, and a bus to play connector and discovery.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::StreamExt;
use ngit_sync_batch_tracker::status_machine::differs;
use ngit_sync_batch_tracker::tracker::DISCOVERY_WATERMARK;
use ngit_sync_batch_tracker::{run, Config, Error};
use ngit_sync_shared::messages::{
    now_ms, BatchOpened, LeaseEntry, RelayBody, RelayNews, StatusReport, Watermark,
};
use ngit_sync_shared::status::{AttemptResult, ConnectionStatus, Layer, SyncMethod, SyncPlan};
use ngit_sync_shared::{codec, Bus, RelayUrl};
use ngit_sync_test_support::{eventually_some, init_tracing, NatsServer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Quiet period of the service under test: short, but long enough to observe.
pub const QUIET: Duration = Duration::from_millis(300);
/// Bound of every wait.
pub const WAIT: Duration = Duration::from_secs(8);
pub const WORKER: &str = "w1";

pub struct Harness {
    pub nats: NatsServer,
    pub bus: Bus,
    config: Config,
    running: Option<(CancellationToken, JoinHandle<Result<(), Error>>)>,
    runs: u32,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(&[]).await
    }

    /// Starts nats-server and the service with extra settings.
    pub async fn start_with(settings: &[(&str, &str)]) -> Harness {
        init_tracing();
        let nats = NatsServer::start().await.expect("nats-server starts");
        let mut env: HashMap<String, String> = [
            ("NATS_URL", nats.url()),
            ("NGIT_SYNC_COMPLETION_QUIET", "300ms".to_string()),
            // Test leases are put once and never renewed: keep them for the whole test.
            ("NGIT_SYNC_LEASE_TTL", "60s".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (k, v) in settings {
            env.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_lookup(&env).expect("valid config");
        let client = nats.client().await.expect("client");
        let bus = ngit_sync_shared::bus_for(client, &config.common)
            .await
            .expect("bus");
        let mut harness = Harness {
            nats,
            bus,
            config,
            running: None,
            runs: 0,
        };
        harness.run().await;
        harness
    }

    /// Starts `run` (again) on its own connection and waits until it has replayed the
    /// stream and follows it live: a fresh probe relay shows up in the bucket.
    pub async fn run(&mut self) {
        assert!(self.running.is_none(), "already running");
        let client = self.nats.client().await.expect("client");
        let token = CancellationToken::new();
        let task = tokio::spawn(run(self.config.clone(), client, token.clone()));
        self.running = Some((token, task));
        self.runs += 1;
        let probe = relay(&format!("probe{}", self.runs));
        self.send(
            &probe,
            RelayBody::Discovered {
                bootstrap: false,
                repos: 0,
            },
        )
        .await;
        self.wait_status(&probe, ConnectionStatus::Disconnected)
            .await;
    }

    /// Cancels the shutdown token and checks `run` ends cleanly.
    pub async fn stop(&mut self) {
        let (token, task) = self.running.take().expect("running");
        token.cancel();
        let result = tokio::time::timeout(WAIT, task)
            .await
            .expect("run stops in time")
            .expect("run does not panic");
        assert!(result.is_ok(), "run failed: {result:?}");
    }

    pub async fn send(&self, relay: &RelayUrl, body: RelayBody) {
        let news = RelayNews {
            relay: relay.clone(),
            at_ms: now_ms(),
            body,
        };
        self.bus.publish_relay(&news).await.expect("publish");
    }

    /// discovery's watermark.
    pub async fn watermark(&self, seq: u64) {
        let w = Watermark {
            seq,
            at_ms: now_ms(),
        };
        self.bus
            .put(&self.bus.buckets.watermarks, DISCOVERY_WATERMARK, &w)
            .await
            .expect("put watermark");
    }

    /// What a connector does to take a relay: the lease, then `claimed`.
    pub async fn claim(&self, relay: &RelayUrl, worker: &str) {
        let lease = LeaseEntry {
            worker: worker.into(),
            relay: relay.clone(),
            since_ms: now_ms(),
        };
        self.bus
            .put(&self.bus.buckets.leases, relay.key().as_str(), &lease)
            .await
            .expect("put lease");
        self.send(
            relay,
            RelayBody::Claimed {
                worker: worker.into(),
            },
        )
        .await;
    }

    pub async fn stored(&self, relay: &RelayUrl) -> Option<StatusReport> {
        self.bus
            .get(&self.bus.buckets.status, relay.key().as_str())
            .await
            .expect("read status bucket")
    }

    /// Waits until the bucket shows `status` for the relay and `check` holds.
    pub async fn wait_for(
        &self,
        relay: &RelayUrl,
        status: ConnectionStatus,
        check: impl Fn(&StatusReport) -> bool,
    ) -> StatusReport {
        let check = &check;
        eventually_some(WAIT, &format!("{relay} {status:?}"), || async move {
            self.stored(relay)
                .await
                .filter(|r| r.status == status && check(r))
        })
        .await
        .unwrap()
    }

    pub async fn wait_status(&self, relay: &RelayUrl, status: ConnectionStatus) -> StatusReport {
        self.wait_for(relay, status, |_| true).await
    }

    /// Every `.status` message of the relay on the RELAYS stream, in order.
    pub async fn published(&self, relay: &RelayUrl) -> Vec<StatusReport> {
        let stream = self
            .bus
            .js
            .get_stream(self.bus.names.stream_relays())
            .await
            .expect("stream");
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.bus.names.relay(&relay.key(), "status"),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let count = consumer.cached_info().num_pending as usize;
        if count == 0 {
            return Vec::new();
        }
        let messages = consumer.messages().await.expect("messages");
        let read = messages.take(count).collect::<Vec<_>>();
        tokio::time::timeout(WAIT, read)
            .await
            .expect("read status messages")
            .into_iter()
            .map(
                |m| match codec::decode::<RelayNews>(&m.expect("message").payload) {
                    Ok(RelayNews {
                        body: RelayBody::Status(report),
                        ..
                    }) => report,
                    other => panic!("not a status: {other:?}"),
                },
            )
            .collect()
    }

    /// The relay's `.status` messages: none repeats its predecessor, and the last is what
    /// the bucket holds. Returns the distinct statuses in order.
    pub async fn status_trail(&self, relay: &RelayUrl) -> Vec<ConnectionStatus> {
        let published = self.published(relay).await;
        for pair in published.windows(2) {
            assert!(
                differs(Some(&pair[0]), Some(&pair[1])),
                "{relay}: status published twice unchanged: {pair:?}"
            );
        }
        let stored = self.stored(relay).await;
        assert!(
            !differs(published.last(), stored.as_ref()),
            "{relay}: last .status {:?} vs bucket {stored:?}",
            published.last()
        );
        let mut trail: Vec<ConnectionStatus> = published.iter().map(|r| r.status).collect();
        trail.dedup();
        trail
    }
}

pub fn relay(name: &str) -> RelayUrl {
    RelayUrl::parse(&format!("wss://{name}.example.com")).unwrap()
}

pub fn started() -> RelayBody {
    RelayBody::Attempted {
        worker: WORKER.into(),
        attempt: 1,
        result: AttemptResult::Started,
        error: None,
    }
}

pub fn connected(session: &str) -> RelayBody {
    RelayBody::Connected {
        worker: WORKER.into(),
        session: session.into(),
        plan: SyncPlan::Fresh,
    }
}

pub fn disconnected(session: &str) -> RelayBody {
    RelayBody::Disconnected {
        worker: WORKER.into(),
        session: session.into(),
        reason: "closed by relay".into(),
    }
}

pub fn opened(session: &str, batch: &str, layer: Layer) -> RelayBody {
    RelayBody::BatchOpened(BatchOpened {
        batch: batch.into(),
        session: session.into(),
        layer,
        method: SyncMethod::Req,
        filters: 1,
        items: 0,
    })
}

/// The connector's word that the session's batches reflect the targets up to `watermark`.
pub fn applied(session: &str, watermark: u64) -> RelayBody {
    RelayBody::TargetsApplied {
        session: session.into(),
        watermark,
    }
}

pub fn confirmed(session: &str, batch: &str, last_seq: u64) -> RelayBody {
    RelayBody::BatchConfirmed {
        batch: batch.into(),
        session: session.into(),
        events_seen: 3,
        last_seq,
    }
}

pub fn failed(session: &str, batch: &str, last_seq: u64) -> RelayBody {
    RelayBody::BatchFailed {
        batch: batch.into(),
        session: session.into(),
        events_seen: 0,
        last_seq,
        reason: "no EOSE in 60 s".into(),
    }
}

/// Claimed, attempted, connected `s1`, L1 opened and confirmed at `last_seq`.
pub async fn sync_relay(h: &Harness, r: &RelayUrl, last_seq: u64) {
    h.claim(r, WORKER).await;
    for body in [
        started(),
        connected("s1"),
        opened("s1", "l1", Layer::L1),
        confirmed("s1", "l1", last_seq),
    ] {
        h.send(r, body).await;
    }
}
