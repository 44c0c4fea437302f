//! Acceptance tests of NIP-77 historic sync (issue "NIP-77 negentropy historic sync against
//! the home index"): the whole stack, real relays with and without negentropy.

mod stack;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ngit_sync_shared::messages::{now_ms, RelayBody, RelayState, StatusReport};
use ngit_sync_shared::status::{ConnectionStatus, SyncMethod};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::{
    eventually, Corpus, CorpusSpec, NegBehaviour, RawRelay, RawRelayOptions, Repo, TestRelay,
};
use nostr::{Event, EventBuilder, EventId, Filter, Keys, Kind, Tag};
use stack::{announce, ids, Service, Stack};

const SYNC_WITHIN: Duration = Duration::from_secs(120);

/// What a source serves: the corpus with our announcements in place of its own (an older
/// announcement is one the home relay refuses only after retries; the rejection test has its
/// own).
fn served(corpus: &Corpus, ours: &[Event]) -> Vec<Event> {
    let replaced = ids(&corpus.announcements());
    corpus
        .all_related()
        .into_iter()
        .filter(|e| !replaced.contains(&e.id))
        .chain(ours.iter().cloned())
        .collect()
}

/// `n` issues of `repo` by strangers, created now.
fn new_issues(repo: &Repo, n: usize) -> Vec<Event> {
    let coord = format!("30617:{}:{}", repo.owner.public_key(), repo.identifier());
    (0..n)
        .map(|i| {
            EventBuilder::new(Kind::Custom(1621), format!("new issue {i}"))
                .tags([Tag::parse(["a", coord.as_str()]).unwrap()])
                .sign_with_keys(&Keys::generate())
                .unwrap()
        })
        .collect()
}

/// Ids asked for by `{ids}` in these filters.
fn asked_ids(queries: &[Filter]) -> Vec<EventId> {
    queries
        .iter()
        .filter_map(|f| f.ids.as_ref())
        .flat_map(|ids| ids.iter().copied())
        .collect()
}

/// Historic queries: anything but live subscriptions (`limit:0`).
fn historic(queries: &[Filter]) -> Vec<Filter> {
    queries
        .iter()
        .filter(|f| f.limit != Some(0))
        .cloned()
        .collect()
}

async fn relay_state(stack: &Stack, url: &str) -> anyhow::Result<RelayState> {
    let key = RelayUrl::parse(url)?.key();
    Ok(stack
        .bus
        .get(&stack.bus.buckets.relay_state, key.as_str())
        .await?
        .unwrap_or_default())
}

/// Makes the next start of these relays a fresh one (as the daily reconciliation does):
/// connected two hours ago, disconnected one hour ago; what the relay supports stays known.
async fn age_disconnects(stack: &Stack, urls: &[String]) -> anyhow::Result<()> {
    for url in urls {
        let mut state = relay_state(stack, url).await?;
        state.last_connected_ms = Some(now_ms() - 7_200_000);
        state.disconnected_ms = Some(now_ms() - 3_600_000);
        let key = RelayUrl::parse(url)?.key();
        stack
            .bus
            .put(&stack.bus.buckets.relay_state, key.as_str(), &state)
            .await?;
    }
    Ok(())
}

async fn statuses(stack: &Stack, urls: &[String]) -> Vec<Option<StatusReport>> {
    let mut out = Vec::new();
    for u in urls {
        out.push(stack.status(u).await.ok().flatten());
    }
    out
}

/// Waits until every relay is Connected in a session other than `before`'s.
async fn wait_new_session_connected(
    stack: &Stack,
    urls: &[String],
    before: &[Option<StatusReport>],
) -> anyhow::Result<()> {
    eventually(
        SYNC_WITHIN,
        "every relay Connected in a new session",
        || async {
            let now = statuses(stack, urls).await;
            now.iter().zip(before).all(|(n, b)| {
                n.as_ref().is_some_and(|n| {
                    n.status == ConnectionStatus::Connected
                        && n.session != b.as_ref().and_then(|b| b.session.clone())
                })
            })
        },
    )
    .await
}

