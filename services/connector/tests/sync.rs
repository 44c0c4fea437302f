//! A connector against real relays and a real NATS: layers, pagination, live events, bad
//! events, CLOSED and rate limits. Discovery is not running: the tests write its KV entries.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::script_relay::{self, ScriptRelay};
use common::{config, confirmed, first, opened_layers, Connector, World, WORKER};
use ngit_sync_shared::messages::{DroppedEvents, RelayBody};
use ngit_sync_shared::status::{AttemptResult, Health, Layer};
use ngit_sync_test_support::{Corpus, CorpusSpec, RawRelay, RawRelayOptions, TestRelay};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag, Timestamp};

/// An announced repo with issues (reached through L2) and comments on them that tag only
/// their issue (reached through L3), except the first issue's, which tag the repo too.
struct SmallRepo {
    keys: Keys,
    coord: String,
    announcement: Event,
    issues: Vec<Event>,
    comments: Vec<Vec<Event>>,
}

impl SmallRepo {
    fn new(issues: usize, comments: usize) -> SmallRepo {
        let keys = Keys::generate();
        let coord = format!("30617:{}:demo", keys.public_key().to_hex());
        let announcement = EventBuilder::new(Kind::GitRepoAnnouncement, "")
            .tags([
                Tag::identifier("demo"),
                Tag::parse(["name", "demo"]).unwrap(),
            ])
            .custom_created_at(Timestamp::from(1_700_000_000))
            .sign_with_keys(&keys)
            .unwrap();
        let mut repo = SmallRepo {
            keys,
            coord,
            announcement,
            issues: Vec::new(),
            comments: Vec::new(),
        };
        for i in 0..issues {
            let issue = repo.issue(1_700_000_100 + i as u64);
            let replies = (0..comments)
                .map(|c| repo.comment(&issue, i == 0, 1_700_001_000 + (i * 100 + c) as u64))
                .collect();
            repo.issues.push(issue);
            repo.comments.push(replies);
        }
        repo
    }

    fn issue(&self, at: u64) -> Event {
        EventBuilder::new(Kind::GitIssue, format!("issue at {at}"))
            .tag(Tag::parse(["a", self.coord.as_str()]).unwrap())
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(&self.keys)
            .unwrap()
    }

    fn comment(&self, root: &Event, tag_repo: bool, at: u64) -> Event {
        let root_id = root.id.to_hex();
        let mut tags = vec![
            Tag::parse(["E", root_id.as_str(), "", &root.pubkey.to_hex()]).unwrap(),
            Tag::parse(["K", "1621"]).unwrap(),
        ];
        if tag_repo {
            tags.push(Tag::parse(["A", self.coord.as_str()]).unwrap());
        }
        EventBuilder::new(Kind::from(1111), format!("comment at {at}"))
            .tags(tags)
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(&self.keys)
            .unwrap()
    }

    fn all(&self) -> Vec<Event> {
        let mut all = vec![self.announcement.clone()];
        all.extend(self.issues.iter().cloned());
        all.extend(self.comments.iter().flatten().cloned());
        all
    }
}

fn ids(events: &[Event]) -> HashSet<String> {
    events.iter().map(|e| e.id.to_hex()).collect()
}

