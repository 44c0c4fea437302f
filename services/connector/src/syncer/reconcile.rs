//! Negentropy batches inside the syncer: per filter, the home index's items (asked through
//! [`Action::IndexItems`]), NEG-OPEN / NEG-MSG rounds, then REQ `{ids}` fetch rounds through the
//! ordinary historic machinery. Any sign that the relay does not speak NIP-77 (NOTICE, NEG-ERR,
//! CLOSED, silence, a dropped connection) before its first answer turns the whole session to
//! REQ at once and is reported once ([`Action::NegentropyUnsupported`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use ngit_sync_shared::constants::{NEGENTROPY_FRAME_LIMIT, NEGENTROPY_TIMEOUT};
use nostr::{ClientMessage, EventId, Filter, JsonUtil, SubscriptionId, Timestamp};

use super::{historic_request, Action, Syncer};
use crate::historic::HistoricMethod;
use crate::negentropy::{self, Fetch, FetchEnd, Reconciliation, Refusal, Step};

/// NEG-OPENs in flight at once on one relay (strfry allows a handful per connection).
const MAX_OPEN: usize = 4;
/// A time range is halved at most this often for a relay that finds it too large.
const MAX_SPLIT_DEPTH: u32 = 8;
/// Ids per fetch filter; below the page limit so a full answer is never taken for a page.
const FETCH_IDS: usize = 250;

/// Items of the home index for one filter: `(created_at, id hex)`, or why there are none.
pub type IndexAnswer = Result<Vec<(u64, String)>, String>;

/// Which filter of which batch.
type Slot = (String, usize);

struct OpenNeg {
    slot: Slot,
    recon: Reconciliation,
    deadline_ms: u64,
}

/// Session-wide negentropy state.
#[derive(Default)]
pub(super) struct Reconciler {
    /// The relay answered a NEG-OPEN in this session: later trouble is per filter, not "no NIP-77".
    answered: bool,
    /// The relay showed it does not speak NIP-77; everything goes by REQ now.
    unsupported: bool,
    /// The home index failed us once this session (logged once, then quietly).
    index_trouble: bool,
    next_sub: u64,
    open: HashMap<String, OpenNeg>,
    queue: VecDeque<(Slot, Vec<(u64, String)>)>,
    fetches: BTreeMap<Slot, (Fetch, Vec<usize>)>,
    depth: HashMap<Slot, u32>,
}

impl Syncer {
    /// A negentropy batch was opened: ask the index for every filter's items.
    pub(super) fn open_reconciliations(&mut self, batch: &str) {
        let Some(b) = self.batches.get(batch) else {
            return;
        };
        let filters: Vec<(usize, Filter)> = (0..b.filter_count())
            .filter_map(|i| Some((i, b.base_filter(i)?.clone())))
            .collect();
        for (filter_idx, filter) in filters {
            self.actions.push(Action::IndexItems {
                batch: batch.to_string(),
                filter_idx,
                filter,
            });
        }
    }

    /// The index answered for one filter of a negentropy batch.
    pub fn on_index_items(&mut self, batch: &str, idx: usize, items: IndexAnswer, now_ms: u64) {
        if !self.batches.contains_key(batch) {
            return;
        }
        match items {
            _ if self.recon.unsupported => self.by_req(batch, idx),
            Err(error) => {
                if std::mem::replace(&mut self.recon.index_trouble, true) {
                    tracing::debug!(batch, %error, "home index unavailable; REQ instead");
                } else {
                    tracing::info!(batch, %error, "home index unavailable; filters go by REQ");
                }
                self.by_req(batch, idx);
            }
            Ok(items) => self
                .recon
                .queue
                .push_back(((batch.to_string(), idx), items)),
        }
        self.neg_pump(now_ms);
        self.pump(now_ms);
    }

