//! The raw relay's protocol, without I/O: what to answer to each client message.

use std::collections::BTreeSet;

use nostr::filter::MatchEventOptions;
use nostr::{Event, Filter, JsonUtil};
use serde_json::{json, Value};

use super::{NegBehaviour, RawRelayOptions, RecordedReq, Shared};

/// An event as served: the JSON is sent byte for byte, parsed only to match filters.
#[derive(Debug)]
pub(super) struct StoredEvent {
    json: String,
    parsed: Option<Event>,
    created_at: u64,
    id: String,
}

impl StoredEvent {
    pub(super) fn new(json: String) -> Self {
        let value: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
        Self {
            parsed: Event::from_json(&json).ok(),
            created_at: value["created_at"].as_u64().unwrap_or(0),
            id: value["id"].as_str().unwrap_or_default().to_owned(),
            json,
        }
    }

    pub(super) fn parsed(&self) -> Option<&Event> {
        self.parsed.as_ref()
    }

    fn matches(&self, filter: &Filter, unconditional: bool, ignore_filters: bool) -> bool {
        let in_time = filter.since.is_none_or(|t| self.created_at >= t.as_secs())
            && filter.until.is_none_or(|t| self.created_at <= t.as_secs());
        match &self.parsed {
            Some(_) if ignore_filters => in_time,
            Some(event) => filter.match_event(event, MatchEventOptions::new()),
            None => unconditional && in_time,
        }
    }
}

/// What to do after a client message.
#[derive(Debug, PartialEq)]
pub(super) enum Reply {
    Send(Vec<String>),
    Disconnect,
}

/// The relay's whole protocol, without I/O.
pub(super) fn respond(shared: &Shared, text: &str) -> Reply {
    let Ok(Value::Array(message)) = serde_json::from_str::<Value>(text) else {
        return Reply::Send(vec![notice("error: could not parse message")]);
    };
    let sub = message.get(1).and_then(Value::as_str).unwrap_or_default();
    match message.first().and_then(Value::as_str) {
        Some("REQ") => req(shared, sub, &message[2.min(message.len())..]),
        Some("CLOSE" | "NEG-CLOSE") => Reply::Send(Vec::new()),
        Some("NEG-OPEN") => neg_open(shared.opts.neg, sub),
        Some("EVENT") => {
            let id = message
                .get(1)
                .map(|e| &e["id"])
                .cloned()
                .unwrap_or(Value::Null);
            Reply::Send(vec![json!([
                "OK",
                id,
                false,
                "blocked: read-only test relay"
            ])
            .to_string()])
        }
        _ => Reply::Send(vec![notice("error: unknown command")]),
    }
}

fn req(shared: &Shared, sub: &str, filters: &[Value]) -> Reply {
    let seen = {
        let mut reqs = shared.reqs.lock().expect("reqs lock");
        reqs.push(RecordedReq {
            subscription_id: sub.to_owned(),
            filters: filters.to_vec(),
        });
        reqs.len()
    };
    if seen <= shared.opts.rate_limit_reqs_first {
        return Reply::Send(vec![closed(sub, "rate-limited: slow down")]);
    }
    let parsed: Result<Vec<Filter>, _> = filters
        .iter()
        .map(|f| serde_json::from_value::<Filter>(f.clone()))
        .collect();
    let filters = match parsed {
        Ok(filters) => filters,
        Err(e) => return Reply::Send(vec![closed(sub, &format!("invalid: bad filter: {e}"))]),
    };
    let events = shared.events.lock().expect("events lock");
    let sub_json = Value::from(sub).to_string();
    let mut out: Vec<String> = select(&events, &filters, &shared.opts)
        .into_iter()
        // Spliced in verbatim so a broken event reaches the client exactly as given.
        .map(|e| format!("[\"EVENT\",{sub_json},{}]", e.json))
        .collect();
    out.push(json!(["EOSE", sub]).to_string());
    Reply::Send(out)
}

/// The union over `filters` of each filter's newest `limit` matches, newest first.
fn select<'a>(
    events: &'a [StoredEvent],
    filters: &[Filter],
    opts: &RawRelayOptions,
) -> Vec<&'a StoredEvent> {
    let newest_first = |a: &&StoredEvent, b: &&StoredEvent| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.id.cmp(&b.id))
    };
    let mut chosen: BTreeSet<usize> = BTreeSet::new();
    // A lying relay never serves what it advertised by negentropy.
    let lying = opts.neg == NegBehaviour::Lie;
    for filter in filters.iter().filter(|f| !(lying && f.ids.is_some())) {
        let mut matching: Vec<(usize, &StoredEvent)> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.matches(filter, opts.serve_unconditionally, opts.ignore_filters))
            .collect();
        matching.sort_by(|(_, a), (_, b)| newest_first(a, b));
        let limit = match (filter.limit, opts.max_limit) {
            (Some(asked), Some(max)) => asked.min(max),
            (asked, max) => asked.or(max).unwrap_or(usize::MAX),
        };
        chosen.extend(matching.into_iter().take(limit).map(|(i, _)| i));
    }
    let mut out: Vec<&StoredEvent> = chosen.into_iter().map(|i| &events[i]).collect();
    out.sort_by(newest_first);
    out
}

fn neg_open(behaviour: NegBehaviour, sub: &str) -> Reply {
    let message = match behaviour {
        NegBehaviour::NoticeBadMsg => notice("ERROR: bad msg: unknown cmd"),
        NegBehaviour::NoticeUnparsable => notice("could not parse command"),
        NegBehaviour::NegErr => json!(["NEG-ERR", sub, "blocked: negentropy disabled"]).to_string(),
        NegBehaviour::Closed => closed(sub, "unsupported: negentropy"),
        NegBehaviour::Silence => return Reply::Send(Vec::new()),
        NegBehaviour::Disconnect => return Reply::Disconnect,
        // Answered by `lying::Sessions` before this point; a message it could not read ends here.
        NegBehaviour::Lie => json!(["NEG-ERR", sub, "error: bad NEG-OPEN"]).to_string(),
    };
    Reply::Send(vec![message])
}

fn notice(text: &str) -> String {
    json!(["NOTICE", text]).to_string()
}

fn closed(sub: &str, reason: &str) -> String {
    json!(["CLOSED", sub, reason]).to_string()
}
