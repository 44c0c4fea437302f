//! Names on the bus: subjects, stream names and bucket names, all derived from one prefix.
//! No service writes one of these as a literal.

use crate::relay_url::RelayKey;
use crate::status::Outcome;

/// The version token after the prefix; a breaking payload change bumps it.
const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("prefix {0:?} must be dot-separated tokens of [A-Za-z0-9_-]")]
pub struct PrefixError(pub String);

/// Builds every name from the prefix (`ngit.sync` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
    /// `NGIT_SYNC` for `ngit.sync`: stream names.
    upper: String,
    /// `ngit_sync` for `ngit.sync`: bucket names.
    lower: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Names, PrefixError> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !valid {
            return Err(PrefixError(prefix.to_string()));
        }
        let flat = prefix.replace(['.', '-'], "_");
        Ok(Names {
            prefix: prefix.to_string(),
            upper: flat.to_ascii_uppercase(),
            lower: flat.to_ascii_lowercase(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn base(&self) -> String {
        format!("{}.{VERSION}", self.prefix)
    }

    /// `<prefix>.v1.relay.<relay>.<suffix>` where suffix comes from [`crate::messages::RelayBody::suffix`].
    pub fn relay(&self, key: &RelayKey, suffix: &str) -> String {
        format!("{}.relay.{key}.{suffix}", self.base())
    }

    /// Every relay subject: the RELAYS stream's filter.
    pub fn relay_all(&self) -> String {
        format!("{}.relay.>", self.base())
    }

    /// `<prefix>.v1.event.<relay>.<kind>`.
    pub fn event(&self, key: &RelayKey, kind: u16) -> String {
        format!("{}.event.{key}.{kind}", self.base())
    }

    pub fn event_all(&self) -> String {
        format!("{}.event.>", self.base())
    }

    /// `<prefix>.v1.sink.<outcome>`.
    pub fn outcome(&self, outcome: Outcome) -> String {
        format!("{}.sink.{}", self.base(), outcome.as_str())
    }

    pub fn outcome_all(&self) -> String {
        format!("{}.sink.>", self.base())
    }

    /// `<prefix>.v1.index.items` (request/reply, queue group [`Names::index_queue`]).
    pub fn index_items(&self) -> String {
        format!("{}.index.items", self.base())
    }

    pub fn index_queue(&self) -> String {
        format!("{}_index", self.lower)
    }

    pub fn stream_relays(&self) -> String {
        format!("{}_RELAYS", self.upper)
    }
    pub fn stream_events(&self) -> String {
        format!("{}_EVENTS", self.upper)
    }
    pub fn stream_outcomes(&self) -> String {
        format!("{}_OUTCOMES", self.upper)
    }

    pub fn bucket_repos(&self) -> String {
        format!("{}_repos", self.lower)
    }
    pub fn bucket_relays(&self) -> String {
        format!("{}_relays", self.lower)
    }
    pub fn bucket_workers(&self) -> String {
        format!("{}_workers", self.lower)
    }
    pub fn bucket_leases(&self) -> String {
        format!("{}_leases", self.lower)
    }
    pub fn bucket_relay_state(&self) -> String {
        format!("{}_relay_state", self.lower)
    }
    pub fn bucket_status(&self) -> String {
        format!("{}_status", self.lower)
    }
    pub fn bucket_watermarks(&self) -> String {
        format!("{}_watermarks", self.lower)
    }

    /// Durable consumer names, one per reading service.
    pub fn consumer(&self, service: &str) -> String {
        format!("{}_{service}", self.lower)
    }

    /// NATS service API name of a service (`nats micro ls`).
    pub fn service_name(&self, service: &str) -> String {
        format!("{}_{}", self.lower, service.replace('-', "_"))
    }

    /// The relay key inside a relay subject, if the subject is one.
    pub fn relay_key_of<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let rest = subject
            .strip_prefix(&self.base())?
            .strip_prefix(".relay.")?;
        rest.split('.').next()
    }
}

impl Default for Names {
    fn default() -> Self {
        Names::new(crate::constants::DEFAULT_PREFIX).expect("the default prefix is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay_url::RelayUrl;

    #[test]
    fn names_follow_the_design() {
        let n = Names::default();
        let key = RelayUrl::parse("wss://relay.damus.io").unwrap().key();
        let subject = n.relay(&key, "batch.confirmed");
        assert!(subject.starts_with("ngit.sync.v1.relay.relay_damus_io-"));
        assert!(subject.ends_with(".batch.confirmed"));
        assert_eq!(n.relay_key_of(&subject), Some(key.as_str()));
        assert_eq!(n.outcome(Outcome::Saved), "ngit.sync.v1.sink.saved");
        assert_eq!(n.index_items(), "ngit.sync.v1.index.items");
        assert_eq!(n.stream_events(), "NGIT_SYNC_EVENTS");
        assert_eq!(n.bucket_relay_state(), "ngit_sync_relay_state");
        assert!(n.event(&key, 1621).ends_with(".1621"));
    }

    #[test]
    fn custom_prefix_changes_every_name() {
        let n = Names::new("acme.git-sync").unwrap();
        assert_eq!(n.stream_relays(), "ACME_GIT_SYNC_RELAYS");
        assert_eq!(n.bucket_repos(), "acme_git_sync_repos");
        assert_eq!(n.relay_all(), "acme.git-sync.v1.relay.>");
        assert!(Names::new("bad prefix").is_err());
        assert!(Names::new("a..b").is_err());
        assert!(Names::new("").is_err());
    }
}