    fn neg_pump(&mut self, now_ms: u64) {
        while self.recon.open.len() < MAX_OPEN && !self.recon.unsupported {
            let Some(((batch, idx), items)) = self.recon.queue.pop_front() else {
                return;
            };
            let Some(filter) = self.batches.get(&batch).and_then(|b| b.base_filter(idx)) else {
                continue;
            };
            let filter = filter.clone();
            match Reconciliation::start(&items, NEGENTROPY_FRAME_LIMIT) {
                Ok((recon, first)) => {
                    self.recon.next_sub += 1;
                    let sub = format!("n{}", self.recon.next_sub);
                    let open = ClientMessage::neg_open(SubscriptionId::new(&sub), filter, first);
                    self.actions.push(Action::Send(open.as_json()));
                    let deadline_ms = now_ms + NEGENTROPY_TIMEOUT.as_millis() as u64;
                    self.recon.open.insert(
                        sub,
                        OpenNeg {
                            slot: (batch, idx),
                            recon,
                            deadline_ms,
                        },
                    );
                }
                Err(error) => {
                    tracing::warn!(batch = %batch, %error, "cannot start negentropy; REQ instead");
                    self.by_req(&batch, idx);
                }
            }
        }
    }

    pub(super) fn is_neg_sub(&self, sub: &str) -> bool {
        self.recon.open.contains_key(sub)
    }

