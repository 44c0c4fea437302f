//! metrics-exporter against a real nats-server: messages and KV values published by hand,
//! metrics, health and the status page read over HTTP.

mod common;

use std::time::Duration;

use common::{expect, Harness, WAIT};
use ngit_sync_metrics_exporter::view::SINK_WATERMARK;
use ngit_sync_metrics_exporter::SERVICE;
use ngit_sync_shared::messages::{
    now_ms, BatchOpened, HealthReport, LeaseEntry, OutcomeBatch, OutcomeItem, RelayBody, RelayNews,
    StatusReport, SyncedEvent, Watermark, WorkerEntry,
};
use ngit_sync_shared::status::{
    AttemptResult, ConnectionStatus, Health, Layer, Outcome, SyncMethod, SyncPlan,
};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::eventually;

const ALPHA: &str = "wss://alpha.example";
const BETA: &str = "wss://beta.example";
const GAMMA: &str = "wss://gamma.example";

fn key(relay: &str) -> String {
    RelayUrl::parse(relay).unwrap().key().as_str().to_string()
}

fn attempted(result: AttemptResult) -> RelayBody {
    RelayBody::Attempted {
        worker: "w1".into(),
        attempt: 1,
        result,
        error: (result == AttemptResult::Failure).then(|| "connection refused".into()),
    }
}

fn health(state: Health, failures: u32) -> HealthReport {
    HealthReport {
        state,
        consecutive_failures: failures,
        next_attempt_ms: None,
        rate_limited_until_ms: None,
    }
}

fn status(status: ConnectionStatus, health: Option<HealthReport>) -> StatusReport {
    StatusReport {
        status,
        since_ms: now_ms(),
        session: Some("s1".into()),
        open_batches: 0,
        failed_batches: 0,
        owner: Some("w1".into()),
        health,
    }
}

async fn outcomes(h: &Harness, outcome: Outcome, n: usize) -> anyhow::Result<()> {
    let items = (0..n)
        .map(|i| OutcomeItem {
            id: format!("{:064x}", now_ms() as usize * 100 + i),
            kind: 1621,
            seq: i as u64 + 1,
            relay: RelayUrl::parse(ALPHA).unwrap(),
            reason: (outcome != Outcome::Saved).then(|| "duplicate: have it".into()),
            event: None,
        })
        .collect();
    let batch = OutcomeBatch {
        outcome,
        watermark: 0,
        items,
    };
    h.bus.publish_outcomes(&batch).await?;
    Ok(())
}

