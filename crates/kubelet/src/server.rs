//! The kubelet's own server, as upstream's: HTTPS on `--address:--port` (10250) with `/healthz` and
//! `/containerLogs/<namespace>/<pod>/<container>?follow=&tailLines=&timestamps=&previous=` (what the API server
//! proxies `pods/log` to), and plain-HTTP `/healthz` on `--healthz-port` (10248).
//!
//! The serving certificate is `<root-dir>/pki/kubelet.crt`/`.key`, self-signed by the kubelet on first start (a
//! throw-away CA `<node>-ca@<time>` signs it; the file holds both), unless `tlsCertFile` names one. Clients are
//! authenticated by certificate against the cluster CA when one is known (`authentication.x509.clientCAFile`, or
//! the CA of the kubeconfig): log requests then need a valid client certificate; any such certificate is
//! authorized (there is no SubjectAccessReview webhook yet).
//!
//! Entry points: [`ensure_serving_cert`], [`serve`], [`serve_healthz`], [`render_cri_log`].

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving certificate: {0}")]
    Pki(#[from] pki::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Makes the self-signed serving pair in `dir` unless it exists; returns `(cert, key)` paths.
pub fn ensure_serving_cert(
    dir: &std::path::Path,
    node: &str,
    node_ip: &str,
) -> Result<(PathBuf, PathBuf), ServerError> {
    let cert_path = dir.join("kubelet.crt");
    let key_path = dir.join("kubelet.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let now = SystemTime::now();
    let stamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let ca = pki::CertificateAuthority::self_signed(
        &format!("{node}-ca@{stamp}"),
        pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?,
        pki::LEAF_VALIDITY,
        now,
    )?;
    let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
    let mut spec = pki::CertSpec {
        common_name: format!("{node}@{stamp}"),
        usages: vec![pki::Usage::ServerAuth],
        validity: pki::LEAF_VALIDITY,
        ..Default::default()
    };
    let mut sans = vec![node.to_string()];
    if !node_ip.is_empty() {
        sans.push(node_ip.to_string());
    }
    // A node name that is not a DNS name (rare) must not stop the kubelet from serving.
    if spec.add_sans(&sans).is_err() {
        spec.add_sans(&[node_ip])?;
    }
    let cert = ca.issue(&spec, &key, now)?;
    pki::write_private(&key_path, key.to_pem()?.as_bytes())?;
    pki::write_public(
        &cert_path,
        format!("{}{}", cert.pem(), ca.certificate().pem()).as_bytes(),
    )?;
    Ok((cert_path, key_path))
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// PEM of the CA that signs clients (the API server's kubelet client certificate).
    pub client_ca_pem: Option<String>,
    /// Whether requests without a client certificate may read logs (upstream's `authentication.anonymous`).
    pub anonymous: bool,
    /// Host path of `/var/log/pods`.
    pub log_dir: PathBuf,
}

fn tls_config(config: &ServerConfig) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(&config.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", config.cert_file.display())))?;
    let key = PrivateKeyDer::from_pem_file(&config.key_file)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", config.key_file.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &config.client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
                roots
                    .add(cert)
                    .map_err(|e| ServerError::Tls(format!("client CA: {e}")))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| ServerError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

#[derive(Clone)]
struct AppState {
    log_dir: PathBuf,
    /// Whether this connection may read logs.
    allowed: bool,
    shutdown: CancellationToken,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(state)
}

/// Serves HTTPS on `config.addr` until `shutdown`.
pub async fn serve(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServerError> {
    let tls = tokio_rustls::TlsAcceptor::from(tls_config(&config)?);
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Listen {
            addr: config.addr,
            source,
        })?;
    tracing::info!(addr = %config.addr, "kubelet server listening");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        let log_dir = config.log_dir.clone();
        let anonymous = config.anonymous || config.client_ca_pem.is_none();
        tokio::spawn(async move {
            let span = tracing::debug_span!("kubelet_connection", %peer);
            // A client that never finishes its handshake must not hold a task forever.
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await else {
                return;
            };
            // The verifier already checked any certificate offered against the client CA.
            let authenticated = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let state = AppState {
                log_dir,
                allowed: anonymous || authenticated,
                shutdown: shutdown.clone(),
            };
            let svc = hyper_util::service::TowerToHyperService::new(router(state));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        span.in_scope(|| tracing::debug!(error = %e, "connection ended"));
                    }
                }
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

/// Plain-HTTP `/healthz` (upstream's `--healthz-port`, 10248 on localhost).
pub async fn serve_healthz(addr: SocketAddr, shutdown: CancellationToken) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })?;
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| ServerError::Io {
            path: PathBuf::from("healthz"),
            source,
        })
}

#[derive(Debug, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<String>,
    tail_lines: Option<String>,
    timestamps: Option<String>,
    previous: Option<String>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

