//! REQ + EOSE pagination of one historic filter (DESIGN.md section 5): pages of `limit`, the
//! next page asks `until` = oldest `created_at` seen, and paging stops when a page is short or
//! brings nothing new. Pure: the caller feeds it events and EOSEs.

use std::collections::HashSet;

use nostr::{EventId, Filter, Timestamp};

/// What to do after a page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageEnd {
    /// The filter's history is complete.
    Done,
    /// Ask again with this filter.
    Next(Filter),
}

#[derive(Debug, Clone)]
pub struct PagedFilter {
    base: Filter,
    limit: usize,
    until: Option<Timestamp>,
    seen: HashSet<EventId>,
    page_count: usize,
    page_new: usize,
    page_oldest: Option<Timestamp>,
    pages: u32,
    stalled_pages: u32,
}

impl PagedFilter {
    pub fn new(base: Filter, limit: usize) -> PagedFilter {
        let until = base.until;
        PagedFilter {
            base,
            limit,
            until,
            seen: HashSet::new(),
            page_count: 0,
            page_new: 0,
            page_oldest: None,
            pages: 0,
            stalled_pages: 0,
        }
    }

    /// The filter of the current page.
    pub fn request(&self) -> Filter {
        let mut f = self.base.clone().limit(self.limit);
        f.until = self.until;
        f
    }

    pub fn base(&self) -> &Filter {
        &self.base
    }

    /// Records an event of the current page; true if this filter had not seen it.
    pub fn observe(&mut self, id: EventId, created_at: Timestamp) -> bool {
        self.page_count += 1;
        self.page_oldest = Some(self.page_oldest.map_or(created_at, |o| o.min(created_at)));
        let new = self.seen.insert(id);
        if new {
            self.page_new += 1;
        }
        new
    }

    /// The page ended (EOSE).
    pub fn end_page(&mut self) -> PageEnd {
        self.pages += 1;
        let full = self.page_count >= self.limit;
        let (new, oldest) = (self.page_new, self.page_oldest);
        self.page_count = 0;
        self.page_new = 0;
        self.page_oldest = None;
        let Some(oldest) = oldest.filter(|_| full) else {
            return PageEnd::Done;
        };
        if new > 0 {
            self.stalled_pages = 0;
            // Inclusive: events sharing the oldest second may continue on the next page.
            self.until = Some(oldest);
        } else {
            // A full page of known events: more than `limit` events share one second. Step
            // past that second rather than stop, and give up if the relay ignores `until`.
            self.stalled_pages += 1;
            if self.stalled_pages > 1 || oldest.as_secs() == 0 {
                return PageEnd::Done;
            }
            self.until = Some(Timestamp::from(oldest.as_secs() - 1));
        }
        PageEnd::Next(self.request())
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Distinct events this filter received.
    pub fn events_seen(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::hashes::{sha256, Hash};

    fn id(n: u64) -> EventId {
        EventId::from_byte_array(sha256::Hash::hash(&n.to_le_bytes()).to_byte_array())
    }

    /// A relay holding `events` (id number, created_at), newest first, honouring limit and until.
    fn serve(events: &[(u64, u64)], f: &Filter) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = events
            .iter()
            .copied()
            .filter(|(_, t)| f.until.is_none_or(|u| *t <= u.as_secs()))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(f.limit.unwrap_or(usize::MAX));
        v
    }

    fn run(events: &[(u64, u64)], limit: usize) -> (HashSet<u64>, u32) {
        let mut p = PagedFilter::new(Filter::new(), limit);
        let mut got = HashSet::new();
        let mut req = p.request();
        for _ in 0..1000 {
            for (n, t) in serve(events, &req) {
                p.observe(id(n), Timestamp::from(t));
                got.insert(n);
            }
            match p.end_page() {
                PageEnd::Done => return (got, p.pages()),
                PageEnd::Next(f) => req = f,
            }
        }
        panic!("pagination did not end");
    }

    #[test]
    fn a_short_first_page_ends_at_once() {
        let events: Vec<(u64, u64)> = (0..10).map(|i| (i, 1000 + i)).collect();
        let (got, pages) = run(&events, 500);
        assert_eq!(got.len(), 10);
        assert_eq!(pages, 1);
    }

    #[test]
    fn many_pages_with_shared_seconds_fetch_everything() {
        // 1,600 events, 40 per second: page boundaries fall inside shared seconds.
        let events: Vec<(u64, u64)> = (0..1600).map(|i| (i, 10_000 + i / 40)).collect();
        let (got, pages) = run(&events, 500);
        assert_eq!(got.len(), 1600);
        assert!(pages >= 4);
    }

    #[test]
    fn more_events_in_one_second_than_a_page_does_not_loop() {
        let mut events: Vec<(u64, u64)> = (0..700).map(|i| (i, 5000)).collect();
        events.extend((700..800).map(|i| (i, 4000)));
        let (got, _) = run(&events, 500);
        // The 200 that do not fit a page in second 5000 cannot be reached with REQ; the older ones are.
        assert!(got.len() >= 600);
        assert!((700..800).all(|n| got.contains(&n)));
    }

    #[test]
    fn a_relay_ignoring_until_ends_after_a_stalled_page() {
        let mut p = PagedFilter::new(Filter::new(), 3);
        let mut ends = 0;
        loop {
            for n in 0..3 {
                p.observe(id(n), Timestamp::from(100));
            }
            ends += 1;
            if p.end_page() == PageEnd::Done {
                break;
            }
            assert!(ends < 5);
        }
    }
}
