//! kubeadm's cluster lifecycle: the configuration API (`kubeadm.k8s.io/v1beta1`-`v1beta4`), and the phases of
//! `init` that exist so far: certificates, kubeconfig files, certificate expiry and renewal.
//!
//! Layout:
//! - [`config`]: documents, flags, defaults, validation -> [`config::InitConfig`].
//! - [`certs`]: `init phase certs`, kubeadm's certificate list ([`certs::CERTS`]).
//! - [`kubeconfig`]: `init phase kubeconfig`.
//! - [`expiration`]: `certs check-expiration` and `certs renew`.
//! - [`etcd`]: `init phase etcd local`, the static pod manifest of a local etcd member.
//! - [`patches`]: `--patches DIR`, per-node patches of the manifests and the kubelet configuration.
//!
//! Every path is a *logical* path (`/etc/kubernetes/pki`) that a [`Layout`] maps below `--rootfs`, so several
//! nodes can live on one machine and messages show the paths a user of kubeadm expects. Output goes to a
//! caller-supplied writer; time comes in as `now`.

pub mod certs;
pub mod config;
pub mod controlplane;
pub mod daemon;
pub mod etcd;
pub mod expiration;
pub mod init;
pub mod join;
pub mod kubeconfig;
pub mod kubelet;
pub mod online;
pub mod patches;
pub mod preflight;

use std::path::{Path, PathBuf};

pub const KUBERNETES_DIR: &str = "/etc/kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Certs(String),
    #[error("{0}")]
    Kubeconfig(String),
    #[error("{0}")]
    Usage(String),
    /// A request to the cluster failed; the message is the API's own (`Status.message`), not kube's debug dump.
    #[error("{what}: {}", api_message(error))]
    Api { what: String, error: Box<kube::Error> },
    #[error(transparent)]
    Client(#[from] client::Error),
}

/// One line of kubeadm's progress output.
pub(crate) fn say(out: &mut dyn std::io::Write, line: std::fmt::Arguments<'_>) -> Result<(), Error> {
    writeln!(out, "{line}").map_err(|source| Error::Io {
        path: "<stdout>".into(),
        source,
    })
}

/// Maps logical paths (as kubeadm prints them) to host paths below `--rootfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    rootfs: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            rootfs: PathBuf::from("/"),
        }
    }
}

impl Layout {
    pub fn new(rootfs: impl Into<PathBuf>) -> Layout {
        Layout {
            rootfs: rootfs.into(),
        }
    }

    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// The host path of a logical path.
    pub fn host(&self, logical: impl AsRef<Path>) -> PathBuf {
        let logical = logical.as_ref();
        self.rootfs.join(logical.strip_prefix("/").unwrap_or(logical))
    }

    /// The logical path of a host path, for messages.
    pub fn display(&self, host: &Path) -> String {
        match host.strip_prefix(&self.rootfs) {
            Ok(rel) if self.rootfs != Path::new("/") => format!("/{}", rel.display()),
            _ => host.display().to_string(),
        }
    }
}

fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
