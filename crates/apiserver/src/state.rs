//! What every request handler shares. Nothing here is cluster state: objects, revisions and IP allocations all
//! live in the store, so several API servers on one etcd serve one cluster.

use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;
use store::{Clock, Store};
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::ipalloc::ServiceIpRange;
use crate::security::Security;

/// Shared by all requests; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Watches, and reads that accept any freshness, served from memory; see [`crate::cache`].
    pub watch_cache: Arc<crate::cache::WatchCache>,
    /// The served kinds: built-in plus CRDs; see [`crate::crd`].
    pub registries: Arc<crate::crd::Registries>,
    pub config: Arc<ServerConfig>,
    pub service_ips: Arc<ServiceIpRange>,
    pub security: Arc<Security>,
    pub admission: Arc<crate::admission::Admission>,
    pub clock: Arc<dyn Clock>,
    /// Set once the default objects and RBAC policy exist (upstream's `rbac/bootstrap-roles` post-start hook).
    pub bootstrapped: Arc<std::sync::atomic::AtomicBool>,
    /// Cancelled on shutdown so that watches end and connections can drain.
    pub shutdown: CancellationToken,
    /// `/metrics`; `store` above already reports into it.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// The registry in force for this request.
    pub fn registry(&self) -> Arc<api::Registry> {
        self.registries.current()
    }

    pub fn now(&self) -> Timestamp {
        let secs = self
            .clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// RFC 3339 with second precision, as `metav1.Time` serializes.
    pub fn now_string(&self) -> String {
        self.now().to_string()
    }
}
