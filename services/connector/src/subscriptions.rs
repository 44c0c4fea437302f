//! The subscriptions of one session: which REQ is open for what, the queue of REQs waiting
//! for a historic slot, a rate-limit pause or the pace, live subscriptions being replaced by
//! consolidated ones, and EOSE deadlines. Pure.

use std::collections::{HashMap, HashSet, VecDeque};

use nostr::Filter;

/// What a subscription is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// New events only (`limit:0`), open for the whole session.
    Live,
    /// One page of some filters of a historic batch (indices into the batch's filters).
    Historic { batch: String, filters: Vec<usize> },
}

/// A REQ to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub purpose: Purpose,
    pub filters: Vec<Filter>,
}

#[derive(Debug, Clone)]
pub struct OpenSub {
    pub purpose: Purpose,
    /// The filters as sent: an event must match one of them.
    pub filters: Vec<Filter>,
    /// Last REQ or event: the EOSE deadline counts from here.
    pub last_activity_ms: u64,
}

/// What a subscription id from the relay refers to.
#[derive(Debug)]
pub enum Lookup<'a> {
    Open(&'a mut OpenSub),
    /// We closed it; stragglers are expected, not suspicious.
    Closed,
    /// We never opened it.
    Unknown,
}

/// Closed ids remembered for stragglers; past this the memory is reset (a straggler of a
/// long-gone page then counts as unrequested, which is harmless).
const CLOSED_MEMORY: usize = 10_000;

/// REQs go out at most this many per [`PACE_WINDOW_MS`], so a session that starts (or comes
/// back from a rate limit) with hundreds of subscriptions queued does not send them in one
/// burst. Pages of history flow well below this.
pub const REQS_PER_WINDOW: usize = 20;
pub const PACE_WINDOW_MS: u64 = 1_000;

#[derive(Debug)]
pub struct Subscriptions {
    open: HashMap<String, OpenSub>,
    closed: HashSet<String>,
    live_queue: VecDeque<Request>,
    historic_queue: VecDeque<Request>,
    max_historic: usize,
    open_historic: usize,
    next_id: u64,
    paused_until_ms: u64,
    /// Live subscriptions replaced by queued consolidated ones: closed once those went out,
    /// so no live event falls between the two.
    retiring: Vec<String>,
    window_start_ms: u64,
    sent_in_window: usize,
}

impl Subscriptions {
    pub fn new(max_historic: usize) -> Subscriptions {
        Subscriptions {
            open: HashMap::new(),
            closed: HashSet::new(),
            live_queue: VecDeque::new(),
            historic_queue: VecDeque::new(),
            max_historic: max_historic.max(1),
            open_historic: 0,
            next_id: 0,
            paused_until_ms: 0,
            retiring: Vec::new(),
            window_start_ms: 0,
            sent_in_window: 0,
        }
    }

    /// Queues a REQ; `front` for continuations that should not wait behind new batches.
    pub fn enqueue(&mut self, request: Request, front: bool) {
        let queue = match request.purpose {
            Purpose::Live => &mut self.live_queue,
            Purpose::Historic { .. } => &mut self.historic_queue,
        };
        if front {
            queue.push_front(request);
        } else {
            queue.push_back(request);
        }
    }

    /// No REQ goes out before `until_ms`.
    pub fn pause_until(&mut self, until_ms: u64) {
        self.paused_until_ms = self.paused_until_ms.max(until_ms);
    }

    pub fn is_paused(&self, now_ms: u64) -> bool {
        now_ms < self.paused_until_ms
    }

    /// The REQs to send now (id, filters): queued live ones first, then historic ones while
    /// slots are free; none while paused, and no more than the pace allows.
    pub fn pump(&mut self, now_ms: u64) -> Vec<(String, Vec<Filter>)> {
        if self.is_paused(now_ms) {
            return Vec::new();
        }
        if now_ms.saturating_sub(self.window_start_ms) >= PACE_WINDOW_MS {
            self.window_start_ms = now_ms;
            self.sent_in_window = 0;
        }
        let mut out = Vec::new();
        while self.sent_in_window < REQS_PER_WINDOW {
            let Some(request) = self.live_queue.pop_front() else {
                break;
            };
            self.sent_in_window += 1;
            out.push(self.open_sub(request, "l", now_ms));
        }
        while self.open_historic < self.max_historic && self.sent_in_window < REQS_PER_WINDOW {
            let Some(request) = self.historic_queue.pop_front() else {
                break;
            };
            self.open_historic += 1;
            self.sent_in_window += 1;
            out.push(self.open_sub(request, "h", now_ms));
        }
        out
    }