fn dropped_total(news: &[RelayBody]) -> DroppedEvents {
    let mut sum = DroppedEvents::default();
    for n in news {
        if let RelayBody::Dropped(d) = n {
            sum.bad_id += d.bad_id;
            sum.bad_signature += d.bad_signature;
            sum.unrequested += d.unrequested;
            sum.oversized += d.oversized;
            sum.malformed += d.malformed;
        }
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_l2_and_l3_batches_confirm_and_every_event_lands_once() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let repo = SmallRepo::new(3, 2);
    relay.publish(&repo.all()).await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo(&repo.coord, &[&url]).await?;
    for issue in &repo.issues {
        world.want_root(&repo.coord, issue).await?;
    }
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    world
        .wait_news(&url, "three confirmed batches", |n| {
            (confirmed(n) >= 3).then_some(())
        })
        .await?;
    world
        .wait_synced(&repo.all(), "every event of the repo")
        .await?;
    assert_eq!(
        world.synced_ids().await?,
        ids(&repo.all()),
        "each id exactly once, nothing else"
    );

    let news = world.news(&url).await?;
    let order: Vec<usize> = [
        "claimed",
        "attempted",
        "connected",
        "batch.opened",
        "batch.confirmed",
    ]
    .iter()
    .map(|s| first(&news, s).unwrap_or_else(|| panic!("no {s}")))
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?}"
    );
    let attempts: Vec<AttemptResult> = news
        .iter()
        .filter_map(|n| match n {
            RelayBody::Attempted { result, .. } => Some(*result),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [AttemptResult::Started, AttemptResult::Success]);
    let mut layers = opened_layers(&news);
    layers.sort();
    assert_eq!(layers, [Layer::L1, Layer::L2, Layer::L3]);
    let last_seqs: Vec<u64> = news
        .iter()
        .filter_map(|n| match n {
            RelayBody::BatchConfirmed { last_seq, .. } => Some(*last_seq),
            _ => None,
        })
        .collect();
    assert!(
        last_seqs.iter().all(|s| *s > 0),
        "every batch published something: {last_seqs:?}"
    );
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_hundred_events_sharing_seconds_arrive_through_pagination() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(7)
            .repos(1)
            .total_events(1_600)
            .patch_kib(1, 1)
            .collision_percent(20),
    );
    let events = corpus.all_related();
    assert_eq!(events.len(), 1_600);
    relay.publish(&events).await?;
    let url = world.want_relay(&relay.url()).await?;
    let coord = corpus.repos()[0].coordinate.to_string();
    world.want_repo(&coord, &[&url]).await?;
    for root in corpus.repos()[0].roots() {
        world.want_root(&coord, &root).await?;
    }
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    world.wait_synced(&events, "all 1,600 events").await?;
    let news = world.news(&url).await?;
    let deepest = news
        .iter()
        .filter_map(|n| match n {
            RelayBody::BatchPage { page, .. } => Some(*page),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    assert!(
        deepest >= 2,
        "1,600 events in pages of 500 take several pages, saw {deepest}"
    );
    assert!(
        relay.queries().iter().any(|f| f.until.is_some()),
        "later pages walk back with until"
    );
    world
        .wait_news(&url, "the batches to confirm", |n| {
            (confirmed(n) >= 3).then_some(())
        })
        .await?;
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_added_later_gets_its_own_l3_batch() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let repo = SmallRepo::new(3, 2);
    relay.publish(&repo.all()).await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo(&repo.coord, &[&url]).await?;
    world.want_root(&repo.coord, &repo.issues[1]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    world
        .wait_synced(&repo.comments[1], "comments of the known root")
        .await?;
    world
        .wait_news(&url, "three confirmed batches", |n| {
            (confirmed(n) >= 3).then_some(())
        })
        .await?;
    let synced = world.synced_ids().await?;
    assert!(
        repo.comments[2]
            .iter()
            .all(|c| !synced.contains(&c.id.to_hex())),
        "comments of an unknown root tag nothing we asked for"
    );

    world.want_root(&repo.coord, &repo.issues[2]).await?;
    world
        .wait_synced(&repo.comments[2], "comments of the new root")
        .await?;
    let news = world
        .wait_news(&url, "a fourth confirmed batch", |n| {
            (confirmed(n) >= 4).then(|| n.to_vec())
        })
        .await?;
    let last_opened = news.iter().rev().find_map(|n| match n {
        RelayBody::BatchOpened(b) => Some(b.clone()),
        _ => None,
    });
    let b = last_opened.expect("a batch for the new root");
    assert_eq!((b.layer, b.items), (Layer::L3, 1));
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_reaches_the_events_stream_within_seconds() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let repo = SmallRepo::new(1, 1);
    relay.publish(&repo.all()).await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo(&repo.coord, &[&url]).await?;
    world.want_root(&repo.coord, &repo.issues[0]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;
    world
        .wait_news(&url, "three confirmed batches", |n| {
            (confirmed(n) >= 3).then_some(())
        })
        .await?;

    let new_issue = repo.issue(Timestamp::now().as_secs());
    let new_comment = repo.comment(&repo.issues[0], false, Timestamp::now().as_secs());
    let published = tokio::time::Instant::now();
    relay
        .publish(&[new_issue.clone(), new_comment.clone()])
        .await?;
    world
        .wait_synced(&[new_issue, new_comment], "the live issue and comment")
        .await?;
    assert!(
        published.elapsed() < Duration::from_secs(5),
        "took {:?}",
        published.elapsed()
    );
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_unrequested_events_never_reach_the_stream_and_are_counted() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(11)
            .repos(1)
            .events_per_repo(10)
            .patch_kib(1, 1),
    );
    let bad = corpus.bad_events();
    let good = corpus.all_related();
    let served = good.iter().map(JsonUtil::as_json).chain(bad.broken());
    let raw = RawRelay::start(served, RawRelayOptions::new()).await?;
    let note = bad.unrelated.clone();
    let note_json = note.as_json();
    let liar = ScriptRelay::start(move |sub, filters| {
        if script_relay::is_live(filters) {
            return vec![script_relay::eose(sub)];
        }
        vec![
            script_relay::event(sub, &note_json),
            script_relay::eose(sub),
        ]
    })
    .await?;
    let raw_url = world.want_relay(&raw.url()).await?;
    let liar_url = world.want_relay(&liar.url()).await?;
    let coord = corpus.repos()[0].coordinate.to_string();
    world.want_repo(&coord, &[&raw_url]).await?;
    for root in corpus.repos()[0].roots() {
        world.want_root(&coord, &root).await?;
    }
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    world.wait_synced(&good, "the corpus' good events").await?;
    world
        .wait_news(&raw_url, "bad id and signature counts", |n| {
            let d = dropped_total(n);
            (d.bad_id >= 1 && d.bad_signature >= 1).then_some(())
        })
        .await?;
    world
        .wait_news(&liar_url, "an unrequested count", |n| {
            (dropped_total(n).unrequested >= 1).then_some(())
        })
        .await?;
    let synced = world.synced_ids().await?;
    let bad_ids: Vec<String> = bad
        .broken()
        .iter()
        .map(|json| {
            serde_json::from_str::<serde_json::Value>(json).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .chain([note.id.to_hex()])
        .collect();
    for id in bad_ids {
        assert!(!synced.contains(&id), "{id} must never be forwarded");
    }
    assert_eq!(synced, ids(&good));
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_historic_req_fails_its_batch_instead_of_hanging() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = ScriptRelay::start(|sub, filters| {
        let asks_tags = filters.iter().any(|f| f.get("#a").is_some());
        if asks_tags && !script_relay::is_live(filters) {
            vec![script_relay::closed(sub, "error: tag queries are disabled")]
        } else {
            vec![script_relay::eose(sub)]
        }
    })
    .await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo("30617:abcd:demo", &[&url]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    let reason = world
        .wait_news(&url, "a failed batch", |n| {
            n.iter().find_map(|b| match b {
                RelayBody::BatchFailed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
        })
        .await?;
    assert!(
        reason.contains("error: tag queries are disabled"),
        "{reason}"
    );
    world
        .wait_news(&url, "L1 still confirms", |n| {
            (confirmed(n) >= 1).then_some(())
        })
        .await?;
    let news = world.news(&url).await?;
    assert!(
        first(&news, "disconnected").is_none(),
        "a CLOSED ends a batch, not the session"
    );
    connector.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_reqs_are_asked_again_after_the_cooldown() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let corpus = Corpus::generate(
        CorpusSpec::new(3)
            .repos(2)
            .events_per_repo(2)
            .patch_kib(1, 1),
    );
    let announcements = corpus.announcements();
    let raw = RawRelay::serving(
        &announcements,
        RawRelayOptions::new().rate_limit_reqs_first(2),
    )
    .await?;
    let url = world.want_relay(&raw.url()).await?;
    let mut cfg = config(&world.nats, WORKER);
    cfg.rate_limit_cooldown = Duration::from_millis(400);
    let connector = Connector::start(&world.nats, cfg).await?;

    world
        .wait_synced(&announcements, "announcements after the pause")
        .await?;
    world
        .wait_news(&url, "L1 confirmed", |n| (confirmed(n) >= 1).then_some(()))
        .await?;
    let news = world.news(&url).await?;
    assert!(news
        .iter()
        .any(|n| matches!(n, RelayBody::Health(h) if h.state == Health::RateLimited)));
    assert!(news
        .iter()
        .all(|n| !matches!(n, RelayBody::BatchFailed { .. })));
    // With negentropy tried first the history REQ goes out later than the live one, so the
    // second refusal may fall on the live REQ re-asked: wait for its retry too.
    ngit_sync_test_support::eventually(
        Duration::from_secs(5),
        "both refused REQs asked again",
        || async { raw.req_count() >= 4 },
    )
    .await?;
    connector.stop().await
}

/// Discovery's part played by hand: the root events the L2 batch brought are written to KV,
/// then the watermark. The connector says `targets.applied` only once the L3 batch for those
/// roots is open, so batch-tracker cannot call the relay Connected before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_applied_follows_the_batches_the_watermark_unlocks() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let relay = TestRelay::remote().await?;
    let repo = SmallRepo::new(2, 2);
    relay.publish(&repo.all()).await?;
    let url = world.want_relay(&relay.url()).await?;
    world.want_repo(&repo.coord, &[&url]).await?;
    let connector = Connector::start(&world.nats, config(&world.nats, WORKER)).await?;

    let landed = world
        .wait_news(&url, "L1 and L2 confirmed", |n| {
            let seqs: Vec<u64> = n
                .iter()
                .filter_map(|b| match b {
                    RelayBody::BatchConfirmed { last_seq, .. } => Some(*last_seq),
                    _ => None,
                })
                .collect();
            (seqs.len() >= 2).then(|| seqs.into_iter().max().unwrap_or(0))
        })
        .await?;
    assert!(landed > 0);
    let said = |n: &[RelayBody]| {
        n.iter()
            .any(|b| matches!(b, RelayBody::TargetsApplied { .. }))
    };
    // Without discovery's watermark the connector cannot vouch for anything.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!said(&world.news(&url).await?), "no watermark yet");

    for issue in &repo.issues {
        world.want_root(&repo.coord, issue).await?;
    }
    let watermark = ngit_sync_shared::messages::Watermark {
        seq: landed,
        at_ms: ngit_sync_shared::messages::now_ms(),
    };
    world
        .bus
        .put(&world.bus.buckets.watermarks, "discovery", &watermark)
        .await?;

    let news = world
        .wait_news(&url, "targets.applied", |n| said(n).then(|| n.to_vec()))
        .await?;
    let applied_at = news
        .iter()
        .position(
            |b| matches!(b, RelayBody::TargetsApplied { watermark, .. } if *watermark == landed),
        )
        .expect("the watermark as written");
    let l3_opened = news
        .iter()
        .position(|b| matches!(b, RelayBody::BatchOpened(o) if o.layer == Layer::L3))
        .expect("an L3 batch for the roots");
    assert!(
        l3_opened < applied_at,
        "the L3 batch opened before the connector vouched for the watermark"
    );
    world
        .wait_synced(&repo.all(), "comments through L3 as well")
        .await?;
    connector.stop().await
}
