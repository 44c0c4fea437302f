//! The exporter's settings, read from the environment and validated before anything connects.

use std::net::SocketAddr;

use ngit_sync_shared::config::{self, ConfigError, Lookup};
use ngit_sync_shared::constants::DEFAULT_METRICS_ADDR;
use ngit_sync_shared::CommonConfig;

/// Variable naming the HTTP listen address.
pub const ADDR_VAR: &str = "NGIT_SYNC_METRICS_ADDR";

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `NGIT_SYNC_METRICS_ADDR`: where `/metrics`, `/healthz` and `/` listen, an `ip:port`
    /// (default [`DEFAULT_METRICS_ADDR`]; port 0 picks a free port).
    pub addr: SocketAddr,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&config::env())
    }

    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Config, ConfigError> {
        let default: SocketAddr = DEFAULT_METRICS_ADDR
            .parse()
            .expect("the default metrics address is an ip:port");
        let addr = config::parse_or(lookup, ADDR_VAR, default)
            .map_err(|e| ConfigError::new(ADDR_VAR, format!("{} (expected ip:port)", e.message)))?;
        Ok(Config {
            common: CommonConfig::from_lookup(lookup)?,
            addr,
        })
    }

    /// Defaults for a NATS URL, listening on a free loopback port (tests, the all-in-one CLI).
    pub fn for_url(url: impl Into<String>) -> Config {
        Config {
            common: CommonConfig::for_url(url),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::config::lookup_from as map;

    #[test]
    fn the_address_defaults_and_parses() {
        let c = Config::from_lookup(&map(&[])).unwrap();
        assert_eq!(c.addr.to_string(), DEFAULT_METRICS_ADDR);
        let c = Config::from_lookup(&map(&[(ADDR_VAR, "0.0.0.0:0")])).unwrap();
        assert_eq!(c.addr.port(), 0);
        let c = Config::from_lookup(&map(&[(ADDR_VAR, "[::1]:9100")])).unwrap();
        assert_eq!(c.addr.port(), 9100);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = Config::from_lookup(&map(&[(ADDR_VAR, "localhost")])).unwrap_err();
        assert_eq!(e.var, ADDR_VAR);
        assert!(e.message.contains("ip:port"), "{e}");
        let e = Config::from_lookup(&map(&[("NGIT_SYNC_WIRE", "xml")])).unwrap_err();
        assert_eq!(e.var, "NGIT_SYNC_WIRE");
    }
}
