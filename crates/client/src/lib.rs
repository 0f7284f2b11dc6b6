//! The API client side shared by every component other than the API server: the controller-manager, the scheduler,
//! the kubelet, kubeadm's online phases and the federation controllers all reach the cluster through here, over HTTPS,
//! with kube-rs.
//!
//! Layout: [`from_kubeconfig`] builds a `kube::Client` from a kubeconfig file as kubeadm writes them (embedded
//! certificates, RSA or ECDSA keys); [`leader`] is the one Lease-based leader elector of the project; [`health`]
//! serves the `/healthz`, `/livez`, `/readyz` endpoints of the controller-manager and the scheduler;
//! [`serviceaccount`] gives each controller a client of its own ServiceAccount; [`in_cluster_config`] is the
//! configuration of a process the kubelet runs as a pod with a service-account token.

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
    #[error("in-cluster configuration from {dir}: {message}")]
    InCluster { dir: PathBuf, message: String },
}

/// Where a pod's service-account files (`token`, `ca.crt`, `namespace`) are mounted, as upstream.
pub const SERVICEACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The environment variable bulwark's kubelet sets to the host directory that holds those files: its process
/// runtime has no mount namespaces, so the container's mount path does not exist for the process.
pub const SERVICEACCOUNT_DIR_ENV: &str = "BULWARK_SERVICEACCOUNT_DIR";

/// The configuration of a process running in a pod, as client-go's `InClusterConfig`: the API server from
/// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, the CA, token (re-read as the kubelet refreshes it) and
/// namespace from `$BULWARK_SERVICEACCOUNT_DIR`, else from the upstream mount path. `None` outside a pod (no
/// `KUBERNETES_SERVICE_HOST`).
pub async fn in_cluster_config() -> Result<Option<kube::Config>, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(host), Some(port)) = (env("KUBERNETES_SERVICE_HOST"), env("KUBERNETES_SERVICE_PORT")) else {
        return Ok(None);
    };
    let dir = PathBuf::from(env(SERVICEACCOUNT_DIR_ENV).unwrap_or_else(|| SERVICEACCOUNT_MOUNT_PATH.into()));
    in_cluster_config_at(&host, &port, &dir).await.map(Some)
}

/// [`in_cluster_config`] with the API server and the service-account directory given.
pub async fn in_cluster_config_at(host: &str, port: &str, dir: &Path) -> Result<kube::Config, Error> {
    let err = |message: String| Error::InCluster {
        dir: dir.to_path_buf(),
        message,
    };
    let (token, ca) = (dir.join("token"), dir.join("ca.crt"));
    for file in [&token, &ca] {
        if !file.is_file() {
            return Err(err(format!("{} is missing", file.display())));
        }
    }
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|_| "default".into());
    // IPv6 addresses need brackets in a URL, as client-go's net.JoinHostPort adds them.
    let server = if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    // A kubeconfig with a token file is what kube-rs re-reads the token from, so rotation is picked up.
    let doc = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: in-cluster\n  cluster: {{server: {server:?}, certificate-authority: {ca:?}}}\n\
         users:\n- name: in-cluster\n  user: {{tokenFile: {token:?}}}\n\
         contexts:\n- name: in-cluster\n  context: {{cluster: in-cluster, user: in-cluster, namespace: {namespace:?}}}\n\
         current-context: in-cluster\n",
        ca = ca.display().to_string(),
        token = token.display().to_string(),
    );
    let file = kube::config::Kubeconfig::from_yaml(&doc).map_err(|e| err(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pod_reads_its_api_server_token_file_and_namespace_from_the_service_account_dir() {
        let dir = std::env::temp_dir().join(format!("client-incluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["kubernetes".into()]).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.cert.pem()).unwrap();
        std::fs::write(dir.join("token"), "abc").unwrap();
        std::fs::write(dir.join("namespace"), "kube-federation-system\n").unwrap();
        let c = in_cluster_config_at("127.0.0.7", "6443", &dir).await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://127.0.0.7:6443/");
        assert_eq!(c.default_namespace, "kube-federation-system");
        assert_eq!(
            c.auth_info.token_file.as_deref(),
            Some(dir.join("token").to_str().unwrap())
        );
        let v6 = in_cluster_config_at("fd00::1", "443", &dir).await.unwrap();
        assert_eq!(v6.cluster_url.to_string(), "https://[fd00::1]:443/");
        std::fs::remove_file(dir.join("token")).unwrap();
        let missing = in_cluster_config_at("127.0.0.7", "6443", &dir).await.unwrap_err();
        assert!(missing.to_string().contains("token is missing"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
