//! What the targets task is fed. Every event discovery learns, whether read from the home
//! relay or carried by a sink outcome, passes through [`Feed`]: this is the seam where the home
//! index (negentropy items for `index.items`, a later issue) will take its copy.

use ngit_sync_shared::messages::OutcomeBatch;
use nostr::Event;
use tokio::sync::oneshot;

/// Bound on feed messages in flight: the readers wait while the targets task writes to KV.
pub const FEED_CAPACITY: usize = 1024;

#[derive(Debug)]
pub enum Feed {
    /// An event the home relay holds (history or live); trusted, not verified.
    Home(Box<Event>),
    /// The home relay's history was read to its end. `sink_watermark` is the sink's watermark
    /// read just before the history REQ: every event at or below it that the home relay saved
    /// was in this history.
    HistoryComplete {
        events: usize,
        sink_watermark: Option<u64>,
    },
    /// One batch from the OUTCOMES stream; `folded` is answered once it is folded, and only
    /// then is the message acked.
    Outcomes {
        batch: OutcomeBatch,
        folded: oneshot::Sender<()>,
    },
}
