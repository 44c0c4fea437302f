//! `ngit-sync`: the command that runs the whole system on one machine and shows it to a person.
//!
//! - [`up`]: every service in one process, with a local nats-server and an embedded home relay
//!   when none is configured
//! - [`run`]: one service in this process, as its own binary would run it
//! - [`local_nats`]: starting and stopping a local `nats-server`
//! - [`home_relay`]: the embedded home relay (nostr-relay-builder over nostr-lmdb)
//! - [`ping`]: a service-API ping, for health checks
//! - [`status`]: one line per relay from the KV buckets
//! - [`watch`]: relay lifecycle messages as they happen

pub mod home_relay;
pub mod local_nats;
pub mod ping;
pub mod run;
pub mod status;
pub mod up;
pub mod watch;
