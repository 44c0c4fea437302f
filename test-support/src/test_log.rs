//! Opt-in test logging: quiet unless `TEST_LOG` is set.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

static INIT: Once = Once::new();

/// Installs a tracing subscriber writing through the test harness, only if `TEST_LOG` is set.
///
/// `TEST_LOG=1` (or `true`, or empty) means `debug`; any other value is used as an `EnvFilter`
/// directive, e.g. `TEST_LOG=ngit_sync=trace,nostr_relay_pool=warn`. Safe to call from every test.
pub fn init_tracing() {
    INIT.call_once(|| {
        let Ok(value) = std::env::var("TEST_LOG") else {
            return;
        };
        let directive = match value.trim() {
            "" | "1" | "true" => "debug",
            other => other,
        };
        let filter = EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("debug"));
        // Another subscriber may already be installed by the test binary; that one wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
