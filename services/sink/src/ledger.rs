//! The events the sink holds between delivery and ack: when each is (re)written to the home
//! relay, which `OK` belongs to which, retries with backoff, the shared rate-limit pause, and the
//! final verdicts waiting to be published. A synchronous state machine; time is a parameter.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use ngit_sync_shared::status::Outcome;
use ngit_sync_shared::RelayUrl;

use crate::answer::{classify, Answer, Transient};
use crate::retry::RetryPolicy;

/// One delivered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Events-stream sequence of the message that carried it.
    pub seq: u64,
    /// Event id, hex.
    pub id: String,
    pub kind: u16,
    /// The relay it came from.
    pub relay: RelayUrl,
    /// The event JSON exactly as received.
    pub json: String,
}

/// The home relay's final answer to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The relay's message, for duplicates and rejections.
    pub reason: Option<String>,
}

/// Why an event goes back to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    RateLimited(String),
    RelayError(String),
    Timeout,
    ConnectionLost,
}

/// What an answer or a timeout did, for the caller's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Final {
        seq: u64,
        verdict: Verdict,
    },
    Retry {
        seq: u64,
        delay: Duration,
        reason: RetryReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// To be written once `at` has passed (first write, or after a retry delay).
    Queued { at: Instant },
    /// Written; its `OK` is due by `deadline`.
    Sent { deadline: Instant },
    /// Answered for good; waiting for its outcome to be published.
    Final(Verdict),
}

#[derive(Debug)]
struct Entry {
    event: Held,
    state: State,
    /// Transient failures in a row.
    failures: u32,
    /// Explicit `error:` answers for this event, and how many other events the relay had
    /// accepted when the first came.
    error_answers: u32,
    accepted_at_first_error: u64,
    /// Last time the stream was told we are still working on it.
    touched: Instant,
}

#[derive(Debug)]
pub struct Ledger {
    entries: BTreeMap<u64, Entry>,
    /// Event id → the sequence whose write is awaiting its `OK`. One write per id at a time, so
    /// an `OK` (which names only the id) always has exactly one owner.
    on_wire: HashMap<String, u64>,
    retry: RetryPolicy,
    ok_timeout: Duration,
    /// No writes before this: the home relay said `rate-limited:`.
    paused_until: Option<Instant>,
    /// Rate-limit pauses since the last accepted event; lengthens the next pause.
    rate_limit_streak: u32,
    /// Events the relay accepted (saved or duplicate) so far.
    accepted: u64,
}

/// An event the home relay answers `error:` this many times, while it accepts others in the
/// meantime, is refused for good: nostr-relay-builder, for one, answers `error: unknown` to an
/// addressable event older than the one it holds, and retrying that forever would hold the
/// landing watermark (and every relay's completion) back. Timeouts, lost connections and rate
/// limits never count: they say nothing about the event.
pub const MAX_ERROR_ANSWERS: u32 = 6;

/// A replaceable or addressable event (repository announcements and states among them) that
/// errors twice is almost surely older than the version the relay holds: relays keep superseded
/// announcements for ever, so waiting the full count would stall every cold sync.
pub const MAX_ERROR_ANSWERS_REPLACEABLE: u32 = 2;

fn error_answers_allowed(kind: u16) -> u32 {
    let replaceable = kind == 0
        || kind == 3
        || (10_000..20_000).contains(&kind)
        || (30_000..40_000).contains(&kind);
    if replaceable {
        MAX_ERROR_ANSWERS_REPLACEABLE
    } else {
        MAX_ERROR_ANSWERS
    }
}

impl Ledger {
    pub fn new(retry: RetryPolicy, ok_timeout: Duration) -> Ledger {
        Ledger {
            entries: BTreeMap::new(),
            on_wire: HashMap::new(),
            retry,
            ok_timeout,
            paused_until: None,
            rate_limit_streak: 0,
            accepted: 0,
        }
    }

