//! batch-tracker's settings: the shared ones plus the completion quiet period.

use std::time::Duration;

use ngit_sync_shared::config::{self, Lookup};
use ngit_sync_shared::{constants, CommonConfig, ConfigError};

/// Environment variable of [`Config::quiet`].
pub const QUIET_VAR: &str = "NGIT_SYNC_COMPLETION_QUIET";

/// A quiet period longer than this is a typo, not a setting: relays would sit in Syncing.
const MAX_QUIET: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// How long a relay whose batches all landed must stay so before it turns Connected
    /// (`NGIT_SYNC_COMPLETION_QUIET`, default [`constants::COMPLETION_QUIET`]).
    pub quiet: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&config::env())
    }

    pub fn from_lookup(lookup: &dyn Lookup) -> Result<Config, ConfigError> {
        let common = CommonConfig::from_lookup(lookup)?;
        let quiet = config::duration_or(lookup, QUIET_VAR, constants::COMPLETION_QUIET)?;
        if quiet > MAX_QUIET {
            return Err(ConfigError::new(
                QUIET_VAR,
                format!("{quiet:?} is longer than the maximum {MAX_QUIET:?}"),
            ));
        }
        Ok(Config { common, quiet })
    }

    /// Defaults around given shared settings (tests and the all-in-one command).
    pub fn with_common(common: CommonConfig) -> Config {
        Config {
            common,
            quiet: constants::COMPLETION_QUIET,
        }
    }

    /// How often the quiet timer and lease deadlines are checked: a fraction of the quiet
    /// period so Connected comes at most a quarter late, but never a busy loop.
    pub fn tick(&self) -> Duration {
        (self.quiet / 4).clamp(Duration::from_millis(20), Duration::from_millis(200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ngit_sync_shared::config::lookup_from as map;

    #[test]
    fn quiet_defaults_to_the_design_constant() {
        let c = Config::from_lookup(&map(&[])).unwrap();
        assert_eq!(c.quiet, constants::COMPLETION_QUIET);
        assert_eq!(c.tick(), Duration::from_millis(200));
    }

    #[test]
    fn quiet_is_read_in_duration_units() {
        let c = Config::from_lookup(&map(&[(QUIET_VAR, "200ms")])).unwrap();
        assert_eq!(c.quiet, Duration::from_millis(200));
        assert_eq!(c.tick(), Duration::from_millis(50));
        let c = Config::from_lookup(&map(&[(QUIET_VAR, "0")])).unwrap();
        assert_eq!(c.tick(), Duration::from_millis(20));
    }

    #[test]
    fn bad_quiet_names_its_variable() {
        let e = Config::from_lookup(&map(&[(QUIET_VAR, "soon")])).unwrap_err();
        assert_eq!(e.var, QUIET_VAR);
        let e = Config::from_lookup(&map(&[(QUIET_VAR, "2h")])).unwrap_err();
        assert_eq!(e.var, QUIET_VAR);
        let e = Config::from_lookup(&map(&[("NGIT_SYNC_PREFIX", "a b")])).unwrap_err();
        assert_eq!(e.var, "NGIT_SYNC_PREFIX");
    }
}
