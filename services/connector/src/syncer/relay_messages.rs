//! What the relay says, fed to the syncer: events (checked, paged, published), EOSE (next
//! page or done), CLOSED (re-ask after a rate limit, else fail the batch), NOTICE and OK
//! (rate limits).

use ngit_sync_shared::filters;
use ngit_sync_shared::messages::RelayBody;
use nostr::{JsonUtil, RelayMessage};

use super::{historic_request, Action, PublishJob, Syncer};
use crate::checks::{self, DropReason, Frame};
use crate::subscriptions::{Lookup, Purpose, Request};

impl Syncer {
    pub fn on_text(&mut self, text: &str, now_ms: u64) {
        let message = match checks::parse_frame(text) {
            Frame::Event { sub, json } => return self.on_event(&sub, json, now_ms),
            Frame::Message(message) => message,
            Frame::Malformed(error) => {
                tracing::debug!(%error, "malformed frame");
                return DropReason::Malformed.count(&mut self.dropped);
            }
        };
        match *message {
            RelayMessage::EndOfStoredEvents(sub) => self.on_eose(sub.as_str(), now_ms),
            // Negentropy hook: NIP-77 answers and refusals go to `reconcile.rs`.
            RelayMessage::NegMsg {
                subscription_id,
                message,
            } => self.on_neg_msg(subscription_id.as_str(), &message, now_ms),
            RelayMessage::NegErr {
                subscription_id,
                message,
            } => self.on_neg_refused(subscription_id.as_str(), &message, now_ms),
            RelayMessage::Closed {
                subscription_id,
                message,
            } if self.is_neg_sub(subscription_id.as_str()) => {
                self.on_neg_refused(subscription_id.as_str(), &message, now_ms)
            }
            RelayMessage::Closed {
                subscription_id,
                message,
            } => self.on_closed(subscription_id.as_str(), &message, now_ms),
            RelayMessage::Notice(message) => {
                self.on_notice(&message, now_ms);
                self.on_neg_notice(&message, now_ms);
            }
            // We send no EVENT, but a relay may answer anything with a rate limit.
            RelayMessage::Ok {
                status: false,
                message,
                ..
            } if message.starts_with("rate-limited:") => self.rate_limit(now_ms, &message),
            other => tracing::debug!(message = %other.as_json(), "relay message ignored"),
        }
    }

    fn on_event(&mut self, sub: &str, json: &str, now_ms: u64) {
        let oversized = json.len() > self.cfg.max_event_bytes;
        let event = match checks::parse_event(json) {
            Ok(event) => event,
            Err(reason) => return reason.count(&mut self.dropped),
        };
        let open = match self.subs.lookup(sub) {
            Lookup::Open(open) => open,
            Lookup::Closed => return,
            Lookup::Unknown => return DropReason::Unrequested.count(&mut self.dropped),
        };
        let matching: Vec<usize> = (0..open.filters.len())
            .filter(|i| filters::matches(&open.filters[*i], &event))
            .collect();
        if matching.is_empty() {
            return DropReason::Unrequested.count(&mut self.dropped);
        }
        open.last_activity_ms = now_ms;
        let batch = match &open.purpose {
            Purpose::Live => None,
            Purpose::Historic { batch, filters } => {
                // The relay counted it in its page whatever we think of it: so does paging.
                if let Some(b) = self.batches.get_mut(batch) {
                    for i in &matching {
                        b.observe(filters[*i], event.id, event.created_at);
                    }
                }
                Some(batch.clone())
            }
        };
        let verdict = if oversized {
            Err(DropReason::Oversized)
        } else {
            checks::verify(&event)
        };
        if let Err(reason) = verdict {
            tracing::debug!(id = %event.id, ?reason, "event dropped");
            return reason.count(&mut self.dropped);
        }
        let batch = batch.filter(|id| match self.batches.get_mut(id) {
            Some(b) => {
                b.publishing();
                true
            }
            None => false,
        });
        self.actions.push(Action::Publish(PublishJob {
            batch,
            id: event.id.to_hex(),
            kind: event.kind.as_u16(),
            json: json.to_string(),
        }));
    }

    fn on_eose(&mut self, sub: &str, now_ms: u64) {
        let Lookup::Open(open) = self.subs.lookup(sub) else {
            return;
        };
        let Purpose::Historic {
            batch,
            filters: idxs,
        } = open.purpose.clone()
        else {
            return;
        };
        self.subs.remove(sub);
        self.send_close(sub);
        let Some(b) = self.batches.get_mut(&batch) else {
            return;
        };
        let next = b.end_page(&idxs);
        let page = RelayBody::BatchPage {
            batch: batch.clone(),
            session: self.session.clone(),
            page: b.pages(),
            events_seen: b.events_seen(),
        };
        if !next.is_empty() {
            self.subs.enqueue(historic_request(&batch, &next), true);
        }
        self.news(page);
        self.flush_dropped(now_ms);
        // Negentropy hook: a finished fetch round may confirm its filter or fail the batch.
        self.fetch_progress(&batch, now_ms);
        self.settle(&batch, now_ms);
        self.pump(now_ms);
    }

    fn on_closed(&mut self, sub: &str, message: &str, now_ms: u64) {
        // A consolidated subscription already replaces it: nothing to ask again.
        let replaced = self.subs.is_retiring(sub);
        let Some(open) = self.subs.remove(sub) else {
            tracing::debug!(sub, message, "CLOSED for a subscription already ended");
            return;
        };
        let rate_limited = message.starts_with("rate-limited:");
        if rate_limited {
            self.rate_limit(now_ms, message);
        }
        match open.purpose {
            Purpose::Live if replaced => {}
            Purpose::Live if rate_limited => {
                self.subs.enqueue(
                    Request {
                        purpose: Purpose::Live,
                        filters: open.filters,
                    },
                    true,
                );
            }
            Purpose::Live => tracing::warn!(sub, message, "relay closed a live subscription"),
            Purpose::Historic {
                batch,
                filters: idxs,
            } if rate_limited => {
                if let Some(b) = self.batches.get_mut(&batch) {
                    let again = b.retry_page(&idxs);
                    self.subs.enqueue(historic_request(&batch, &again), true);
                }
            }
            Purpose::Historic { batch, .. } => {
                tracing::warn!(sub, batch = %batch, message, "relay closed a historic subscription");
                self.fail_batch(&batch, format!("closed by relay: {message}"), now_ms);
            }
        }
        self.pump(now_ms);
    }

    fn on_notice(&mut self, message: &str, now_ms: u64) {
        tracing::info!(notice = message, "relay notice");
        let lower = message.to_ascii_lowercase();
        let slow_down = [
            "rate-limited:",
            "rate limit",
            "rate-limit",
            "ratelimit",
            "too many",
            "slow down",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if slow_down {
            self.rate_limit(now_ms, message);
        }
    }

    fn rate_limit(&mut self, now_ms: u64, why: &str) {
        let until = now_ms + self.cfg.rate_limit_cooldown_ms;
        tracing::warn!(
            why,
            pause_ms = self.cfg.rate_limit_cooldown_ms,
            "relay rate-limits us; pausing REQs"
        );
        self.subs.pause_until(until);
        self.actions.push(Action::RateLimited(until));
    }
}