    /// Live filters open or queued, not counting subscriptions being retired.
    pub fn live_filters(&self) -> usize {
        let open: usize = self
            .open
            .iter()
            .filter(|(id, s)| s.purpose == Purpose::Live && !self.retiring.contains(id))
            .map(|(_, s)| s.filters.len())
            .sum();
        let queued: usize = self.live_queue.iter().map(|r| r.filters.len()).sum();
        open + queued
    }

    /// Live subscriptions open right now (retiring ones included: the relay still counts them).
    pub fn open_live(&self) -> usize {
        self.open
            .values()
            .filter(|s| s.purpose == Purpose::Live)
            .count()
    }

    /// Consolidation: every live subscription is to be replaced by what the caller queues
    /// next. Queued live REQs are dropped; open ones stay open until the replacements went
    /// out ([`Subscriptions::take_retired`]).
    pub fn retire_live(&mut self) {
        self.live_queue.clear();
        let mut ids: Vec<String> = self
            .open
            .iter()
            .filter(|(id, s)| s.purpose == Purpose::Live && !self.retiring.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        self.retiring.extend(ids);
    }

    /// Whether `id` is a live subscription whose replacement is queued.
    pub fn is_retiring(&self, id: &str) -> bool {
        self.retiring.iter().any(|r| r == id)
    }

    /// Retired live subscriptions to CLOSE now that their replacements are sent.
    pub fn take_retired(&mut self) -> Vec<String> {
        if !self.live_queue.is_empty() || self.retiring.is_empty() {
            return Vec::new();
        }
        let retiring = std::mem::take(&mut self.retiring);
        retiring
            .into_iter()
            .filter(|id| self.remove(id).is_some())
            .collect()
    }

    fn open_sub(&mut self, request: Request, prefix: &str, now_ms: u64) -> (String, Vec<Filter>) {
        self.next_id += 1;
        let id = format!("{prefix}{}", self.next_id);
        let filters = request.filters.clone();
        self.open.insert(
            id.clone(),
            OpenSub {
                purpose: request.purpose,
                filters: request.filters,
                last_activity_ms: now_ms,
            },
        );
        (id, filters)
    }

    pub fn lookup(&mut self, id: &str) -> Lookup<'_> {
        match self.open.get_mut(id) {
            Some(sub) => Lookup::Open(sub),
            None if self.closed.contains(id) => Lookup::Closed,
            None => Lookup::Unknown,
        }
    }

    /// The subscription ended (we sent CLOSE or the relay sent CLOSED).
    pub fn remove(&mut self, id: &str) -> Option<OpenSub> {
        let sub = self.open.remove(id)?;
        self.retiring.retain(|r| r != id);
        if matches!(sub.purpose, Purpose::Historic { .. }) {
            self.open_historic -= 1;
        }
        if self.closed.len() >= CLOSED_MEMORY {
            self.closed.clear();
        }
        self.closed.insert(id.to_string());
        Some(sub)
    }