/// ALPHA connected and healthy with 3 saved events, BETA disconnected after 2 failed attempts
/// and Degraded, GAMMA Dead (health known only from batch-tracker's status report).
async fn scripted_scenario(h: &Harness) -> anyhow::Result<()> {
    for relay in [ALPHA, BETA, GAMMA] {
        h.track(relay).await?;
        h.relay_news(
            relay,
            RelayBody::Discovered {
                bootstrap: false,
                repos: 1,
            },
        )
        .await?;
    }
    h.relay_news(ALPHA, attempted(AttemptResult::Started))
        .await?;
    h.relay_news(ALPHA, attempted(AttemptResult::Success))
        .await?;
    let connected = RelayBody::Connected {
        worker: "w1".into(),
        session: "s1".into(),
        plan: SyncPlan::Fresh,
    };
    h.relay_news(ALPHA, connected).await?;
    let t0 = now_ms();
    let opened = RelayBody::BatchOpened(BatchOpened {
        batch: "b1".into(),
        session: "s1".into(),
        layer: Layer::L1,
        method: SyncMethod::Req,
        filters: 1,
        items: 0,
    });
    let confirmed = RelayBody::BatchConfirmed {
        batch: "b1".into(),
        session: "s1".into(),
        events_seen: 3,
        last_seq: 3,
    };
    for (at_ms, body) in [(t0, opened), (t0 + 1_500, confirmed)] {
        let news = RelayNews {
            relay: RelayUrl::parse(ALPHA)?,
            at_ms,
            body,
        };
        h.bus.publish_relay(&news).await?;
    }
    h.relay_news(ALPHA, RelayBody::Health(health(Health::Healthy, 0)))
        .await?;
    for _ in 0..2 {
        h.relay_news(BETA, attempted(AttemptResult::Started))
            .await?;
        h.relay_news(BETA, attempted(AttemptResult::Failure))
            .await?;
    }
    h.relay_news(BETA, RelayBody::Health(health(Health::Degraded, 2)))
        .await?;

    let b = &h.bus;
    b.put(
        &b.buckets.status,
        &key(ALPHA),
        &status(ConnectionStatus::Connected, None),
    )
    .await?;
    b.put(
        &b.buckets.status,
        &key(BETA),
        &status(ConnectionStatus::Disconnected, None),
    )
    .await?;
    let dead = status(
        ConnectionStatus::Disconnected,
        Some(health(Health::Dead, 30)),
    );
    b.put(&b.buckets.status, &key(GAMMA), &dead).await?;

    outcomes(h, Outcome::Saved, 3).await?;
    for i in 0..5u64 {
        let event = SyncedEvent {
            relay: RelayUrl::parse(ALPHA)?,
            received_ms: now_ms(),
            event: "{}".into(),
        };
        b.publish_event(&format!("{i:064x}"), 1621, &event).await?;
    }
    let mark = Watermark {
        seq: 3,
        at_ms: now_ms(),
    };
    b.put(&b.buckets.watermarks, SINK_WATERMARK, &mark).await?;
    for w in ["w1", "w2"] {
        let entry = WorkerEntry {
            worker: w.into(),
            started_ms: now_ms(),
            relays: 0,
        };
        b.put(&b.buckets.workers, w, &entry).await?;
    }
    for relay in [ALPHA, BETA] {
        let lease = LeaseEntry {
            worker: "w1".into(),
            relay: RelayUrl::parse(relay)?,
            since_ms: now_ms(),
        };
        b.put(&b.buckets.leases, &key(relay), &lease).await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_design_metric_has_its_value_after_a_scripted_scenario() -> anyhow::Result<()> {
    let mut h = Harness::start().await?;
    scripted_scenario(&h).await?;
    let samples = h
        .wait_for(&[
            expect("ngit_sync_relay_connected", &[("relay", ALPHA)], 3.0),
            expect("ngit_sync_relay_connected", &[("relay", BETA)], 0.0),
            expect("ngit_sync_relay_connected", &[("relay", GAMMA)], 0.0),
            expect(
                "ngit_sync_connection_attempts_total",
                &[("relay", ALPHA), ("result", "success")],
                1.0,
            ),
            expect(
                "ngit_sync_connection_attempts_total",
                &[("relay", ALPHA), ("result", "failure")],
                0.0,
            ),
            expect(
                "ngit_sync_connection_attempts_total",
                &[("relay", BETA), ("result", "failure")],
                2.0,
            ),
            expect(
                "ngit_sync_connection_attempts_total",
                &[("relay", BETA), ("result", "success")],
                0.0,
            ),
            expect("ngit_sync_relay_status", &[("relay", ALPHA)], 1.0),
            expect("ngit_sync_relay_status", &[("relay", BETA)], 3.0),
            expect("ngit_sync_relay_status", &[("relay", GAMMA)], 4.0),
            expect("ngit_sync_relay_failures", &[("relay", ALPHA)], 0.0),
            expect("ngit_sync_relay_failures", &[("relay", BETA)], 2.0),
            expect("ngit_sync_relay_failures", &[("relay", GAMMA)], 30.0),
            expect("ngit_sync_events_synced_total", &[], 3.0),
            expect("ngit_sync_relays_tracked_total", &[], 3.0),
            expect("ngit_sync_relays_connected_total", &[], 1.0),
            expect("ngit_sync_relays_dead_total", &[], 1.0),
            // Operator metrics.
            expect(
                "ngit_sync_events_received_total",
                &[("outcome", "saved")],
                3.0,
            ),
            expect(
                "ngit_sync_events_received_total",
                &[("outcome", "duplicate")],
                0.0,
            ),
            expect("ngit_sync_batches_open", &[("relay", ALPHA)], 0.0),
            expect(
                "ngit_sync_batches_total",
                &[("layer", "l1"), ("method", "req"), ("result", "opened")],
                1.0,
            ),
            expect(
                "ngit_sync_batches_total",
                &[("layer", "l1"), ("method", "req"), ("result", "confirmed")],
                1.0,
            ),
            expect(
                "ngit_sync_historic_sync_seconds_count",
                &[("layer", "l1"), ("result", "confirmed")],
                1.0,
            ),
            expect(
                "ngit_sync_historic_sync_seconds_sum",
                &[("layer", "l1"), ("result", "confirmed")],
                1.5,
            ),
            expect("ngit_sync_sink_lag", &[], 2.0),
            expect("ngit_sync_workers", &[], 2.0),
            expect("ngit_sync_relays_per_worker", &[("worker", "w1")], 2.0),
            expect("ngit_sync_relays_per_worker", &[("worker", "w2")], 0.0),
        ])
        .await?;
    // Nothing unexpected rides along: GAMMA never attempted, so it has no failures counted.
    assert_eq!(
        samples.get(
            "ngit_sync_connection_attempts_total",
            &[("relay", GAMMA), ("result", "failure")]
        ),
        Some(0.0)
    );
    h.stop_exporter().await
}

#[tokio::test]
async fn forgetting_a_relay_removes_its_series() -> anyhow::Result<()> {
    let mut h = Harness::start().await?;
    scripted_scenario(&h).await?;
    h.wait_for(&[
        expect("ngit_sync_relay_status", &[("relay", BETA)], 3.0),
        expect("ngit_sync_relay_status", &[("relay", GAMMA)], 4.0),
        expect("ngit_sync_relays_tracked_total", &[], 3.0),
    ])
    .await?;

    // BETA through a `forgotten` message (plus a straggling `released`), GAMMA by its key
    // leaving `ngit_sync_relays`.
    h.relay_news(BETA, RelayBody::Forgotten).await?;
    let released = RelayBody::Released {
        worker: "w1".into(),
        reason: "forgotten".into(),
    };
    h.relay_news(BETA, released).await?;
    h.bus.buckets.relays.delete(key(GAMMA)).await?;
    // A later message for ALPHA shows when the exporter has read past the stragglers.
    h.relay_news(ALPHA, attempted(AttemptResult::Success))
        .await?;

    let samples = h
        .wait_for(&[
            expect(
                "ngit_sync_connection_attempts_total",
                &[("relay", ALPHA), ("result", "success")],
                2.0,
            ),
            expect("ngit_sync_relays_tracked_total", &[], 2.0),
            expect("ngit_sync_relays_dead_total", &[], 0.0),
        ])
        .await?;
    for gone in [BETA, GAMMA] {
        assert!(
            !samples.any_label_value("relay", gone),
            "{gone} still has series: {samples:?}"
        );
    }
    assert!(samples.any_label_value("relay", ALPHA));
    h.stop_exporter().await
}

#[tokio::test]
async fn healthz_and_the_status_page_list_relays_with_escaped_urls() -> anyhow::Result<()> {
    let mut h = Harness::start().await?;
    let tricky = "wss://amp.example/path?a=1&b=2";
    h.track(tricky).await?;
    h.track(ALPHA).await?;
    h.bus
        .put(
            &h.bus.buckets.status,
            &key(ALPHA),
            &status(
                ConnectionStatus::Syncing,
                Some(health(Health::RateLimited, 1)),
            ),
        )
        .await?;

    eventually(WAIT, "/healthz to answer 200 ok", || async {
        matches!(h.get("/healthz").await, Ok(r) if r.status == 200 && r.body == "ok")
    })
    .await?;
    let page = common::get(h.addr, "/").await?;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    let body = eventually_page(&h, "syncing").await?;
    assert!(body.contains("amp.example/path?a=1&amp;b=2"), "{body}");
    assert!(!body.contains("a=1&b=2"), "{body}");
    assert!(body.contains("wss://alpha.example"), "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    assert!(!body.contains("<script"), "{body}");

    let metrics = h.get("/metrics").await?;
    assert_eq!(metrics.headers["content-type"], "text/plain; version=0.0.4");

    // The NATS service API knows the exporter.
    let ping = format!("$SRV.PING.{}", h.bus.names.service_name(SERVICE));
    let reply = h.bus.client.request(ping, "".into()).await?;
    assert!(!reply.payload.is_empty());

    // Without NATS the exporter is not healthy.
    h.nats.stop();
    eventually(WAIT, "/healthz to answer 503", || async {
        matches!(h.get("/healthz").await, Ok(r) if r.status == 503)
    })
    .await?;
    Ok(())
}

async fn eventually_page(h: &Harness, needle: &str) -> anyhow::Result<String> {
    ngit_sync_test_support::eventually_some(WAIT, "the status page to show the relays", || async {
        let page = h.get("/").await.ok()?;
        page.body.contains(needle).then_some(page.body)
    })
    .await
}

#[tokio::test]
async fn events_synced_counts_only_saved_and_counters_rebuild_after_restart() -> anyhow::Result<()>
{
    let mut h = Harness::start().await?;
    outcomes(&h, Outcome::Duplicate, 2).await?;
    outcomes(&h, Outcome::Saved, 2).await?;
    outcomes(&h, Outcome::Rejected, 1).await?;
    outcomes(&h, Outcome::Saved, 1).await?;
    let expected = [
        expect("ngit_sync_events_synced_total", &[], 3.0),
        expect(
            "ngit_sync_events_received_total",
            &[("outcome", "saved")],
            3.0,
        ),
        expect(
            "ngit_sync_events_received_total",
            &[("outcome", "duplicate")],
            2.0,
        ),
        expect(
            "ngit_sync_events_received_total",
            &[("outcome", "rejected")],
            1.0,
        ),
    ];
    h.wait_for(&expected).await?;

    // A new exporter reads the OUTCOMES stream from its start and counts the same.
    h.restart_exporter().await?;
    h.wait_for(&expected).await?;
    tokio::time::timeout(Duration::from_secs(1), h.stop_exporter()).await??;
    Ok(())
}
