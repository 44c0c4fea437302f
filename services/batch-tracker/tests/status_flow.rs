//! Status transitions as a connector and discovery drive them over a real NATS.

mod support;

use ngit_sync_shared::messages::now_ms;
use ngit_sync_shared::status::{ConnectionStatus as S, Layer};
use support::*;

#[tokio::test]
async fn relay_turns_connected_only_after_the_watermark_passes_its_batches_and_quiet() {
    let h = Harness::start().await;
    let a = relay("alpha");
    h.claim(&a, WORKER).await;
    let claimed = h.wait_status(&a, S::Disconnected).await;
    assert_eq!(claimed.owner.as_deref(), Some(WORKER));

    h.send(&a, started()).await;
    h.wait_status(&a, S::Connecting).await;
    h.send(&a, connected("s1")).await;
    let syncing = h.wait_status(&a, S::Syncing).await;
    assert_eq!(syncing.session.as_deref(), Some("s1"));

    h.watermark(5).await;
    h.send(&a, opened("s1", "l1", Layer::L1)).await;
    h.wait_for(&a, S::Syncing, |r| r.open_batches == 1).await;
    h.send(&a, confirmed("s1", "l1", 10)).await;
    // The connector's word that the batches reflect the targets up to 10; only the
    // watermark is missing now.
    h.send(&a, applied("s1", 10)).await;
    h.wait_for(&a, S::Syncing, |r| r.open_batches == 0).await;

    // A second relay with nothing waiting on the watermark, sent afterwards: once it is
    // Connected, a quiet period has passed for the first one too.
    let b = relay("beta");
    sync_relay(&h, &b, 0).await;
    h.wait_status(&b, S::Connected).await;
    assert_eq!(
        h.stored(&a).await.unwrap().status,
        S::Syncing,
        "watermark 5 is below the batch's last_seq 10"
    );

    let put_at = now_ms();
    h.watermark(10).await;
    let done = h.wait_status(&a, S::Connected).await;
    assert!(
        done.since_ms >= put_at + QUIET.as_millis() as u64,
        "Connected at {} only {} ms after the watermark",
        done.since_ms,
        done.since_ms - put_at
    );
    assert_eq!((done.open_batches, done.failed_batches), (0, 0));
    assert_eq!(
        h.status_trail(&a).await,
        vec![S::Disconnected, S::Connecting, S::Syncing, S::Connected]
    );
    let opens: Vec<u32> = h
        .published(&a)
        .await
        .iter()
        .map(|r| r.open_batches)
        .collect();
    assert!(
        opens.windows(2).any(|w| w == [1, 0]),
        "open counts {opens:?}"
    );
}

#[tokio::test]
async fn a_failed_batch_degrades_and_a_new_batch_syncs_again() {
    let h = Harness::start().await;
    let a = relay("alpha");
    sync_relay(&h, &a, 0).await;
    h.send(&a, opened("s1", "l2", Layer::L2)).await;
    h.send(&a, failed("s1", "l2", 0)).await;
    let degraded = h.wait_status(&a, S::ConnectedDegraded).await;
    assert_eq!(degraded.failed_batches, 1);

    h.send(&a, opened("s1", "l3", Layer::L3)).await;
    let again = h.wait_status(&a, S::Syncing).await;
    assert_eq!((again.open_batches, again.failed_batches), (1, 1));
    h.send(&a, confirmed("s1", "l3", 0)).await;
    h.wait_status(&a, S::ConnectedDegraded).await;
    assert_eq!(
        h.status_trail(&a).await,
        vec![
            S::Disconnected,
            S::Connecting,
            S::Syncing,
            S::ConnectedDegraded,
            S::Syncing,
            S::ConnectedDegraded
        ]
    );
}

#[tokio::test]
async fn disconnected_drops_the_open_batches() {
    let h = Harness::start().await;
    let a = relay("alpha");
    h.claim(&a, WORKER).await;
    h.send(&a, connected("s1")).await;
    h.send(&a, opened("s1", "l1", Layer::L1)).await;
    h.wait_for(&a, S::Syncing, |r| r.open_batches == 1).await;

    h.send(&a, disconnected("s1")).await;
    let down = h.wait_status(&a, S::Disconnected).await;
    assert_eq!((down.open_batches, down.session), (0, None));
    assert_eq!(down.owner.as_deref(), Some(WORKER));
    h.status_trail(&a).await;
}

#[tokio::test]
async fn messages_of_an_old_session_are_ignored() {
    let h = Harness::start().await;
    let a = relay("alpha");
    h.claim(&a, WORKER).await;
    h.send(&a, connected("s1")).await;
    h.send(&a, opened("s1", "old-l1", Layer::L1)).await;
    h.send(&a, connected("s2")).await;
    h.wait_for(&a, S::Syncing, |r| r.session.as_deref() == Some("s2"))
        .await;

    // Late news of s1: none of it may count against s2.
    h.send(&a, opened("s1", "old-l2", Layer::L2)).await;
    h.send(&a, failed("s1", "old-l1", 0)).await;
    h.send(&a, disconnected("s1")).await;
    h.send(&a, opened("s2", "l1", Layer::L1)).await;
    h.send(&a, confirmed("s2", "l1", 0)).await;
    let done = h.wait_status(&a, S::Connected).await;
    assert_eq!(done.session.as_deref(), Some("s2"));

    let published = h.published(&a).await;
    let since_s2 = published
        .iter()
        .skip_while(|r| r.session.as_deref() != Some("s2"));
    for report in since_s2 {
        assert_ne!(report.status, S::Disconnected, "{report:?}");
        assert_eq!(report.failed_batches, 0, "{report:?}");
        assert!(report.open_batches <= 1, "{report:?}");
    }
    h.status_trail(&a).await;
}

#[tokio::test]
async fn the_service_answers_the_nats_service_api() {
    let h = Harness::start().await;
    let name = h.bus.names.service_name(ngit_sync_batch_tracker::SERVICE);
    let reply = h
        .bus
        .client
        .request(format!("$SRV.PING.{name}"), "".into())
        .await
        .expect("service ping answered");
    let ping: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(ping["name"], name.as_str());
}