/// The log files of a container (every pod UID with that namespace and name), oldest first.
fn log_files(log_dir: &std::path::Path, namespace: &str, pod: &str, container: &str) -> Vec<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    let mut files: Vec<(SystemTime, u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(log_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(uid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if uid.contains('_') {
            continue;
        }
        for file in std::fs::read_dir(entry.path().join(container))
            .into_iter()
            .flatten()
            .flatten()
        {
            let fname = file.file_name().to_string_lossy().into_owned();
            let Some(n) = fname.strip_suffix(".log").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let created = file
                .metadata()
                .and_then(|m| m.created().or_else(|_| m.modified()))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            files.push((created, n, file.path()));
        }
    }
    files.sort();
    files.into_iter().map(|(_, _, p)| p).collect()
}

/// Turns CRI log records into what `kubectl logs` shows: the text, partial records joined, optionally prefixed
/// with the record's timestamp; the last `tail` lines only, if given.
pub fn render_cri_log(text: &str, timestamps: bool, tail: Option<usize>) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for record in text.lines() {
        let mut parts = record.splitn(4, ' ');
        let (Some(stamp), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let body = parts.next().unwrap_or_default();
        let line = pending.get_or_insert_with(|| {
            if timestamps {
                format!("{stamp} ")
            } else {
                String::new()
            }
        });
        line.push_str(body);
        if tag != "P"
            && let Some(mut done) = pending.take()
        {
            done.push('\n');
            lines.push(done);
        }
    }
    if let Some(rest) = pending {
        lines.push(rest);
    }
    let skip = tail.map(|n| lines.len().saturating_sub(n)).unwrap_or(0);
    lines[skip..].concat()
}

async fn container_logs(
    State(state): State<AppState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
) -> Response {
    let span = tracing::info_span!("container_logs", %namespace, %pod, %container);
    let _guard = span.enter();
    if !state.allowed {
        return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    }
    let files = log_files(&state.log_dir, &namespace, &pod, &container);
    let previous = flag(&query.previous);
    let chosen = if previous {
        files.len().checked_sub(2).and_then(|i| files.get(i))
    } else {
        files.last()
    };
    let Some(path) = chosen.cloned() else {
        return (
            StatusCode::NOT_FOUND,
            format!("no logs for container {container:?} in pod {namespace}/{pod}\n"),
        )
            .into_response();
    };
    let timestamps = flag(&query.timestamps);
    let tail = query
        .tail_lines
        .as_deref()
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|t| *t >= 0)
        .and_then(|t| usize::try_from(t).ok());
    let text = match tokio::fs::read(&path).await {
        Ok(bytes) => bytes,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    // Render whole records only; a record being written is picked up by the follower.
    let complete = text.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
    let first = render_cri_log(&String::from_utf8_lossy(&text[..complete]), timestamps, tail);
    if !flag(&query.follow) || previous {
        return first.into_response();
    }
    drop(_guard);
    // Follow: poll the file for new records until a newer attempt starts, the client goes away or the kubelet stops.
    let follower = Follower {
        path,
        offset: complete as u64,
        timestamps,
        log_dir: state.log_dir.clone(),
        key: (namespace, pod, container),
        shutdown: state.shutdown.clone(),
        sent_first: Some(first),
    };
    let stream = futures_util::stream::unfold(follower, |mut f| async move {
        let chunk = f.next_chunk().await?;
        Some((Ok::<Bytes, std::io::Error>(chunk), f))
    });
    Body::from_stream(stream).into_response()
}

struct Follower {
    path: PathBuf,
    offset: u64,
    timestamps: bool,
    log_dir: PathBuf,
    key: (String, String, String),
    shutdown: CancellationToken,
    sent_first: Option<String>,
}

impl Follower {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.sent_first.take()
            && !first.is_empty()
        {
            return Some(Bytes::from(first));
        }
        loop {
            if let Ok(mut file) = tokio::fs::File::open(&self.path).await
                && file.seek(std::io::SeekFrom::Start(self.offset)).await.is_ok()
            {
                let mut buf = Vec::new();
                if file.read_to_end(&mut buf).await.is_ok()
                    && let Some(end) = buf.iter().rposition(|b| *b == b'\n')
                {
                    self.offset += end as u64 + 1;
                    let text = render_cri_log(&String::from_utf8_lossy(&buf[..=end]), self.timestamps, None);
                    if !text.is_empty() {
                        return Some(Bytes::from(text));
                    }
                }
            }
            let (ns, pod, container) = &self.key;
            if log_files(&self.log_dir, ns, pod, container).last() != Some(&self.path) {
                return None;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records_render_as_kubectl_shows_them_with_partials_joined_and_tails_cut() {
        let log = "2024-01-01T00:00:00.1Z stdout F one\n\
                   2024-01-01T00:00:00.2Z stderr P tw\n\
                   2024-01-01T00:00:00.3Z stderr F o\n\
                   2024-01-01T00:00:00.4Z stdout F three\n";
        assert_eq!(render_cri_log(log, false, None), "one\ntwo\nthree\n");
        assert_eq!(render_cri_log(log, false, Some(2)), "two\nthree\n");
        assert_eq!(render_cri_log(log, false, Some(0)), "");
        assert_eq!(
            render_cri_log(log, true, Some(1)),
            "2024-01-01T00:00:00.4Z three\n"
        );
    }

    #[test]
    fn a_serving_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = ensure_serving_cert(dir.path(), "node-a", "127.0.0.1").unwrap();
        let first = std::fs::read(&cert).unwrap();
        ensure_serving_cert(dir.path(), "node-a", "127.0.0.1").unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        let parsed = pki::Certificate::from_pem(&String::from_utf8(first).unwrap()).unwrap();
        assert!(parsed.info().unwrap().common_name.starts_with("node-a@"));
    }
}
