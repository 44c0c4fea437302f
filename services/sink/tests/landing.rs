//! The sink against a real nats-server and a real home relay: everything lands, nothing is
//! acked before its answer, rate limits slow it down without losing events, refusals are final.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use ngit_sync_shared::nip34::DISCOVERY_KINDS;
use ngit_sync_shared::status::Outcome;
use ngit_sync_test_support::{eventually, init_tracing, NatsServer, TestRelay, TestRelayOptions};
use nostr::JsonUtil;

use support::*;

#[tokio::test]
async fn five_hundred_events_land_with_outcomes_and_leave_the_stream_empty() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let home = TestRelay::home().await?;
    let bus = bus(&nats).await?;
    let (_, events) = corpus(1, 500);
    // The home relay already has one event: the sink must hear `duplicate`, not `saved`.
    let (known, fresh) = (&events[..1], &events[1..]);
    home.publish(known).await?;

    let sink = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    let seqs = publish(&bus, &events).await?;
    let last_seq = *seqs.iter().max().expect("events were published");
    eventually(WAIT, "500 outcomes and an empty events stream", || async {
        OutcomeLog::count_now(&bus).await == 500 && events_in_stream(&bus).await == 0
    })
    .await?;
    let log = OutcomeLog::read(&bus).await?;

    assert_eq!(home.event_ids().await?.len(), 500);
    let on_home: HashSet<String> = home
        .event_ids()
        .await?
        .iter()
        .map(|id| id.to_hex())
        .collect();
    assert_eq!(on_home, ids(&events));
    assert_eq!(log.ids(Outcome::Saved), ids(fresh));
    assert_eq!(log.ids(Outcome::Duplicate), ids(known));
    assert!(log.items(Outcome::Rejected).is_empty());
    let dup = log.items(Outcome::Duplicate)[0];
    assert!(
        dup.reason
            .as_deref()
            .unwrap_or("")
            .starts_with("duplicate:"),
        "{dup:?}"
    );

    // Items name their stream message and carry the event.
    let item_seqs: HashSet<u64> = log
        .batches
        .iter()
        .flat_map(|b| &b.items)
        .map(|i| i.seq)
        .collect();
    assert_eq!(item_seqs, seqs.iter().copied().collect());
    for item in log.batches.iter().flat_map(|b| &b.items) {
        assert_eq!(item.relay, remote());
        let event = events
            .iter()
            .find(|e| e.id.to_hex() == item.id)
            .expect("a corpus event");
        assert_eq!(item.kind, event.kind.as_u16());
        // Discovery kinds travel whole, the others as a sketch without content (home index).
        let json = item.event.as_deref().expect("every event travels");
        if DISCOVERY_KINDS.contains(&item.kind) {
            assert_eq!(json, event.as_json());
        } else {
            let sketch = nostr::Event::from_json(json)?;
            assert_eq!((sketch.id, &sketch.tags), (event.id, &event.tags));
            assert!(sketch.content.is_empty());
        }
    }
    // Watermarks never go back and end at the last message, in the batches and in KV.
    let marks: Vec<u64> = log.batches.iter().map(|b| b.watermark).collect();
    assert!(marks.windows(2).all(|w| w[0] <= w[1]), "{marks:?}");
    assert_eq!(log.last_watermark(), last_seq);
    eventually(WAIT, "the KV watermark at the last message", || async {
        stored_watermark(&bus).await == Some(last_seq)
    })
    .await?;

    // Published again (a second relay had it): the stream drops it, nothing new is written.
    let again = publish(&bus, &events[5..6]).await?;
    assert_eq!(again, vec![seqs[5]], "de-duplicated by the stream");
    assert_eq!(events_in_stream(&bus).await, 0);
    sink.stop().await?;
    let log = OutcomeLog::read(&bus).await?;
    assert_eq!(log.items(Outcome::Saved).len(), 499, "counted once");
    Ok(())
}

