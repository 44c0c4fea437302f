//! batch-tracker across its own restart, and relays whose lease goes away.

mod support;

use ngit_sync_shared::status::{ConnectionStatus as S, Layer};
use support::*;

#[tokio::test]
async fn a_restart_rebuilds_the_statuses_without_republishing_unchanged_ones() {
    let mut h = Harness::start().await;
    let a = relay("alpha");
    let b = relay("beta");
    let c = relay("gamma");
    h.claim(&a, WORKER).await;
    h.send(&a, connected("s1")).await;
    h.send(&a, opened("s1", "l1", Layer::L1)).await;
    sync_relay(&h, &b, 0).await;
    h.wait_for(&a, S::Syncing, |r| r.open_batches == 1).await;
    h.wait_status(&b, S::Connected).await;
    let b_before = h.published(&b).await.len();

    h.stop().await;
    // News while the tracker is down.
    h.send(&a, confirmed("s1", "l1", 0)).await;
    h.send(&c, started()).await;
    h.run().await;

    h.wait_status(&a, S::Connected).await;
    h.wait_status(&c, S::Connecting).await;
    // Live again after the replay.
    h.send(&a, opened("s1", "l2", Layer::L2)).await;
    h.wait_status(&a, S::Syncing).await;
    h.send(&a, confirmed("s1", "l2", 0)).await;
    h.wait_status(&a, S::Connected).await;

    assert_eq!(
        h.published(&b).await.len(),
        b_before,
        "beta did not change and must not be published again"
    );
    assert_eq!(h.stored(&b).await.unwrap().status, S::Connected);
    assert_eq!(
        h.status_trail(&a).await,
        vec![
            S::Disconnected,
            S::Syncing,
            S::Connected,
            S::Syncing,
            S::Connected
        ]
    );
    h.status_trail(&b).await;
    assert_eq!(h.status_trail(&c).await, vec![S::Connecting]);

    // A second restart with nothing new publishes nothing at all.
    let counts = [
        h.published(&a).await.len(),
        h.published(&b).await.len(),
        h.published(&c).await.len(),
    ];
    h.stop().await;
    h.run().await;
    let d = relay("delta");
    h.send(&d, started()).await;
    h.wait_status(&d, S::Connecting).await;
    let after = [
        h.published(&a).await.len(),
        h.published(&b).await.len(),
        h.published(&c).await.len(),
    ];
    assert_eq!(after, counts);
}

#[tokio::test]
async fn deleting_the_owners_lease_disconnects_the_relay() {
    let h = Harness::start().await;
    let a = relay("alpha");
    sync_relay(&h, &a, 0).await;
    h.wait_status(&a, S::Connected).await;

    h.bus
        .buckets
        .leases
        .delete(a.key().as_str())
        .await
        .expect("delete lease");
    let down = h.wait_status(&a, S::Disconnected).await;
    assert_eq!((down.owner, down.session), (None, None));
    h.status_trail(&a).await;
}

#[tokio::test]
async fn a_lease_that_expires_unrenewed_disconnects_the_relay() {
    // JetStream drops an aged-out lease without a delete marker: only its age tells.
    let h = Harness::start_with(&[("NGIT_SYNC_LEASE_TTL", "1s")]).await;
    let a = relay("alpha");
    sync_relay(&h, &a, 0).await;
    h.wait_status(&a, S::Connected).await;
    let down = h.wait_status(&a, S::Disconnected).await;
    assert_eq!(down.owner, None);
}

#[tokio::test]
async fn forgotten_relays_leave_the_status_bucket() {
    let h = Harness::start().await;
    let a = relay("alpha");
    sync_relay(&h, &a, 0).await;
    h.wait_status(&a, S::Connected).await;
    h.send(&a, ngit_sync_shared::messages::RelayBody::Forgotten)
        .await;
    h.send(&a, disconnected("s1")).await;
    ngit_sync_test_support::eventually(WAIT, "alpha removed", || async {
        h.stored(&a).await.is_none()
    })
    .await
    .unwrap();
}
