//! Periodic compaction for any [`Store`], the way kube-apiserver compacts etcd: at every tick, compact up to the
//! revision seen one tick earlier, so watchers and paged lists always have at least one interval of history.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Error, Revision, Store};

/// How much history the compactor keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Time between compactions; history younger than one interval is always kept (kube-apiserver: 5 minutes).
    pub interval: Duration,
    /// Never compact the latest this-many revisions, however old they are.
    pub keep_revisions: i64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            keep_revisions: 1000,
        }
    }
}

/// The revision to compact to, given the revision seen at the previous tick and the current one.
pub fn compaction_target(
    policy: &CompactionPolicy,
    seen_last_tick: Revision,
    current: Revision,
) -> Option<Revision> {
    let target = seen_last_tick.min(current - policy.keep_revisions);
    (target > 1).then_some(target)
}

/// Runs compaction every `policy.interval` until `shutdown` is cancelled.
pub fn spawn_compactor(
    store: Arc<dyn Store>,
    policy: CompactionPolicy,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let span = tracing::info_span!("store.compactor", interval = ?policy.interval);
    tokio::spawn(
        async move {
            let mut ticks = tokio::time::interval(policy.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen_last_tick: Option<Revision> = None;
            let mut compacted: Revision = 0;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let current = match store.current_revision().await {
                    Ok(rev) => rev,
                    Err(e) => {
                        tracing::warn!(error = %e, "compactor cannot read the current revision");
                        continue;
                    }
                };
                if let Some(target) =
                    seen_last_tick.and_then(|seen| compaction_target(&policy, seen, current))
                    && target > compacted
                {
                    match store.compact(target).await {
                        Ok(()) => {
                            tracing::debug!(revision = target, "compacted");
                            compacted = target;
                        }
                        // Someone else (another API server, etcd's own auto-compaction) got there first.
                        Err(Error::Compacted { compact_revision }) => compacted = compact_revision,
                        Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
                    }
                }
                seen_last_tick = Some(current);
            }
        }
        .instrument(span),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_one_interval_and_the_latest_revisions() {
        let policy = CompactionPolicy {
            interval: Duration::from_secs(1),
            keep_revisions: 10,
        };
        assert_eq!(compaction_target(&policy, 100, 200), Some(100));
        assert_eq!(compaction_target(&policy, 100, 105), Some(95));
        assert_eq!(compaction_target(&policy, 5, 8), None);
    }
}
