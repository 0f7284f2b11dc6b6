//! The API client side shared by every component other than the API server: the controller-manager, the scheduler,
//! the kubelet, kubeadm's online phases and the federation controllers all reach the cluster through here, over HTTPS,
//! with kube-rs.
//!
//! Layout: [`from_kubeconfig`] builds a `kube::Client` from a kubeconfig file as kubeadm writes them (embedded
//! certificates, RSA or ECDSA keys); [`leader`] is the one Lease-based leader elector of the project; [`health`]
//! serves the `/healthz`, `/livez`, `/readyz` endpoints of the controller-manager and the scheduler;
//! [`serviceaccount`] gives each controller a client of its own ServiceAccount.

pub mod health;
pub mod leader;
pub mod serviceaccount;

use std::path::{Path, PathBuf};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("{path}: building a client: {source}")]
    Client { path: PathBuf, source: kube::Error },
}

/// Reads a kubeconfig file (current context) into a client configuration.
pub async fn config_from_kubeconfig(path: &Path) -> Result<kube::Config, Error> {
    let err = |source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(err)
}

/// A client for the cluster a kubeconfig file names.
pub async fn from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let config = config_from_kubeconfig(path).await?;
    kube::Client::try_from(config).map_err(|source| Error::Client {
        path: path.to_path_buf(),
        source,
    })
}
