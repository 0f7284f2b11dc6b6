//! KubeFed-compatible federation: one host cluster pushes federated objects to member clusters.
//!
//! Layout:
//! - [`crds`]: the KubeFed API as CustomResourceDefinitions (`core.kubefed.io`, `types.kubefed.io`,
//!   `scheduling.kubefed.io`) and the FederatedTypeConfigs of the default federated types.
//! - [`controller`]: the `kubefed-controller-manager` ([`controller::run`]): installs the API where missing,
//!   probes member health, schedules replicas, propagates federated objects.
//! - [`planner`] (replicas per cluster) and [`propagation`] (placement, overrides, what a member should hold):
//!   pure functions the controller applies.
//! - [`kubefedctl`]: upstream's CLI verbs (`join`, `unjoin`, `enable`, `disable`, `federate`) as library calls, and
//!   bulwark's `install` of the control plane as a leader-elected Deployment of the host (upstream: a Helm chart).
//!
//! Everything talks to the host and the members over their HTTPS APIs with kube-rs, as any client would.

pub mod controller;
pub mod crds;
pub mod kubefedctl;
pub mod planner;
pub mod propagation;

/// Why a federation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("built-in manifest {file}: {message}")]
    Manifest { file: &'static str, message: String },
    /// A request of the controller-manager failed.
    #[error("{what}: {source}")]
    Request { what: String, source: Box<kube::Error> },
    #[error("member cluster {cluster}: {message}")]
    Member { cluster: String, message: String },
    /// Arguments that cannot work together, or a name the API would refuse.
    #[error("{0}")]
    Usage(String),
    #[error("kubeconfig {source_name}: {message}")]
    Kubeconfig { source_name: String, message: String },
    #[error("context \"{context}\" does not exist in kubeconfig {source_name} (its contexts: {known})")]
    UnknownContext {
        context: String,
        source_name: String,
        known: String,
    },
    #[error("cannot reach the {role} cluster (context \"{context}\") at {server} while {action}: {message}")]
    Unreachable {
        role: &'static str,
        context: String,
        server: String,
        action: String,
        message: String,
    },
    /// The API server answered with an error status.
    #[error("{action} in the {role} cluster (context \"{context}\"): {message}")]
    Api {
        role: &'static str,
        context: String,
        action: String,
        code: u16,
        message: String,
    },
    #[error(
        "the KubeFed API is not installed in the host cluster (context \"{context}\"): {missing} is not served; \
         install the KubeFed control plane (its CustomResourceDefinitions) first"
    )]
    NotInstalled { context: String, missing: String },
    /// Something is in the way: an object that already exists, custom resources that keep a CRD.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{what} within {waited:?}: {hint}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
        hint: String,
    },
    #[error("{source}; {hint}")]
    Hinted { source: Box<Error>, hint: String },
    #[error("encoding {what}: {message}")]
    Encode { what: String, message: String },
    #[error("writing output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// The HTTP status the API server answered with, if it answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Api { code, .. } => Some(*code),
            Error::Hinted { source, .. } => source.status_code(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::Hinted { source, .. } => source.is_unreachable(),
            _ => false,
        }
    }
}
