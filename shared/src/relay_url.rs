//! Relay URLs: normalization, validation of untrusted input, and the relay key.

use std::fmt;
use std::net::IpAddr;

use nostr::hashes::{sha256, Hash};
use serde::{Deserialize, Serialize};

/// Why a string is not a relay URL we will connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("scheme must be ws or wss, got {0}")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not carry credentials")]
    Credentials,
    #[error("{0} is a loopback, private, link-local or unspecified address")]
    PrivateAddress(String),
    #[error("host {0} does not resolve")]
    Unresolvable(String),
}

/// A normalized relay URL: `ws[s]://host[:port][/path][?query]`, lower-case scheme and host,
/// no default port, no trailing slash, no fragment. Two spellings of one relay compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelayUrl(String);

impl RelayUrl {
    pub fn parse(input: &str) -> Result<Self, RelayUrlError> {
        let url =
            url::Url::parse(input.trim()).map_err(|e| RelayUrlError::Malformed(e.to_string()))?;
        let scheme = url.scheme().to_ascii_lowercase();
        if scheme != "ws" && scheme != "wss" {
            return Err(RelayUrlError::Scheme(scheme));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RelayUrlError::Credentials);
        }
        let host = url
            .host_str()
            .ok_or(RelayUrlError::NoHost)?
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(RelayUrlError::NoHost);
        }
        // `url` already drops the scheme's default port.
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = url.path().trim_end_matches('/');
        let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
        Ok(RelayUrl(format!("{scheme}://{host}{port}{path}{query}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Host name or address literal (IPv6 without brackets).
    pub fn host(&self) -> String {
        let url = url::Url::parse(&self.0).expect("a RelayUrl is always a valid URL");
        match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    /// Port, the scheme's default when none is written.
    pub fn port(&self) -> u16 {
        let url = url::Url::parse(&self.0).expect("a RelayUrl is always a valid URL");
        url.port_or_known_default().unwrap_or(443)
    }

    pub fn key(&self) -> RelayKey {
        RelayKey::of(self)
    }

    /// Refuses loopback, private, link-local and unspecified targets unless allowed;
    /// names are resolved first so a public name pointing inside is refused too.
    pub async fn check_reachable_target(&self, allow_private: bool) -> Result<(), RelayUrlError> {
        if allow_private {
            return Ok(());
        }
        let host = self.host();
        if host == "localhost" || host.ends_with(".localhost") {
            return Err(RelayUrlError::PrivateAddress(host));
        }
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host.as_str(), self.port()))
                .await
                .map_err(|_| RelayUrlError::Unresolvable(host.clone()))?
                .map(|a| a.ip())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(RelayUrlError::Unresolvable(host));
        }
        match addrs.iter().find(|ip| is_non_public(ip)) {
            Some(ip) => Err(RelayUrlError::PrivateAddress(ip.to_string())),
            None => Ok(()),
        }
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RelayUrl {
    type Error = RelayUrlError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RelayUrl::parse(&s)
    }
}

impl From<RelayUrl> for String {
    fn from(u: RelayUrl) -> String {
        u.0
    }
}

impl std::str::FromStr for RelayUrl {
    type Err = RelayUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RelayUrl::parse(s)
    }
}

/// Loopback, private, link-local, unspecified, CGNAT, unique-local, multicast or broadcast.
pub fn is_non_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_non_public(&IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The relay key: a readable subject token and KV key standing for one relay
/// (DESIGN.md section 2). The readable part drops the scheme; the hash keeps ws and wss apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RelayKey(String);

const KEY_READABLE_LEN: usize = 48;

impl RelayKey {
    pub fn of(url: &RelayUrl) -> RelayKey {
        let without_scheme = url
            .as_str()
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest);
        let readable: String = without_scheme
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(KEY_READABLE_LEN)
            .collect();
        let digest = sha256::Hash::hash(url.as_str().as_bytes());
        let hex = digest.to_string();
        RelayKey(format!("{readable}-{}", &hex[..8]))
    }

    /// A key read back from a subject or KV key.
    pub fn from_raw(raw: impl Into<String>) -> RelayKey {
        RelayKey(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RelayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spellings_of_one_relay_normalize_equal() {
        let a = RelayUrl::parse("wss://Relay.Damus.io/").unwrap();
        let b = RelayUrl::parse("WSS://relay.damus.io:443").unwrap();
        let c = RelayUrl::parse("  wss://relay.damus.io  ").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.as_str(), "wss://relay.damus.io");
        assert_eq!(RelayUrl::parse("ws://h:80/").unwrap().as_str(), "ws://h");
        assert_eq!(
            RelayUrl::parse("ws://h:7777/nostr/").unwrap().as_str(),
            "ws://h:7777/nostr"
        );
    }

    #[test]
    fn non_websocket_urls_are_refused() {
        assert!(matches!(
            RelayUrl::parse("http://x"),
            Err(RelayUrlError::Scheme(_))
        ));
        assert!(matches!(
            RelayUrl::parse("relay.damus.io"),
            Err(RelayUrlError::Malformed(_))
        ));
        assert!(matches!(
            RelayUrl::parse("wss://u:p@h"),
            Err(RelayUrlError::Credentials)
        ));
    }

    #[test]
    fn relay_key_is_readable_token_with_hash() {
        let key = RelayUrl::parse("wss://relay.damus.io").unwrap().key();
        let (readable, hash) = key.as_str().split_once('-').unwrap();
        assert_eq!(readable, "relay_damus_io");
        assert_eq!(hash.len(), 8);
        let ws = RelayUrl::parse("ws://relay.damus.io").unwrap().key();
        assert_ne!(key, ws);
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        for u in [
            "ws://127.0.0.1:7000",
            "ws://10.1.2.3",
            "ws://[::1]:80",
            "ws://169.254.1.1",
            "ws://0.0.0.0",
            "ws://localhost:1",
        ] {
            let url = RelayUrl::parse(u).unwrap();
            assert!(
                url.check_reachable_target(false).await.is_err(),
                "{u} must be refused"
            );
            assert!(url.check_reachable_target(true).await.is_ok());
        }
        let public = RelayUrl::parse("wss://93.184.216.34").unwrap();
        assert!(public.check_reachable_target(false).await.is_ok());
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent_and_key_is_a_valid_token(host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5}){0,2}", port in proptest::option::of(1u16..65535), path in "(/[a-zA-Z0-9_.~-]{1,8}){0,3}/?", secure: bool) {
            let scheme = if secure { "wss" } else { "ws" };
            let raw = match port { Some(p) => format!("{scheme}://{host}:{p}{path}"), None => format!("{scheme}://{host}{path}") };
            let once = RelayUrl::parse(&raw).unwrap();
            let twice = RelayUrl::parse(once.as_str()).unwrap();
            prop_assert_eq!(&once, &twice);
            prop_assert!(!once.as_str().ends_with('/'));
            let key = once.key();
            prop_assert!(key.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
            prop_assert!(key.as_str().len() <= KEY_READABLE_LEN + 9);
        }
    }
}