#[tokio::test]
async fn a_home_relay_outage_loses_nothing_and_acks_nothing_early() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let mut home = TestRelay::home().await?;
    let bus = bus(&nats).await?;
    let (_, events) = corpus(2, 300);
    // A backlog first, so the outage hits many writes in flight.
    publish(&bus, &events[..250]).await?;
    let sink = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    // Polled finely (not with `eventually`): the relay goes down while writes are in flight.
    tokio::time::timeout(WAIT, async {
        while home.count().await.unwrap_or(0) < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await?;
    home.stop();
    publish(&bus, &events[250..]).await?;

    // Down: every message is either answered (its outcome published) or still in the stream.
    eventually(WAIT, "the unanswered events held in the stream", || async {
        OutcomeLog::count_now(&bus).await as u64 + events_in_stream(&bus).await == 300
    })
    .await?;
    let stored = home.count().await?;
    assert!(
        events_in_stream(&bus).await >= 50,
        "nothing acked without an OK"
    );
    assert!(
        OutcomeLog::count_now(&bus).await <= stored,
        "an outcome only for what the relay has"
    );
    // Stay down across a few reconnect attempts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let published = OutcomeLog::count_now(&bus).await as u64;
    assert_eq!(published + events_in_stream(&bus).await, 300);
    assert_eq!(home.count().await?, stored);

    home.start_again().await?;
    eventually(
        WAIT,
        "every event on the home relay and the stream empty",
        || async {
            home.count().await.unwrap_or(0) == 300
                && events_in_stream(&bus).await == 0
                && OutcomeLog::count_now(&bus).await >= 300
        },
    )
    .await?;
    let log = OutcomeLog::read(&bus).await?;
    let on_home: HashSet<String> = home
        .event_ids()
        .await?
        .iter()
        .map(|id| id.to_hex())
        .collect();
    assert_eq!(on_home, ids(&events));
    // A write the relay stored just as it went down comes back as `duplicate`: still once.
    let saved = log.ids(Outcome::Saved);
    let duplicate = log.ids(Outcome::Duplicate);
    assert!(saved.is_disjoint(&duplicate));
    assert_eq!(&saved | &duplicate, ids(&events));
    sink.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_rate_limiting_home_relay_slows_the_sink_but_gets_everything() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    // 120 writes at once, then about one per second (nostr-relay-builder's token bucket).
    let per_minute = 120;
    let home = TestRelay::start(TestRelayOptions::new().rate_limit(500, per_minute)).await?;
    let bus = bus(&nats).await?;
    let (_, events) = corpus(3, 124);
    let sink = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    publish(&bus, &events).await?;

    eventually(WAIT, "the burst on the home relay", || async {
        home.count().await.unwrap_or(0) >= per_minute as usize
    })
    .await?;
    assert!(
        home.count().await? < events.len(),
        "the relay held the rest back"
    );
    eventually(
        WAIT,
        "every event landed despite the rate limit",
        || async {
            home.count().await.unwrap_or(0) == events.len()
                && events_in_stream(&bus).await == 0
                && OutcomeLog::count_now(&bus).await == events.len()
        },
    )
    .await?;
    let log = OutcomeLog::read(&bus).await?;
    assert_eq!(log.ids(Outcome::Saved), ids(&events));
    sink.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_invalid_event_is_rejected_once_and_acked() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let home = TestRelay::home().await?;
    let bus = bus(&nats).await?;
    let (corpus, events) = corpus(4, 10);
    let forged = corpus.bad_events().bad_signature;
    let forged_event = nostr::Event::from_json(&forged)?;
    let sink = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    publish(&bus, &events).await?;
    publish_json(&bus, &forged, &forged_event).await?;

    eventually(WAIT, "eleven outcomes and an empty stream", || async {
        OutcomeLog::count_now(&bus).await == 11 && events_in_stream(&bus).await == 0
    })
    .await?;
    let log = OutcomeLog::read(&bus).await?;
    let rejected = log.items(Outcome::Rejected);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].id, forged_event.id.to_hex());
    let reason = rejected[0].reason.as_deref().unwrap_or("");
    assert!(reason.starts_with("invalid:"), "{reason}");
    assert_eq!(log.ids(Outcome::Saved), ids(&events));
    assert_eq!(home.count().await?, 10);
    sink.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_home_relay_refusing_writes_gets_rejections_not_retries() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let home =
        TestRelay::start(TestRelayOptions::home().reject_writes("not a repo we host")).await?;
    let bus = bus(&nats).await?;
    let (_, events) = corpus(5, 6);
    let sink = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    publish(&bus, &events).await?;

    eventually(WAIT, "six outcomes and an empty stream", || async {
        OutcomeLog::count_now(&bus).await == 6 && events_in_stream(&bus).await == 0
    })
    .await?;
    let log = OutcomeLog::read(&bus).await?;
    assert_eq!(log.ids(Outcome::Rejected), ids(&events));
    for item in log.items(Outcome::Rejected) {
        assert_eq!(item.reason.as_deref(), Some("blocked: not a repo we host"));
    }
    assert_eq!(home.write_count(), 6, "each written once");
    sink.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_stopped_sink_leaves_unanswered_events_for_the_next_one() -> anyhow::Result<()> {
    init_tracing();
    let nats = NatsServer::start().await?;
    let mut home = TestRelay::home().await?;
    let bus = bus(&nats).await?;
    let (_, events) = corpus(6, 40);
    let first = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    publish(&bus, &events[..20]).await?;
    eventually(WAIT, "the first half landed", || async {
        stored_watermark(&bus).await == Some(20) && events_in_stream(&bus).await == 0
    })
    .await?;

    home.stop();
    publish(&bus, &events[20..]).await?;
    let started = std::time::Instant::now();
    first.stop().await?;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "stopped within its drain bound"
    );
    assert_eq!(
        events_in_stream(&bus).await,
        20,
        "unanswered events stay in the stream"
    );

    home.start_again().await?;
    let second = RunningSink::start(&nats, config(&nats, &home.url())).await?;
    eventually(WAIT, "the second sink landed the rest", || async {
        home.count().await.unwrap_or(0) == 40
            && events_in_stream(&bus).await == 0
            && stored_watermark(&bus).await == Some(40)
    })
    .await?;
    let log = OutcomeLog::read(&bus).await?;
    assert_eq!(
        &log.ids(Outcome::Saved) | &log.ids(Outcome::Duplicate),
        ids(&events)
    );
    assert_eq!(log.last_watermark(), 40);
    second.stop().await?;
    Ok(())
}