    pub(super) fn on_neg_msg(&mut self, sub: &str, hex: &str, now_ms: u64) {
        if !self.recon.answered {
            self.recon.answered = true;
            // Said once per session: the relay's state records it, so a relay that gained
            // NIP-77 since it was marked without is known to have it.
            self.actions.push(Action::NegentropySupported);
        }
        let Some(open) = self.recon.open.get_mut(sub) else {
            return;
        };
        match open.recon.on_message(hex) {
            Ok(Step::Continue(next)) => {
                open.deadline_ms = now_ms + NEGENTROPY_TIMEOUT.as_millis() as u64;
                let msg = ClientMessage::NegMsg {
                    subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)),
                    message: std::borrow::Cow::Owned(next),
                };
                self.actions.push(Action::Send(msg.as_json()));
            }
            Ok(Step::Done) => {
                let open = self.recon.open.remove(sub).expect("just found");
                self.send_neg_close(sub);
                let (batch, idx) = open.slot;
                let need = open.recon.need().clone();
                tracing::debug!(batch = %batch, need = need.len(), "reconciled");
                if need.is_empty() {
                    self.finish_filter(&batch, idx, now_ms);
                } else {
                    let mut fetch = Fetch::new(&need);
                    let ids = fetch.round();
                    self.fetch_round(&batch, idx, fetch, ids);
                }
            }
            Err(error) => {
                let open = self.recon.open.remove(sub).expect("just found");
                tracing::warn!(sub, %error, "negentropy failed; this filter goes by REQ");
                self.send_neg_close(sub);
                self.by_req(&open.slot.0, open.slot.1);
            }
        }
        self.neg_pump(now_ms);
        self.pump(now_ms);
    }

    /// `NEG-ERR`, or `CLOSED` on a negentropy subscription.
    pub(super) fn on_neg_refused(&mut self, sub: &str, reason: &str, now_ms: u64) {
        let Some(open) = self.recon.open.remove(sub) else {
            return;
        };
        let (batch, idx) = open.slot;
        match negentropy::classify(reason) {
            Refusal::TooMany => {
                // Only a relay that speaks NIP-77 finds a set too large.
                self.recon.answered = true;
                self.split(&batch, idx, now_ms);
            }
            Refusal::Unsupported if !self.recon.answered => {
                self.unsupported(reason, now_ms);
                self.by_req(&batch, idx);
            }
            Refusal::Unsupported => {
                tracing::info!(
                    sub,
                    reason,
                    "negentropy refused for one filter; REQ instead"
                );
                self.by_req(&batch, idx);
            }
        }
        self.neg_pump(now_ms);
        self.pump(now_ms);
    }

    pub(super) fn on_neg_notice(&mut self, notice: &str, now_ms: u64) {
        if !self.recon.answered && !self.recon.open.is_empty() && negentropy::notice_refuses(notice)
        {
            self.unsupported(notice, now_ms);
            self.pump(now_ms);
        }
    }

    pub(super) fn neg_tick(&mut self, now_ms: u64) {
        let late: Vec<String> = self
            .recon
            .open
            .iter()
            .filter(|(_, o)| o.deadline_ms <= now_ms)
            .map(|(sub, _)| sub.clone())
            .collect();
        if late.is_empty() {
            return;
        }
        if !self.recon.answered {
            let why = format!("no answer to NEG-OPEN within {NEGENTROPY_TIMEOUT:?}");
            self.unsupported(&why, now_ms);
        } else {
            for sub in late {
                let open = self.recon.open.remove(&sub).expect("listed");
                tracing::info!(sub, "negentropy round timed out; this filter goes by REQ");
                self.send_neg_close(&sub);
                self.by_req(&open.slot.0, open.slot.1);
            }
            self.neg_pump(now_ms);
        }
        self.pump(now_ms);
    }

    /// The connection dropped: with a NEG-OPEN unanswered, that was the relay's answer.
    pub fn connection_lost(&mut self, now_ms: u64) {
        if !self.recon.answered && !self.recon.open.is_empty() {
            self.unsupported("connection dropped after NEG-OPEN", now_ms);
        }
    }

    /// Fetch filters of `batch` ended a page: settle fetch rounds whose filters are all done.
    pub(super) fn fetch_progress(&mut self, batch: &str, now_ms: u64) {
        let slots: Vec<Slot> = self
            .recon
            .fetches
            .range((batch.to_string(), 0)..=(batch.to_string(), usize::MAX))
            .map(|(slot, _)| slot.clone())
            .collect();
        for slot in slots {
            let Some(b) = self.batches.get(batch) else {
                return;
            };
            let (_, filters) = &self.recon.fetches[&slot];
            if !filters.iter().all(|i| b.is_done(*i)) {
                continue;
            }
            let (mut fetch, _) = self.recon.fetches.remove(&slot).expect("listed");
            match fetch.end_round(|id| b.has_received(id)) {
                FetchEnd::Complete => self.finish_filter(batch, slot.1, now_ms),
                FetchEnd::AnsweredMissing { missing } => {
                    tracing::info!(
                        batch,
                        missing,
                        "advertised events the relay no longer serves"
                    );
                    self.finish_filter(batch, slot.1, now_ms);
                }
                FetchEnd::Again(_) => {
                    let ids = fetch.round();
                    self.fetch_round(batch, slot.1, fetch, ids);
                }
                FetchEnd::Lying { missing } => {
                    let reason = format!(
                        "relay advertised {missing} events by negentropy and returned none of them when asked again"
                    );
                    self.fail_batch(batch, reason, now_ms);
                    return;
                }
            }
        }
    }

    fn fetch_round(&mut self, batch: &str, idx: usize, fetch: Fetch, ids: Vec<EventId>) {
        let page_limit = self.cfg.page_limit;
        let per_filter = FETCH_IDS.min(page_limit.saturating_sub(1)).max(1);
        let Some(b) = self.batches.get_mut(batch) else {
            return;
        };
        let pages: Vec<(usize, Filter)> = ids
            .chunks(per_filter)
            .map(|chunk| {
                let i = b.add_filter(Filter::new().ids(chunk.iter().copied()), page_limit);
                b.request(i).expect("just added")
            })
            .collect();
        let idxs = pages.iter().map(|(i, _)| *i).collect();
        for chunk in pages.chunks(self.cfg.max_filters_per_req) {
            self.subs.enqueue(historic_request(batch, chunk), false);
        }
        self.recon
            .fetches
            .insert((batch.to_string(), idx), (fetch, idxs));
    }

    fn finish_filter(&mut self, batch: &str, idx: usize, now_ms: u64) {
        if let Some(b) = self.batches.get_mut(batch) {
            b.set_done(idx);
            self.settle(batch, now_ms);
        }
    }

    /// Halves the time range of a filter the relay finds too large, up to a bound.
    fn split(&mut self, batch: &str, idx: usize, now_ms: u64) {
        let depth = self
            .recon
            .depth
            .get(&(batch.to_string(), idx))
            .copied()
            .unwrap_or(0)
            + 1;
        let Some(b) = self.batches.get_mut(batch) else {
            return;
        };
        let halves = b
            .base_filter(idx)
            .and_then(|f| negentropy::split_range(f, Timestamp::from(now_ms / 1000)));
        let Some((older, newer)) = halves.filter(|_| depth <= MAX_SPLIT_DEPTH) else {
            tracing::info!(
                batch,
                depth,
                "time range cannot be split further; REQ instead"
            );
            return self.by_req(batch, idx);
        };
        let page_limit = self.cfg.page_limit;
        for half in [older, newer] {
            let i = b.add_filter(half.clone(), page_limit);
            self.recon.depth.insert((batch.to_string(), i), depth);
            self.actions.push(Action::IndexItems {
                batch: batch.to_string(),
                filter_idx: i,
                filter: half,
            });
        }
        b.set_done(idx);
    }

    /// The relay does not speak NIP-77: remember it, say so once, and move every filter that
    /// was waiting on negentropy to REQ.
    /// A new session on the open connection (daily reconciliation) judges the relay afresh.
    pub(super) fn reset_verdict(&mut self) {
        self.recon.answered = false;
        self.recon.unsupported = false;
        self.recon.index_trouble = false;
    }

    fn unsupported(&mut self, why: &str, _now_ms: u64) {
        if self.recon.unsupported {
            return;
        }
        self.recon.unsupported = true;
        self.method = HistoricMethod::Req;
        tracing::warn!(
            why,
            "relay does not support NIP-77 negentropy; syncing by REQ"
        );
        self.actions.push(Action::NegentropyUnsupported);
        // L1 first, then in the order the NEG-OPENs went out: as REQ would have asked them.
        let mut slots: Vec<(u64, Slot)> = self
            .recon
            .open
            .drain()
            .map(|(sub, o)| (sub[1..].parse().unwrap_or(u64::MAX), o.slot))
            .chain(self.recon.queue.drain(..).map(|(s, _)| (u64::MAX, s)))
            .collect();
        let later_layer = |batch: &str| {
            self.batches
                .get(batch)
                .is_none_or(|b| b.layer != ngit_sync_shared::status::Layer::L1)
        };
        slots.sort_by_key(|(order, (batch, _))| (later_layer(batch), *order));
        for (_, (batch, idx)) in slots {
            self.by_req(&batch, idx);
        }
    }

    /// One filter of a negentropy batch goes by REQ pages instead.
    fn by_req(&mut self, batch: &str, idx: usize) {
        let Some(b) = self.batches.get(batch) else {
            return;
        };
        if b.is_done(idx) {
            return;
        }
        if let Some(page) = b.request(idx) {
            self.subs.enqueue(historic_request(batch, &[page]), false);
        }
    }

    fn send_neg_close(&mut self, sub: &str) {
        let close = ClientMessage::NegClose {
            subscription_id: std::borrow::Cow::Owned(SubscriptionId::new(sub)),
        };
        self.actions.push(Action::Send(close.as_json()));
    }

    /// A batch ended: forget its negentropy state.
    pub(super) fn forget_reconciliations(&mut self, batch: &str) {
        let subs: Vec<String> = self
            .recon
            .open
            .iter()
            .filter(|(_, o)| o.slot.0 == batch)
            .map(|(s, _)| s.clone())
            .collect();
        for sub in subs {
            self.recon.open.remove(&sub);
            self.send_neg_close(&sub);
        }
        self.recon.queue.retain(|((b, _), _)| b != batch);
        self.recon.fetches.retain(|(b, _), _| b != batch);
        self.recon.depth.retain(|(b, _), _| b != batch);
    }
}
