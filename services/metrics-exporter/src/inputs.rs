//! The tasks that feed the [`Exporter`] from NATS: ordered consumers on the RELAYS and
//! OUTCOMES streams (from their start, so counters rebuild from the retained history), KV
//! watches with initial values, and a periodic read of the EVENTS stream's last sequence.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::Context;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use ngit_sync_shared::codec::{self, CodecError};
use ngit_sync_shared::messages::{now_ms, LeaseEntry, OutcomeBatch, RelayEntry, RelayNews};
use ngit_sync_shared::Bus;

use crate::exporter::Exporter;
use crate::view::View;
use crate::Error;

/// Inputs [`spawn`] starts; `/healthz` is 200 only while all of them run.
pub const INPUTS: usize = 8;

/// How often the EVENTS stream's last sequence (for the sink lag) is read.
const STREAM_POLL: Duration = Duration::from_secs(2);

/// Pause after an error from a subscription, so a broken one does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Every KV key.
const ALL_KEYS: &str = ">";

/// A finished task: its name and how it ended.
pub type Finished = (&'static str, Result<(), Error>);

/// Applies one KV change (`None`: deleted) with the entry's timestamp in milliseconds.
type KvApply = fn(&mut View, &str, Option<&[u8]>, u64) -> Result<(), CodecError>;

pub fn spawn(
    tasks: &mut JoinSet<Finished>,
    bus: &Bus,
    exporter: &Arc<Exporter>,
    stop: &CancellationToken,
) {
    let n = &bus.names;
    let b = &bus.buckets;
    let e = || exporter.clone();
    let s = || stop.clone();
    let js = &bus.js;
    spawn_named(
        tasks,
        "relay news",
        follow(
            js.clone(),
            n.stream_relays(),
            e(),
            s(),
            |x, news: RelayNews| x.apply_news(&news),
        ),
    );
    spawn_named(
        tasks,
        "sink outcomes",
        follow(
            js.clone(),
            n.stream_outcomes(),
            e(),
            s(),
            |x, b: OutcomeBatch| x.apply_outcomes(&b),
        ),
    );
    let watches: [(&'static str, &kv::Store, KvApply); 5] = [
        ("relays bucket", &b.relays, apply_relay),
        ("status bucket", &b.status, apply_status),
        ("workers bucket", &b.workers, apply_worker),
        ("leases bucket", &b.leases, apply_lease),
        ("watermarks bucket", &b.watermarks, apply_watermark),
    ];
    for (name, store, apply) in watches {
        spawn_named(tasks, name, watch(name, store.clone(), e(), s(), apply));
    }
    spawn_named(
        tasks,
        "events stream",
        poll_events(js.clone(), n.stream_events(), e(), s()),
    );
}

fn spawn_named(
    tasks: &mut JoinSet<Finished>,
    name: &'static str,
    fut: impl Future<Output = Result<(), Error>> + Send + 'static,
) {
    tasks.spawn(async move { (name, fut.await) });
}

fn input_error(input: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Input {
        input,
        message: e.to_string(),
    }
}

/// Runs `fut` unless `stop` comes first.
async fn unless_stopped<T>(stop: &CancellationToken, fut: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        _ = stop.cancelled() => None,
        v = fut => Some(v),
    }
}

/// Reads a whole stream in order with an ordered consumer and keeps following it.
async fn follow<T, F>(
    js: Context,
    stream: String,
    exporter: Arc<Exporter>,
    stop: CancellationToken,
    apply: F,
) -> Result<(), Error>
where
    T: DeserializeOwned,
    F: Fn(&Exporter, T),
{
    let input = "stream consumer";
    let consumer = js
        .get_stream(&stream)
        .await
        .map_err(|e| input_error(input, format!("{stream}: {e}")))?
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| input_error(input, format!("{stream}: {e}")))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| input_error(input, format!("{stream}: {e}")))?;
    let _running = exporter.input_running();
    tracing::info!(stream = %stream, "following stream from its start");
    while let Some(next) = unless_stopped(&stop, messages.next()).await {
        match next {
            None => return Err(Error::InputEnded(stream)),
            Some(Err(e)) => {
                tracing::warn!(stream = %stream, error = %e, "stream consumer error");
                unless_stopped(&stop, tokio::time::sleep(ERROR_PAUSE)).await;
            }
            Some(Ok(msg)) => match codec::decode::<T>(&msg.payload) {
                Ok(value) => apply(&exporter, value),
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "undecodable message skipped")
                }
            },
        }
    }
    Ok(())
}

