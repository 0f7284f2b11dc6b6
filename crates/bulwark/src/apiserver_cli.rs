//! `kube-apiserver`: upstream's flags that matter, turned into an [`apiserver::ServerConfig`]. Flags kubeadm's
//! static pod manifests pass that bulwark does not act on are accepted and logged, so those manifests start.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use apiserver::{ServerConfig, StorageConfig};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "kube-apiserver", about = "bulwark's Kubernetes API server", version)]
struct Args {
    /// The IP address published to members of the cluster (the `kubernetes` Service's endpoint).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    #[arg(long)]
    tls_cert_file: PathBuf,
    #[arg(long)]
    tls_private_key_file: PathBuf,
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Comma-separated etcd URLs; without them the embedded store under --storage-dir is used.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    #[arg(long)]
    etcd_certfile: Option<PathBuf>,
    #[arg(long)]
    etcd_keyfile: Option<PathBuf>,
    /// `etcd3` (upstream's only value) or bulwark's embedded `sqlite`; by default `etcd3` when --etcd-servers are
    /// given and `sqlite` otherwise.
    #[arg(long)]
    storage_backend: Option<String>,
    /// bulwark: where the embedded SQLite store lives when no --etcd-servers are given.
    #[arg(long, default_value = "/var/lib/bulwark/apiserver")]
    storage_dir: PathBuf,
    #[arg(long)]
    service_account_key_file: Vec<PathBuf>,
    #[arg(long)]
    service_account_signing_key_file: Option<PathBuf>,
    #[arg(long)]
    service_account_issuer: Vec<String>,
    #[arg(long, default_value = "10.0.0.0/24")]
    service_cluster_ip_range: String,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    enable_bootstrap_token_auth: bool,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    anonymous_auth: bool,
    #[arg(long, value_delimiter = ',', default_value = "AlwaysAllow")]
    authorization_mode: Vec<String>,
    #[arg(long)]
    kubelet_client_certificate: Option<PathBuf>,
    #[arg(long)]
    kubelet_client_key: Option<PathBuf>,
    /// Verifies kubelets' serving certificates (pods/log); without it they are not verified, as upstream.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Indicates the tolerationSeconds of the toleration for notReady:NoExecute that is added by default to every
    /// pod that does not already have such a toleration
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Indicates the tolerationSeconds of the toleration for unreachable:NoExecute that is added by default to
    /// every pod that does not already have such a toleration
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Flags of upstream's kube-apiserver that bulwark accepts without acting on them.
    #[arg(skip)]
    ignored: Vec<String>,
}

/// Upstream flags that kubeadm's manifests pass and bulwark does not (yet) act on.
const IGNORED_FLAGS: &[&str] = &[
    "allow-privileged",
    "enable-admission-plugins",
    "disable-admission-plugins",
    "requestheader-allowed-names",
    "requestheader-client-ca-file",
    "requestheader-extra-headers-prefix",
    "requestheader-group-headers",
    "requestheader-username-headers",
    "proxy-client-cert-file",
    "proxy-client-key-file",
    "kubelet-preferred-address-types",
    "service-node-port-range",
    "feature-gates",
    "profiling",
    "audit-log-path",
    "audit-policy-file",
    "v",
    "insecure-port",
    "runtime-config",
    "api-audiences",
    "service-account-lookup",
    "endpoint-reconciler-type",
    "encryption-provider-config",
];

/// Splits off the ignored flags (`--flag=value` or `--flag value`) before clap sees the rest.
fn split_ignored(args: Vec<OsString>) -> (Vec<OsString>, Vec<String>) {
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        let name = s
            .strip_prefix("--")
            .map(|f| f.split('=').next().unwrap_or(f).to_string());
        match name {
            Some(n) if IGNORED_FLAGS.contains(&n.as_str()) => {
                // Boolean flags never take a separate value; the others may (`--flag value`).
                let takes_value = !s.contains('=') && n != "allow-privileged" && n != "profiling";
                if takes_value
                    && it
                        .peek()
                        .is_some_and(|next| !next.to_string_lossy().starts_with("--"))
                    && let Some(v) = it.next()
                {
                    ignored.push(format!("{s}={}", v.to_string_lossy()));
                    continue;
                }
                ignored.push(s);
            }
            _ => kept.push(a),
        }
    }
    (kept, ignored)
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let (args, ignored) = split_ignored(args);
    let mut parsed = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    parsed.ignored = ignored;
    for flag in &parsed.ignored {
        tracing::debug!(%flag, "flag accepted and ignored");
    }
    let config = match config_from(parsed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kube-apiserver: {e:#}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-apiserver: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let result = runtime.block_on(async {
        let signal = shutdown.clone();
        tokio::spawn(async move {
            crate::wait_for_signal().await;
            tracing::info!("signal received, shutting down");
            signal.cancel();
        });
        apiserver::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-apiserver: {e}");
            ExitCode::from(1)
        }
    }
}

