//! `ngit-sync watch`: relay lifecycle messages as they happen, one line each.

use futures::StreamExt;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{RelayBody, RelayNews};
use ngit_sync_shared::Bus;
use tokio_util::sync::CancellationToken;

/// One readable line for a message.
pub fn describe(news: &RelayNews) -> String {
    let detail = match &news.body {
        RelayBody::Discovered { bootstrap, repos } => {
            format!("repos={repos} bootstrap={bootstrap}")
        }
        RelayBody::Forgotten => String::new(),
        RelayBody::Claimed { worker } => format!("worker={worker}"),
        RelayBody::Released { worker, reason } => format!("worker={worker} reason={reason}"),
        RelayBody::Attempted {
            attempt,
            result,
            error,
            ..
        } => format!(
            "attempt={attempt} result={}{}",
            result.as_str(),
            error
                .as_ref()
                .map(|e| format!(" error={e}"))
                .unwrap_or_default()
        ),
        RelayBody::Connected { session, plan, .. } => {
            format!("session={session} plan={}", plan.as_str())
        }
        RelayBody::Disconnected {
            session, reason, ..
        } => format!("session={session} reason={reason}"),
        RelayBody::BatchOpened(b) => format!(
            "batch={} layer={} method={} filters={} items={}",
            b.batch,
            b.layer.as_str(),
            b.method.as_str(),
            b.filters,
            b.items
        ),
        RelayBody::BatchPage {
            batch,
            page,
            events_seen,
            ..
        } => format!("batch={batch} page={page} events={events_seen}"),
        RelayBody::BatchConfirmed {
            batch,
            events_seen,
            last_seq,
            ..
        } => format!("batch={batch} events={events_seen} last_seq={last_seq}"),
        RelayBody::BatchFailed { batch, reason, .. } => format!("batch={batch} reason={reason}"),
        RelayBody::Dropped(d) => d
            .by_reason()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        RelayBody::Health(h) => format!(
            "health={} failures={}",
            h.state.as_str(),
            h.consecutive_failures
        ),
        RelayBody::Status(s) => format!(
            "status={} open={} failed={}",
            s.status.as_str(),
            s.open_batches,
            s.failed_batches
        ),
        RelayBody::TargetsApplied { session, watermark } => {
            format!("session={session} watermark={watermark}")
        }
    };
    format!(
        "{} {:<40} {:<16} {}",
        news.at_ms,
        news.relay,
        news.body.suffix(),
        detail
    )
}

/// Prints every relay message until cancelled.
pub async fn watch(bus: &Bus, json: bool, shutdown: CancellationToken) -> Result<(), String> {
    let mut sub = bus
        .client
        .subscribe(bus.names.relay_all())
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => return Err("NATS subscription ended".into()) },
        };
        match codec::decode::<RelayNews>(&msg.payload) {
            Ok(news) if json => println!("{}", serde_json::to_string(&news).unwrap_or_default()),
            Ok(news) => println!("{}", describe(&news)),
            Err(e) => eprintln!("{}: undecodable payload: {e}", msg.subject),
        }
    }
}
