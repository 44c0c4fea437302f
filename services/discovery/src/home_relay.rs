//! Reading the home relay: a live subscription, then the whole history page by page, again
//! after every reconnect (the index is idempotent). Events go to the targets task unverified:
//! the home relay is ours and already accepted them.

use std::time::Duration;

use ngit_sync_shared::constants::{BATCH_EOSE_TIMEOUT, CONNECT_TIMEOUT, PAGE_LIMIT};
use ngit_sync_shared::socket::{self, Incoming, SocketError, SocketReader, SocketWriter};
use ngit_sync_shared::{Bus, RelayUrl};
use nostr::{ClientMessage, Filter, RelayMessage, SubscriptionId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::feed::Feed;
use crate::history::{HistoryPager, PageEnd};
use crate::store;

/// First delay before reconnecting to the home relay; doubles per failed session.
pub const RECONNECT_BASE: Duration = Duration::from_millis(500);
/// Reconnect delays never grow past this: the home relay is ours, it should be back soon.
pub const RECONNECT_CAP: Duration = Duration::from_secs(30);

const LIVE_SUB: &str = "discovery-live";

/// Why a session with the home relay ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("no EOSE for {0:?}")]
    NoEose(Duration),
    #[error("subscription {sub} closed by the relay: {message}")]
    Closed { sub: String, message: String },
    /// The targets task is gone; it reports why.
    #[error("feed closed")]
    FeedClosed,
}

pub struct HomeReader {
    url: RelayUrl,
    bus: Bus,
    feed: mpsc::Sender<Feed>,
    /// Failed sessions in a row; reset by a complete history read.
    failures: u32,
}

impl HomeReader {
    pub fn new(url: RelayUrl, bus: Bus, feed: mpsc::Sender<Feed>) -> HomeReader {
        HomeReader {
            url,
            bus,
            feed,
            failures: 0,
        }
    }

    /// Reads until `shutdown`, reconnecting with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let end = tokio::select! {
                _ = shutdown.cancelled() => return,
                end = self.session() => end,
            };
            if matches!(end, SessionEnd::FeedClosed) {
                return;
            }
            self.failures += 1;
            let delay = backoff(self.failures);
            tracing::warn!(relay = %self.url, error = %end, retry_in = ?delay, "home relay session ended");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&mut self) -> SessionEnd {
        let (mut writer, mut reader, _traffic) =
            match socket::connect(&self.url, CONNECT_TIMEOUT).await {
                Ok(parts) => parts,
                Err(e) => return e.into(),
            };
        tracing::info!(relay = %self.url, "connected to the home relay");
        let end = self.read(&mut writer, &mut reader).await;
        writer.close().await;
        end
    }

    async fn read(&mut self, writer: &mut SocketWriter, reader: &mut SocketReader) -> SessionEnd {
        // Live first, so nothing published while the history is read falls between the two.
        let live = SubscriptionId::new(LIVE_SUB);
        if let Err(e) = writer
            .send(&ClientMessage::req(live.clone(), vec![filter().limit(0)]))
            .await
        {
            return e.into();
        }
        let sink_watermark = self.sink_watermark().await;
        let first = HistoryRead::new();
        if let Err(e) = writer.send(&first.req()).await {
            return e.into();
        }
        let mut history = Some(first);
        loop {
            let message = match next_message(reader, history.as_ref()).await {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(end) => return end,
            };
            match message {
                RelayMessage::Event {
                    subscription_id,
                    event,
                } => {
                    if let Some(h) = history.as_mut().filter(|h| *subscription_id == h.sub) {
                        h.pager.observe(event.id, event.created_at);
                    }
                    if self
                        .feed
                        .send(Feed::Home(Box::new(event.into_owned())))
                        .await
                        .is_err()
                    {
                        return SessionEnd::FeedClosed;
                    }
                }
                RelayMessage::EndOfStoredEvents(sub) => {
                    let Some(h) = history.as_mut().filter(|h| *sub == h.sub) else {
                        continue;
                    };
                    match self.page_ended(writer, h, sink_watermark).await {
                        Ok(true) => history = None,
                        Ok(false) => {}
                        Err(end) => return end,
                    }
                }
                RelayMessage::Closed {
                    subscription_id,
                    message,
                } if *subscription_id == live
                    || history.as_ref().is_some_and(|h| *subscription_id == h.sub) =>
                {
                    return SessionEnd::Closed {
                        sub: subscription_id.to_string(),
                        message: message.into_owned(),
                    };
                }
                RelayMessage::Notice(notice) => {
                    tracing::warn!(relay = %self.url, notice = %notice, "home relay notice");
                }
                _ => {}
            }
        }
    }

    /// A history page ended: ask for the next one, or report the history complete (true).
    async fn page_ended(
        &mut self,
        writer: &mut SocketWriter,
        history: &mut HistoryRead,
        sink_watermark: Option<u64>,
    ) -> Result<bool, SessionEnd> {
        writer
            .send(&ClientMessage::close(history.sub.clone()))
            .await?;
        match history.pager.end_page() {
            PageEnd::Next(_) => {
                history.next_page();
                writer.send(&history.req()).await?;
                Ok(false)
            }
            PageEnd::Done => {
                let events = history.pager.events_seen();
                self.failures = 0;
                tracing::info!(relay = %self.url, events, pages = history.page + 1, "read the home relay's history");
                let done = Feed::HistoryComplete {
                    events,
                    sink_watermark,
                };
                self.feed
                    .send(done)
                    .await
                    .map_err(|_| SessionEnd::FeedClosed)?;
                Ok(true)
            }
        }
    }

    /// The sink's watermark, read before the history REQ; `None` if unreadable (then the
    /// watermark simply waits for outcome batches).
    async fn sink_watermark(&self) -> Option<u64> {
        match store::read_watermark(&self.bus, store::SINK_WATERMARK_KEY).await {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the sink watermark");
                None
            }
        }
    }
}

