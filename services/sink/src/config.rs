//! The sink's settings, read from the environment (or a map in tests) and validated up front.

use std::time::Duration;

use ngit_sync_shared::config::{self, Lookup};
use ngit_sync_shared::{constants, CommonConfig, ConfigError, RelayUrl};

/// The home relay to write to (required).
pub const ENV_HOME_RELAY: &str = "NGIT_SYNC_HOME_RELAY";
/// Events written to the home relay and not yet answered.
pub const ENV_IN_FLIGHT: &str = "NGIT_SYNC_SINK_IN_FLIGHT";
/// First retry delay of a transient failure.
pub const ENV_RETRY_BASE: &str = "NGIT_SYNC_SINK_RETRY_BASE";
/// Largest retry delay.
pub const ENV_RETRY_CAP: &str = "NGIT_SYNC_SINK_RETRY_CAP";
/// How long to wait for the home relay's `OK` to one EVENT.
pub const ENV_OK_TIMEOUT: &str = "NGIT_SYNC_SINK_OK_TIMEOUT";
/// How often gathered outcomes are published (and their messages acked).
pub const ENV_FLUSH_INTERVAL: &str = "NGIT_SYNC_SINK_FLUSH_INTERVAL";

/// Outcomes are published at least this often.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// More in flight than this only wastes the home relay's memory; it also bounds our own.
const MAX_IN_FLIGHT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `NGIT_SYNC_HOME_RELAY`: the only relay the sink writes to.
    pub home_relay: RelayUrl,
    /// `NGIT_SYNC_SINK_IN_FLIGHT`: events delivered and not yet acked (default 256). Also the
    /// durable consumer's `max_ack_pending`.
    pub in_flight: usize,
    /// `NGIT_SYNC_SINK_RETRY_BASE`: first retry delay, doubling per failure (default 500ms).
    pub retry_base: Duration,
    /// `NGIT_SYNC_SINK_RETRY_CAP`: retry delays never grow past this (default 30s).
    pub retry_cap: Duration,
    /// `NGIT_SYNC_SINK_OK_TIMEOUT`: an EVENT without `OK` for this long is retried (default 10s).
    pub ok_timeout: Duration,
    /// `NGIT_SYNC_SINK_FLUSH_INTERVAL`: outcome batches are published this often (default 100ms).
    pub flush_interval: Duration,
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
            Some(v) => RelayUrl::parse(&v)
                .map_err(|e| ConfigError::new(ENV_HOME_RELAY, format!("{v:?}: {e}")))?,
        };
        let config = Config {
            common,
            home_relay,
            in_flight: config::parse_or(lookup, ENV_IN_FLIGHT, constants::SINK_IN_FLIGHT)?,
            retry_base: config::duration_or(lookup, ENV_RETRY_BASE, constants::SINK_RETRY_BASE)?,
            retry_cap: config::duration_or(lookup, ENV_RETRY_CAP, constants::SINK_RETRY_CAP)?,
            ok_timeout: config::duration_or(lookup, ENV_OK_TIMEOUT, constants::SINK_OK_TIMEOUT)?,
            flush_interval: config::duration_or(
                lookup,
                ENV_FLUSH_INTERVAL,
                DEFAULT_FLUSH_INTERVAL,
            )?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Defaults around a given NATS setup and home relay (tests and the all-in-one command).
    pub fn new(common: CommonConfig, home_relay: RelayUrl) -> Config {
        Config {
            common,
            home_relay,
            in_flight: constants::SINK_IN_FLIGHT,
            retry_base: constants::SINK_RETRY_BASE,
            retry_cap: constants::SINK_RETRY_CAP,
            ok_timeout: constants::SINK_OK_TIMEOUT,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        }
    }

    /// Checks what the types cannot; `from_lookup` calls it, callers of [`Config::new`] may.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.in_flight == 0 || self.in_flight > MAX_IN_FLIGHT {
            return Err(ConfigError::new(
                ENV_IN_FLIGHT,
                format!("{} must be between 1 and {MAX_IN_FLIGHT}", self.in_flight),
            ));
        }
        let positive = [
            (ENV_RETRY_BASE, self.retry_base),
            (ENV_RETRY_CAP, self.retry_cap),
            (ENV_OK_TIMEOUT, self.ok_timeout),
            (ENV_FLUSH_INTERVAL, self.flush_interval),
        ];
        if let Some((var, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::new(var, "must be greater than zero"));
        }
        if self.retry_cap < self.retry_base {
            return Err(ConfigError::new(
                ENV_RETRY_CAP,
                format!(
                    "{:?} is below {ENV_RETRY_BASE} ({:?})",
                    self.retry_cap, self.retry_base
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ngit_sync_shared::config::lookup_from as lookup;

    #[test]
    fn defaults_follow_the_constants() {
        let c = Config::from_lookup(&lookup(&[(ENV_HOME_RELAY, "wss://home.example/")])).unwrap();
        assert_eq!(c.home_relay.as_str(), "wss://home.example");
        assert_eq!(c.in_flight, constants::SINK_IN_FLIGHT);
        assert_eq!(c.retry_base, constants::SINK_RETRY_BASE);
        assert_eq!(c.retry_cap, constants::SINK_RETRY_CAP);
        assert_eq!(c.ok_timeout, constants::SINK_OK_TIMEOUT);
        assert_eq!(c.flush_interval, DEFAULT_FLUSH_INTERVAL);
    }

    #[test]
    fn settings_are_read_from_their_variables() {
        let c = Config::from_lookup(&lookup(&[
            (ENV_HOME_RELAY, "ws://127.0.0.1:7777"),
            (ENV_IN_FLIGHT, "32"),
            (ENV_RETRY_BASE, "100ms"),
            (ENV_RETRY_CAP, "2s"),
            (ENV_OK_TIMEOUT, "3s"),
            (ENV_FLUSH_INTERVAL, "50ms"),
        ]))
        .unwrap();
        assert_eq!(c.in_flight, 32);
        assert_eq!(c.retry_base, Duration::from_millis(100));
        assert_eq!(c.retry_cap, Duration::from_secs(2));
        assert_eq!(c.ok_timeout, Duration::from_secs(3));
        assert_eq!(c.flush_interval, Duration::from_millis(50));
    }

    #[test]
    fn the_home_relay_is_required_and_must_be_a_websocket() {
        let e = Config::from_lookup(&lookup(&[])).unwrap_err();
        assert_eq!(e.var, ENV_HOME_RELAY);
        assert!(e.message.contains("required"), "{e}");
        let e =
            Config::from_lookup(&lookup(&[(ENV_HOME_RELAY, "https://home.example")])).unwrap_err();
        assert_eq!(e.var, ENV_HOME_RELAY);
        assert!(e.to_string().contains("https://home.example"), "{e}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let home = (ENV_HOME_RELAY, "wss://home.example");
        let cases = [
            (ENV_IN_FLIGHT, "0"),
            (ENV_IN_FLIGHT, "many"),
            (ENV_RETRY_BASE, "0s"),
            (ENV_RETRY_CAP, "100ms"),
            (ENV_OK_TIMEOUT, "soon"),
            (ENV_FLUSH_INTERVAL, "0"),
        ];
        for (var, value) in cases {
            let e = Config::from_lookup(&lookup(&[home, (var, value)])).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}: {e}");
        }
    }
}
