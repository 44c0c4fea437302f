//! The subscriptions of one session: which REQ is open for what, the queue of REQs waiting
//! for a historic slot or for a rate-limit pause to end, and EOSE deadlines. Pure.

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

    /// The REQs to send now (id, filters): every queued live one and historic ones while
    /// slots are free; none while paused.
    pub fn pump(&mut self, now_ms: u64) -> Vec<(String, Vec<Filter>)> {
        if now_ms < self.paused_until_ms {
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(request) = self.live_queue.pop_front() {
            out.push(self.open_sub(request, "l", now_ms));
        }
        while self.open_historic < self.max_historic {
            let Some(request) = self.historic_queue.pop_front() else {
                break;
            };
            self.open_historic += 1;
            out.push(self.open_sub(request, "h", now_ms));
        }
        out
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
