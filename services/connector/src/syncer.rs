//! The pure heart of a relay session: frames, acks, targets and ticks in; REQ/CLOSE texts,
//! relay news, event publishes and state changes out. It opens L1 at start and L2/L3 batches
//! from the three-way diff, paginates historic REQs, checks every event, and confirms a batch
//! only when its pages are done and its publishes acked. No I/O, time is a parameter.

use std::collections::BTreeMap;
use std::sync::Arc;

use ngit_sync_shared::filters;
use ngit_sync_shared::messages::{BatchOpened, DroppedEvents, RelayBody, RelayState};
use ngit_sync_shared::status::{Layer, SyncPlan};
use nostr::{ClientMessage, Filter, JsonUtil, SubscriptionId, Timestamp};

use crate::historic::{Batch, BatchEnd, HistoricMethod};
use crate::relay_state::StartPlan;
use crate::subscriptions::{Lookup, Purpose, Request, Subscriptions};
use crate::targets::RelayTargets;
use crate::work::{diff, Items, WorkSets};

#[derive(Debug, Clone)]
pub struct SyncerConfig {
    pub page_limit: usize,
    pub max_filters_per_req: usize,
    pub max_historic_subscriptions: usize,
    pub eose_timeout_ms: u64,
    pub rate_limit_cooldown_ms: u64,
    pub batch_retry_ms: u64,
    pub max_event_bytes: usize,
    /// Dropped-event counts are reported at most this often outside batch news.
    pub dropped_report_ms: u64,
    /// Past this many live filters they are consolidated into fewer subscriptions.
    pub live_filter_consolidation: usize,
}

/// A verified event to put on the events stream.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishJob {
    /// The historic batch waiting for its ack, if it came on a historic subscription.
    pub batch: Option<String>,
    pub id: String,
    pub kind: u16,
    /// The event JSON exactly as the relay sent it.
    pub json: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A client message for the socket.
    Send(String),
    News(RelayBody),
    Publish(PublishJob),
    /// What is persisted ([`Syncer::persisted`]) changed.
    StateChanged,
    /// The relay asked us to slow down: no REQ before this time (ms).
    RateLimited(u64),
    /// Negentropy: ask the home index for the items of one filter of a batch, answer with
    /// [`Syncer::on_index_items`].
    IndexItems {
        batch: String,
        filter_idx: usize,
        filter: Filter,
    },
    /// The relay showed it does not speak NIP-77: remember it (`RelayState::negentropy`).
    NegentropyUnsupported,
    /// The relay answered a NEG-OPEN: it speaks NIP-77 (`RelayState::negentropy`).
    NegentropySupported,
}

pub struct Syncer {
    cfg: SyncerConfig,
    session: String,
    /// Where catch-up batches start (quick reconnect).
    since: Option<Timestamp>,
    method: HistoricMethod,
    work: WorkSets,
    /// Items whose live subscriptions are open in this session.
    live: Items,
    subs: Subscriptions,
    batches: BTreeMap<String, Batch>,
    next_batch: u64,
    targets: Option<Arc<RelayTargets>>,
    /// Carried repos and roots got their catch-up batches (needs ready targets).
    carried_opened: bool,
    dropped: DroppedEvents,
    last_dropped_report_ms: u64,
    actions: Vec<Action>,
    /// Negentropy batches' state (`reconcile.rs`).
    recon: reconcile::Reconciler,
    /// Highest events-stream sequence of the session's ended batches.
    landed_seq: u64,
    /// Highest watermark reported in `targets.applied`.
    applied_reported: u64,
}

impl Syncer {
    /// A session following `start` over what `state` says is confirmed.
    pub fn new(
        cfg: SyncerConfig,
        session: String,
        start: StartPlan,
        state: &RelayState,
        method: HistoricMethod,
    ) -> Syncer {
        let carried = match start.plan {
            SyncPlan::Fresh => Items::default(),
            SyncPlan::Quick => Items {
                l1: state.confirmed_l1,
                repos: state.confirmed_repos.iter().cloned().collect(),
                roots: state.confirmed_roots.iter().cloned().collect(),
            },
        };
        Syncer {
            subs: Subscriptions::new(cfg.max_historic_subscriptions),
            cfg,
            session,
            since: start.since,
            method,
            work: WorkSets::carrying(carried),
            live: Items::default(),
            batches: BTreeMap::new(),
            next_batch: 0,
            targets: None,
            carried_opened: false,
            dropped: DroppedEvents::default(),
            landed_seq: 0,
            applied_reported: 0,
            last_dropped_report_ms: 0,
            actions: Vec::new(),
            recon: Default::default(),
        }
    }

