//! Why the connector as a whole stops with an error (per-relay trouble never ends the service).

use ngit_sync_shared::{BusError, ConfigError, StartError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot start on the bus: {0}")]
    Start(#[from] StartError),
    #[error("cannot register the NATS service API: {0}")]
    ServiceApi(String),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("watch of bucket {bucket} failed: {message}")]
    Watch { bucket: String, message: String },
    #[error("internal task {task} died: {message}")]
    TaskDied { task: &'static str, message: String },
}