/// One read of the history, page by page.
struct HistoryRead {
    pager: HistoryPager,
    page: u32,
    sub: SubscriptionId,
    /// A page without EOSE by then fails the session.
    eose_by: Instant,
}

impl HistoryRead {
    fn new() -> HistoryRead {
        let pager = HistoryPager::new(filter(), PAGE_LIMIT);
        HistoryRead {
            pager,
            page: 0,
            sub: history_sub(0),
            eose_by: Instant::now() + BATCH_EOSE_TIMEOUT,
        }
    }

    fn next_page(&mut self) {
        self.page += 1;
        self.sub = history_sub(self.page);
        self.eose_by = Instant::now() + BATCH_EOSE_TIMEOUT;
    }

    fn req(&self) -> ClientMessage<'static> {
        ClientMessage::req(self.sub.clone(), vec![self.pager.request()])
    }
}

/// The next relay message; `None` for text that does not parse (skipped). While history is
/// being read, a page must end within [`BATCH_EOSE_TIMEOUT`].
async fn next_message(
    reader: &mut SocketReader,
    history: Option<&HistoryRead>,
) -> Result<Option<RelayMessage<'static>>, SessionEnd> {
    let incoming = match history {
        Some(h) => tokio::time::timeout_at(h.eose_by, reader.next())
            .await
            .map_err(|_| SessionEnd::NoEose(BATCH_EOSE_TIMEOUT))?,
        None => reader.next().await,
    };
    match incoming? {
        Incoming::Message(message) => Ok(Some(message)),
        Incoming::Malformed { error, .. } => {
            tracing::debug!(error, "skipping a home relay message that does not parse");
            Ok(None)
        }
    }
}

/// Everything: the targets task folds announcements and root events, and the home index
/// keeps whatever a sync filter can select (tags cannot be asked for by name alone).
fn filter() -> Filter {
    Filter::new()
}

fn history_sub(page: u32) -> SubscriptionId {
    SubscriptionId::new(format!("discovery-history-{page}"))
}

/// `RECONNECT_BASE × 2^(failures-1)`, capped.
fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    RECONNECT_BASE.saturating_mul(factor).min(RECONNECT_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), RECONNECT_BASE);
        assert_eq!(backoff(2), RECONNECT_BASE * 2);
        assert_eq!(backoff(40), RECONNECT_CAP);
    }
}
