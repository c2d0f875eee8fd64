//! Waiting on conditions with deadlines, never on fixed sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

/// First poll interval of [`wait_until`]; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between two polls.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Polls `cond` with a short, growing backoff until it returns `true`.
///
/// # Panics
///
/// When `timeout` passes first, naming `what`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if cond().await {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Awaits `fut`, panicking with `what` if it takes longer than `timeout`.
pub async fn within<T>(what: &str, timeout: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(timeout, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {timeout:?}"),
    }
}
