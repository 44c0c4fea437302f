//! Acceptance tests of the connector pool (issue "Horizontally scaled connector pool"): the rest
//! of the stack in-process, connector workers as real processes of the built binary, killed
//! with SIGKILL or stopped with SIGTERM, and NATS itself restarted.

mod stack;
mod workers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use ngit_sync_connector::rendezvous;
use ngit_sync_shared::codec;
use ngit_sync_shared::messages::{now_ms, LeaseEntry, RelayBody};
use ngit_sync_shared::status::{ConnectionStatus, SyncPlan};
use ngit_sync_shared::RelayUrl;
use ngit_sync_test_support::eventually;
use nostr::{EventBuilder, EventId, Keys, Kind, Tag};
use stack::{Service, Stack};
use workers::{overlapping_claims, plans_since, reconnected_at, Sources, Worker};

const SYNC_WITHIN: Duration = Duration::from_secs(60);

/// Lease and worker TTL 3 s, renewal every second: failover in seconds, not tens of seconds.
fn short_ttls(s: &mut HashMap<String, String>) {
    for (k, v) in [
        ("NGIT_SYNC_LEASE_TTL", "3s"),
        ("NGIT_SYNC_WORKER_TTL", "3s"),
        ("NGIT_SYNC_LEASE_RENEW", "1s"),
    ] {
        s.insert(k.into(), v.into());
    }
}

/// The stack without its connector, the sources, and connector processes.
struct Pool {
    stack: Stack,
    sources: Sources,
    workers: Vec<Worker>,
    dir: tempfile::TempDir,
}

impl Pool {
    async fn start(
        sources: Sources,
        workers: &[&str],
        tweak: impl FnOnce(&mut HashMap<String, String>),
    ) -> anyhow::Result<Pool> {
        let stack =
            Stack::start_without(&sources.announcements, &[Service::Connector], tweak).await?;
        let mut pool = Pool {
            stack,
            sources,
            workers: Vec::new(),
            dir: tempfile::tempdir()?,
        };
        for id in workers {
            pool.add_worker(id)?;
        }
        Ok(pool)
    }

    fn add_worker(&mut self, id: &str) -> anyhow::Result<()> {
        let worker = Worker::spawn(id, &self.stack.settings, self.dir.path())?;
        self.workers.push(worker);
        Ok(())
    }

    fn worker(&mut self, id: &str) -> &mut Worker {
        self.workers
            .iter_mut()
            .find(|w| w.id == id)
            .expect("a worker of this pool")
    }

    /// Relay URL → the worker holding its lease.
    async fn leases(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let store = &self.stack.bus.buckets.leases;
        let mut out = BTreeMap::new();
        let mut keys = store.keys().await?.boxed();
        while let Some(key) = keys.next().await {
            if let Some(bytes) = store.get(key?).await? {
                let lease: LeaseEntry = codec::decode(&bytes)?;
                out.insert(lease.relay.to_string(), lease.worker);
            }
        }
        Ok(out)
    }

    /// Relay URL → worker, as the bounded rendezvous assignment over `workers` has it.
    fn assignment(&self, workers: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
        let keys: HashMap<String, String> = self
            .sources
            .urls
            .iter()
            .map(|u| Ok((RelayUrl::parse(u)?.key().to_string(), u.clone())))
            .collect::<anyhow::Result<_>>()?;
        Ok(rendezvous::assign(workers, keys.keys().map(String::as_str))
            .into_iter()
            .map(|(k, w)| (keys[&k].clone(), w))
            .collect())
    }

    /// Waits until the leases are exactly `want`.
    async fn wait_leases(
        &self,
        want: &BTreeMap<String, String>,
        within: Duration,
    ) -> anyhow::Result<()> {
        let res = eventually(within, "leases as assigned", || async {
            self.leases().await.map(|l| &l == want).unwrap_or(false)
        })
        .await;
        if res.is_err() {
            let have = self.leases().await?;
            let wrong = want.iter().filter(|(u, w)| have.get(*u) != Some(w)).count();
            anyhow::bail!("{wrong} of {} relays not leased as assigned", want.len());
        }
        Ok(())
    }

    async fn wait_synced(&self) -> anyhow::Result<()> {
        self.stack
            .wait_home_has(&self.sources.want, SYNC_WITHIN)
            .await?;
        self.stack
            .wait_status(&self.sources.urls, ConnectionStatus::Connected, SYNC_WITHIN)
            .await?;
        anyhow::ensure!(
            self.stack.home.event_ids().await? == self.sources.want,
            "the home relay holds exactly the union of the sources' related events"
        );
        Ok(())
    }

