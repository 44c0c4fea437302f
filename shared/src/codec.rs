//! The wire codec: bincode by default, JSON when `NGIT_SYNC_WIRE=json`; readers accept both.
//! The only module that names bincode.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// First byte of a bincode payload. JSON payloads start with `{`, so one byte tells them apart.
pub const BINCODE_MARKER: u8 = 0xB1;

/// Which encoding a service writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    #[default]
    Bincode,
    Json,
}

impl std::str::FromStr for Wire {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bincode" | "" => Ok(Wire::Bincode),
            "json" => Ok(Wire::Json),
            other => Err(format!(
                "unknown wire format {other:?} (expected bincode or json)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty payload")]
    Empty,
    #[error("payload starts with byte {0:#04x}, neither JSON nor bincode")]
    UnknownFormat(u8),
    #[error("bincode: {0}")]
    Bincode(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(wire: Wire, value: &T) -> Result<Bytes, CodecError> {
    match wire {
        Wire::Json => Ok(Bytes::from(serde_json::to_vec(value)?)),
        Wire::Bincode => {
            let mut out = vec![BINCODE_MARKER];
            let body = bincode::serde::encode_to_vec(value, config())
                .map_err(|e| CodecError::Bincode(e.to_string()))?;
            out.extend_from_slice(&body);
            Ok(Bytes::from(out))
        }
    }
}

pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    match payload.first() {
        None => Err(CodecError::Empty),
        Some(b'{') | Some(b'[') | Some(b'"') => Ok(serde_json::from_slice(payload)?),
        Some(&BINCODE_MARKER) => {
            let (value, _) = bincode::serde::decode_from_slice(&payload[1..], config())
                .map_err(|e| CodecError::Bincode(e.to_string()))?;
            Ok(value)
        }
        Some(other) => Err(CodecError::UnknownFormat(*other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use crate::relay_url::RelayUrl;
    use crate::status::*;
    use proptest::prelude::*;

    fn news(body: RelayBody) -> RelayNews {
        RelayNews {
            relay: RelayUrl::parse("wss://relay.example.com").unwrap(),
            at_ms: 1_700_000_000_000,
            body,
        }
    }

    #[test]
    fn both_wires_round_trip_and_readers_accept_either() {
        let msg = news(RelayBody::BatchConfirmed {
            batch: "b1".into(),
            session: "s1".into(),
            events_seen: 42,
            last_seq: 7,
        });
        for wire in [Wire::Bincode, Wire::Json] {
            let bytes = encode(wire, &msg).unwrap();
            let back: RelayNews = decode(&bytes).unwrap();
            assert_eq!(back, msg);
        }
        assert_eq!(encode(Wire::Json, &msg).unwrap()[0], b'{');
        assert_eq!(encode(Wire::Bincode, &msg).unwrap()[0], BINCODE_MARKER);
    }

    /// The bincode bytes are a public interface (other deployments read them): this pins them.
    #[test]
    fn bincode_golden_bytes() {
        let w = Watermark { seq: 300, at_ms: 5 };
        let bytes = encode(Wire::Bincode, &w).unwrap();
        // marker, varint 300 (0xfb 0x2c 0x01), varint 5
        assert_eq!(bytes.as_ref(), &[0xB1, 0xfb, 0x2c, 0x01, 0x05]);
        let status = news(RelayBody::Forgotten);
        let bytes = encode(Wire::Bincode, &status).unwrap();
        let mut expected = vec![0xB1, 23];
        expected.extend_from_slice(b"wss://relay.example.com");
        // url (varint length + bytes), at_ms as 0xfd + u64 LE (it exceeds u32), variant 1 (Forgotten)
        expected.extend_from_slice(&[0xfd, 0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0x01]);
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode::<Watermark>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Watermark>(&[0x00, 1]),
            Err(CodecError::UnknownFormat(0))
        ));
        assert!(decode::<Watermark>(&[BINCODE_MARKER]).is_err());
        assert!(decode::<Watermark>(b"{\"seq\":").is_err());
    }

    #[test]
    fn wire_names_parse() {
        assert_eq!("json".parse::<Wire>().unwrap(), Wire::Json);
        assert_eq!("BINCODE".parse::<Wire>().unwrap(), Wire::Bincode);
        assert!("xml".parse::<Wire>().is_err());
    }

    proptest! {
        #[test]
        fn outcome_batches_round_trip(ids in proptest::collection::vec("[0-9a-f]{64}", 0..20), seq in any::<u64>(), json: bool) {
            let batch = OutcomeBatch {
                outcome: Outcome::Saved,
                watermark: seq,
                items: ids.iter().enumerate().map(|(i, id)| OutcomeItem {
                    id: id.clone(), kind: 1621, seq: seq.wrapping_add(i as u64),
                    relay: RelayUrl::parse("ws://r.example").unwrap(), reason: None, event: Some("{}".into()),
                }).collect(),
            };
            let wire = if json { Wire::Json } else { Wire::Bincode };
            let back: OutcomeBatch = decode(&encode(wire, &batch).unwrap()).unwrap();
            prop_assert_eq!(back, batch);
        }
    }
}
