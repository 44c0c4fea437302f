//! Readable message headers, so `nats sub` shows what a bincode payload is about.

/// The relay URL a message is about.
pub const RELAY: &str = "Ngit-Relay";
/// The message type (the subject suffix, or `event` / outcome name).
pub const TYPE: &str = "Ngit-Type";
pub const BATCH: &str = "Ngit-Batch";
pub const STATUS: &str = "Ngit-Status";
pub const KIND: &str = "Ngit-Kind";
/// JetStream de-duplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
