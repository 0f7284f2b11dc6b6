//! KubeFed-compatible federation: one host cluster pushes federated objects to member clusters.
//!
//! Layout:
//! - [`crds`]: the KubeFed API as CustomResourceDefinitions (`core.kubefed.io`, `types.kubefed.io`,
//!   `scheduling.kubefed.io`) and the FederatedTypeConfigs of the default federated types.
//!
//! Everything talks to the host and the members over their HTTPS APIs with kube-rs, as any client would.

pub mod crds;

/// Why a federation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("built-in manifest {file}: {message}")]
    Manifest { file: &'static str, message: String },
}
