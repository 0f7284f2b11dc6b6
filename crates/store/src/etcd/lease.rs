//! Leases for keys with a TTL, shared the way kube-apiserver shares them: a lease is granted a little longer than
//! asked (5 % of the TTL, at most a minute) and reused for later keys while it would expire within that slack
//! after their own expiry. Kubernetes events, each with a TTL, then cost one lease per window instead of one each;
//! a key may outlive its TTL by at most the slack.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Inner, Kind};
use crate::Result;

/// Keys attached to one lease before a new one is granted, so a lease's expiry never deletes too much at once.
const MAX_KEYS_PER_LEASE: u64 = 1000;
const MAX_REUSE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct LeaseCache {
    current: Mutex<Option<Cached>>,
}

struct Cached {
    id: i64,
    expires: Instant,
    keys: u64,
}

/// Whole seconds, as etcd counts lease TTLs; at least one.
fn ttl_seconds(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

fn reuse_window(ttl_secs: u64) -> Duration {
    Duration::from_secs(ttl_secs * 5 / 100).min(MAX_REUSE)
}

impl LeaseCache {
    /// Drops a lease etcd no longer knows.
    pub(crate) async fn forget(&self, id: i64) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|c| c.id == id) {
            *current = None;
        }
    }
}

impl Inner {
    pub(crate) async fn lease_for(&self, ttl: Duration) -> Result<i64> {
        let ttl_secs = ttl_seconds(ttl).max(1);
        let window = reuse_window(ttl_secs);
        let mut current = self.leases.current.lock().await;
        let now = Instant::now();
        let expiry = now + Duration::from_secs(ttl_secs);
        if let Some(cached) = current.as_mut()
            && expiry < cached.expires
            && expiry + window >= cached.expires
            && cached.keys < MAX_KEYS_PER_LEASE
        {
            cached.keys += 1;
            return Ok(cached.id);
        }
        let granted_secs = ttl_secs + window.as_secs();
        let granted = i64::try_from(granted_secs).unwrap_or(i64::MAX);
        // Granting twice after an ambiguous failure only leaves an unused lease to expire, so this may be retried
        // like a read.
        let resp = self
            .call(Kind::Read, |m| {
                let mut lease = m.lease.clone();
                async move { lease.grant(granted, None).await }
            })
            .await?;
        *current = Some(Cached {
            id: resp.id(),
            expires: now + Duration::from_secs(granted_secs),
            keys: 1,
        });
        tracing::debug!(lease = resp.id(), ttl = granted_secs, "granted a lease");
        Ok(resp.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(3)), 3);
    }

    #[test]
    fn leases_are_reused_within_five_percent_of_the_ttl_and_at_most_a_minute() {
        assert_eq!(reuse_window(10), Duration::ZERO);
        assert_eq!(reuse_window(3600), Duration::from_secs(60));
        assert_eq!(reuse_window(400), Duration::from_secs(20));
    }
}
