//! The small enums every service agrees on: connection status, health, layers, outcomes.

use serde::{Deserialize, Serialize};

/// Per-relay sync progress, owned by batch-tracker (DESIGN.md section 6).
/// The numbers are the values of `ngit_sync_relay_connected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    #[default]
    Disconnected = 0,
    Connecting = 1,
    Syncing = 2,
    Connected = 3,
    ConnectedDegraded = 4,
}

impl ConnectionStatus {
    pub fn gauge(self) -> i64 {
        self as i64
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Connecting => "connecting",
            Self::Syncing => "syncing",
            Self::Connected => "connected",
            Self::ConnectedDegraded => "connected_degraded",
        }
    }
}

/// Per-relay health, owned by the connector that holds the relay (DESIGN.md section 5).
/// The numbers are the values of `ngit_sync_relay_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy = 1,
    #[default]
    Disconnected = 2,
    Degraded = 3,
    Dead = 4,
    RateLimited = 5,
}

impl Health {
    pub fn gauge(self) -> i64 {
        self as i64
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Disconnected => "disconnected",
            Self::Degraded => "degraded",
            Self::Dead => "dead",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// The three sync layers of DESIGN.md section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// Every repository announcement and state.
    L1,
    /// Events tagging a repository coordinate.
    L2,
    /// Events tagging a root event (patch, PR, issue).
    L3,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::L3 => "l3",
        }
    }
}

/// How a historic batch fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMethod {
    Req,
    Negentropy,
}

impl SyncMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Req => "req",
            Self::Negentropy => "negentropy",
        }
    }
}

/// Whether a session starts from nothing or continues (DESIGN.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncPlan {
    Fresh,
    Quick,
}

impl SyncPlan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Quick => "quick",
        }
    }
}

/// The home relay's final answer to one synced event (transient answers are retried, never final).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Saved,
    Duplicate,
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Saved, Outcome::Duplicate, Outcome::Rejected];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Saved => "saved",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
        }
    }
}

/// Result of one connection attempt (label `result` of `ngit_sync_connection_attempts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    Started,
    Success,
    Failure,
}

impl AttemptResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}
