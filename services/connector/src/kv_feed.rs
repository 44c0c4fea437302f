//! A KV bucket as a feed: every current value, then every change, with one [`Feed::Current`]
//! once the initial values are in (so nothing acts on a half-read bucket).

use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Store, Watch};
use futures::StreamExt;
use tokio::time::Instant;

use crate::error::Error;

/// Bound on waiting for the initial values: entries removed by the bucket's max age between
/// our count and the watch's start would otherwise leave the feed waiting forever.
const CURRENT_AT_MOST: Duration = Duration::from_secs(3);

#[derive(Debug)]
pub enum Feed {
    Entry(Entry),
    /// Every value present when the feed opened was delivered.
    Current,
}

pub struct KvFeed {
    bucket: String,
    /// The stream's last sequence when the feed opened: `Current` covers every revision up
    /// to it, even one whose message was gone before the watch reached it.
    opened_rev: u64,
    watch: Watch,
    current: bool,
    announce: bool,
    deadline: Instant,
}

impl KvFeed {
    pub async fn open(store: &Store) -> Result<KvFeed, Error> {
        let bucket = store.name.clone();
        let fail = |e: &dyn std::fmt::Display| Error::Watch {
            bucket: bucket.clone(),
            message: e.to_string(),
        };
        let info = store.stream.get_info().await.map_err(|e| fail(&e))?;
        let watch = store.watch_with_history(">").await.map_err(|e| fail(&e))?;
        let empty = info.state.messages == 0;
        Ok(KvFeed {
            bucket: bucket.clone(),
            opened_rev: info.state.last_sequence,
            watch,
            current: empty,
            announce: empty,
            deadline: Instant::now() + CURRENT_AT_MOST,
        })
    }

    pub fn opened_rev(&self) -> u64 {
        self.opened_rev
    }

    /// The next entry or the `Current` mark; `Err` when the watch ended.
    pub async fn next(&mut self) -> Result<Feed, Error> {
        loop {
            if self.announce {
                self.announce = false;
                return Ok(Feed::Current);
            }
            let item = if self.current {
                self.watch.next().await
            } else {
                match tokio::time::timeout_at(self.deadline, self.watch.next()).await {
                    Ok(item) => item,
                    Err(_) => {
                        tracing::debug!(bucket = %self.bucket, "initial values took too long; going on");
                        self.current = true;
                        return Ok(Feed::Current);
                    }
                }
            };
            match item {
                None => {
                    return Err(Error::Watch {
                        bucket: self.bucket.clone(),
                        message: "watch ended".into(),
                    })
                }
                // The ordered consumer behind the watch recreates itself; it reports trouble
                // as items and goes on.
                Some(Err(e)) => tracing::warn!(bucket = %self.bucket, error = %e, "watch hiccup"),
                Some(Ok(entry)) => {
                    if !self.current && entry.delta == 0 {
                        self.current = true;
                        self.announce = true;
                    }
                    return Ok(Feed::Entry(entry));
                }
            }
        }
    }
}