    /// Takes a delivered event; `false` if its sequence is already held (a redelivery).
    pub fn admit(&mut self, event: Held, now: Instant) -> bool {
        if self.entries.contains_key(&event.seq) {
            return false;
        }
        let entry = Entry {
            event,
            state: State::Queued { at: now },
            failures: 0,
            error_answers: 0,
            accepted_at_first_error: 0,
            touched: now,
        };
        self.entries.insert(entry.event.seq, entry);
        true
    }

    /// Sequences to write now, in stream order; they count as sent from here on.
    pub fn take_sendable(&mut self, now: Instant) -> Vec<u64> {
        if self.is_paused(now) {
            return Vec::new();
        }
        let deadline = now + self.ok_timeout;
        let mut out = Vec::new();
        for (seq, entry) in self.entries.iter_mut() {
            let due = matches!(entry.state, State::Queued { at } if at <= now);
            if due && !self.on_wire.contains_key(&entry.event.id) {
                entry.state = State::Sent { deadline };
                self.on_wire.insert(entry.event.id.clone(), *seq);
                out.push(*seq);
            }
        }
        out
    }

    pub fn get(&self, seq: u64) -> Option<&Held> {
        self.entries.get(&seq).map(|e| &e.event)
    }

    /// Applies the home relay's `OK` for event `id`.
    pub fn answer(
        &mut self,
        id: &str,
        accepted: bool,
        message: &str,
        now: Instant,
    ) -> Option<Step> {
        let answer = classify(accepted, message);
        let seq = match self.on_wire.get(id) {
            Some(seq) => *seq,
            // A write from before a timeout or reconnect answered late: a final answer still
            // counts, a transient one changes nothing.
            None => {
                let late = self
                    .entries
                    .iter()
                    .find(|(_, e)| e.event.id == id && matches!(e.state, State::Queued { .. }));
                match (late, answer) {
                    (Some((seq, _)), Answer::Final(_)) => *seq,
                    _ => return None,
                }
            }
        };
        if self.on_wire.get(id) == Some(&seq) {
            self.on_wire.remove(id);
        }
        match answer {
            Answer::Final(outcome) => {
                if outcome != Outcome::Rejected {
                    self.rate_limit_streak = 0;
                    self.accepted += 1;
                }
                let verdict = Verdict {
                    outcome,
                    reason: (outcome != Outcome::Saved).then(|| message.to_string()),
                };
                let entry = self.entries.get_mut(&seq)?;
                entry.state = State::Final(verdict.clone());
                entry.failures = 0;
                Some(Step::Final { seq, verdict })
            }
            Answer::Transient(kind) => {
                let reason = match kind {
                    Transient::RateLimited => {
                        self.pause(now);
                        RetryReason::RateLimited(message.to_string())
                    }
                    Transient::RelayError => {
                        if let Some(step) = self.count_error_answer(seq, message) {
                            return Some(step);
                        }
                        RetryReason::RelayError(message.to_string())
                    }
                };
                Some(self.requeue(seq, now, reason))
            }
        }
    }

