//! Test fixtures for ngit-sync: real NATS and nostr relays on loopback, a NIP-34 corpus, polling.
//!
//! Modules:
//! - [`nats`]: [`NatsServer`], a `nats-server -js` child process, restartable on the same port.
//! - [`relay`]: [`TestRelay`], an in-process nostr-relay-builder relay that really goes down and up.
//! - [`raw_relay`]: [`RawRelay`], a scripted relay for bad events, NIP-77 refusals and rate limits.
//! - [`corpus`]: [`Corpus`], a seeded generator of signed NIP-34 events.
//! - [`eventually`](mod@eventually): [`eventually`](fn@eventually) and [`eventually_some`], polling instead of sleeps.
//! - [`net`]: [`free_port`], [`http_get`] and [`port_is_open`] on 127.0.0.1.
//! - [`test_log`]: [`init_tracing`], logging only when `TEST_LOG` is set.
//!
//! Everything binds 127.0.0.1 only and is torn down on drop.

pub mod corpus;
mod counting_stream;
pub mod eventually;
mod handshake;
pub mod nats;
pub mod net;
pub mod raw_relay;
pub mod relay;
mod server_thread;
pub mod test_log;

pub use corpus::{BadEvents, Corpus, CorpusSpec, Repo};
pub use eventually::{eventually, eventually_some};
pub use nats::NatsServer;
pub use net::{free_port, http_get, port_is_open};
pub use raw_relay::{NegBehaviour, RawRelay, RawRelayOptions, RecordedReq};
pub use relay::{RateLimit, TestRelay, TestRelayOptions};
pub use test_log::init_tracing;
