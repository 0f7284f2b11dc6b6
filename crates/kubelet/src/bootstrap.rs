//! TLS bootstrap, as upstream's kubelet does it with `--bootstrap-kubeconfig`: when the kubeconfig is missing,
//! make a key, ask for a client certificate with a CertificateSigningRequest (`system:node:<name>` in
//! `system:nodes`, signer `kubernetes.io/kube-apiserver-client-kubelet`), wait until it is approved and issued,
//! then write `<root-dir>/pki/kubelet-client-<timestamp>.pem` (certificate and key), the link
//! `kubelet-client-current.pem` to it, and the kubeconfig.
//!
//! Entry points: [`bootstrap`]; [`request_certificate`] and [`store_certificate`], which rotation
//! ([`crate::rotation`]) shares.

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const CLIENT_PEM: &str = "kubelet-client-current.pem";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Pki(#[from] pki::Error),
    #[error("{0}")]
    Client(#[from] client::Error),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("certificate signing request {name} was {how}: {message}")]
    Refused {
        name: String,
        how: String,
        message: String,
    },
    #[error("shut down while waiting for certificate signing request {0}")]
    Cancelled(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `kubeconfig` with a client certificate for `system:node:<node>`, obtained through the API server that
/// `bootstrap_kubeconfig` reaches. A certificate already in `pki_dir` is reused.
pub async fn bootstrap(
    bootstrap_kubeconfig: &Path,
    kubeconfig: &Path,
    pki_dir: &Path,
    node: &str,
    shutdown: &CancellationToken,
) -> Result<(), BootstrapError> {
    let boot = pki::Kubeconfig::read(bootstrap_kubeconfig)?;
    let server = boot.server()?.to_string();
    let ca = boot.ca_certificate()?;
    let pem_path = pki_dir.join(CLIENT_PEM);
    if let Ok(text) = std::fs::read_to_string(&pem_path)
        && let (Ok(cert), Ok(key)) = (pki::Certificate::from_pem(&text), pki::KeyPair::from_pem(&text))
        && cert
            .info()
            .is_ok_and(|i| i.not_after > std::time::SystemTime::now())
    {
        tracing::info!(path = %pem_path.display(), "reusing the kubelet client certificate");
        return write_kubeconfig(kubeconfig, &server, &ca, &cert, &key);
    }

    let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
    let mut config = client::config_from_kubeconfig(bootstrap_kubeconfig).await?;
    // A request that reaches an API server whose etcd stalls (a member joining, a busy disk) would otherwise hang for
    // kube's default read timeout of minutes; bootstrap gives up on it after seconds and asks again.
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(10));
    let csrs: Api<CertificateSigningRequest> = Api::all(kube::Client::try_from(config)?);
    let cert = request_certificate(&csrs, &key, node, shutdown).await?;
    let pem_path = store_certificate(pki_dir, &cert, &key, std::time::SystemTime::now())?;
    tracing::info!(path = %pem_path.display(), "kubelet client certificate issued");
    write_kubeconfig(kubeconfig, &server, &ca, &cert, &key)
}

/// Asks for a `system:node:<node>` client certificate for `key` through `csrs` (a client authenticated by the
/// bootstrap token, or by the current certificate when rotating) and waits until it is approved and issued.
pub async fn request_certificate(
    csrs: &Api<CertificateSigningRequest>,
    key: &pki::KeyPair,
    node: &str,
    shutdown: &CancellationToken,
) -> Result<pki::Certificate, BootstrapError> {
    let request = pki::csr::create(key, &format!("system:node:{node}"), Some("system:nodes"), &[])?;
    let name = format!(
        "node-csr-{}",
        &hex::encode(Sha256::digest(key.public_key_der()))[..20]
    );
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let pause = |name: &str| {
        let name = name.to_string();
        async move {
            tokio::select! {
                _ = shutdown.cancelled() => Err(BootstrapError::Cancelled(name)),
                _ = tokio::time::sleep(Duration::from_millis(500)) => Ok(()),
            }
        }
    };
    loop {
        match csrs.create(&PostParams::default(), &csr).await {
            // 409: an earlier try that timed out was created after all; the request is the same.
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 409 => break,
            Err(e) if retriable(&e) => {
                tracing::warn!(csr = %name, error = %e, "creating the certificate signing request failed; retrying");
                pause(&name).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(csr = %name, "waiting for the client certificate to be approved and issued");
    loop {
        let current = match csrs.get_opt(&name).await {
            Ok(current) => current,
            Err(e) if retriable(&e) => {
                tracing::warn!(csr = %name, error = %e, "reading the certificate signing request failed; retrying");
                None
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(current) = current {
            let status = current.status.unwrap_or_default();
            for c in status.conditions.iter().flatten() {
                if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                    return Err(BootstrapError::Refused {
                        name,
                        how: c.type_.to_lowercase(),
                        message: c.message.clone().unwrap_or_default(),
                    });
                }
            }
            if let Some(issued) = status.certificate.filter(|c| !c.0.is_empty()) {
                return Ok(pki::Certificate::from_pem(&String::from_utf8_lossy(&issued.0))?);
            }
        }
        pause(&name).await?;
    }
}

/// Stores a certificate and its key as upstream's certificate store does: `kubelet-client-<timestamp>.pem` (0600)
/// in `pki_dir`, and `kubelet-client-current.pem` a symbolic link to it, replaced atomically so that a reader never
/// sees a missing or half-written file. Returns the path of the link.
pub fn store_certificate(
    pki_dir: &Path,
    cert: &pki::Certificate,
    key: &pki::KeyPair,
    now: std::time::SystemTime,
) -> Result<std::path::PathBuf, BootstrapError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BootstrapError::Io { path, source }
    };
    std::fs::create_dir_all(pki_dir).map_err(io(pki_dir))?;
    let stamp = time::OffsetDateTime::from(now)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]-[hour]-[minute]-[second]"
        ))
        .unwrap_or_else(|_| "0".into());
    let mut file = format!("kubelet-client-{stamp}.pem");
    // Two rotations within a second (a certificate refused right after issue) must not overwrite each other.
    let mut n = 1;
    while pki_dir.join(&file).exists() {
        file = format!("kubelet-client-{stamp}.{n}.pem");
        n += 1;
    }
    pki::write_private(
        &pki_dir.join(&file),
        format!("{}{}", cert.pem(), key.to_pem()?).as_bytes(),
    )?;
    let link = pki_dir.join(CLIENT_PEM);
    let tmp = pki_dir.join(format!(".{CLIENT_PEM}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&file, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &link).map_err(io(&link))?;
    Ok(link)
}

/// Whether the kubeconfig exists with a client certificate that is still valid (upstream's
/// `isClientConfigStillValid`): a node that was off for longer than its certificate lives bootstraps again instead of
/// knocking with an expired certificate forever. A kubeconfig without an embedded certificate counts as valid.
pub fn kubeconfig_still_valid(path: &Path, now: std::time::SystemTime) -> bool {
    let Ok(file) = pki::Kubeconfig::read(path) else {
        return false;
    };
    match file.client_certificate().and_then(|c| c.info()) {
        Ok(info) => info.not_before <= now && now < info.not_after,
        Err(_) => true,
    }
}

/// Failures another try may not see: no answer (timeouts, connections), or the server's 429 and 5xx.
fn retriable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        _ => true,
    }
}

/// A client from a kubeconfig whose file references (`client-certificate: /var/lib/kubelet/pki/...`) are paths of
/// the node, so below `rootfs`.
pub async fn client_below_root(path: &Path, rootfs: &Path) -> Result<kube::Client, BootstrapError> {
    Ok(kube::Client::try_from(config_below_root(path, rootfs).await?)?)
}

/// The client configuration of [`client_below_root`], for callers that change it first (the client-side load
/// balancer).
pub async fn config_below_root(path: &Path, rootfs: &Path) -> Result<kube::Config, BootstrapError> {
    let bad = |source| client::Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    };
    let mut file = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
    let host = |p: &mut Option<String>| {
        if let Some(v) = p.as_mut()
            && let Some(rel) = v.strip_prefix('/')
        {
            *v = rootfs.join(rel).display().to_string();
        }
    };
    for cluster in &mut file.clusters {
        if let Some(c) = cluster.cluster.as_mut() {
            host(&mut c.certificate_authority);
        }
    }
    for user in &mut file.auth_infos {
        if let Some(u) = user.auth_info.as_mut() {
            host(&mut u.client_certificate);
            host(&mut u.client_key);
        }
    }
    Ok(
        kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(bad)?,
    )
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &pki::Certificate,
    cert: &pki::Certificate,
    key: &pki::KeyPair,
) -> Result<(), BootstrapError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| BootstrapError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    pki::Kubeconfig::for_client_cert("default-cluster", server, ca, "default-auth", cert, key)?
        .write(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn a_kubeconfig_whose_certificate_expired_calls_for_bootstrap_again() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let ca_key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256).unwrap();
        let ca =
            pki::CertificateAuthority::self_signed("kubernetes", ca_key, Duration::from_secs(86_400), now)
                .unwrap();
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256).unwrap();
        let spec = pki::CertSpec {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            usages: vec![pki::Usage::ClientAuth],
            validity: Duration::from_secs(3600),
            ..Default::default()
        };
        let cert = ca.issue(&spec, &key, now).unwrap();
        let path = dir.path().join("kubelet.conf");
        assert!(
            !kubeconfig_still_valid(&path, now),
            "a missing kubeconfig is not valid"
        );
        write_kubeconfig(&path, "https://127.0.0.1:6443", ca.certificate(), &cert, &key).unwrap();
        assert!(kubeconfig_still_valid(&path, now));
        assert!(!kubeconfig_still_valid(&path, now + Duration::from_secs(7200)));
    }
}