/// Watches every key of a bucket, current values first.
async fn watch(
    name: &'static str,
    store: kv::Store,
    exporter: Arc<Exporter>,
    stop: CancellationToken,
    apply: KvApply,
) -> Result<(), Error> {
    let mut entries = store
        .watch_with_history(ALL_KEYS)
        .await
        .map_err(|e| input_error(name, e))?;
    let _running = exporter.input_running();
    while let Some(next) = unless_stopped(&stop, entries.next()).await {
        match next {
            None => return Err(Error::InputEnded(store.name.clone())),
            Some(Err(e)) => {
                tracing::warn!(bucket = %store.name, error = %e, "bucket watch error");
                unless_stopped(&stop, tokio::time::sleep(ERROR_PAUSE)).await;
            }
            Some(Ok(entry)) => {
                let value = (entry.operation == Operation::Put).then_some(entry.value.as_ref());
                let at_ms =
                    u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                let result = apply(&mut exporter.view(), &entry.key, value, at_ms);
                if let Err(e) = result {
                    tracing::warn!(bucket = %store.name, key = %entry.key, error = %e, "undecodable value skipped");
                }
            }
        }
    }
    Ok(())
}

fn apply_relay(v: &mut View, key: &str, value: Option<&[u8]>, _: u64) -> Result<(), CodecError> {
    match value {
        Some(bytes) => v.put_relay(key, &codec::decode::<RelayEntry>(bytes)?),
        None => v.delete_relay(key),
    }
    Ok(())
}

fn apply_status(v: &mut View, key: &str, value: Option<&[u8]>, at: u64) -> Result<(), CodecError> {
    let report = value.map(codec::decode).transpose()?;
    v.put_status(key, report, at);
    Ok(())
}

fn apply_worker(v: &mut View, key: &str, value: Option<&[u8]>, at: u64) -> Result<(), CodecError> {
    // Only liveness matters; the heartbeat's content is not needed.
    match value {
        Some(_) => v.put_worker(key, at),
        None => v.delete_worker(key),
    }
    Ok(())
}

fn apply_lease(v: &mut View, key: &str, value: Option<&[u8]>, at: u64) -> Result<(), CodecError> {
    match value {
        Some(bytes) => v.put_lease(key, codec::decode::<LeaseEntry>(bytes)?, at),
        None => v.delete_lease(key),
    }
    Ok(())
}

fn apply_watermark(
    v: &mut View,
    key: &str,
    value: Option<&[u8]>,
    _: u64,
) -> Result<(), CodecError> {
    v.put_watermark(key, value.map(codec::decode).transpose()?);
    Ok(())
}

/// Reads the EVENTS stream's last sequence every [`STREAM_POLL`], and prunes expired
/// heartbeats and leases on the same beat.
async fn poll_events(
    js: Context,
    stream: String,
    exporter: Arc<Exporter>,
    stop: CancellationToken,
) -> Result<(), Error> {
    let mut events = js
        .get_stream(&stream)
        .await
        .map_err(|e| input_error("events stream", format!("{stream}: {e}")))?;
    let _running = exporter.input_running();
    let mut tick = tokio::time::interval(STREAM_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while unless_stopped(&stop, tick.tick()).await.is_some() {
        match unless_stopped(&stop, events.info()).await {
            None => break,
            Some(Ok(info)) => {
                let last = info.state.last_sequence;
                exporter.view().set_events_last_seq(last);
            }
            Some(Err(e)) => tracing::warn!(stream = %stream, error = %e, "cannot read stream info"),
        }
        exporter.view().prune(now_ms());
    }
    Ok(())
}