    /// Writes whose `OK` is overdue go back to the queue.
    pub fn expire(&mut self, now: Instant) -> Vec<Step> {
        let overdue: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Sent { deadline } if deadline <= now))
            .map(|(seq, _)| *seq)
            .collect();
        overdue
            .into_iter()
            .map(|seq| {
                self.forget_write(seq);
                self.requeue(seq, now, RetryReason::Timeout)
            })
            .collect()
    }

    /// The connection dropped: every write without an answer is retried. Returns how many.
    pub fn connection_lost(&mut self, now: Instant) -> usize {
        let sent: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Sent { .. }))
            .map(|(seq, _)| *seq)
            .collect();
        self.on_wire.clear();
        for seq in &sent {
            self.requeue(*seq, now, RetryReason::ConnectionLost);
        }
        sent.len()
    }

    /// Events answered for good, in stream order.
    pub fn finals(&self) -> Vec<(&Held, &Verdict)> {
        self.entries
            .values()
            .filter_map(|e| match &e.state {
                State::Final(v) => Some((&e.event, v)),
                _ => None,
            })
            .collect()
    }

    pub fn final_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::Final(_)))
            .count()
    }

    /// Forgets an event (its message was acked, or is being given back).
    pub fn remove(&mut self, seq: u64) -> Option<Held> {
        self.forget_write(seq);
        self.entries.remove(&seq).map(|e| e.event)
    }

    /// Held events without a final answer yet.
    pub fn unfinished(&self) -> Vec<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| !matches!(e.state, State::Final(_)))
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// Writes awaiting their `OK`.
    pub fn sent_count(&self) -> usize {
        self.on_wire.len()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Held events last touched at least `every` ago; they count as touched now. The caller
    /// tells the stream it is still working on them so they are not redelivered meanwhile.
    pub fn take_stale(&mut self, now: Instant, every: Duration) -> Vec<u64> {
        let mut out = Vec::new();
        for (seq, entry) in self.entries.iter_mut() {
            if now.saturating_duration_since(entry.touched) >= every {
                entry.touched = now;
                out.push(*seq);
            }
        }
        out
    }

    /// When something next needs doing without outside news: an `OK` falls due, a retry delay or
    /// the rate-limit pause ends. Queued events only matter while the home relay is connected.
    pub fn next_wakeup(&self, now: Instant, connected: bool) -> Option<Instant> {
        let resume = self.paused_until.filter(|until| *until > now);
        self.entries
            .values()
            .filter_map(|e| match e.state {
                State::Sent { deadline } => Some(deadline),
                State::Queued { at } if connected && at > now => {
                    Some(resume.map_or(at, |r| r.max(at)))
                }
                State::Queued { .. } if connected => resume,
                _ => None,
            })
            .min()
    }

    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|until| *until > now)
    }

    fn is_paused(&self, now: Instant) -> bool {
        self.paused_until(now).is_some()
    }

    /// Starts (or keeps) the shared pause; answers to writes made before it began do not
    /// lengthen it, so one burst of refusals counts once.
    fn pause(&mut self, now: Instant) {
        if self.is_paused(now) {
            return;
        }
        self.rate_limit_streak += 1;
        self.paused_until = Some(now + self.retry.delay(self.rate_limit_streak));
    }

    fn requeue(&mut self, seq: u64, now: Instant, reason: RetryReason) -> Step {
        let delay = match self.entries.get_mut(&seq) {
            Some(entry) => {
                entry.failures += 1;
                let delay = self.retry.delay(entry.failures);
                entry.state = State::Queued { at: now + delay };
                delay
            }
            None => Duration::ZERO,
        };
        Step::Retry { seq, delay, reason }
    }

    /// Counts an `error:` answer; turns the event into a rejection once it is clearly the
    /// event, not the relay, that fails (see [`MAX_ERROR_ANSWERS`]).
    fn count_error_answer(&mut self, seq: u64, message: &str) -> Option<Step> {
        let accepted = self.accepted;
        let entry = self.entries.get_mut(&seq)?;
        if entry.error_answers == 0 {
            entry.accepted_at_first_error = accepted;
        }
        entry.error_answers += 1;
        if entry.error_answers < error_answers_allowed(entry.event.kind)
            || accepted <= entry.accepted_at_first_error
        {
            return None;
        }
        let verdict = Verdict {
            outcome: Outcome::Rejected,
            reason: Some(format!(
                "{message} (answered {} times while other events were accepted)",
                entry.error_answers
            )),
        };
        entry.state = State::Final(verdict.clone());
        entry.failures = 0;
        Some(Step::Final { seq, verdict })
    }

    fn forget_write(&mut self, seq: u64) {
        if let Some(entry) = self.entries.get(&seq) {
            if self.on_wire.get(&entry.event.id) == Some(&seq) {
                self.on_wire.remove(&entry.event.id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
