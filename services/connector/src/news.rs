//! A relay's news (`claimed`, `attempted`, `connected`, `batch.*`, `health`, ...) published in
//! the order it happened by one small task, so a session never waits on the RELAYS stream and
//! batch-tracker never sees a batch confirmed before it was opened.

use std::time::Duration;

use ngit_sync_shared::messages::{now_ms, RelayBody, RelayNews};
use ngit_sync_shared::{Bus, RelayUrl};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Tries per message: a short NATS hiccup should not lose a `batch.confirmed`.
const ATTEMPTS: u32 = 3;

pub struct News {
    relay: RelayUrl,
    tx: mpsc::UnboundedSender<RelayNews>,
    handle: JoinHandle<()>,
}

impl News {
    pub fn spawn(bus: Bus, relay: RelayUrl) -> News {
        let (tx, mut rx) = mpsc::unbounded_channel::<RelayNews>();
        let handle = tokio::spawn(async move {
            while let Some(news) = rx.recv().await {
                publish(&bus, &news).await;
            }
        });
        News { relay, tx, handle }
    }

    /// Queues `body`, stamped now.
    pub fn send(&self, body: RelayBody) {
        let news = RelayNews {
            relay: self.relay.clone(),
            at_ms: now_ms(),
            body,
        };
        // The task lives as long as this handle; a send can only fail after it panicked.
        let _ = self.tx.send(news);
    }

    /// Publishes what is queued, waiting at most `within`.
    pub async fn finish(self, within: Duration) {
        drop(self.tx);
        let mut handle = self.handle;
        if tokio::time::timeout(within, &mut handle).await.is_err() {
            tracing::warn!(relay = %self.relay, "relay news not all published within {within:?}");
            handle.abort();
        }
    }
}

async fn publish(bus: &Bus, news: &RelayNews) {
    for attempt in 1..=ATTEMPTS {
        match bus.publish_relay(news).await {
            Ok(_) => return,
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(relay = %news.relay, kind = news.body.suffix(), error = %e, "relay news lost");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await,
        }
    }
}