    /// Every worker's last log lines, for a failure message.
    fn logs(&self) -> String {
        self.workers
            .iter()
            .map(|w| format!("--- {} ---\n{}", w.id, w.log_tail(15)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs a test body and adds the workers' logs to its failure.
async fn with_logs<F, Fut>(pool: Pool, body: F) -> anyhow::Result<()>
where
    F: FnOnce(Pool) -> Fut,
    Fut: Future<Output = (Pool, anyhow::Result<()>)>,
{
    let (pool, result) = body(pool).await;
    match result {
        Ok(()) => pool.stack.shutdown().await,
        Err(e) => Err(e.context(pool.logs())),
    }
}

fn per_worker(leases: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in leases.values() {
        *out.entry(w.clone()).or_default() += 1;
    }
    out
}

/// An issue on repo `i` of the corpus, created now (so only a live or catch-up REQ finds it).
fn new_issue(sources: &Sources, i: usize) -> nostr::Event {
    let repo = &sources.corpus.repos()[i];
    let coord = format!("30617:{}:{}", repo.owner.public_key(), repo.identifier());
    EventBuilder::new(Kind::GitIssue, format!("issue during the handoff {i}"))
        .tag(Tag::parse(["a", &coord]).expect("valid tag"))
        .sign_with_keys(&Keys::generate())
        .expect("signs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_relays_spread_evenly_over_three_processes_and_a_killed_ones_relays_reconnect_within_15s(
) -> anyhow::Result<()> {
    // Default TTLs (10 s) and renewal (3 s): the 15 s bound is the production one.
    let sources = Sources::start(60, 51, 150).await?;
    let ids = ["worker-1", "worker-2", "worker-3"];
    let pool = Pool::start(sources, &ids, |_| {}).await?;
    with_logs(pool, |mut pool| async move {
        let result = async {
            let peaks = pool.sources.sample_connections();
            let assigned = pool.assignment(&ids)?;
            pool.wait_leases(&assigned, Duration::from_secs(30)).await?;
            // One lease per relay, held by its assigned worker: owned by exactly one worker.
            let counts = per_worker(&pool.leases().await?);
            let mean = 60.0 / 3.0;
            for (w, n) in &counts {
                let off = (*n as f64 - mean).abs() / mean;
                assert!(off <= 0.2, "{w} holds {n} relays, {:.0} % off the mean", off * 100.0);
            }
            println!("relays per worker: {counts:?}");

            // Kill one worker while the historic sync runs (asserted below, once it is dead).
            let victim = "worker-2";
            let theirs: Vec<String> = assigned
                .iter()
                .filter(|(_, w)| *w == victim)
                .map(|(u, _)| u.clone())
                .collect();
            let home_before = pool.stack.home.count().await?;
            let kill_ms = now_ms();
            pool.worker(victim).kill().await?;
            assert!(
                home_before < pool.sources.want.len(),
                "killed during the historic sync ({home_before} of {} events home)",
                pool.sources.want.len()
            );

            let survivors = pool.assignment(&["worker-1", "worker-3"])?;
            pool.wait_leases(&survivors, Duration::from_secs(20)).await?;
            let reconnected = eventually_news(&pool, |news| {
                let at = reconnected_at(news, victim, kill_ms);
                theirs.iter().all(|u| at.contains_key(u)).then_some(at)
            })
            .await?;
            let failover_ms = theirs.iter().map(|u| reconnected[u] - kill_ms).max().unwrap_or(0);
            println!(
                "failover: {} relays of the killed worker connected again {failover_ms} ms after SIGKILL",
                theirs.len()
            );
            assert!(failover_ms <= 15_000, "failover took {failover_ms} ms");

            pool.wait_synced().await?;
            let connected_ms = now_ms() - kill_ms;
            println!("every relay Connected and every event home {connected_ms} ms after SIGKILL");
            let news = pool.stack.relay_news().await?;
            let (quick, fresh) = plans_since(&news, kill_ms);
            println!("sessions after SIGKILL: {quick} quick reconnects, {fresh} fresh starts");
            let overlaps = overlapping_claims(&news, &[(victim, kill_ms)]);
            assert!(overlaps.is_empty(), "double ownership: {overlaps:?}");
            assert!(peaks.over_one().is_empty(), "two sessions at once: {:?}", peaks.over_one());

            // The owner in `ngit-sync status`, and the pool's metrics.
            let lines = ngit_sync::status::collect(&pool.stack.bus)
                .await
                .map_err(anyhow::Error::msg)?;
            for l in &lines {
                assert_eq!(l.owner.as_ref(), survivors.get(&l.url), "{}", l.url);
            }
            let handoffs = theirs.len() as f64;
            eventually(Duration::from_secs(20), "pool metrics", || async {
                let Ok(m) = pool.stack.metrics().await else {
                    return false;
                };
                m.get("ngit_sync_workers", &[]) == Some(2.0)
                    && m.get("ngit_sync_lease_handoffs_total", &[]).unwrap_or(0.0) >= handoffs
                    && ["worker-1", "worker-3"].iter().all(|w| {
                        m.get("ngit_sync_relays_per_worker", &[("worker", w)])
                            == Some(per_worker(&survivors)[*w] as f64)
                    })
            })
            .await?;
            Ok(())
        }
        .await;
        (pool, result)
    })
    .await
}

/// Polls the RELAYS stream until `f` finds what it needs (reading it whole is slow: 200 ms).
async fn eventually_news<T>(
    pool: &Pool,
    f: impl Fn(&[ngit_sync_shared::messages::RelayNews]) -> Option<T>,
) -> anyhow::Result<T> {
    let f = &f;
    ngit_sync_test_support::eventually_some(Duration::from_secs(30), "relay news", || async move {
        let news = pool.stack.relay_news().await.ok()?;
        f(&news)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_worker_takes_about_a_quarter_of_sixty_relays_and_nothing_is_lost(
) -> anyhow::Result<()> {
    let sources = Sources::start(60, 52, 10).await?;
    let three = ["worker-1", "worker-2", "worker-3"];
    let pool = Pool::start(sources, &three, short_ttls).await?;
    with_logs(pool, |mut pool| async move {
        let result = async {
            let before = pool.assignment(&three)?;
            pool.wait_leases(&before, Duration::from_secs(30)).await?;
            pool.wait_synced().await?;
            let peaks = pool.sources.sample_connections();

            pool.add_worker("worker-4")?;
            // Events published while relays change hands reach home all the same.
            let late: Vec<nostr::Event> = (0..12).map(|i| new_issue(&pool.sources, i)).collect();
            for (i, e) in late.iter().enumerate() {
                pool.sources.relays[i * 5]
                    .publish(std::slice::from_ref(e))
                    .await?;
            }
            let after = pool.assignment(&["worker-1", "worker-2", "worker-3", "worker-4"])?;
            pool.wait_leases(&after, Duration::from_secs(30)).await?;
            let moved = before.iter().filter(|(u, w)| after[*u] != **w).count();
            let to_new = per_worker(&after)["worker-4"];
            println!("a fourth worker joined: {moved} of 60 relays moved, {to_new} to it");
            assert!(moved <= 25, "{moved} of 60 relays moved");
            let counts = per_worker(&after);
            assert!(counts.values().all(|n| (12..=18).contains(n)), "{counts:?}");

            let late_ids: HashSet<EventId> = late.iter().map(|e| e.id).collect();
            pool.stack.wait_home_has(&late_ids, SYNC_WITHIN).await?;
            pool.stack
                .wait_status(&pool.sources.urls, ConnectionStatus::Connected, SYNC_WITHIN)
                .await?;
            pool.stack
                .wait_home_has(&pool.sources.want, SYNC_WITHIN)
                .await?;
            let news = pool.stack.relay_news().await?;
            let overlaps = overlapping_claims(&news, &[]);
            assert!(overlaps.is_empty(), "double ownership: {overlaps:?}");
            assert!(
                peaks.over_one().is_empty(),
                "two sessions at once: {:?}",
                peaks.over_one()
            );
            Ok(())
        }
        .await;
        (pool, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_exits_within_10s_and_the_next_owners_reconnect_quickly_without_a_full_download(
) -> anyhow::Result<()> {
    let sources = Sources::start(30, 53, 20).await?;
    let ids = ["worker-1", "worker-2", "worker-3"];
    let pool = Pool::start(sources, &ids, short_ttls).await?;
    with_logs(pool, |mut pool| async move {
        let result = async {
            let assigned = pool.assignment(&ids)?;
            pool.wait_leases(&assigned, Duration::from_secs(30)).await?;
            pool.wait_synced().await?;
            let leaving = "worker-1";
            let theirs: Vec<usize> = (0..pool.sources.urls.len())
                .filter(|i| assigned[&pool.sources.urls[*i]] == leaving)
                .collect();
            let queries_before: Vec<usize> =
                pool.sources.relays.iter().map(|r| r.queries().len()).collect();

            let asked = tokio::time::Instant::now();
            let term_ms = now_ms();
            pool.worker(leaving).terminate()?;
            let status = pool.worker(leaving).exited_within(Duration::from_secs(10)).await?;
            println!("SIGTERM: exited in {:?} with {status}", asked.elapsed());
            assert!(status.success(), "clean exit, got {status}");

            let survivors = pool.assignment(&["worker-2", "worker-3"])?;
            pool.wait_leases(&survivors, Duration::from_secs(20)).await?;
            pool.stack
                .wait_status(&pool.sources.urls, ConnectionStatus::Connected, SYNC_WITHIN)
                .await?;
            let news = pool.stack.relay_news().await?;
            let overlaps = overlapping_claims(&news, &[]);
            assert!(overlaps.is_empty(), "double ownership: {overlaps:?}");
            let reconnected = reconnected_at(&news, leaving, term_ms);
            for &i in &theirs {
                let url = &pool.sources.urls[i];
                let released = news.iter().any(|n| {
                    n.relay.as_str() == url
                        && matches!(&n.body, RelayBody::Released { worker, reason } if worker == leaving && reason == "shutdown")
                });
                assert!(released, "{url} released on shutdown");
                let plans: Vec<SyncPlan> = news
                    .iter()
                    .filter(|n| n.relay.as_str() == url && n.at_ms >= term_ms)
                    .filter_map(|n| match &n.body {
                        RelayBody::Connected { plan, .. } => Some(*plan),
                        _ => None,
                    })
                    .collect();
                assert_eq!(plans, [SyncPlan::Quick], "{url}: one quick reconnect");
                // No full re-download: every historic filter of the new owner carries `since`;
                // live ones (limit 0) ask for nothing stored.
                let asked_again = &pool.sources.relays[i].queries()[queries_before[i]..];
                assert!(!asked_again.is_empty(), "{url} asked again");
                let full: Vec<_> = asked_again
                    .iter()
                    .filter(|f| f.since.is_none() && f.limit != Some(0))
                    .collect();
                assert!(full.is_empty(), "{url}: history asked without since: {full:?}");
            }
            let slowest = theirs
                .iter()
                .map(|i| reconnected[&pool.sources.urls[*i]] - term_ms)
                .max()
                .unwrap_or(0);
            println!("SIGTERM handoff: {} relays connected to their new owners within {slowest} ms", theirs.len());
            Ok(())
        }
        .await;
        (pool, result)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_down_for_ten_seconds_mid_sync_keeps_one_owner_per_relay_and_the_sync_completes(
) -> anyhow::Result<()> {
    let sources = Sources::start(30, 54, 400).await?;
    let ids = ["worker-1", "worker-2", "worker-3"];
    let pool = Pool::start(sources, &ids, short_ttls).await?;
    with_logs(pool, |mut pool| async move {
        let result = async {
            let peaks = pool.sources.sample_connections();
            let assigned = pool.assignment(&ids)?;
            eventually(SYNC_WITHIN, "the sync under way", || async {
                pool.stack.home.count().await.unwrap_or(0) >= 100
            })
            .await?;
            let home_before = pool.stack.home.count().await?;
            let outage = tokio::time::Instant::now();
            let outage_ms = now_ms();
            pool.stack.nats.stop();
            assert!(
                home_before < pool.sources.want.len(),
                "NATS stopped during the sync ({home_before} of {} events home)",
                pool.sources.want.len()
            );
            // The fault lasts ten seconds: this sleep is the outage, not a wait for a result.
            tokio::time::sleep_until(outage + Duration::from_secs(10)).await;
            pool.stack.nats.restart().await?;

            let restarted = tokio::time::Instant::now();
            pool.wait_synced().await?;
            pool.wait_leases(&assigned, Duration::from_secs(20)).await?;
            println!(
                "NATS back: every relay Connected and every event home {:?} after the restart",
                restarted.elapsed()
            );
            for w in &mut pool.workers {
                let id = w.id.clone();
                assert!(
                    w.exited_within(Duration::from_millis(1)).await.is_err(),
                    "{id} survived the outage"
                );
            }
            assert!(
                peaks.over_one().is_empty(),
                "two sessions at once: {:?}",
                peaks.over_one()
            );
            let news = pool.stack.relay_news().await?;
            let overlaps = overlapping_claims(&news, &[]);
            assert!(overlaps.is_empty(), "double ownership: {overlaps:?}");
            let claims_after: Vec<(String, String)> = news
                .iter()
                .filter(|n| n.at_ms >= outage_ms)
                .filter_map(|n| match &n.body {
                    RelayBody::Claimed { worker } => Some((n.relay.to_string(), worker.clone())),
                    _ => None,
                })
                .collect();
            let elsewhere = claims_after
                .iter()
                .filter(|(u, w)| assigned[u] != *w)
                .count();
            let (quick, fresh) = plans_since(&news, outage_ms);
            println!("sessions after the outage: {quick} quick reconnects, {fresh} fresh starts");
            let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
            for n in news.iter().filter(|n| n.at_ms >= outage_ms) {
                if let RelayBody::Released { reason, .. } = &n.body {
                    *reasons.entry(reason.clone()).or_default() += 1;
                }
            }
            println!(
                "NATS outage: {} claims after it, {elsewhere} by a worker other than the relay's \
                 own; releases after it: {reasons:?}",
                claims_after.len()
            );
            assert_eq!(
                elsewhere, 0,
                "every worker kept or re-acquired its own relays"
            );
            pool.stack.assert_services_alive()?;
            Ok(())
        }
        .await;
        (pool, result)
    })
    .await
}

/// Memory and CPU of idle sessions (run by hand: `cargo test -p ngit-sync --test pool idle --
/// --ignored --nocapture`): one worker process holds 250 empty relays; prints the worker's
/// resident memory per session and its CPU use over 10 s of idling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check: 250 relays in one test process"]
async fn idle_sessions_cost_little_memory_and_cpu() -> anyhow::Result<()> {
    const RELAYS: usize = 250;
    let mut relays = Vec::with_capacity(RELAYS);
    for _ in 0..RELAYS {
        relays.push(ngit_sync_test_support::TestRelay::remote().await?);
    }
    let urls: Vec<String> = relays.iter().map(|r| r.url()).collect();
    let corpus = ngit_sync_test_support::Corpus::generate(
        ngit_sync_test_support::CorpusSpec::new(55)
            .repos(2)
            .events_per_repo(2),
    );
    // Default TTLs: lease renewals (one KV update per relay every 3 s) are most of the idle CPU.
    let stack = Stack::start_without(&[], &[Service::Connector], |_| {}).await?;
    let dir = tempfile::tempdir()?;
    let worker = Worker::spawn("worker-1", &stack.settings, dir.path())?;
    // Baseline: the worker with one relay (the second repo's own).
    let one = vec![stack::announce(&corpus.repos()[1], &urls[..1])];
    stack.home.publish(&one).await?;
    stack
        .wait_status(&urls[..1], ConnectionStatus::Connected, SYNC_WITHIN)
        .await?;
    let base = worker.rss_kib().unwrap_or(0);

    let all = vec![stack::announce(&corpus.repos()[0], &urls)];
    stack.home.publish(&all).await?;
    stack
        .wait_status(&urls, ConnectionStatus::Connected, Duration::from_secs(120))
        .await?;
    let cpu_before = worker.cpu_ticks().unwrap_or(0);
    let idle = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu_ticks = worker.cpu_ticks().unwrap_or(0) - cpu_before;
    let rss = worker.rss_kib().unwrap_or(0);
    let per_relay = (rss.saturating_sub(base)) as f64 / (RELAYS - 1) as f64;
    // Clock ticks are 1/100 s on Linux.
    let cpu_percent = cpu_ticks as f64 / idle.elapsed().as_secs_f64();
    println!(
        "idle: {RELAYS} sessions, worker RSS {rss} KiB (baseline with one relay {base} KiB), \
         {per_relay:.1} KiB per session, CPU {cpu_percent:.2} % of one core while idle"
    );
    assert_eq!(
        relays.iter().map(|r| r.open_connections()).sum::<usize>(),
        RELAYS,
        "one session per relay"
    );
    stack.shutdown().await
}