    /// Historic subscriptions with neither EOSE nor an event for `timeout_ms`.
    pub fn timed_out(&self, now_ms: u64, timeout_ms: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .open
            .iter()
            .filter(|(_, s)| matches!(s.purpose, Purpose::Historic { .. }))
            .filter(|(_, s)| now_ms.saturating_sub(s.last_activity_ms) >= timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Forgets a batch's queued REQs and ends its open ones; returns those to CLOSE.
    pub fn drop_batch(&mut self, batch: &str) -> Vec<String> {
        let of_batch = |p: &Purpose| matches!(p, Purpose::Historic { batch: b, .. } if b == batch);
        self.historic_queue.retain(|r| !of_batch(&r.purpose));
        let mut ids: Vec<String> = self
            .open
            .iter()
            .filter(|(_, s)| of_batch(&s.purpose))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        for id in &ids {
            self.remove(id);
        }
        ids
    }

    pub fn open_historic(&self) -> usize {
        self.open_historic
    }

    pub fn queued_historic(&self) -> usize {
        self.historic_queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn historic(batch: &str) -> Request {
        Request {
            purpose: Purpose::Historic {
                batch: batch.into(),
                filters: vec![0],
            },
            filters: vec![Filter::new()],
        }
    }

    fn live() -> Request {
        Request {
            purpose: Purpose::Live,
            filters: vec![Filter::new().limit(0)],
        }
    }

    #[test]
    fn historic_reqs_wait_for_a_free_slot_and_live_ones_do_not() {
        let mut s = Subscriptions::new(2);
        for b in ["b1", "b2", "b3"] {
            s.enqueue(historic(b), false);
        }
        s.enqueue(live(), false);
        let sent = s.pump(0);
        assert_eq!(sent.len(), 3, "one live and two historic");
        assert_eq!(s.open_historic(), 2);
        assert_eq!(s.queued_historic(), 1);
        let h = sent
            .iter()
            .find(|(id, _)| id.starts_with('h'))
            .unwrap()
            .0
            .clone();
        assert!(s.remove(&h).is_some());
        assert!(matches!(s.lookup(&h), Lookup::Closed));
        assert!(matches!(s.lookup("h999"), Lookup::Unknown));
        assert_eq!(s.pump(1).len(), 1);
    }

    #[test]
    fn a_pause_holds_every_req_until_it_ends() {
        let mut s = Subscriptions::new(5);
        s.pause_until(1_000);
        s.enqueue(historic("b1"), false);
        s.enqueue(live(), false);
        assert!(s.pump(999).is_empty());
        assert_eq!(s.pump(1_000).len(), 2);
    }

    #[test]
    fn reqs_are_paced_so_a_long_queue_never_goes_out_at_once() {
        let mut s = Subscriptions::new(500);
        for _ in 0..150 {
            s.enqueue(live(), false);
            s.enqueue(historic("b"), false);
        }
        assert_eq!(s.pump(0).len(), REQS_PER_WINDOW);
        assert!(s.pump(PACE_WINDOW_MS - 1).is_empty());
        let mut sent = REQS_PER_WINDOW;
        let mut now = 0;
        while sent < 300 {
            now += PACE_WINDOW_MS;
            let n = s.pump(now).len();
            assert!(n <= REQS_PER_WINDOW);
            sent += n;
        }
        assert_eq!(now, 14 * PACE_WINDOW_MS);
        assert_eq!(s.open_live(), 150);
    }

    #[test]
    fn retired_live_subscriptions_close_only_after_their_replacement_went_out() {
        let mut s = Subscriptions::new(5);
        for _ in 0..3 {
            s.enqueue(live(), false);
        }
        let old: Vec<String> = s.pump(0).into_iter().map(|(id, _)| id).collect();
        assert_eq!(s.live_filters(), 3);
        s.pause_until(5_000);
        s.retire_live();
        s.enqueue(live(), false);
        assert_eq!(s.live_filters(), 1, "the replacement only");
        assert_eq!(s.open_live(), 3, "old ones serve until then");
        assert!(s.pump(1_000).is_empty());
        assert!(s.take_retired().is_empty(), "replacement still queued");
        assert_eq!(s.pump(5_000).len(), 1);
        assert_eq!(s.take_retired(), old);
        assert_eq!(s.open_live(), 1);
        assert!(matches!(s.lookup(&old[0]), Lookup::Closed));
    }

    #[test]
    fn silent_historic_subscriptions_time_out_and_live_ones_never_do() {
        let mut s = Subscriptions::new(5);
        s.enqueue(historic("b1"), false);
        s.enqueue(live(), false);
        s.pump(0);
        let out = s.timed_out(60_000, 60_000);
        assert_eq!(out.len(), 1);
        assert!(out[0].starts_with('h'));
        if let Lookup::Open(sub) = s.lookup(&out[0]) {
            sub.last_activity_ms = 30_000;
        }
        assert!(s.timed_out(60_000, 60_000).is_empty());
    }

    #[test]
    fn dropping_a_batch_closes_its_open_and_forgets_its_queued_reqs() {
        let mut s = Subscriptions::new(1);
        s.enqueue(historic("b1"), false);
        s.enqueue(historic("b1"), false);
        s.enqueue(historic("b2"), false);
        s.pump(0);
        assert_eq!(s.drop_batch("b1").len(), 1);
        assert_eq!(s.open_historic(), 0);
        let next = s.pump(0);
        assert_eq!(next.len(), 1);
        assert_eq!(
            s.queued_historic(),
            0,
            "b1's queued page is gone, b2 is open"
        );
    }
}
