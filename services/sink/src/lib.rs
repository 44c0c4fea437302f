//! The sink: the only writer to the home relay. It pulls verified events from the EVENTS
//! stream, writes them to the home relay many at a time, waits for each `OK`, publishes the
//! final outcomes (with the landing watermark) to OUTCOMES, and only then acks the stream.
//! Transient failures (rate limits, relay errors, timeouts, a lost connection) are retried
//! with backoff and never dropped (DESIGN.md section 1 item 3, section 9 "Nothing is lost").
//!
//! - [`config`]: settings and their environment variables
//! - [`answer`]: what an `OK` means (pure)
//! - [`retry`]: exponential retry delays (pure)
//! - [`ledger`]: held events, writes, answers, retries, the rate-limit pause (pure)
//! - [`watermark`]: the landing watermark (pure)
//! - [`outcomes`]: verdicts into outcome batches (pure)
//! - [`intake`]: the durable pull consumer on EVENTS
//! - [`home_link`]: the connection to the home relay
//! - [`landing`]: the loop that owns it all and acks only after publishing

pub mod answer;
pub mod config;
pub mod home_link;
pub mod intake;
pub mod landing;
pub mod ledger;
pub mod outcomes;
pub mod retry;
pub mod watermark;

use std::time::Duration;

use ngit_sync_shared::messages::Watermark;
use ngit_sync_shared::{service_api, BusError, ConfigError, StartError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

use crate::landing::Landing;
use crate::ledger::Ledger;
use crate::retry::RetryPolicy;
use crate::watermark::LandingWatermark;

/// The service name: durable consumer, service API, logs.
pub const SERVICE: &str = "sink";
/// Key of the sink's watermark in the watermarks bucket.
pub const WATERMARK_KEY: &str = "sink";

/// Bound on stopping the helper tasks once the landing loop has ended.
const TASKS_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("service API registration: {0}")]
    ServiceApi(String),
    #[error("events consumer: {0}")]
    Consumer(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the {0} task stopped unexpectedly")]
    TaskDied(&'static str),
}

/// Runs the sink until `shutdown` is cancelled; then it stops within a few seconds, leaving
/// every event without a final answer unacked for redelivery.
pub async fn run(
    config: Config,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.validate()?;
    let bus = ngit_sync_shared::bus_for(nats, &config.common).await?;
    let service = service_api::register(
        &bus.client,
        &bus.names,
        SERVICE,
        "writes synced events to the home relay",
    )
    .await
    .map_err(|e| Error::ServiceApi(e.to_string()))?;

    let mut consumer = intake::open_consumer(&bus, config.in_flight).await?;
    let stored = bus
        .get::<Watermark>(&bus.buckets.watermarks, WATERMARK_KEY)
        .await?
        .map_or(0, |w| w.seq);
    let mut watermark = LandingWatermark::new(stored);
    // What an earlier run left behind: acked up to the floor, maybe more handed out unacked.
    let info = consumer
        .info()
        .await
        .map_err(|e| Error::Consumer(e.to_string()))?;
    watermark.server_ack_floor(info.ack_floor.stream_sequence);
    if info.num_ack_pending > 0 {
        watermark.inherit(info.delivered.stream_sequence);
    }
    tracing::info!(
        home_relay = %config.home_relay,
        in_flight = config.in_flight,
        watermark = watermark.current(),
        "sink starting"
    );

    let retry = RetryPolicy {
        base: config.retry_base,
        cap: config.retry_cap,
    };
    let tasks = TaskTracker::new();
    let stop_intake = CancellationToken::new();
    let stop_link = CancellationToken::new();
    let (intake_tx, intake_rx) = mpsc::channel(config.in_flight);
    let (to_link, link_rx) = mpsc::unbounded_channel();
    let (link_tx, from_link) = mpsc::unbounded_channel();
    tasks.spawn(intake::run(
        bus.clone(),
        config.in_flight,
        intake_tx,
        stop_intake.clone(),
    ));
    tasks.spawn(home_link::run(
        config.home_relay.clone(),
        retry,
        link_rx,
        link_tx,
        stop_link.clone(),
    ));
    tasks.close();

    let landing = Landing {
        bus,
        consumer,
        flush_interval: config.flush_interval,
        ledger: Ledger::new(retry, config.ok_timeout),
        watermark,
        to_link,
        from_link,
        intake: intake_rx,
        stop_intake: stop_intake.clone(),
    };
    let result = landing.run(shutdown).await;

    stop_intake.cancel();
    stop_link.cancel();
    if tokio::time::timeout(TASKS_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("sink tasks did not stop in time");
    }
    let _ = service.stop().await;
    result
}
