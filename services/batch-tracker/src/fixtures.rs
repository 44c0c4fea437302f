//! Test-only builders of relay news, so the status rules read one step per line.

use ngit_sync_shared::messages::{BatchOpened, HealthReport, RelayBody, RelayNews};
use ngit_sync_shared::status::{AttemptResult, Health, Layer, SyncMethod, SyncPlan};
use ngit_sync_shared::RelayUrl;

/// The worker every builder speaks for.
pub const WORKER: &str = "w1";

pub fn url(n: u32) -> RelayUrl {
    RelayUrl::parse(&format!("wss://relay{n}.example.com")).unwrap()
}

pub fn news(relay: &RelayUrl, at_ms: u64, body: RelayBody) -> RelayNews {
    RelayNews {
        relay: relay.clone(),
        at_ms,
        body,
    }
}

pub fn attempted(result: AttemptResult) -> RelayBody {
    RelayBody::Attempted {
        worker: WORKER.into(),
        attempt: 1,
        result,
        error: None,
    }
}

pub fn claimed(worker: &str) -> RelayBody {
    RelayBody::Claimed {
        worker: worker.into(),
    }
}

pub fn released(worker: &str) -> RelayBody {
    RelayBody::Released {
        worker: worker.into(),
        reason: "rebalance".into(),
    }
}

pub fn connected(session: &str) -> RelayBody {
    RelayBody::Connected {
        worker: WORKER.into(),
        session: session.into(),
        plan: SyncPlan::Fresh,
    }
}

pub fn disconnected(session: &str) -> RelayBody {
    RelayBody::Disconnected {
        worker: WORKER.into(),
        session: session.into(),
        reason: "closed".into(),
    }
}

pub fn opened(session: &str, batch: &str, layer: Layer) -> RelayBody {
    RelayBody::BatchOpened(BatchOpened {
        batch: batch.into(),
        session: session.into(),
        layer,
        method: SyncMethod::Req,
        filters: 1,
        items: 0,
    })
}

pub fn page(session: &str, batch: &str) -> RelayBody {
    RelayBody::BatchPage {
        batch: batch.into(),
        session: session.into(),
        page: 1,
        events_seen: 500,
    }
}

pub fn confirmed(session: &str, batch: &str, last_seq: u64) -> RelayBody {
    RelayBody::BatchConfirmed {
        batch: batch.into(),
        session: session.into(),
        events_seen: 1,
        last_seq,
    }
}

/// The owner's word that the session's batches reflect every target change up to `watermark`.
pub fn applied(session: &str, watermark: u64) -> RelayBody {
    RelayBody::TargetsApplied {
        session: session.into(),
        watermark,
    }
}

pub fn failed(session: &str, batch: &str, last_seq: u64) -> RelayBody {
    RelayBody::BatchFailed {
        batch: batch.into(),
        session: session.into(),
        events_seen: 0,
        last_seq,
        reason: "no EOSE in 60 s".into(),
    }
}

pub fn health(state: Health) -> HealthReport {
    HealthReport {
        state,
        consecutive_failures: 0,
        next_attempt_ms: None,
        rate_limited_until_ms: None,
    }
}