    /// L1 live first, then L1 history (a catch-up when carried), then whatever the diff finds.
    pub fn start(&mut self, now_ms: u64) {
        if !self.live.l1 {
            self.live.l1 = true;
            self.enqueue_live(vec![filters::live(filters::l1())]);
        }
        if self.work.carried.l1 {
            let l1 = Items {
                l1: true,
                ..Items::default()
            };
            self.open_work(&l1, true);
        }
        self.rediff(now_ms);
    }

    /// The relay's targets changed (or became ready).
    pub fn on_targets(&mut self, targets: Arc<RelayTargets>, now_ms: u64) {
        self.targets = Some(targets);
        self.rediff(now_ms);
    }

    /// A publish of `batch`'s event was acked with its events-stream sequence.
    pub fn on_ack(&mut self, batch: Option<&str>, seq: u64, now_ms: u64) {
        let Some(id) = batch else { return };
        if let Some(b) = self.batches.get_mut(id) {
            b.acked(seq);
            self.settle(id, now_ms);
        }
    }

    /// Timeouts, the end of a rate-limit pause, failed items due again, dropped counts.
    pub fn on_tick(&mut self, now_ms: u64) {
        for sub in self.subs.timed_out(now_ms, self.cfg.eose_timeout_ms) {
            if let Lookup::Open(open) = self.subs.lookup(&sub) {
                if let Purpose::Historic { batch, .. } = open.purpose.clone() {
                    let reason = format!("no EOSE within {} ms", self.cfg.eose_timeout_ms);
                    self.fail_batch(&batch, reason, now_ms);
                }
            }
        }
        self.neg_tick(now_ms);
        if self.work.next_retry_ms().is_some_and(|t| t <= now_ms) {
            self.rediff(now_ms);
        }
        self.pump(now_ms);
        if now_ms.saturating_sub(self.last_dropped_report_ms) >= self.cfg.dropped_report_ms {
            self.flush_dropped(now_ms);
        }
    }

    /// The session is over: its open batches fail (the next session diffs again).
    pub fn abandon(&mut self, reason: &str, now_ms: u64) {
        let open: Vec<String> = self.batches.keys().cloned().collect();
        self.flush_dropped(now_ms);
        for id in open {
            let b = self.batches.remove(&id).expect("key just listed");
            self.forget_reconciliations(&id);
            self.news(RelayBody::BatchFailed {
                batch: id,
                session: self.session.clone(),
                events_seen: b.events_seen(),
                last_seq: b.last_seq(),
                reason: format!("session ended: {reason}"),
            });
        }
    }

