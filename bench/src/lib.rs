//! ngit-sync-bench: builds a seeded world of relays on this machine, runs the real stack against
//! it (one `ngit-sync run <service>` process per service) and measures it; docs/benchmarks.md
//! says what each figure means.
//!
//! - [`args`]: flags and the `seed` tool's arguments
//! - [`world`]: source relays (with and without NIP-77), corpus placement, announcements
//! - [`stack`]: nats-server and the service processes
//! - [`service_process`]: one service process, its memory and CPU
//! - [`procfs`]: `/proc/<pid>/status` and `/proc/<pid>/stat` readings
//! - [`status_watch`]: a live copy of `ngit_sync_status`
//! - [`ingest`]: the optimal pipelining writer (the `limit` client, the `seed` publisher)
//! - [`scenario`]: cold, limit, naive, idle-resync, live, failover, scale
//! - [`report`]: the JSON object and the human summary
//! - [`stats`]: percentiles and ratios
//! - [`seed`]: publishing a corpus to running relays

pub mod args;
pub mod ingest;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod seed;
pub mod service_process;
pub mod stack;
pub mod stats;
pub mod status_watch;
pub mod world;
