//! A handle on the bus for one service: NATS client, JetStream, names, wire format and
//! buckets, with the publish helpers that set the readable headers.

use async_nats::jetstream::{self, kv};
use async_nats::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, CodecError, Wire};
use crate::headers;
use crate::messages::{OutcomeBatch, RelayBody, RelayNews, SyncedEvent};
use crate::provision::Buckets;
use crate::subjects::Names;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("publish to {subject}: {message}")]
    Publish { subject: String, message: String },
    #[error("kv {bucket}/{key}: {message}")]
    Kv {
        bucket: String,
        key: String,
        message: String,
    },
}

/// Everything a service needs to talk on the bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub wire: Wire,
    pub buckets: Buckets,
}

/// Result of publishing one synced event.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub seq: u64,
    pub duplicate: bool,
}

impl Bus {
    /// Publishes relay news on its subject in the RELAYS stream and waits for the stream's ack.
    pub async fn publish_relay(&self, news: &RelayNews) -> Result<u64, BusError> {
        let subject = self.names.relay(&news.relay.key(), news.body.suffix());
        let mut h = HeaderMap::new();
        h.insert(headers::RELAY, news.relay.as_str());
        h.insert(headers::TYPE, news.body.suffix());
        if let Some(batch) = news.body.batch() {
            h.insert(headers::BATCH, batch);
        }
        if let RelayBody::Status(s) = &news.body {
            h.insert(headers::STATUS, s.status.as_str());
        }
        let payload = codec::encode(self.wire, news)?;
        self.js_publish(subject, h, payload).await.map(|p| p.seq)
    }

    /// Publishes a verified event to the EVENTS stream, de-duplicated by event id.
    pub async fn publish_event(
        &self,
        id: &str,
        kind: u16,
        event: &SyncedEvent,
    ) -> Result<Published, BusError> {
        let subject = self.names.event(&event.relay.key(), kind);
        let mut h = HeaderMap::new();
        h.insert(headers::MSG_ID, id);
        h.insert(headers::RELAY, event.relay.as_str());
        h.insert(headers::TYPE, "event");
        h.insert(headers::KIND, kind.to_string().as_str());
        let payload = codec::encode(self.wire, event)?;
        self.js_publish(subject, h, payload).await
    }

    /// Publishes one batch of sink outcomes to the OUTCOMES stream.
    pub async fn publish_outcomes(&self, batch: &OutcomeBatch) -> Result<u64, BusError> {
        let subject = self.names.outcome(batch.outcome);
        let mut h = HeaderMap::new();
        h.insert(headers::TYPE, batch.outcome.as_str());
        let payload = codec::encode(self.wire, batch)?;
        self.js_publish(subject, h, payload).await.map(|p| p.seq)
    }

    async fn js_publish(
        &self,
        subject: String,
        h: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<Published, BusError> {
        let err = |e: &dyn std::fmt::Display| BusError::Publish {
            subject: subject.clone(),
            message: e.to_string(),
        };
        let ack = self
            .js
            .publish_with_headers(subject.clone(), h, payload)
            .await
            .map_err(|e| err(&e))?
            .await
            .map_err(|e| err(&e))?;
        Ok(Published {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Encodes and puts a KV value; returns the new revision.
    pub async fn put<T: Serialize>(
        &self,
        store: &kv::Store,
        key: &str,
        value: &T,
    ) -> Result<u64, BusError> {
        let payload = codec::encode(self.wire, value)?;
        store
            .put(key, payload)
            .await
            .map_err(|e| kv_err(store, key, &e))
    }

    /// Reads and decodes a KV value.
    pub async fn get<T: DeserializeOwned>(
        &self,
        store: &kv::Store,
        key: &str,
    ) -> Result<Option<T>, BusError> {
        match store.get(key).await.map_err(|e| kv_err(store, key, &e))? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }
}

pub(crate) fn kv_err(store: &kv::Store, key: &str, e: &dyn std::fmt::Display) -> BusError {
    BusError::Kv {
        bucket: store.name.clone(),
        key: key.to_string(),
        message: e.to_string(),
    }
}
