//! A running discovery against a real nats-server and a real home relay, and ways to look at
//! what it wrote.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use ngit_sync_discovery::{run, Config, Error};
use ngit_sync_shared::messages::{RelayEntry, RelayNews, RepoEntry, Watermark};
use ngit_sync_shared::nip34::{repo_key, root_key};
use ngit_sync_shared::{bus_for, codec, Bus, CommonConfig, RelayUrl};
use ngit_sync_test_support::{NatsServer, TestRelay};
use nostr::{Event, EventBuilder, Keys, Kind, Tag, Timestamp, ToBech32};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The batching window in tests.
pub const WINDOW: Duration = Duration::from_millis(200);
/// Bound on any wait for discovery to act.
pub const WAIT: Duration = Duration::from_secs(8);

pub struct Harness {
    pub home: TestRelay,
    pub bus: Bus,
    pub config: Config,
    running: Option<(CancellationToken, JoinHandle<Result<(), Error>>)>,
    nats: NatsServer,
}

impl Harness {
    /// nats-server and a home relay; discovery is not started yet.
    pub async fn new(home: TestRelay, bootstrap: &[&str]) -> anyhow::Result<Harness> {
        ngit_sync_test_support::init_tracing();
        let nats = NatsServer::start().await?;
        let common = CommonConfig::for_url(nats.url());
        let bus = bus_for(nats.client().await?, &common).await?;
        let mut config = Config::new(common, RelayUrl::parse(&home.url())?);
        config.window = WINDOW;
        config.bootstrap = bootstrap
            .iter()
            .map(|s| RelayUrl::parse(s))
            .collect::<Result<_, _>>()?;
        Ok(Harness {
            home,
            bus,
            config,
            running: None,
            nats,
        })
    }

    pub async fn start(&mut self) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let client = self.nats.client().await?;
        let task = tokio::spawn(run(self.config.clone(), client, stop.clone()));
        self.running = Some((stop, task));
        Ok(())
    }

    /// Stops discovery; it must end cleanly and in time.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let (stop, task) = self.running.take().expect("discovery is running");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task).await???;
        Ok(())
    }

    /// `ngit_sync_relays`, by URL.
    pub async fn relays(&self) -> BTreeMap<String, RelayEntry> {
        let mut out = BTreeMap::new();
        let keys: Vec<String> = match self.bus.buckets.relays.keys().await {
            Ok(keys) => keys.try_collect().await.unwrap_or_default(),
            Err(_) => return out,
        };
        for key in keys {
            if let Ok(Some(e)) = self
                .bus
                .get::<RelayEntry>(&self.bus.buckets.relays, &key)
                .await
            {
                out.insert(e.url.to_string(), e);
            }
        }
        out
    }

    pub async fn repo(&self, coord: &str) -> Option<RepoEntry> {
        self.bus
            .get(&self.bus.buckets.repos, &repo_key(coord))
            .await
            .ok()
            .flatten()
    }

    pub async fn has_root(&self, coord: &str, event: &Event) -> bool {
        let key = root_key(coord, &event.id.to_hex());
        matches!(self.bus.buckets.repos.get(key).await, Ok(Some(_)))
    }

    pub async fn watermark(&self) -> u64 {
        let w: Option<Watermark> = self
            .bus
            .get(&self.bus.buckets.watermarks, "discovery")
            .await
            .ok()
            .flatten();
        w.map_or(0, |w| w.seq)
    }

    /// How many `suffix` messages (`discovered`, `forgotten`) the RELAYS stream holds for `url`.
    pub async fn news_count(&self, url: &str, suffix: &str) -> usize {
        let subject = self.news_subject(url, suffix);
        let Ok(stream) = self.bus.js.get_stream(self.bus.names.stream_relays()).await else {
            return 0;
        };
        match stream.info_with_subjects(&subject).await {
            Ok(info) => info
                .try_collect::<Vec<_>>()
                .await
                .unwrap_or_default()
                .iter()
                .map(|(_, n)| n)
                .sum(),
            Err(_) => 0,
        }
    }

    /// The last `suffix` message for `url` on the RELAYS stream.
    pub async fn last_news(&self, url: &str, suffix: &str) -> Option<RelayNews> {
        let stream = self
            .bus
            .js
            .get_stream(self.bus.names.stream_relays())
            .await
            .ok()?;
        let message = stream
            .get_last_raw_message_by_subject(&self.news_subject(url, suffix))
            .await
            .ok()?;
        codec::decode(&message.payload).ok()
    }

    fn news_subject(&self, url: &str, suffix: &str) -> String {
        self.bus
            .names
            .relay(&RelayUrl::parse(url).unwrap().key(), suffix)
    }
}

/// A repository announcement `d` by `keys` at `at`, listing `relays` and a GRASP-shaped clone
/// URL on `grasp_host` when given.
pub fn announcement(
    keys: &Keys,
    d: &str,
    at: u64,
    relays: &[&str],
    grasp_host: Option<&str>,
) -> Event {
    let mut relays_tag = vec!["relays".to_string()];
    relays_tag.extend(relays.iter().map(|s| s.to_string()));
    let mut tags = vec![
        Tag::parse(["d", d]).unwrap(),
        Tag::parse(relays_tag).unwrap(),
    ];
    if let Some(host) = grasp_host {
        let npub = keys.public_key().to_bech32().unwrap();
        tags.push(Tag::parse(["clone", &format!("https://{host}/{npub}/{d}.git")]).unwrap());
    }
    EventBuilder::new(Kind::GitRepoAnnouncement, "")
        .tags(tags)
        .custom_created_at(Timestamp::from(at))
        .sign_with_keys(keys)
        .unwrap()
}

pub fn coord(keys: &Keys, d: &str) -> String {
    format!("30617:{}:{d}", keys.public_key().to_hex())
}

/// A root event of `kind` (1617, 1618, 1621) tagging `coord`.
pub fn root(kind: Kind, coord: &str, content: &str) -> Event {
    EventBuilder::new(kind, content)
        .tag(Tag::parse(["a", coord]).unwrap())
        .sign_with_keys(&Keys::generate())
        .unwrap()
}
