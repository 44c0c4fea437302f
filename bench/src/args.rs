//! Command-line flags: which scenario, how big a world, and the `seed` tool.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Benchmark of ngit-sync: builds a seeded world of relays on this machine, runs the real stack
/// (the `ngit-sync` binary, one process per service) against it, and prints one JSON object.
#[derive(Debug, Parser)]
#[command(
    name = "ngit-sync-bench",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a seeded corpus to running relays (e.g. a compose deployment) and print its size.
    Seed(SeedArgs),
}

/// What the benchmark measures; see docs/benchmarks.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Empty home relay, the stack starts: time until all relays are Connected and every event landed.
    Cold,
    /// One pipelined client writes the same events to a fresh home relay; cold runs too, for the ratio.
    Limit,
    /// A plain nostr-sdk client fetches by REQ and writes to the home relay; cold runs too.
    Naive,
    /// After cold, a forced fresh start of every relay with nothing new: bytes and time vs cold.
    IdleResync,
    /// After cold, events published on sources at a steady rate: latency until saved at home.
    Live,
    /// Several connector workers, one killed with SIGKILL mid-sync: takeover time, losses.
    Failover,
    /// Many idle relays on a few workers: memory and CPU per relay session.
    Scale,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cold => "cold",
            Scenario::Limit => "limit",
            Scenario::Naive => "naive",
            Scenario::IdleResync => "idle-resync",
            Scenario::Live => "live",
            Scenario::Failover => "failover",
            Scenario::Scale => "scale",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "cold")]
    pub scenario: Scenario,
    /// Source relays: 20 unless set (failover: 60; scale: see --scale-relays).
    #[arg(long)]
    pub relays: Option<usize>,
    /// Percentage of source relays without NIP-77 (scripted raw relays that refuse NEG-OPEN).
    #[arg(long, default_value_t = 20)]
    pub no_nip77_percent: u8,
    /// Announced repositories.
    #[arg(long, default_value_t = 50)]
    pub repos: usize,
    /// Related events in the corpus (announcements and states included).
    #[arg(long, default_value_t = 5_000)]
    pub events: usize,
    /// Each event is placed on 1..=k source relays.
    #[arg(long, default_value_t = 3)]
    pub max_copies: usize,
    /// Each repository lists (and so is synced from) 1..=n source relays; 0 means all.
    #[arg(long, default_value_t = 5)]
    pub relays_per_repo: usize,
    /// Largest patch in KiB (smallest is 2 KiB); patches are about 30 % of the events.
    #[arg(long, default_value_t = 50)]
    pub patch_kib: usize,
    /// Seeds the corpus, the keys and the placement.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sources carry the home relay's current announcements instead of the corpus' older ones
    /// (older ones are what relays in the field hold; the home relay refuses them).
    #[arg(long)]
    pub no_stale_announcements: bool,
    /// discovery's NGIT_SYNC_DISCOVERY_WINDOW; unset keeps the service default (5s).
    #[arg(long, value_parser = parse_duration)]
    pub discovery_window: Option<Duration>,
    /// Connector workers (failover: 3, scale: 2 unless set).
    #[arg(long)]
    pub workers: Option<usize>,
    /// live: events to publish.
    #[arg(long, default_value_t = 1_000)]
    pub live_events: usize,
    /// live: events per second.
    #[arg(long, default_value_t = 50)]
    pub live_rate: u32,
    /// scale: idle relays.
    #[arg(long, default_value_t = 1_000)]
    pub scale_relays: usize,
    /// Give up on a phase after this long.
    #[arg(long, value_parser = parse_duration, default_value = "300s")]
    pub timeout: Duration,
    /// Keep the services' logs (their directory is printed) instead of deleting them.
    #[arg(long)]
    pub keep_logs: bool,
}

impl BenchArgs {
    /// `--relays`, or the scenario's own default.
    pub fn relays_or(&self, default: usize) -> usize {
        self.relays.unwrap_or(default)
    }
}

/// Source relays when `--relays` is not given.
pub const DEFAULT_RELAYS: usize = 20;

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Relays to publish the corpus to, comma separated; each event goes to 1..=max-copies of them.
    #[arg(long, value_delimiter = ',', required = true)]
    pub relays: Vec<String>,
    /// Related events to generate.
    #[arg(long, default_value_t = 1_000)]
    pub events: usize,
    #[arg(long, default_value_t = 10)]
    pub repos: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 2)]
    pub max_copies: usize,
    #[arg(long, default_value_t = 16)]
    pub patch_kib: usize,
    /// Also publish, to this relay (the home relay), an announcement per repo listing the relays.
    #[arg(long)]
    pub home: Option<String>,
    /// URLs the announcements list, if the services reach the relays under other names than
    /// this tool does (e.g. compose service names); defaults to --relays.
    #[arg(long, value_delimiter = ',')]
    pub announce_relays: Vec<String>,
    /// Publish nothing: count what the home relay (--home) misses of this corpus and which
    /// unrelated events it holds; exit 0 only when both are zero.
    #[arg(long)]
    pub check: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    ngit_sync_shared::config::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 5s, 10m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_and_sizes_parse_from_the_documented_command_line() {
        let cli = Cli::try_parse_from([
            "ngit-sync-bench",
            "--scenario",
            "idle-resync",
            "--relays",
            "50",
            "--repos",
            "200",
            "--events",
            "20000",
            "--discovery-window",
            "1s",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.bench.scenario, Scenario::IdleResync);
        assert_eq!(cli.bench.scenario.name(), "idle-resync");
        assert_eq!(
            (
                cli.bench.relays_or(DEFAULT_RELAYS),
                cli.bench.repos,
                cli.bench.events
            ),
            (50, 200, 20_000)
        );
        assert_eq!(cli.bench.discovery_window, Some(Duration::from_secs(1)));
    }

    #[test]
    fn seed_takes_a_list_of_relays() {
        let cli = Cli::try_parse_from([
            "ngit-sync-bench",
            "seed",
            "--relays",
            "ws://a:1,ws://b:2",
            "--events",
            "300",
        ])
        .unwrap();
        let Some(Command::Seed(seed)) = cli.command else {
            panic!("seed subcommand expected");
        };
        assert_eq!(seed.relays, vec!["ws://a:1", "ws://b:2"]);
        assert_eq!(seed.events, 300);
    }
}