fn bytes(relays: &[TestRelay]) -> u64 {
    relays.iter().map(TestRelay::bytes_sent).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negentropy_syncs_a_fresh_start_and_an_idle_resync_costs_under_two_percent(
) -> anyhow::Result<()> {
    let relays = vec![TestRelay::remote().await?, TestRelay::remote().await?];
    let urls: Vec<String> = relays.iter().map(|r| r.url()).collect();
    let corpus = Corpus::generate(
        CorpusSpec::new(31)
            .repos(2)
            .total_events(5_000)
            .relays(urls.clone())
            .patch_kib(1, 4),
    );
    let ours: Vec<Event> = corpus.repos().iter().map(|r| announce(r, &urls)).collect();
    for relay in &relays {
        relay.publish(&corpus.all_related()).await?;
        relay.publish(&ours).await?;
    }
    let want = corpus.expected_home(&ours);
    assert!(want.len() >= 5_000);

    // 1. First fresh start: everything arrives, by negentropy.
    let started = Instant::now();
    let mut stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;
    let first_time = started.elapsed();
    let first_bytes = bytes(&relays);
    assert_eq!(stack.home.event_ids().await?, want);
    let news = stack.relay_news().await?;
    let methods: HashSet<SyncMethod> = news
        .iter()
        .filter_map(|n| match &n.body {
            RelayBody::BatchOpened(b) => Some(b.method),
            _ => None,
        })
        .collect();
    assert_eq!(methods, HashSet::from([SyncMethod::Negentropy]));
    for relay in &relays {
        let h = historic(&relay.queries());
        assert!(
            h.iter().all(|f| f.ids.is_some()),
            "history came by negentropy and REQ {{ids}} only: {h:?}"
        );
    }
    for url in &urls {
        assert_eq!(
            relay_state(&stack, url).await?.negentropy,
            Some(true),
            "the relay's state records that it speaks NIP-77"
        );
    }

    // 2. A forced fresh start with nothing new: a few kilobytes, no historic REQ.
    let queries_before: Vec<usize> = relays.iter().map(|r| r.queries().len()).collect();
    let before = statuses(&stack, &urls).await;
    stack.stop_service(Service::Connector).await?;
    age_disconnects(&stack, &urls).await?;
    let (idle_from, resync) = (bytes(&relays), Instant::now());
    stack.start_service(Service::Connector).await?;
    wait_new_session_connected(&stack, &urls, &before).await?;
    let (idle_bytes, idle_time) = (bytes(&relays) - idle_from, resync.elapsed());
    println!(
        "acceptance 1: first sync {} events, {first_bytes} bytes in {first_time:?}; \
         idle resync {idle_bytes} bytes in {idle_time:?} ({:.3} %)",
        want.len(),
        idle_bytes as f64 * 100.0 / first_bytes as f64
    );
    assert!(
        idle_bytes * 50 < first_bytes,
        "idle resync {idle_bytes} bytes vs first {first_bytes}"
    );
    for (relay, from) in relays.iter().zip(&queries_before) {
        let new = historic(&relay.queries()[*from..]);
        assert!(new.is_empty(), "no historic REQ on an idle resync: {new:?}");
    }

    // 3. 50 new events while the stack is stopped: the next fresh start fetches exactly those.
    let before = statuses(&stack, &urls).await;
    stack.stop_service(Service::Connector).await?;
    stack.stop_service(Service::Discovery).await?;
    let fifty = new_issues(&corpus.repos()[0], 50);
    relays[0].publish(&fifty).await?;
    age_disconnects(&stack, &urls).await?;
    let queries_before: Vec<usize> = relays.iter().map(|r| r.queries().len()).collect();
    stack.start_service(Service::Discovery).await?;
    stack.start_service(Service::Connector).await?;
    stack.wait_home_has(&ids(&fifty), SYNC_WITHIN).await?;
    wait_new_session_connected(&stack, &urls, &before).await?;
    let asked: Vec<EventId> = relays
        .iter()
        .zip(&queries_before)
        .flat_map(|(r, from)| asked_ids(&r.queries()[*from..]))
        .collect();
    assert_eq!(asked.len(), 50, "each new event asked for once");
    assert_eq!(asked.into_iter().collect::<HashSet<_>>(), ids(&fifty));
    stack.assert_services_alive()?;
    stack.shutdown().await
}

/// Small corpus of one repo served by `relays`, with our announcement listing them.
fn small_corpus(seed: u64, urls: &[String]) -> (Corpus, Vec<Event>) {
    let corpus = Corpus::generate(
        CorpusSpec::new(seed)
            .repos(1)
            .events_per_repo(120)
            .relays(urls.to_vec())
            .patch_kib(1, 2),
    );
    let ours = vec![announce(&corpus.repos()[0], urls)];
    (corpus, ours)
}

/// When the relay's first session said `connected`, and when it turned Connected for good.
fn connected_after(stack_news: &[ngit_sync_shared::messages::RelayNews], url: &str) -> Option<u64> {
    let first = stack_news
        .iter()
        .find(|n| n.relay.as_str() == url && matches!(n.body, RelayBody::Connected { .. }))?
        .at_ms;
    let done = stack_news
        .iter()
        .filter(|n| n.relay.as_str() == url)
        .filter_map(|n| match &n.body {
            RelayBody::Status(s) if s.status == ConnectionStatus::Connected => Some(s.since_ms),
            _ => None,
        })
        .next()?;
    Some(done.saturating_sub(first))
}

const REFUSALS: [NegBehaviour; 5] = [
    NegBehaviour::NoticeBadMsg,
    NegBehaviour::NegErr,
    NegBehaviour::Closed,
    NegBehaviour::Silence,
    NegBehaviour::Disconnect,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_refusing_negentropy_five_ways_are_synced_by_req_within_15_s() -> anyhow::Result<()>
{
    let mut relays = Vec::new();
    for neg in REFUSALS {
        relays.push(RawRelay::start(Vec::new(), RawRelayOptions::new().neg(neg)).await?);
    }
    let urls: Vec<String> = relays.iter().map(RawRelay::url).collect();
    let (corpus, ours) = small_corpus(41, &urls);
    let json: Vec<String> = served(&corpus, &ours)
        .iter()
        .map(nostr::JsonUtil::as_json)
        .collect();
    for relay in &relays {
        relay.add_events(json.clone());
    }
    let want = corpus.expected_home(&ours);

    let stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;
    assert_eq!(stack.home.event_ids().await?, want);
    let news = stack.relay_news().await?;
    for (url, neg) in urls.iter().zip(REFUSALS) {
        assert_eq!(
            relay_state(&stack, url).await?.negentropy,
            Some(false),
            "{neg:?}: the relay's state records no NIP-77"
        );
        let took = connected_after(&news, url).expect("connected, then Connected");
        assert!(
            took <= 15_000,
            "{neg:?}: Connected {took} ms after connecting"
        );
    }
    for relay in &relays {
        let neg_opens = relay
            .received()
            .iter()
            .filter(|m| m.starts_with("[\"NEG-OPEN\""))
            .count();
        assert!(neg_opens >= 1, "negentropy was tried");
    }
    stack.assert_services_alive()?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_pool_syncs_the_union_and_every_relay_turns_connected() -> anyhow::Result<()> {
    let nip77 = [
        TestRelay::remote().await?,
        TestRelay::remote().await?,
        TestRelay::remote().await?,
    ];
    let mut raw = Vec::new();
    for neg in [
        NegBehaviour::NoticeBadMsg,
        NegBehaviour::NegErr,
        NegBehaviour::Closed,
    ] {
        raw.push(RawRelay::start(Vec::new(), RawRelayOptions::new().neg(neg)).await?);
    }
    let urls: Vec<String> = nip77
        .iter()
        .map(TestRelay::url)
        .chain(raw.iter().map(RawRelay::url))
        .collect();
    let (corpus, ours) = small_corpus(42, &urls);
    // Each event on one or two of the six relays: only the union is complete.
    let replaced = ids(&corpus.announcements());
    let shares: Vec<Vec<Event>> = corpus
        .spread(6, 2)
        .into_iter()
        .map(|share| {
            let mut share: Vec<Event> = share
                .into_iter()
                .filter(|e| !replaced.contains(&e.id))
                .collect();
            share.extend(ours.iter().cloned());
            share
        })
        .collect();
    for (relay, share) in nip77.iter().zip(&shares) {
        relay.publish(share).await?;
    }
    for (relay, share) in raw.iter().zip(&shares[3..]) {
        relay.add_events(share.iter().map(nostr::JsonUtil::as_json));
    }
    let want = corpus.expected_home(&ours);

    let stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;
    assert_eq!(stack.home.event_ids().await?, want);
    for url in &urls[..3] {
        assert_ne!(relay_state(&stack, url).await?.negentropy, Some(false));
    }
    for url in &urls[3..] {
        assert_eq!(relay_state(&stack, url).await?.negentropy, Some(false));
    }
    stack.assert_services_alive()?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_that_advertises_ids_it_never_serves_ends_degraded_and_others_are_unaffected(
) -> anyhow::Result<()> {
    let honest = TestRelay::remote().await?;
    let liar = RawRelay::start(Vec::new(), RawRelayOptions::new().neg(NegBehaviour::Lie)).await?;
    let urls = vec![honest.url(), liar.url()];
    let (corpus, ours) = small_corpus(43, &urls);
    let events = served(&corpus, &ours);
    honest.publish(&events).await?;
    liar.add_events(events.iter().map(nostr::JsonUtil::as_json));
    let want = corpus.expected_home(&ours);

    let stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    stack
        .wait_status(&urls[..1], ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;
    stack
        .wait_status(&urls[1..], ConnectionStatus::ConnectedDegraded, SYNC_WITHIN)
        .await?;
    let news = stack.relay_news().await?;
    let failed: Vec<String> = news
        .iter()
        .filter(|n| n.relay.as_str() == urls[1])
        .filter_map(|n| match &n.body {
            RelayBody::BatchFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        failed.iter().any(|r| r.contains("returned none")),
        "{failed:?}"
    );
    // Asked at most twice per id: no loop.
    let reqs = liar.req_count();
    assert!(reqs < 40, "{reqs} REQs to the lying relay");
    let liar_url = urls[1].clone();
    eventually(
        Duration::from_secs(20),
        "metrics show the degraded relay",
        || async {
            let Ok(m) = stack.metrics().await else {
                return false;
            };
            m.get("ngit_sync_relay_connected", &[("relay", &liar_url)]) == Some(4.0)
                && m.get("ngit_sync_relay_connected", &[("relay", &urls[0])]) == Some(3.0)
                && m.get(
                    "ngit_sync_batches_total",
                    &[("method", "negentropy"), ("result", "failed")],
                )
                .is_some_and(|n| n >= 1.0)
        },
    )
    .await?;
    stack.assert_services_alive()?;
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_the_home_relay_rejected_are_not_fetched_again_on_the_next_reconciliation(
) -> anyhow::Result<()> {
    let source = TestRelay::remote().await?;
    let urls = vec![source.url()];
    let (corpus, ours) = small_corpus(44, &urls);
    // The source keeps the corpus' older announcement; the home relay, holding ours, refuses it
    // (nostr-relay-builder answers `error:` for a replaced event until the sink calls it final).
    source.publish(&corpus.all_related()).await?;
    let old = corpus.announcements()[0].clone();
    let want = corpus.expected_home(&ours);

    let mut stack = Stack::start(&ours).await?;
    stack.wait_home_has(&want, SYNC_WITHIN).await?;
    // The sink calls an `error:` answer final only once other events were accepted after it:
    // live events keep coming until the relay is Connected, which means the landing watermark
    // passed the old announcement's final outcome.
    let repo = &corpus.repos()[0];
    eventually(SYNC_WITHIN, "Connected after the refusal", || async {
        let _ = source.publish(&new_issues(repo, 1)).await;
        matches!(stack.status(&urls[0]).await, Ok(Some(s)) if s.status == ConnectionStatus::Connected)
    })
    .await?;
    assert!(!stack.home.event_ids().await?.contains(&old.id));
    assert!(
        asked_ids(&source.queries()).contains(&old.id),
        "the first sync fetched the refused announcement"
    );

    let before = statuses(&stack, &urls).await;
    let from = source.queries().len();
    stack.stop_service(Service::Connector).await?;
    age_disconnects(&stack, &urls).await?;
    stack.start_service(Service::Connector).await?;
    wait_new_session_connected(&stack, &urls, &before).await?;
    let again = historic(&source.queries()[from..]);
    assert!(again.is_empty(), "nothing fetched again: {again:?}");
    stack.assert_services_alive()?;
    stack.shutdown().await
}
