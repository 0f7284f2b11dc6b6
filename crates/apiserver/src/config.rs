//! What `kube-apiserver` needs to start, independent of how the flags were spelled.

use std::net::IpAddr;
use std::path::PathBuf;

/// Where objects live.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// Real etcd (`--etcd-servers`); several API servers may share it.
    Etcd(store::EtcdConfig),
    /// The embedded single-node SQLite store at this file.
    Sqlite(PathBuf),
}

/// The API server's configuration, built by the binary from upstream's flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind_address: IpAddr,
    pub secure_port: u16,
    /// The address published in the `kubernetes` Service's endpoints.
    pub advertise_address: IpAddr,
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    /// Client certificates are verified against this bundle when presented; without it none are requested.
    pub client_ca_file: Option<PathBuf>,
    pub storage: StorageConfig,
    /// `--service-cluster-ip-range`, e.g. `10.96.0.0/12`.
    pub service_cluster_ip_range: String,
    pub anonymous_auth: bool,
    pub authorization_modes: Vec<String>,
    pub enable_bootstrap_token_auth: bool,
    pub service_account_key_files: Vec<PathBuf>,
    pub service_account_signing_key_file: Option<PathBuf>,
    pub service_account_issuers: Vec<String>,
    pub kubelet_client_certificate: Option<PathBuf>,
    pub kubelet_client_key: Option<PathBuf>,
    /// `--kubelet-certificate-authority`: verifies kubelets' serving certificates; without it they are not verified.
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`: what the
    /// DefaultTolerationSeconds admission plugin gives pods that do not tolerate those NoExecute taints themselves.
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
}

impl ServerConfig {
    /// A configuration with upstream's defaults for everything but the certificates and storage.
    pub fn new(tls_cert_file: PathBuf, tls_private_key_file: PathBuf, storage: StorageConfig) -> Self {
        Self {
            bind_address: IpAddr::from([0, 0, 0, 0]),
            secure_port: 6443,
            advertise_address: IpAddr::from([127, 0, 0, 1]),
            tls_cert_file,
            tls_private_key_file,
            client_ca_file: None,
            storage,
            service_cluster_ip_range: "10.0.0.0/24".into(),
            anonymous_auth: true,
            authorization_modes: vec!["AlwaysAllow".into()],
            enable_bootstrap_token_auth: false,
            service_account_key_files: vec![],
            service_account_signing_key_file: None,
            service_account_issuers: vec![],
            kubelet_client_certificate: None,
            kubelet_client_key: None,
            kubelet_certificate_authority: None,
            default_not_ready_toleration_seconds: crate::admission::default_tolerations::DEFAULT_SECONDS,
            default_unreachable_toleration_seconds: crate::admission::default_tolerations::DEFAULT_SECONDS,
        }
    }
}
