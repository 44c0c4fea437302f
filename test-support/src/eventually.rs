//! Polling assertions: wait for a condition instead of sleeping a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::bail;

/// Pause between two polls: short enough to keep tests quick, long enough not to spin.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `true`, or fails once `timeout` has passed.
///
/// `f` is polled once more at the deadline, so a condition that turns true while the last pause
/// runs is not reported as a timeout. The error names `what`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_some(timeout, what, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `f` every 50 ms until it returns `Some(value)`, and returns the value.
pub async fn eventually_some<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = f().await {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn eventually_returns_once_the_condition_holds() {
        let polls = AtomicUsize::new(0);
        eventually(Duration::from_secs(2), "third poll", || async {
            polls.fetch_add(1, Ordering::SeqCst) >= 2
        })
        .await
        .unwrap();
        assert_eq!(polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn eventually_names_what_it_waited_for() {
        let err = eventually(
            Duration::from_millis(120),
            "the moon to turn blue",
            || async { false },
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("the moon to turn blue"), "{err}");
        assert!(err.contains("120ms"), "{err}");
    }

    #[tokio::test]
    async fn eventually_some_hands_back_the_value() {
        let mut n = 0;
        let got = eventually_some(Duration::from_secs(2), "n to reach 2", || {
            n += 1;
            let v = n;
            async move { (v >= 2).then_some(v * 10) }
        })
        .await
        .unwrap();
        assert_eq!(got, 20);
    }
}
