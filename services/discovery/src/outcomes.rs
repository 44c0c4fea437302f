//! The OUTCOMES consumer: sink's batches, in stream order, handed to the targets task and
//! acked once folded.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::Message;
use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::OutcomeBatch;
use ngit_sync_shared::Bus;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::feed::Feed;
use crate::{Error, SERVICE};

/// Pause before re-opening the consumer after it failed (NATS restarting, consumer deleted).
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// The durable consumer `<prefix>_discovery` on the OUTCOMES stream, created if missing.
pub async fn open_consumer(bus: &Bus) -> Result<PullConsumer, Error> {
    let durable = bus.names.consumer(SERVICE);
    let stream = bus
        .js
        .get_stream(bus.names.stream_outcomes())
        .await
        .map_err(|e| Error::Consumer(e.to_string()))?;
    let config = pull::Config {
        durable_name: Some(durable.clone()),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&durable, config)
        .await
        .map_err(|e| Error::Consumer(e.to_string()))
}

pub struct OutcomeReader {
    pub bus: Bus,
    pub feed: mpsc::Sender<Feed>,
}

impl OutcomeReader {
    /// Consumes until `shutdown` (or until the targets task is gone).
    pub async fn run(self, mut consumer: PullConsumer, shutdown: CancellationToken) {
        loop {
            match consumer.messages().await {
                Ok(mut messages) => loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        next = messages.next() => next,
                    };
                    match next {
                        Some(Ok(message)) => {
                            if !self.handle(message).await {
                                return;
                            }
                        }
                        Some(Err(e)) if e.kind() == MessagesErrorKind::MissingHeartbeat => {
                            tracing::debug!(error = %e, "outcomes consumer heartbeat missed");
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "outcomes consumer failed; re-opening");
                            break;
                        }
                        None => break,
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot pull outcomes"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(REOPEN_DELAY) => {}
            }
            match open_consumer(&self.bus).await {
                Ok(c) => consumer = c,
                Err(e) => tracing::warn!(error = %e, "cannot re-open the outcomes consumer"),
            }
        }
    }

    /// Folds one message and acks it; false once the targets task is gone.
    async fn handle(&self, message: Message) -> bool {
        match codec::decode::<OutcomeBatch>(&message.payload) {
            Ok(batch) => {
                let (folded, done) = oneshot::channel();
                if self
                    .feed
                    .send(Feed::Outcomes { batch, folded })
                    .await
                    .is_err()
                {
                    return false;
                }
                if done.await.is_err() {
                    return false;
                }
            }
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "skipping an outcome message that does not decode");
            }
        }
        // A lost ack only means the batch is folded again after redelivery: folding is idempotent.
        if let Err(e) = message.ack().await {
            tracing::warn!(error = %e, "cannot ack an outcome message");
        }
        true
    }
}