    /// Daily reconciliation: a fresh start on the open connection, as session `session`. The
    /// history of everything is asked again; live subscriptions stay (they are still right),
    /// and the open batches end silently (their session is over for every reader).
    ///
    /// `method` is the session's historic method: the daily fresh start is where a relay
    /// remembered as lacking NIP-77 is asked again (relays get upgraded), once a day.
    pub fn daily_fresh_start(&mut self, session: String, method: HistoricMethod, now_ms: u64) {
        self.flush_dropped(now_ms);
        let batches = std::mem::take(&mut self.batches);
        for id in batches.keys() {
            self.forget_reconciliations(id);
            for sub in self.subs.drop_batch(id) {
                self.send_close(&sub);
            }
        }
        tracing::info!(old = %self.session, new = %session, dropped_batches = batches.len(), "daily reconciliation");
        self.session = session;
        self.landed_seq = 0;
        self.applied_reported = 0;
        self.method = method;
        self.reset_verdict();
        self.since = None;
        self.work = WorkSets::carrying(Items::default());
        self.carried_opened = false;
        self.actions.push(Action::StateChanged);
        self.start(now_ms);
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Discovery's watermark as this worker applied it, every target change up to it already
    /// handed to this session (the caller makes sure). Said once it covers the session's
    /// landed batches: batch-tracker completes the relay only then, so the batches those
    /// events unlock are open before the relay turns Connected.
    pub fn on_applied(&mut self, watermark: u64) {
        if self.landed_seq > self.applied_reported && watermark >= self.landed_seq {
            self.applied_reported = watermark;
            self.news(RelayBody::TargetsApplied {
                session: self.session.clone(),
                watermark,
            });
        }
    }

    pub fn drain(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Confirmed items to persist: this session's plus carried ones still awaiting catch-up.
    pub fn persisted(&self) -> Items {
        self.work.persisted()
    }

    /// Every item confirmed by an earlier session is caught up (or dropped): the session's
    /// connection time may replace the earlier one.
    pub fn catch_up_done(&self) -> bool {
        self.work.catch_up_done()
    }

    pub fn open_batches(&self) -> usize {
        self.batches.len()
    }

    fn rediff(&mut self, now_ms: u64) {
        self.work.forget_due_failures(now_ms);
        let targets = self.targets.clone();
        if let Some(t) = targets.as_deref().filter(|t| t.ready) {
            if self.work.prune(t) {
                self.actions.push(Action::StateChanged);
            }
            if !self.carried_opened {
                self.carried_opened = true;
                let carried = Items {
                    l1: false,
                    ..self.work.carried.clone()
                };
                self.open_work(&carried, true);
            }
        }
        let new = diff(targets.as_deref(), &self.work, now_ms);
        self.open_work(&new, false);
        self.pump(now_ms);
    }

    /// One batch per layer present in `items`, each with live subscriptions for its items.
    fn open_work(&mut self, items: &Items, catch_up: bool) {
        if items.l1 {
            let l1 = Items {
                l1: true,
                ..Items::default()
            };
            self.open_batch(Layer::L1, l1, vec![filters::l1()], catch_up);
        }
        if !items.repos.is_empty() {
            let coords: Vec<String> = items.repos.iter().cloned().collect();
            let repos = Items {
                repos: items.repos.clone(),
                ..Items::default()
            };
            self.open_batch(Layer::L2, repos, filters::l2(&coords), catch_up);
        }
        if !items.roots.is_empty() {
            let ids: Vec<String> = items.roots.iter().cloned().collect();
            let roots = Items {
                roots: items.roots.clone(),
                ..Items::default()
            };
            self.open_batch(Layer::L3, roots, filters::l3(&ids), catch_up);
        }
    }

    fn open_batch(&mut self, layer: Layer, items: Items, base: Vec<Filter>, catch_up: bool) {
        // Live before history: whatever is created after the historic page was served still
        // reaches us.
        let mut new_live = items.clone();
        new_live.remove(&self.live);
        let coords: Vec<String> = new_live.repos.iter().cloned().collect();
        let ids: Vec<String> = new_live.roots.iter().cloned().collect();
        let live: Vec<Filter> = filters::l2(&coords)
            .into_iter()
            .chain(filters::l3(&ids))
            .map(filters::live)
            .collect();
        self.live.add(&new_live);
        self.enqueue_live(live);

        let since = if catch_up { self.since } else { None };
        let historic: Vec<Filter> = base
            .into_iter()
            .map(|f| match since {
                Some(s) => f.since(s),
                None => f,
            })
            .collect();
        self.next_batch += 1;
        let id = format!("{}-b{}", self.session, self.next_batch);
        let count = (items.repos.len() + items.roots.len()) as u32;
        // Negentropy hook: catch-ups of a quick reconnect keep REQ with `since`.
        let method = match catch_up {
            true => HistoricMethod::Req,
            false => self.method,
        };
        let batch = Batch::new(
            id.clone(),
            layer,
            method,
            items,
            catch_up,
            historic,
            self.cfg.page_limit,
        );
        tracing::info!(batch = %id, layer = layer.as_str(), filters = batch.filter_count(), items = count, catch_up, "batch opened");
        self.news(RelayBody::BatchOpened(BatchOpened {
            batch: id.clone(),
            session: self.session.clone(),
            layer,
            method: batch.method.sync_method(),
            filters: batch.filter_count() as u32,
            items: count,
        }));
        if method == HistoricMethod::Req {
            for chunk in batch.first_requests().chunks(self.cfg.max_filters_per_req) {
                self.subs.enqueue(historic_request(&id, chunk), false);
            }
        }
        self.work.begin(&batch.items, catch_up);
        self.batches.insert(id.clone(), batch);
        if method == HistoricMethod::Negentropy {
            self.open_reconciliations(&id);
        }
    }

    fn enqueue_live(&mut self, live: Vec<Filter>) {
        for chunk in live.chunks(self.cfg.max_filters_per_req) {
            let request = Request {
                purpose: Purpose::Live,
                filters: chunk.to_vec(),
            };
            self.subs.enqueue(request, false);
        }
        self.maybe_consolidate();
    }

    /// Every batch adds its own live filters; past the threshold they are replaced by one set
    /// covering every live item (tag values packed 100 to a filter, 20 filters to a REQ).
    /// Only when that at least halves them, so a set too large to fit under the threshold is
    /// not rebuilt at every new batch.
    fn maybe_consolidate(&mut self) {
        let current = self.subs.live_filters();
        let packed = self.all_live_filters();
        if current <= self.cfg.live_filter_consolidation || packed.len() * 2 > current {
            return;
        }
        tracing::info!(
            from = current,
            to = packed.len(),
            "consolidating live subscriptions"
        );
        self.subs.retire_live();
        for chunk in packed.chunks(self.cfg.max_filters_per_req) {
            let request = Request {
                purpose: Purpose::Live,
                filters: chunk.to_vec(),
            };
            self.subs.enqueue(request, false);
        }
    }

    fn all_live_filters(&self) -> Vec<Filter> {
        let coords: Vec<String> = self.live.repos.iter().cloned().collect();
        let ids: Vec<String> = self.live.roots.iter().cloned().collect();
        let l1 = self.live.l1.then(filters::l1);
        l1.into_iter()
            .chain(filters::l2(&coords))
            .chain(filters::l3(&ids))
            .map(filters::live)
            .collect()
    }

    fn pump(&mut self, now_ms: u64) {
        for (id, filters) in self.subs.pump(now_ms) {
            let req = ClientMessage::req(SubscriptionId::new(id), filters);
            self.actions.push(Action::Send(req.as_json()));
        }
        for id in self.subs.take_retired() {
            self.send_close(&id);
        }
    }

    fn fail_batch(&mut self, id: &str, reason: String, now_ms: u64) {
        let Some(b) = self.batches.get_mut(id) else {
            return;
        };
        if b.is_failed() {
            return;
        }
        b.fail(reason);
        for sub in self.subs.drop_batch(id) {
            self.send_close(&sub);
        }
        self.settle(id, now_ms);
        self.pump(now_ms);
    }

    /// Ends the batch if it is terminal: updates the work sets and tells the bus.
    fn settle(&mut self, id: &str, now_ms: u64) {
        let Some(end) = self.batches.get(id).and_then(Batch::end) else {
            return;
        };
        let b = self.batches.remove(id).expect("batch present");
        self.forget_reconciliations(id);
        let ok = end == BatchEnd::Confirmed;
        self.work
            .finish(&b.items, b.catch_up, ok, now_ms + self.cfg.batch_retry_ms);
        self.flush_dropped(now_ms);
        let (batch, session) = (b.id.clone(), self.session.clone());
        let (events_seen, last_seq) = (b.events_seen(), b.last_seq());
        self.landed_seq = self.landed_seq.max(last_seq);
        match end {
            BatchEnd::Confirmed => {
                tracing::info!(batch = %batch, events_seen, last_seq, "batch confirmed");
                self.news(RelayBody::BatchConfirmed {
                    batch,
                    session,
                    events_seen,
                    last_seq,
                });
            }
            BatchEnd::Failed(reason) => {
                tracing::warn!(batch = %batch, events_seen, %reason, "batch failed");
                self.news(RelayBody::BatchFailed {
                    batch,
                    session,
                    events_seen,
                    last_seq,
                    reason,
                });
            }
        }
        self.actions.push(Action::StateChanged);
    }

    fn flush_dropped(&mut self, now_ms: u64) {
        self.last_dropped_report_ms = now_ms;
        if self.dropped.total() > 0 {
            let delta = std::mem::take(&mut self.dropped);
            tracing::info!(?delta, "events dropped");
            self.news(RelayBody::Dropped(delta));
        }
    }

    fn send_close(&mut self, sub: &str) {
        let close = ClientMessage::close(SubscriptionId::new(sub));
        self.actions.push(Action::Send(close.as_json()));
    }

    fn news(&mut self, body: RelayBody) {
        self.actions.push(Action::News(body));
    }
}

fn historic_request(batch: &str, pages: &[(usize, Filter)]) -> Request {
    Request {
        purpose: Purpose::Historic {
            batch: batch.to_string(),
            filters: pages.iter().map(|(i, _)| *i).collect(),
        },
        filters: pages.iter().map(|(_, f)| f.clone()).collect(),
    }
}

mod reconcile;
#[cfg(test)]
mod reconcile_tests;
mod relay_messages;
#[cfg(test)]
mod tests;

pub use reconcile::IndexAnswer;
