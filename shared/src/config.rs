//! Configuration every service shares, read from a lookup function (the environment in
//! production, a map in tests) and validated before anything connects.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::codec::Wire;
use crate::constants;
use crate::provision::BusOptions;
use crate::relay_url::RelayUrl;
use crate::subjects::Names;

/// A bad setting: the program prints it on one line and exits with code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &str, message: impl Into<String>) -> Self {
        ConfigError {
            var: var.to_string(),
            message: message.into(),
        }
    }
}

/// Where settings come from. `from_env` uses the process environment.
pub trait Lookup {
    fn get(&self, var: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn get(&self, var: &str) -> Option<String> {
        self(var)
    }
}

impl Lookup for HashMap<String, String> {
    fn get(&self, var: &str) -> Option<String> {
        HashMap::get(self, var).cloned()
    }
}

/// The process environment as a [`Lookup`].
pub fn env() -> impl Lookup {
    |var: &str| std::env::var(var).ok()
}

/// A non-empty value of `var`.
pub fn value(lookup: &dyn Lookup, var: &str) -> Option<String> {
    lookup
        .get(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn parse_or<T: FromStr>(lookup: &dyn Lookup, var: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match value(lookup, var) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|e: T::Err| ConfigError::new(var, format!("{v:?}: {e}"))),
    }
}

pub fn bool_or(lookup: &dyn Lookup, var: &str, default: bool) -> Result<bool, ConfigError> {
    match value(lookup, var).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(ConfigError::new(
            var,
            format!("{v:?} is not a boolean (true/false)"),
        )),
    }
}

/// Durations are written `250ms`, `5s`, `10m`, `1h` or `1d`; a bare number is seconds.
pub fn duration_or(
    lookup: &dyn Lookup,
    var: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value(lookup, var) {
        None => Ok(default),
        Some(v) => parse_duration(&v).ok_or_else(|| {
            ConfigError::new(
                var,
                format!("{v:?} is not a duration (e.g. 500ms, 5s, 10m, 1h)"),
            )
        }),
    }
}

pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A lookup from literal pairs: how tests (and embedding programs) pass settings without
/// touching the process environment.
pub fn lookup_from(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A comma- or space-separated list of relay URLs; each must be ws:// or wss://.
pub fn relays(lookup: &dyn Lookup, var: &str) -> Result<Vec<RelayUrl>, ConfigError> {
    let Some(v) = value(lookup, var) else {
        return Ok(Vec::new());
    };
    v.split([',', ' ', '\n'])
        .filter(|s| !s.trim().is_empty())
        .map(|s| RelayUrl::parse(s).map_err(|e| ConfigError::new(var, format!("{s:?}: {e}"))))
        .collect()
}

/// How to reach NATS. Credentials in the URL (`nats://user:pass@host`) or a token
/// (`nats://token@host`) are passed to the client and never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    pub url: String,
    pub creds: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &self.redacted_url())
            .field("creds", &self.creds)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl NatsConfig {
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<NatsConfig, ConfigError> {
        let url = value(lookup, "NATS_URL").unwrap_or_else(|| DEFAULT_NATS_URL.to_string());
        NatsConfig::validate_url(&url)?;
        let path = |var: &str| -> Result<Option<PathBuf>, ConfigError> {
            match value(lookup, var) {
                None => Ok(None),
                Some(p) if std::path::Path::new(&p).is_file() => Ok(Some(PathBuf::from(p))),
                Some(p) => Err(ConfigError::new(
                    var,
                    format!("{p:?} is not a readable file"),
                )),
            }
        };
        Ok(NatsConfig {
            url,
            creds: path("NATS_CREDS")?,
            tls_ca: path("NATS_TLS_CA")?,
        })
    }

    pub fn with_url(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            creds: None,
            tls_ca: None,
        }
    }

    fn validate_url(url: &str) -> Result<(), ConfigError> {
        for part in url.split(',') {
            let parsed = url::Url::parse(part.trim()).map_err(|e| {
                ConfigError::new("NATS_URL", format!("{:?} is not a URL: {e}", redact(part)))
            })?;
            if !["nats", "tls", "ws", "wss"].contains(&parsed.scheme())
                || parsed.host_str().unwrap_or("").is_empty()
            {
                return Err(ConfigError::new(
                    "NATS_URL",
                    format!("{:?} must look like nats://host:4222", redact(part)),
                ));
            }
            async_nats::ServerAddr::from_str(part.trim())
                .map_err(|e| ConfigError::new("NATS_URL", format!("{:?}: {e}", redact(part))))?;
        }
        Ok(())
    }

    /// The URL with any password or token replaced, for logs.
    pub fn redacted_url(&self) -> String {
        self.url
            .split(',')
            .map(redact)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects, retrying in the background while NATS is not up yet.
    pub async fn connect(
        &self,
        name: &str,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None);
        if let Some(creds) = &self.creds {
            opts = async_nats::ConnectOptions::with_credentials_file(creds.clone())
                .await?
                .name(name)
                .retry_on_initial_connect()
                .max_reconnects(None);
        }
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        let addrs: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .filter_map(|u| u.trim().parse().ok())
            .collect();
        opts.connect(addrs).await
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url.trim()) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("***");
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "<unparseable>".to_string(),
    }
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub nats: NatsConfig,
    pub names: Names,
    pub wire: Wire,
    pub bus: BusOptions,
}

