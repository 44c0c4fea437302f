//! discovery reads the home relay and keeps the RepoSyncIndex (DESIGN.md section 1 item 1):
//! which repos to sync, their root events and the relays they list. It writes them to the
//! `ngit_sync_repos` and `ngit_sync_relays` buckets once per window, announces relays on the
//! RELAYS stream (`discovered` / `forgotten`), folds sink outcomes from the OUTCOMES stream and
//! stores the discovery watermark in `ngit_sync_watermarks` (ARCHITECTURE.md "Landing watermark").
//!
//! Modules:
//! - [`config`]: [`Config`] from the environment
//! - [`index`]: the RepoSyncIndex state machine
//! - [`changes`]: what KV holds and the change set that makes it match the index
//! - [`window`]: the batching window
//! - [`watermark`]: when the discovery watermark may advance
//! - [`history`]: paging through the home relay's history whatever its cap
//! - [`feed`]: what the targets task is fed; the home index takes its copy on the way
//! - [`home_index`]: the home index (negentropy items), in a nostr store
//! - [`index_server`]: answers `index.items` from the home index
//! - [`home_relay`]: the home relay reader (history, live, reconnects)
//! - [`outcomes`]: the OUTCOMES consumer
//! - [`targets`]: the task that owns the index and writes the targets
//! - [`store`]: KV reads and writes and relay news

pub mod changes;
pub mod config;
pub mod feed;
pub mod history;
pub mod home_index;
pub mod home_relay;
pub mod index;
pub mod index_server;
pub mod item_index;
pub mod outcomes;
pub mod store;
pub mod targets;
pub mod watermark;
pub mod window;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use ngit_sync_shared::{bus_for, service_api, BusError, StartError};

pub use config::Config;
use home_relay::HomeReader;
use index::{IndexSettings, RepoSyncIndex};
use outcomes::OutcomeReader;
use targets::Targets;
use window::Window;

/// Name on the NATS service API, of the durable consumer and of the NATS connection.
pub const SERVICE: &str = "discovery";

/// Tasks get this long to stop after shutdown (well inside the 10 s SIGTERM promise).
const STOP_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot register with the NATS service API: {0}")]
    ServiceApi(String),
    #[error("cannot read the targets KV holds: {0}")]
    LoadTargets(#[from] BusError),
    #[error("outcomes consumer: {0}")]
    Consumer(String),
    #[error("task {0} ended unexpectedly")]
    TaskEnded(&'static str),
    #[error("task panicked: {0}")]
    TaskPanicked(String),
    #[error(transparent)]
    HomeIndex(#[from] home_index::IndexError),
}

/// Runs discovery until `shutdown` is cancelled; `Err` if it cannot start or a task died.
pub async fn run(
    config: Config,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let bus = bus_for(nats.clone(), &config.common).await?;
    let service = service_api::register(
        &nats,
        &bus.names,
        SERVICE,
        "reads the home relay and publishes the repos and relays to sync",
    )
    .await
    .map_err(|e| Error::ServiceApi(e.to_string()))?;
    let published = store::load(&bus).await?;
    let watermark = store::read_watermark(&bus, store::WATERMARK_KEY).await?;
    let consumer = outcomes::open_consumer(&bus).await?;
    tracing::info!(home_relay = %config.home_relay, bootstrap = config.bootstrap.len(),
        window = ?config.window, settle = ?config.settle, watermark, "discovery started");

    let index = RepoSyncIndex::new(IndexSettings {
        bootstrap: config.bootstrap.clone(),
        own_urls: config.own_urls(),
        require_listed: config.require_listed.clone(),
    });
    let index_store = home_index::IndexStore::open(config.home_index_path.as_ref())?;
    // Readers feed the home index, which hands every message on to the targets task.
    let (feed, index_rx) = mpsc::channel(feed::FEED_CAPACITY);
    let (index_tx, feed_rx) = mpsc::channel(feed::FEED_CAPACITY);
    let index_writer = home_index::IndexWriter::new(index_store.clone());
    let targets = Targets::new(
        bus.clone(),
        index,
        published,
        Window::new(config.window, config.settle),
        watermark,
    );
    let home = HomeReader::new(config.home_relay.clone(), bus.clone(), feed.clone());
    let outcomes = OutcomeReader {
        bus: bus.clone(),
        feed,
    };

    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    let s = stop.clone();
    tasks.spawn(async move {
        targets.run(feed_rx, s).await;
        "targets"
    });
    let s = stop.clone();
    tasks.spawn(async move {
        home_index::run(index_writer, index_rx, index_tx, s).await;
        "home index"
    });
    let s = stop.clone();
    tasks.spawn(async move {
        index_server::serve(bus, index_store, s).await;
        "home index server"
    });
    let s = stop.clone();
    tasks.spawn(async move {
        home.run(s).await;
        "home relay reader"
    });
    let s = stop.clone();
    tasks.spawn(async move {
        outcomes.run(consumer, s).await;
        "outcomes reader"
    });

    // Tasks end on their own only after `stop`, a child of `shutdown`: biased keeps a clean
    // shutdown from being reported as a task that died.
    let result = tokio::select! {
        biased;
        _ = shutdown.cancelled() => Ok(()),
        Some(ended) = tasks.join_next() => match ended {
            Ok(_) if shutdown.is_cancelled() => Ok(()),
            Ok(name) => Err(Error::TaskEnded(name)),
            Err(e) => Err(Error::TaskPanicked(e.to_string())),
        },
    };
    if let Err(e) = &result {
        tracing::error!(error = %e, "discovery stops");
    }
    stop.cancel();
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?STOP_GRACE, "tasks did not stop in time; aborting them");
        tasks.abort_all();
    }
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "service API stop");
    }
    result
}
