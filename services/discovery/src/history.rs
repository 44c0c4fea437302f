//! Paging through the home relay's history when its per-REQ cap is unknown.
//!
//! `shared::pagination::PagedFilter` stops at the first page shorter than the limit asked,
//! which loses events on a relay that caps results below that limit (many cap at 100–500).
//! This pager learns the cap instead: a page is "full" when it is as long as the limit or as
//! the longest page seen so far, and paging goes on while full pages bring new events. It costs
//! one extra REQ on a relay that never caps, which is nothing next to missing repos.

use std::collections::HashSet;

use nostr::{EventId, Filter, Timestamp};

pub use ngit_sync_shared::pagination::PageEnd;

#[derive(Debug, Clone)]
pub struct HistoryPager {
    base: Filter,
    limit: usize,
    until: Option<Timestamp>,
    seen: HashSet<EventId>,
    longest_page: usize,
    page_count: usize,
    page_new: usize,
    page_oldest: Option<Timestamp>,
    stalled: bool,
}

impl HistoryPager {
    pub fn new(base: Filter, limit: usize) -> HistoryPager {
        HistoryPager {
            until: base.until,
            base,
            limit,
            seen: HashSet::new(),
            longest_page: 0,
            page_count: 0,
            page_new: 0,
            page_oldest: None,
            stalled: false,
        }
    }

    /// The filter of the current page.
    pub fn request(&self) -> Filter {
        let mut f = self.base.clone().limit(self.limit);
        f.until = self.until;
        f
    }

    /// Records an event of the current page; true if the pager had not seen it.
    pub fn observe(&mut self, id: EventId, created_at: Timestamp) -> bool {
        self.page_count += 1;
        self.page_oldest = Some(self.page_oldest.map_or(created_at, |o| o.min(created_at)));
        let new = self.seen.insert(id);
        self.page_new += usize::from(new);
        new
    }

    /// The page ended (EOSE).
    pub fn end_page(&mut self) -> PageEnd {
        let (count, new, oldest) = (self.page_count, self.page_new, self.page_oldest.take());
        self.page_count = 0;
        self.page_new = 0;
        let full = count >= self.limit || count >= self.longest_page;
        self.longest_page = self.longest_page.max(count);
        let Some(oldest) = oldest.filter(|_| full) else {
            return PageEnd::Done;
        };
        if new > 0 {
            self.stalled = false;
            // Inclusive: events sharing the oldest second may continue on the next page.
            self.until = Some(oldest);
        } else if !self.stalled && oldest.as_secs() > 0 {
            // A full page of known events: more than a page shares one second. Step past it
            // once; a relay that ignores `until` ends here.
            self.stalled = true;
            self.until = Some(Timestamp::from(oldest.as_secs() - 1));
        } else {
            return PageEnd::Done;
        }
        PageEnd::Next(self.request())
    }

    /// Distinct events received.
    pub fn events_seen(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use nostr::hashes::{sha256, Hash};

    use super::*;

    fn id(n: u64) -> EventId {
        EventId::from_byte_array(sha256::Hash::hash(&n.to_le_bytes()).to_byte_array())
    }

    /// A relay holding `events` (number, created_at) that returns at most `cap` per REQ.
    fn serve(events: &[(u64, u64)], f: &Filter, cap: usize) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = events
            .iter()
            .copied()
            .filter(|(_, t)| f.until.is_none_or(|u| *t <= u.as_secs()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(f.limit.unwrap_or(usize::MAX).min(cap));
        v
    }

    /// Pages through; returns the events received and the REQs sent.
    fn run(events: &[(u64, u64)], limit: usize, cap: usize) -> (HashSet<u64>, usize) {
        let mut pager = HistoryPager::new(Filter::new(), limit);
        let mut got = HashSet::new();
        let mut req = pager.request();
        for reqs in 1..1000 {
            for (n, t) in serve(events, &req, cap) {
                pager.observe(id(n), Timestamp::from(t));
                got.insert(n);
            }
            match pager.end_page() {
                PageEnd::Done => return (got, reqs),
                PageEnd::Next(f) => req = f,
            }
        }
        panic!("paging did not end");
    }

    #[test]
    fn a_relay_capping_below_our_limit_is_read_to_the_end() {
        let events: Vec<(u64, u64)> = (0..230).map(|i| (i, 1000 + i / 3)).collect();
        let (got, reqs) = run(&events, 500, 20);
        assert_eq!(got.len(), 230);
        assert!(reqs >= 12, "{reqs}");
    }

    #[test]
    fn an_uncapped_relay_costs_one_extra_request() {
        let events: Vec<(u64, u64)> = (0..40).map(|i| (i, 1000 + i)).collect();
        assert_eq!(run(&events, 500, usize::MAX), ((0..40).collect(), 2));
        assert_eq!(run(&[], 500, usize::MAX), (HashSet::new(), 1));
    }

    #[test]
    fn more_events_in_one_second_than_a_page_does_not_loop() {
        let mut events: Vec<(u64, u64)> = (0..70).map(|i| (i, 5000)).collect();
        events.extend((70..80).map(|i| (i, 4000)));
        let (got, _) = run(&events, 500, 50);
        assert!(
            (70..80).all(|n| got.contains(&n)),
            "older events are still reached"
        );
    }
}
