//! A historic batch: the filters of one chunk of work, each paginated to its end, confirmed
//! only when every filter is done and every event it published has its ack. Pure bookkeeping.

use ngit_sync_shared::pagination::{PageEnd, PagedFilter};
use ngit_sync_shared::status::{Layer, SyncMethod};
use nostr::{EventId, Filter, Timestamp};

use crate::work::Items;

/// How a batch fetches history; [`method_for`] picks it from what the relay is known to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoricMethod {
    /// REQ pages of `limit` with `until` walking back, until EOSE of a short page.
    Req,
    /// NIP-77 against the home index, then REQ `{ids}` for what the relay has and we lack
    /// (`syncer/reconcile.rs`); catch-up batches of a quick reconnect still use REQ.
    Negentropy,
}

impl HistoricMethod {
    pub fn sync_method(self) -> SyncMethod {
        match self {
            Self::Req => SyncMethod::Req,
            Self::Negentropy => SyncMethod::Negentropy,
        }
    }
}

/// The method for a relay given what it is known to support (`RelayState::negentropy`):
/// negentropy unless the relay showed it does not speak it.
pub fn method_for(negentropy: Option<bool>) -> HistoricMethod {
    match negentropy {
        Some(false) => HistoricMethod::Req,
        _ => HistoricMethod::Negentropy,
    }
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchEnd {
    Confirmed,
    Failed(String),
}

#[derive(Debug, Clone)]
struct BatchFilter {
    paged: PagedFilter,
    done: bool,
}

#[derive(Debug, Clone)]
pub struct Batch {
    pub id: String,
    pub layer: Layer,
    pub method: HistoricMethod,
    /// What confirming this batch confirms.
    pub items: Items,
    /// A quick reconnect's catch-up of items an earlier session confirmed.
    pub catch_up: bool,
    filters: Vec<BatchFilter>,
    events_seen: u64,
    in_flight: u32,
    last_seq: u64,
    pages: u32,
    failure: Option<String>,
    /// Negentropy batches: ids that arrived, so fetch rounds know what is still missing.
    received: Option<std::collections::HashSet<EventId>>,
}

impl Batch {
    pub fn new(
        id: String,
        layer: Layer,
        method: HistoricMethod,
        items: Items,
        catch_up: bool,
        filters: Vec<Filter>,
        page_limit: usize,
    ) -> Batch {
        Batch {
            id,
            layer,
            method,
            items,
            catch_up,
            filters: filters
                .into_iter()
                .map(|f| BatchFilter {
                    paged: PagedFilter::new(f, page_limit),
                    done: false,
                })
                .collect(),
            events_seen: 0,
            in_flight: 0,
            last_seq: 0,
            pages: 0,
            failure: None,
            received: (method == HistoricMethod::Negentropy).then(Default::default),
        }
    }

    pub fn filter_count(&self) -> usize {
        self.filters.len()
    }

    /// The first page of every filter, with its index in the batch.
    pub fn first_requests(&self) -> Vec<(usize, Filter)> {
        self.filters
            .iter()
            .enumerate()
            .map(|(i, f)| (i, f.paged.request()))
            .collect()
    }

    /// An event (valid or not: the relay counted it in its page) arrived for filter `idx`.
    pub fn observe(&mut self, idx: usize, id: EventId, created_at: Timestamp) {
        if let Some(f) = self.filters.get_mut(idx) {
            f.paged.observe(id, created_at);
        }
        if let Some(received) = &mut self.received {
            received.insert(id);
        }
    }

    // --- negentropy hooks (`syncer/reconcile.rs`) ---

    /// Adds a filter (a fetch of ids, a split time range); returns its index.
    pub fn add_filter(&mut self, filter: Filter, page_limit: usize) -> usize {
        self.filters.push(BatchFilter {
            paged: PagedFilter::new(filter, page_limit),
            done: false,
        });
        self.filters.len() - 1
    }

    /// The filter's history is complete by other means than paging (reconciled, split).
    pub fn set_done(&mut self, idx: usize) {
        if let Some(f) = self.filters.get_mut(idx) {
            f.done = true;
        }
    }

    pub fn is_done(&self, idx: usize) -> bool {
        self.filters.get(idx).is_none_or(|f| f.done)
    }

    /// The filter as the batch was given it (no page limit, no paging bounds).
    pub fn base_filter(&self, idx: usize) -> Option<&Filter> {
        self.filters.get(idx).map(|f| f.paged.base())
    }

    /// The first REQ page of one filter, for a filter falling back from negentropy.
    pub fn request(&self, idx: usize) -> Option<(usize, Filter)> {
        self.filters.get(idx).map(|f| (idx, f.paged.request()))
    }

    pub fn has_received(&self, id: &EventId) -> bool {
        self.received.as_ref().is_some_and(|r| r.contains(id))
    }

    /// A valid event of this batch is being published.
    pub fn publishing(&mut self) {
        self.events_seen += 1;
        self.in_flight += 1;
    }

    /// A publish ack arrived with the event's events-stream sequence (the original's when
    /// it was a duplicate).
    pub fn acked(&mut self, seq: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.last_seq = self.last_seq.max(seq);
    }

    /// A page of `idxs` ended with EOSE; returns the next pages to ask for.
    pub fn end_page(&mut self, idxs: &[usize]) -> Vec<(usize, Filter)> {
        self.pages += 1;
        let mut next = Vec::new();
        for &i in idxs {
            let Some(f) = self.filters.get_mut(i) else {
                continue;
            };
            match f.paged.end_page() {
                PageEnd::Done => f.done = true,
                PageEnd::Next(filter) => next.push((i, filter)),
            }
        }
        next
    }

    /// The relay refused or cut the page (rate limit): ask again, continuing after a full
    /// page, else repeating the same page (the filter is not done: no EOSE came).
    pub fn retry_page(&mut self, idxs: &[usize]) -> Vec<(usize, Filter)> {
        idxs.iter()
            .filter_map(|&i| {
                let f = self.filters.get_mut(i)?;
                Some(match f.paged.end_page() {
                    PageEnd::Next(filter) => (i, filter),
                    PageEnd::Done => (i, f.paged.request()),
                })
            })
            .collect()
    }

    /// Marks the batch failed; the first reason stays.
    pub fn fail(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
    }

    pub fn is_failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Terminal once nothing is in flight and it failed or every filter is done.
    pub fn end(&self) -> Option<BatchEnd> {
        if self.in_flight > 0 {
            return None;
        }
        if let Some(reason) = &self.failure {
            return Some(BatchEnd::Failed(reason.clone()));
        }
        self.filters
            .iter()
            .all(|f| f.done)
            .then_some(BatchEnd::Confirmed)
    }

    pub fn events_seen(&self) -> u64 {
        self.events_seen
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::hashes::{sha256, Hash};

    fn id(n: u64) -> EventId {
        EventId::from_byte_array(sha256::Hash::hash(&n.to_le_bytes()).to_byte_array())
    }

    fn batch(filters: usize, limit: usize) -> Batch {
        Batch::new(
            "b1".into(),
            Layer::L2,
            HistoricMethod::Req,
            Items::default(),
            false,
            (0..filters).map(|_| Filter::new()).collect(),
            limit,
        )
    }

    #[test]
    fn confirms_only_after_every_filter_ends_and_every_ack_arrives() {
        let mut b = batch(2, 3);
        assert_eq!(b.first_requests().len(), 2);
        b.observe(0, id(1), Timestamp::from(10));
        b.publishing();
        // Filter 0 short page: done. Filter 1 still open.
        assert!(b.end_page(&[0]).is_empty());
        assert_eq!(b.end(), None);
        assert!(b.end_page(&[1]).is_empty());
        assert_eq!(b.end(), None, "an ack is still missing");
        b.acked(42);
        assert_eq!(b.end(), Some(BatchEnd::Confirmed));
        assert_eq!(b.last_seq(), 42);
        assert_eq!(b.events_seen(), 1);
        assert_eq!(b.pages(), 2);
    }

    #[test]
    fn a_full_page_asks_for_the_next_one_until_the_oldest_second() {
        let mut b = batch(1, 3);
        for n in 0..3 {
            b.observe(0, id(n), Timestamp::from(100 - n));
        }
        let next = b.end_page(&[0]);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1.until, Some(Timestamp::from(98)));
        assert_eq!(b.end(), None);
    }

    #[test]
    fn a_refused_page_is_asked_again_not_taken_as_done() {
        let mut b = batch(1, 3);
        let retry = b.retry_page(&[0]);
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].1.until, None);
        assert_eq!(b.end(), None);
        assert!(b.end_page(&[0]).is_empty());
        assert_eq!(b.end(), Some(BatchEnd::Confirmed));
    }

    #[test]
    fn failure_waits_for_acks_and_keeps_the_first_reason() {
        let mut b = batch(1, 3);
        b.publishing();
        b.fail("closed by relay: error: boom".into());
        b.fail("later".into());
        assert_eq!(b.end(), None);
        b.acked(7);
        assert_eq!(
            b.end(),
            Some(BatchEnd::Failed("closed by relay: error: boom".into()))
        );
    }
}