impl CommonConfig {
    pub fn from_lookup(lookup: &dyn Lookup) -> Result<CommonConfig, ConfigError> {
        let prefix = value(lookup, "NGIT_SYNC_PREFIX")
            .unwrap_or_else(|| constants::DEFAULT_PREFIX.to_string());
        let names =
            Names::new(&prefix).map_err(|e| ConfigError::new("NGIT_SYNC_PREFIX", e.to_string()))?;
        let defaults = BusOptions::default();
        Ok(CommonConfig {
            nats: NatsConfig::from_lookup(lookup)?,
            names,
            wire: parse_or(lookup, "NGIT_SYNC_WIRE", Wire::Bincode)?,
            bus: BusOptions {
                dedup_window: duration_or(lookup, "NGIT_SYNC_DEDUP_WINDOW", defaults.dedup_window)?,
                lease_ttl: duration_or(lookup, "NGIT_SYNC_LEASE_TTL", defaults.lease_ttl)?,
                worker_ttl: duration_or(lookup, "NGIT_SYNC_WORKER_TTL", defaults.worker_ttl)?,
                stream_max_age: defaults.stream_max_age,
            },
        })
    }

    /// Defaults for a given NATS URL (tests and the all-in-one command).
    pub fn for_url(url: impl Into<String>) -> CommonConfig {
        CommonConfig {
            nats: NatsConfig::with_url(url),
            names: Names::default(),
            wire: Wire::default(),
            bus: BusOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        lookup_from(pairs)
    }

    #[test]
    fn defaults_need_no_environment() {
        let c = CommonConfig::from_lookup(&map(&[])).unwrap();
        assert_eq!(c.nats.url, DEFAULT_NATS_URL);
        assert_eq!(c.wire, Wire::Bincode);
        assert_eq!(c.bus, BusOptions::default());
    }

    #[test]
    fn bad_values_name_their_variable() {
        let e = CommonConfig::from_lookup(&map(&[("NATS_URL", "::not a url")])).unwrap_err();
        assert_eq!(e.var, "NATS_URL");
        let e = CommonConfig::from_lookup(&map(&[("NGIT_SYNC_WIRE", "xml")])).unwrap_err();
        assert_eq!(e.var, "NGIT_SYNC_WIRE");
        let e = relays(
            &map(&[("NGIT_SYNC_BOOTSTRAP_RELAYS", "wss://a.example, http://x")]),
            "NGIT_SYNC_BOOTSTRAP_RELAYS",
        )
        .unwrap_err();
        assert_eq!(e.var, "NGIT_SYNC_BOOTSTRAP_RELAYS");
        assert!(e.to_string().contains("http://x"));
    }

    #[test]
    fn secrets_never_reach_the_debug_output() {
        let c = CommonConfig::from_lookup(&map(&[(
            "NATS_URL",
            "nats://alice:s3cret@nats.example:4222",
        )]))
        .unwrap();
        let shown = format!("{:?}", c);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!c.nats.redacted_url().contains("alice"));
    }

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
