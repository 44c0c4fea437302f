//! Asking discovery's home index for the negentropy items of a filter (`index.items`, core
//! NATS request with the answer in numbered chunks on our inbox).

use std::time::Duration;

use async_nats::StatusCode;
use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{IndexItemsChunk, IndexItemsRequest, INDEX_NOT_READY};
use ngit_sync_shared::Bus;
use nostr::{Filter, JsonUtil};

/// Longest wait for the next chunk; a missing discovery then costs one REQ fallback, not a hang.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
/// A discovery that is still reading the home relay is asked again for this long (a restarted
/// discovery must not make every connector download everything by REQ).
pub const READY_WAIT: Duration = Duration::from_secs(60);
const READY_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("no home index is running")]
    NoResponders,
    #[error("home index refused: {0}")]
    Refused(String),
    #[error("home index not ready within {0:?}")]
    NotReady(Duration),
    #[error("unreadable chunk: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("chunk {got} arrived where {expected} was due")]
    OutOfOrder { expected: u32, got: u32 },
}

/// Every `(created_at, id hex)` the home index holds for `filter`, waiting up to
/// [`READY_WAIT`] for an index that is still being filled.
pub async fn items(bus: &Bus, filter: &Filter) -> Result<Vec<(u64, String)>, IndexError> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        match ask(bus, filter).await {
            Err(IndexError::Refused(e)) if e == INDEX_NOT_READY => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(IndexError::NotReady(READY_WAIT));
                }
                tokio::time::sleep(READY_POLL).await;
            }
            other => return other,
        }
    }
}

async fn ask(bus: &Bus, filter: &Filter) -> Result<Vec<(u64, String)>, IndexError> {
    let nats = |e: &dyn std::fmt::Display| IndexError::Nats(e.to_string());
    let inbox = bus.client.new_inbox();
    let mut replies = bus
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats(&e))?;
    let request = IndexItemsRequest {
        filters: vec![filter.as_json()],
    };
    let payload = codec::encode(bus.wire, &request)?;
    bus.client
        .publish_with_reply(bus.names.index_items(), inbox, payload)
        .await
        .map_err(|e| nats(&e))?;
    let mut items = Vec::new();
    let mut expected = 0u32;
    loop {
        let message = tokio::time::timeout(CHUNK_TIMEOUT, replies.next())
            .await
            .map_err(|_| IndexError::Timeout(CHUNK_TIMEOUT))?
            .ok_or_else(|| IndexError::Nats("reply subscription ended".into()))?;
        if message.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(IndexError::NoResponders);
        }
        let chunk: IndexItemsChunk = codec::decode(&message.payload)?;
        if let Some(error) = chunk.error {
            return Err(IndexError::Refused(error));
        }
        if chunk.chunk != expected {
            return Err(IndexError::OutOfOrder {
                expected,
                got: chunk.chunk,
            });
        }
        expected += 1;
        items.extend(chunk.items);
        if chunk.last {
            break;
        }
    }
    let _ = replies.unsubscribe().await;
    Ok(items)
}
