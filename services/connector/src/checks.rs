//! Reading relay frames and judging events: an `EVENT` frame is split so the event's JSON can
//! travel byte for byte as the relay sent it; events are checked for size, id, signature and
//! whether they match a filter we sent, and refusals are counted.

use ngit_sync_shared::messages::DroppedEvents;
use nostr::{Event, JsonUtil, RelayMessage};

/// One text frame from a relay.
#[derive(Debug)]
pub enum Frame<'a> {
    /// `["EVENT", <sub>, <event>]` with the event's JSON text exactly as received.
    Event {
        sub: String,
        json: &'a str,
    },
    Message(Box<RelayMessage<'static>>),
    Malformed(String),
}

pub fn parse_frame(text: &str) -> Frame<'_> {
    if let Some((sub, json)) = split_event(text) {
        return Frame::Event { sub, json };
    }
    match RelayMessage::from_json(text) {
        // An EVENT frame split_event could not take apart is broken in some other way.
        Ok(RelayMessage::Event { .. }) => Frame::Malformed("unusual EVENT frame".into()),
        Ok(message) => Frame::Message(Box::new(message)),
        Err(e) => Frame::Malformed(e.to_string()),
    }
}

/// Takes `["EVENT", "<sub>", {...}]` apart without re-encoding the event. `None` when the
/// frame is not shaped so (then the caller falls back to a full parse).
fn split_event(text: &str) -> Option<(String, &str)> {
    let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?;
    let rest = inner.trim_start().strip_prefix("\"EVENT\"")?;
    let rest = rest.trim_start().strip_prefix(',')?.trim_start();
    let end = string_literal_end(rest)?;
    let sub: String = serde_json::from_str(&rest[..end]).ok()?;
    let json = rest[end..].trim_start().strip_prefix(',')?.trim();
    (json.starts_with('{') && json.ends_with('}')).then_some((sub, json))
}

/// Length of the JSON string literal at the start of `s` (quotes included).
fn string_literal_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Why an event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Oversized,
    Malformed,
    Unrequested,
    BadId,
    BadSignature,
}

impl DropReason {
    pub fn count(self, into: &mut DroppedEvents) {
        let slot = match self {
            Self::Oversized => &mut into.oversized,
            Self::Malformed => &mut into.malformed,
            Self::Unrequested => &mut into.unrequested,
            Self::BadId => &mut into.bad_id,
            Self::BadSignature => &mut into.bad_signature,
        };
        *slot += 1;
    }
}

pub fn parse_event(json: &str) -> Result<Event, DropReason> {
    Event::from_json(json).map_err(|_| DropReason::Malformed)
}

/// Id first: it is cheap, and a wrong id makes the signature check meaningless.
pub fn verify(event: &Event) -> Result<(), DropReason> {
    if !event.verify_id() {
        return Err(DropReason::BadId);
    }
    if !event.verify_signature() {
        return Err(DropReason::BadSignature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{EventBuilder, Keys, Kind};

    fn note() -> Event {
        EventBuilder::new(Kind::GitIssue, "a \"quoted\" ] body")
            .sign_with_keys(&Keys::generate())
            .unwrap()
    }

    #[test]
    fn event_frames_keep_the_event_text_byte_for_byte() {
        let ev = note();
        // Odd spacing and key order a re-encoding would not reproduce.
        let json = ev.as_json().replacen("{\"id\"", "{ \"id\"", 1);
        let frame = format!("[ \"EVENT\" , \"sub \\\"1\\\"\" ,{json} ]");
        match parse_frame(&frame) {
            Frame::Event { sub, json: got } => {
                assert_eq!(sub, "sub \"1\"");
                assert_eq!(got, json);
                assert_eq!(parse_event(got).unwrap(), ev);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_frames_parse_as_relay_messages() {
        assert!(matches!(
            parse_frame("[\"EOSE\",\"h1\"]"),
            Frame::Message(m) if matches!(*m, RelayMessage::EndOfStoredEvents(_))
        ));
        assert!(matches!(
            parse_frame("[\"CLOSED\",\"h1\",\"rate-limited: slow\"]"),
            Frame::Message(m) if matches!(*m, RelayMessage::Closed { .. })
        ));
        assert!(matches!(parse_frame("nonsense"), Frame::Malformed(_)));
        assert!(matches!(
            parse_frame("[\"EVENT\",\"h1\",{\"id\":1},{}]"),
            Frame::Event { .. } | Frame::Malformed(_)
        ));
    }

    #[test]
    fn a_trailing_element_makes_the_event_unreadable_not_accepted() {
        let json = note().as_json();
        let frame = format!("[\"EVENT\",\"h1\",{json},{{}}]");
        if let Frame::Event { json, .. } = parse_frame(&frame) {
            assert_eq!(parse_event(json), Err(DropReason::Malformed));
        }
    }

    #[test]
    fn bad_ids_and_signatures_are_told_apart() {
        let good = note();
        assert_eq!(verify(&good), Ok(()));
        let mut value: serde_json::Value = serde_json::from_str(&good.as_json()).unwrap();
        value["content"] = "tampered".into();
        let tampered = Event::from_json(value.to_string()).unwrap();
        assert_eq!(verify(&tampered), Err(DropReason::BadId));
        let other = note();
        let mut value: serde_json::Value = serde_json::from_str(&good.as_json()).unwrap();
        value["sig"] = other.sig.to_string().into();
        let forged = Event::from_json(value.to_string()).unwrap();
        assert_eq!(verify(&forged), Err(DropReason::BadSignature));
        let mut counts = DroppedEvents::default();
        DropReason::BadId.count(&mut counts);
        DropReason::Unrequested.count(&mut counts);
        assert_eq!(
            (counts.bad_id, counts.unrequested, counts.total()),
            (1, 1, 2)
        );
    }
}
