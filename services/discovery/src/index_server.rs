//! Answers `index.items` (queue group `index_queue`): the home index's `(created_at, id)` for
//! the filters asked, in numbered chunks to the reply subject, each well under NATS' payload
//! limit. Before the home relay's history is read once the answer is an error, so connectors
//! fall back to REQ instead of fetching everything again.

use std::collections::HashMap;

use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{IndexItemsChunk, IndexItemsRequest, INDEX_NOT_READY};
use ngit_sync_shared::Bus;
use nostr::{EventId, Filter, JsonUtil, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::home_index::IndexStore;

/// Items per chunk: about 80 bytes each in JSON, so a chunk stays near 320 KB, well inside
/// NATS' default 1 MiB payload limit whichever wire format is used.
pub const CHUNK_ITEMS: usize = 4_000;

/// Serves until `shutdown`; returns early only if NATS refuses the subscription.
pub async fn serve(bus: Bus, store: IndexStore, shutdown: CancellationToken) {
    let subject = bus.names.index_items();
    let mut requests = match bus
        .client
        .queue_subscribe(subject.clone(), bus.names.index_queue())
        .await
    {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(%subject, error = %e, "cannot serve the home index");
            return;
        }
    };
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = requests.next() => match next {
                Some(message) => message,
                None => return,
            },
        };
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let started = std::time::Instant::now();
        let chunks = answer(&store, &message.payload).await;
        let items: usize = chunks.iter().map(|c| c.items.len()).sum();
        for chunk in &chunks {
            let sent = match codec::encode(bus.wire, chunk) {
                Ok(payload) => bus
                    .client
                    .publish(reply.clone(), payload)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = sent {
                tracing::warn!(%error, "cannot send index items");
                break;
            }
        }
        tracing::debug!(items, chunks = chunks.len(), took = ?started.elapsed(), "index items served");
    }
}

/// The chunks answering one request payload.
pub async fn answer(store: &IndexStore, payload: &[u8]) -> Vec<IndexItemsChunk> {
    match items(store, payload).await {
        Ok(items) => chunked(items),
        Err(error) => vec![IndexItemsChunk {
            chunk: 0,
            last: true,
            items: Vec::new(),
            error: Some(error),
        }],
    }
}

async fn items(store: &IndexStore, payload: &[u8]) -> Result<Vec<(u64, String)>, String> {
    if !store.is_ready() {
        return Err(INDEX_NOT_READY.into());
    }
    let request: IndexItemsRequest =
        codec::decode(payload).map_err(|e| format!("bad request: {e}"))?;
    let mut union: HashMap<EventId, Timestamp> = HashMap::new();
    for json in &request.filters {
        let filter = Filter::from_json(json).map_err(|e| format!("bad filter: {e}"))?;
        let found = store.items(&filter).await.map_err(|e| e.to_string())?;
        union.extend(found);
    }
    let mut items: Vec<(u64, String)> = union
        .into_iter()
        .map(|(id, t)| (t.as_secs(), id.to_hex()))
        .collect();
    items.sort_unstable();
    Ok(items)
}

fn chunked(items: Vec<(u64, String)>) -> Vec<IndexItemsChunk> {
    if items.is_empty() {
        return vec![IndexItemsChunk {
            chunk: 0,
            last: true,
            items,
            error: None,
        }];
    }
    let count = items.len().div_ceil(CHUNK_ITEMS);
    let mut out = Vec::with_capacity(count);
    let mut rest = items.into_iter();
    for n in 0..count {
        out.push(IndexItemsChunk {
            chunk: n as u32,
            last: n + 1 == count,
            items: rest.by_ref().take(CHUNK_ITEMS).collect(),
            error: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::Feed;
    use crate::home_index::IndexWriter;
    use ngit_sync_shared::Wire;
    use nostr::hashes::{sha256, Hash};
    use nostr::{EventBuilder, Keys, Kind, Tag};

    fn request(filters: &[Filter]) -> Vec<u8> {
        let request = IndexItemsRequest {
            filters: filters.iter().map(|f| f.as_json()).collect(),
        };
        codec::encode(Wire::Bincode, &request).unwrap().to_vec()
    }

    #[tokio::test]
    async fn a_hundred_thousand_items_come_in_bounded_chunks_fast() {
        let store = IndexStore::open(None).unwrap();
        let mut writer = IndexWriter::new(store.clone());
        let filter = Filter::new().kind(Kind::Custom(30618));
        assert!(
            answer(&store, &request(std::slice::from_ref(&filter))).await[0]
                .error
                .is_some(),
            "not ready"
        );

        // One real signature reused: the index never verifies, and signing 100,000 is slow.
        let template = EventBuilder::new(Kind::Custom(30618), "")
            .sign_with_keys(&Keys::generate())
            .unwrap();
        for n in 0..100_000u64 {
            let id = sha256::Hash::hash(&n.to_le_bytes()).to_byte_array();
            let event = nostr::Event::new(
                EventId::from_byte_array(id),
                template.pubkey,
                Timestamp::from(1_700_000_000 + n),
                template.kind,
                [Tag::identifier(n.to_string())],
                "",
                template.sig,
            );
            writer.hold(&event).await.unwrap();
        }
        let done = Feed::HistoryComplete {
            events: 100_000,
            sink_watermark: None,
        };
        writer.take(&done).await.unwrap();

        let started = std::time::Instant::now();
        let chunks = answer(&store, &request(&[filter])).await;
        let took = started.elapsed();
        assert_eq!(chunks.iter().map(|c| c.items.len()).sum::<usize>(), 100_000);
        assert!(chunks.last().unwrap().last);
        for (n, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.chunk as usize, n);
            let bytes = codec::encode(Wire::Json, chunk).unwrap().len();
            assert!(bytes < 512 * 1024, "chunk of {bytes} bytes");
        }
        assert!(took.as_secs() < 5, "answered in {took:?}");
    }
}
