//! Waiting for a condition by polling it until a deadline, instead of sleeping for a guessed time.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The condition still failed when the deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("condition not met after {waited:?} ({attempts} attempts); last failure: {last}")]
pub struct EventuallyError {
    pub waited: Duration,
    pub attempts: u32,
    pub last: String,
}

/// Polls `check` until it returns `Ok`, starting every 10 ms and backing off to 250 ms, for at most `deadline`.
/// The last failure is reported if time runs out. An attempt still running at the deadline is abandoned.
pub async fn eventually<T, E, F, Fut>(deadline: Duration, mut check: F) -> Result<T, EventuallyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let start = Instant::now();
    let end = start + deadline;
    let mut pause = Duration::from_millis(10);
    let mut attempts = 0;
    let mut last = String::from("never checked");
    loop {
        attempts += 1;
        match tokio::time::timeout_at(end, check()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("attempt still running at the deadline (previous: {last})"),
        }
        let now = Instant::now();
        if now >= end {
            return Err(EventuallyError {
                waited: now - start,
                attempts,
                last,
            });
        }
        tokio::time::sleep(pause.min(end - now)).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn eventually_returns_the_first_success() {
        let calls = AtomicU32::new(0);
        let value = eventually(Duration::from_secs(5), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 3 { Err(format!("only {n}")) } else { Ok(n) }
        })
        .await;
        assert_eq!(value.ok(), Some(3));
    }

    #[tokio::test]
    async fn eventually_reports_the_last_failure_at_the_deadline() {
        let result: Result<(), _> = eventually(Duration::from_millis(50), || async {
            Err::<(), _>("still broken")
        })
        .await;
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("still broken"), "{err}");
    }
}
