//! [`NegBehaviour::Lie`](super::NegBehaviour::Lie): real NIP-77 over the stored events, one
//! negentropy session per subscription of a connection, while REQs for `ids` get EOSE only.

use std::collections::HashMap;

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::Filter;
use serde_json::{json, Value};

use super::protocol::Reply;
use super::{NegBehaviour, Shared};

/// The negentropy sessions of one connection.
#[derive(Default)]
pub(super) struct Sessions {
    open: HashMap<String, Negentropy<'static, NegentropyStorageVector>>,
}

impl Sessions {
    /// Answers NIP-77 messages when the relay lies; `None` for everything else.
    pub(super) fn handle(&mut self, shared: &Shared, text: &str) -> Option<Reply> {
        if shared.opts.neg != NegBehaviour::Lie {
            return None;
        }
        let Ok(Value::Array(message)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let sub = message.get(1).and_then(Value::as_str)?.to_owned();
        match message.first().and_then(Value::as_str)? {
            "NEG-OPEN" => {
                let filter: Filter = serde_json::from_value(message.get(2)?.clone()).ok()?;
                let mut neg = session(shared, &filter)?;
                let answer = reconcile(&mut neg, message.get(3)?.as_str()?)?;
                self.open.insert(sub.clone(), neg);
                Some(neg_msg(&sub, &answer))
            }
            "NEG-MSG" => {
                let neg = self.open.get_mut(&sub)?;
                let answer = reconcile(neg, message.get(2)?.as_str()?)?;
                Some(neg_msg(&sub, &answer))
            }
            "NEG-CLOSE" => {
                self.open.remove(&sub);
                Some(Reply::Send(Vec::new()))
            }
            _ => None,
        }
    }
}

fn session(
    shared: &Shared,
    filter: &Filter,
) -> Option<Negentropy<'static, NegentropyStorageVector>> {
    let events = shared.events.lock().expect("events lock");
    let mut storage = NegentropyStorageVector::new();
    for event in events.iter().filter_map(|e| e.parsed()) {
        if filter.match_event(event, nostr::filter::MatchEventOptions::new()) {
            let id = Id::from_byte_array(event.id.to_bytes());
            storage.insert(event.created_at.as_secs(), id).ok()?;
        }
    }
    storage.seal().ok()?;
    Negentropy::owned(storage, 60_000).ok()
}

fn reconcile(neg: &mut Negentropy<'static, NegentropyStorageVector>, hex: &str) -> Option<String> {
    let query = decode_hex(hex)?;
    Some(encode_hex(&neg.reconcile(&query).ok()?))
}

fn neg_msg(sub: &str, hex: &str) -> Reply {
    Reply::Send(vec![json!(["NEG-MSG", sub, hex]).to_string()])
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
