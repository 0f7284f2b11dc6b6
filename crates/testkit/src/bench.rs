//! Load generation shared by the benchmarks, so that every "ops/s vs raw" figure is measured the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Runs `op(task, i)` from `concurrency` tasks for `round` (each task counting its own `i`); returns how many
/// calls returned `true`.
pub async fn run_for<F, Fut>(concurrency: usize, round: Duration, op: F) -> u64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + round;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < end {
                    if op(task, i).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed)
}
