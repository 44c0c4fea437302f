//! Shared fixtures of the integration tests: a running exporter on a real nats-server, an HTTP
//! GET that keeps the headers, and a parser of the Prometheus text format.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use ngit_sync_metrics_exporter::{run_with_listener, Config, Error};
use ngit_sync_shared::messages::{now_ms, RelayBody, RelayEntry, RelayNews};
use ngit_sync_shared::{bus_for, Bus, CommonConfig, RelayUrl};
use ngit_sync_test_support::{eventually_some, init_tracing, NatsServer};

pub const WAIT: Duration = Duration::from_secs(10);

/// An exporter running against its own nats-server, plus a bus to publish with.
pub struct Harness {
    pub nats: NatsServer,
    pub bus: Bus,
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

impl Harness {
    pub async fn start() -> anyhow::Result<Harness> {
        init_tracing();
        let nats = NatsServer::start().await?;
        let bus = bus_for(nats.client().await?, &CommonConfig::for_url(nats.url())).await?;
        let (addr, stop, task) = start_exporter(&nats).await?;
        Ok(Harness {
            nats,
            bus,
            addr,
            stop,
            task,
        })
    }

    /// Stops the exporter and checks it ends cleanly, then starts a fresh one on the same NATS.
    pub async fn restart_exporter(&mut self) -> anyhow::Result<()> {
        self.stop_exporter().await?;
        let (addr, stop, task) = start_exporter(&self.nats).await?;
        self.addr = addr;
        self.stop = stop;
        self.task = task;
        Ok(())
    }

    pub async fn stop_exporter(&mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let result = tokio::time::timeout(WAIT, &mut self.task)
            .await
            .context("the exporter did not stop in time")??;
        result.context("the exporter ended with an error")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        get(self.addr, path).await
    }

    pub async fn metrics(&self) -> anyhow::Result<Samples> {
        let response = self.get("/metrics").await?;
        if response.status != 200 {
            bail!("/metrics answered {}", response.status);
        }
        Samples::parse(&response.body)
    }

    /// Polls `/metrics` until every expected sample has its value; fails with the differences.
    pub async fn wait_for(&self, expected: &[Expect]) -> anyhow::Result<Samples> {
        let last = RefCell::new(String::new());
        let found = eventually_some(WAIT, "the expected metric values", || async {
            let samples = self.metrics().await.ok()?;
            let wrong = samples.mismatches(expected);
            *last.borrow_mut() = wrong.join("\n");
            wrong.is_empty().then_some(samples)
        })
        .await;
        found.with_context(|| format!("still wrong:\n{}", last.borrow()))
    }

    pub async fn relay_news(&self, relay: &str, body: RelayBody) -> anyhow::Result<()> {
        let news = RelayNews {
            relay: RelayUrl::parse(relay)?,
            at_ms: now_ms(),
            body,
        };
        self.bus.publish_relay(&news).await?;
        Ok(())
    }

    /// Puts the relay into `ngit_sync_relays`, as discovery does.
    pub async fn track(&self, relay: &str) -> anyhow::Result<()> {
        let url = RelayUrl::parse(relay)?;
        let entry = RelayEntry {
            url: url.clone(),
            bootstrap: false,
            repos: 1,
        };
        self.bus
            .put(&self.bus.buckets.relays, url.key().as_str(), &entry)
            .await?;
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_exporter(
    nats: &NatsServer,
) -> anyhow::Result<(SocketAddr, CancellationToken, JoinHandle<Result<(), Error>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_with_listener(
        Config::for_url(nats.url()),
        nats.client().await?,
        listener,
        stop.clone(),
    ));
    Ok((addr, stop, task))
}

/// One expected sample: name, labels, value.
pub type Expect = (&'static str, Vec<(&'static str, String)>, f64);

pub fn expect(name: &'static str, labels: &[(&'static str, &str)], value: f64) -> Expect {
    (
        name,
        labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        value,
    )
}

pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `GET` over HTTP/1.0, keeping the response headers (lower-case names).
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<Response> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Response {
            status,
            headers,
            body: body.to_string(),
        })
    })
    .await
    .with_context(|| format!("GET {path} timed out"))?
}

/// A scrape: every sample with its labels.
#[derive(Debug)]
pub struct Samples(pub Vec<(String, BTreeMap<String, String>, f64)>);

impl Samples {
    /// Parses the Prometheus text format 0.0.4.
    pub fn parse(text: &str) -> anyhow::Result<Samples> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(parse_line(line).with_context(|| format!("bad sample line {line:?}"))?);
        }
        Ok(Samples(out))
    }

    /// The value of the sample with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| *v)
    }

    /// Whether any sample carries a label with this value.
    pub fn any_label_value(&self, label: &str, value: &str) -> bool {
        self.0
            .iter()
            .any(|(_, l, _)| l.get(label).map(String::as_str) == Some(value))
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _, _)| n.as_str()).collect()
    }

    pub fn mismatches(&self, expected: &[Expect]) -> Vec<String> {
        expected
            .iter()
            .filter_map(|(name, labels, value)| {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let got = self.get(name, &labels);
                (got != Some(*value))
                    .then(|| format!("{name}{labels:?}: want {value}, got {got:?}"))
            })
            .collect()
    }
}

fn parse_line(line: &str) -> anyhow::Result<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().context("unterminated labels")?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        bail!("label value is not quoted");
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().context("unterminated label value")?.1 {
                            '"' => break,
                            '\\' => match chars.next().context("dangling escape")?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .context("no value")?
        .parse::<f64>()?;
    Ok((name, labels, value))
}

#[test]
fn the_parser_reads_labels_with_escapes() {
    let s = Samples::parse(
        "# HELP x y\n# TYPE x gauge\nx 3\ny{a=\"1\",b=\"q\\\"u,o}te\"} 2.5\nz_bucket{le=\"+Inf\"} 7\n",
    )
    .unwrap();
    assert_eq!(s.get("x", &[]), Some(3.0));
    assert_eq!(s.get("y", &[("a", "1"), ("b", "q\"u,o}te")]), Some(2.5));
    assert_eq!(s.get("z_bucket", &[("le", "+Inf")]), Some(7.0));
    assert_eq!(s.get("y", &[("a", "1")]), None);
}
