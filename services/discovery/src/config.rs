//! Discovery's settings, read from the environment (or a map in tests) and validated up front.

use std::time::Duration;

use ngit_sync_shared::config::{self, Lookup};
use ngit_sync_shared::{constants, CommonConfig, ConfigError, RelayUrl};

/// The home relay to read (required).
pub const ENV_HOME_RELAY: &str = "NGIT_SYNC_HOME_RELAY";
/// Relays synced whether or not a repo lists them.
pub const ENV_BOOTSTRAP_RELAYS: &str = "NGIT_SYNC_BOOTSTRAP_RELAYS";
/// How long index changes gather before they are written to KV.
pub const ENV_WINDOW: &str = "NGIT_SYNC_DISCOVERY_WINDOW";
/// Quiet time after which gathered changes are written before the window ends.
pub const ENV_SETTLE: &str = "NGIT_SYNC_DISCOVERY_SETTLE";
/// Count a repo only when its announcement lists this relay URL.
pub const ENV_REQUIRE_LISTED: &str = "NGIT_SYNC_REQUIRE_LISTED";
/// Directory of the home index's LMDB store; unset keeps the index in memory.
pub const ENV_HOME_INDEX_PATH: &str = "NGIT_SYNC_HOME_INDEX_PATH";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `NGIT_SYNC_HOME_RELAY`: the relay whose accepted events define the repos to sync.
    pub home_relay: RelayUrl,
    /// `NGIT_SYNC_BOOTSTRAP_RELAYS`: comma- or space-separated; synced even with no repo.
    pub bootstrap: Vec<RelayUrl>,
    /// `NGIT_SYNC_DISCOVERY_WINDOW`: changes gather this long before one KV write (default 5s).
    pub window: Duration,
    /// `NGIT_SYNC_DISCOVERY_SETTLE`: changes are written once none has come for this long,
    /// even before the window ends (default 250ms; equal to the window turns it off).
    pub settle: Duration,
    /// `NGIT_SYNC_REQUIRE_LISTED`: for home relays that accept every announcement, count a
    /// repo only when its `relays` tag lists this URL (default: count every announcement).
    pub require_listed: Option<RelayUrl>,
    /// `NGIT_SYNC_HOME_INDEX_PATH`: where the home index keeps its LMDB store. Unset (the
    /// default) keeps it in memory: it is refilled from the home relay at every start anyway,
    /// LMDB only saves memory on big home relays.
    pub home_index_path: Option<std::path::PathBuf>,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&config::env())
    }

    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Config, ConfigError> {
        let common = CommonConfig::from_lookup(lookup)?;
        let home_relay = match config::value(lookup, ENV_HOME_RELAY) {
            None => {
                return Err(ConfigError::new(
                    ENV_HOME_RELAY,
                    "required: the ws:// or wss:// URL of the home relay",
                ))
            }
            Some(v) => relay_url(ENV_HOME_RELAY, &v)?,
        };
        let require_listed = config::value(lookup, ENV_REQUIRE_LISTED)
            .map(|v| relay_url(ENV_REQUIRE_LISTED, &v))
            .transpose()?;
        let window = config::duration_or(lookup, ENV_WINDOW, constants::DISCOVERY_WINDOW)?;
        if window.is_zero() {
            return Err(ConfigError::new(
                ENV_WINDOW,
                "must be longer than zero (e.g. 5s)",
            ));
        }
        // Unset, it follows a shorter window down (tests shrink the window alone).
        let settle =
            config::duration_or(lookup, ENV_SETTLE, constants::DISCOVERY_SETTLE.min(window))?;
        if settle.is_zero() || settle > window {
            return Err(ConfigError::new(
                ENV_SETTLE,
                format!(
                    "must be longer than zero and at most {ENV_WINDOW} ({window:?}), e.g. 250ms"
                ),
            ));
        }
        Ok(Config {
            common,
            home_relay,
            bootstrap: config::relays(lookup, ENV_BOOTSTRAP_RELAYS)?,
            window,
            settle,
            require_listed,
            home_index_path: config::value(lookup, ENV_HOME_INDEX_PATH).map(Into::into),
        })
    }

    /// Defaults around a given NATS setup and home relay (tests and the all-in-one command).
    pub fn new(common: CommonConfig, home_relay: RelayUrl) -> Config {
        Config {
            common,
            home_relay,
            bootstrap: Vec::new(),
            window: constants::DISCOVERY_WINDOW,
            settle: constants::DISCOVERY_SETTLE,
            require_listed: None,
            home_index_path: None,
        }
    }

    /// URLs that are us: never added to the relay set, whoever lists them.
    pub fn own_urls(&self) -> Vec<RelayUrl> {
        let mut own = vec![self.home_relay.clone()];
        own.extend(self.require_listed.iter().cloned());
        own
    }
}

fn relay_url(var: &str, value: &str) -> Result<RelayUrl, ConfigError> {
    RelayUrl::parse(value).map_err(|e| ConfigError::new(var, format!("{value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    use ngit_sync_shared::config::lookup_from as map;

    #[test]
    fn the_home_relay_is_required() {
        let e = Config::from_lookup(&map(&[])).unwrap_err();
        assert_eq!(e.var, ENV_HOME_RELAY);
    }

    #[test]
    fn defaults_and_lists_parse() {
        let c = Config::from_lookup(&map(&[
            (ENV_HOME_RELAY, "wss://home.example/"),
            (
                ENV_BOOTSTRAP_RELAYS,
                "wss://a.example, wss://b.example wss://c.example",
            ),
            (ENV_REQUIRE_LISTED, "wss://public.home.example"),
        ]))
        .unwrap();
        assert_eq!(c.home_relay.as_str(), "wss://home.example");
        assert_eq!(c.bootstrap.len(), 3);
        assert_eq!(c.window, constants::DISCOVERY_WINDOW);
        assert_eq!(c.settle, constants::DISCOVERY_SETTLE);
        let own: Vec<String> = c.own_urls().iter().map(|u| u.to_string()).collect();
        assert_eq!(own, ["wss://home.example", "wss://public.home.example"]);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let home = (ENV_HOME_RELAY, "wss://home.example");
        for (var, bad) in [
            (ENV_HOME_RELAY, "https://home.example"),
            (ENV_BOOTSTRAP_RELAYS, "wss://ok.example, ftp://no"),
            (ENV_WINDOW, "soon"),
            (ENV_WINDOW, "0s"),
            (ENV_SETTLE, "0s"),
            (ENV_SETTLE, "6s"),
            (ENV_REQUIRE_LISTED, "not a url"),
        ] {
            let mut m = map(&[home]);
            m.insert(var.to_string(), bad.to_string());
            let e = Config::from_lookup(&m).unwrap_err();
            assert_eq!(e.var, var, "{bad}");
        }
        let c = Config::from_lookup(&map(&[home, (ENV_WINDOW, "200ms")])).unwrap();
        assert_eq!(c.window, Duration::from_millis(200));
        assert_eq!(
            c.settle,
            Duration::from_millis(200),
            "follows a shorter window"
        );
        assert_eq!(
            c.home_index_path, None,
            "the home index lives in memory by default"
        );
        let c = Config::from_lookup(&map(&[home, (ENV_HOME_INDEX_PATH, "/var/lib/idx")])).unwrap();
        assert_eq!(c.home_index_path, Some("/var/lib/idx".into()));
    }
}