fn config_from(a: Args) -> anyhow::Result<ServerConfig> {
    let embedded = match (a.storage_backend.as_deref(), a.etcd_servers.is_empty()) {
        (Some("sqlite"), false) => {
            anyhow::bail!("--storage-backend=sqlite keeps the data in --storage-dir: drop --etcd-servers")
        }
        (Some("etcd3"), true) => anyhow::bail!("--storage-backend=etcd3 needs --etcd-servers"),
        (Some(other), _) if other != "sqlite" && other != "etcd3" => {
            anyhow::bail!("--storage-backend={other:?}: the storage backends are etcd3 and sqlite")
        }
        (_, empty) => empty,
    };
    let storage = if embedded {
        StorageConfig::Sqlite(a.storage_dir.join("state.db"))
    } else {
        let mut cfg = store::EtcdConfig::new(a.etcd_servers.iter().map(String::as_str));
        if a.etcd_cafile.is_some() || a.etcd_certfile.is_some() {
            cfg.ca_file = a.etcd_cafile.clone();
            cfg.cert_file = a.etcd_certfile.clone();
            cfg.key_file = a.etcd_keyfile.clone();
        }
        StorageConfig::Etcd(cfg)
    };
    let mut c = ServerConfig::new(a.tls_cert_file, a.tls_private_key_file, storage);
    c.bind_address = a.bind_address;
    c.secure_port = a.secure_port;
    c.advertise_address = a.advertise_address.unwrap_or(if a.bind_address.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        a.bind_address
    });
    c.client_ca_file = a.client_ca_file;
    c.service_cluster_ip_range = a.service_cluster_ip_range;
    c.anonymous_auth = a.anonymous_auth;
    c.authorization_modes = a.authorization_mode;
    c.enable_bootstrap_token_auth = a.enable_bootstrap_token_auth;
    c.service_account_key_files = a.service_account_key_file;
    c.service_account_signing_key_file = a.service_account_signing_key_file;
    c.service_account_issuers = a.service_account_issuer;
    c.kubelet_client_certificate = a.kubelet_client_certificate;
    c.kubelet_client_key = a.kubelet_client_key;
    c.kubelet_certificate_authority = a.kubelet_certificate_authority;
    c.default_not_ready_toleration_seconds = a.default_not_ready_toleration_seconds;
    c.default_unreachable_toleration_seconds = a.default_unreachable_toleration_seconds;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_manifest_flags_parse_and_unknown_ones_are_set_aside() {
        let args: Vec<OsString> = [
            "kube-apiserver",
            "--advertise-address=10.0.0.1",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            "--client-ca-file=/etc/kubernetes/pki/ca.crt",
            "--enable-admission-plugins=NodeRestriction",
            "--enable-bootstrap-token-auth=true",
            "--etcd-servers=https://127.0.0.1:2379",
            "--requestheader-allowed-names=front-proxy-client",
            "--secure-port=6443",
            "--tls-cert-file=/a.crt",
            "--tls-private-key-file=/a.key",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let (kept, ignored) = split_ignored(args);
        assert_eq!(ignored.len(), 3);
        let a = Args::try_parse_from(kept).map_err(|e| e.to_string());
        let a = a.as_ref().map_err(String::clone);
        assert!(a.is_ok(), "{a:?}");
        if let Ok(a) = a {
            assert_eq!(a.authorization_mode, vec!["Node", "RBAC"]);
            assert!(a.enable_bootstrap_token_auth);
        }
    }
}
