//! KubeFed-compatible federation: one host cluster pushes federated objects to member clusters.
//!
//! Layout:
//! - [`crds`]: the KubeFed API as CustomResourceDefinitions (`core.kubefed.io`, `types.kubefed.io`,
//!   `scheduling.kubefed.io`) and the FederatedTypeConfigs of the default federated types.
//! - [`controller`]: the `kubefed-controller-manager` ([`controller::run`]): installs the API where missing,
//!   probes member health, schedules replicas, propagates federated objects.
//! - [`planner`] (replicas per cluster) and [`propagation`] (placement, overrides, what a member should hold):
//!   pure functions the controller applies.
//!
//! Everything talks to the host and the members over their HTTPS APIs with kube-rs, as any client would.

pub mod controller;
pub mod crds;
pub mod planner;
pub mod propagation;

/// Why a federation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("built-in manifest {file}: {message}")]
    Manifest { file: &'static str, message: String },
    #[error("{what}: {source}")]
    Api { what: String, source: Box<kube::Error> },
    #[error("member cluster {cluster}: {message}")]
    Member { cluster: String, message: String },
}
