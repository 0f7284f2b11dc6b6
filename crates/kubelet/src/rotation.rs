//! Client-certificate rotation (`rotateCertificates: true`, kubeadm's default), as upstream's certificate manager
//! does it: at a jittered 70-90 % of the certificate's lifetime, make a new key, ask for a `system:node:<name>`
//! certificate with a CertificateSigningRequest authenticated by the current certificate (the csrapproving
//! controller approves a node renewing its own certificate), store it as `kubelet-client-<timestamp>.pem` with
//! `kubelet-client-current.pem` pointing at it, and rewrite the kubeconfig so a restarted kubelet starts from it.
//!
//! Running clients pick the new certificate up without a restart: [`client`] builds the kubelet's `kube::Client`
//! on a rustls configuration whose client certificate comes from a [`ClientCertificate`], and rotation swaps the
//! certificate in it. New TLS connections present the new certificate; existing ones (pooled idle connections and
//! long watches alike) are closed on rotation, as upstream closes them, so that nothing goes on authenticating with
//! a certificate that is about to expire. Watches reconnect by themselves.
//!
//! Entry points: [`ClientCertificate`], [`client`], [`Rotation::run`], [`renewal_deadline`].

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::client::ConfigExt;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::Instrument;

use crate::Clock;
use crate::bootstrap::{self, BootstrapError};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("the client certificate: {0}")]
    Tls(String),
    #[error("{0}")]
    Pki(#[from] pki::Error),
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("the issued certificate is not for {expected}: {got}")]
    WrongSubject { expected: String, got: String },
}

/// One certificate with its key, and when the kubelet obtained it.
#[derive(Clone)]
struct Current {
    key: Arc<CertifiedKey>,
    cert: pki::Certificate,
    obtained: SystemTime,
}

/// The kubelet's client certificate, shared by every client built with [`client`] and replaced by rotation.
/// Cheap to clone.
#[derive(Clone)]
pub struct ClientCertificate {
    current: Arc<RwLock<Current>>,
    /// Cancelled when the certificate is replaced: connections made before close.
    generation: Arc<Mutex<CancellationToken>>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").finish_non_exhaustive()
    }
}

fn certified_key(cert: &pki::Certificate, key: &pki::KeyPair) -> Result<Arc<CertifiedKey>, RotationError> {
    let key_pem = key.to_pem()?;
    let key_der =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| RotationError::Tls(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| RotationError::Tls(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

impl ClientCertificate {
    /// `obtained` is when the certificate was issued to the kubelet, as far as it knows (the file's time).
    pub fn new(
        cert: pki::Certificate,
        key: &pki::KeyPair,
        obtained: SystemTime,
    ) -> Result<Self, RotationError> {
        Ok(Self {
            current: Arc::new(RwLock::new(Current {
                key: certified_key(&cert, key)?,
                cert,
                obtained,
            })),
            generation: Arc::new(Mutex::new(CancellationToken::new())),
        })
    }

    /// The certificate and key of a `kubelet-client-current.pem`-style file (both in one PEM file).
    pub fn from_pem_file(path: &Path) -> Result<Self, RotationError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RotationError::Tls(format!("{}: {e}", path.display())))?;
        let cert = pki::Certificate::from_pem(&text).map_err(|e| e.in_file(path))?;
        let key = pki::KeyPair::from_pem(&text).map_err(|e| e.in_file(path))?;
        let obtained = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Self::new(cert, &key, obtained)
    }

    /// The client certificate a kube configuration carries (inline or from files), obtained at `obtained`.
    pub fn from_config(config: &kube::Config, obtained: SystemTime) -> Result<Self, RotationError> {
        // kube reads the identity (data or files, rootfs-mapped already) into its own resolver; take it from there
        // rather than parse the kubeconfig a second time.
        let tls = config.rustls_client_config()?;
        let key = tls
            .client_auth_cert_resolver
            .resolve(&[], &[])
            .ok_or_else(|| RotationError::Tls("the kubeconfig has no client certificate".into()))?;
        let der = key
            .cert
            .first()
            .ok_or_else(|| RotationError::Tls("the kubeconfig's client certificate is empty".into()))?;
        let cert = pki::Certificate::from_der(der.to_vec())?;
        Ok(Self {
            current: Arc::new(RwLock::new(Current { key, cert, obtained })),
            generation: Arc::new(Mutex::new(CancellationToken::new())),
        })
    }

    /// The certificate in use.
    pub fn certificate(&self) -> pki::Certificate {
        self.snapshot().cert
    }

    fn snapshot(&self) -> Current {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `cert` the certificate new connections present and closes the connections made with the old one.
    pub fn replace(
        &self,
        cert: pki::Certificate,
        key: &pki::KeyPair,
        obtained: SystemTime,
    ) -> Result<(), RotationError> {
        let next = Current {
            key: certified_key(&cert, key)?,
            cert,
            obtained,
        };
        match self.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        let old = {
            let mut g = match self.generation.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::replace(&mut *g, CancellationToken::new())
        };
        old.cancel();
        Ok(())
    }

    fn generation(&self) -> CancellationToken {
        match self.generation.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[derive(Debug)]
struct Resolver(ClientCertificate);

impl ResolvesClientCert for Resolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.snapshot().key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A kube client for `config` (its server, CA, `tls_server_name`, timeouts) that authenticates with `cert`,
/// whatever certificate `cert` holds at the time of each new connection.
pub fn client(config: &kube::Config, cert: &ClientCertificate) -> Result<kube::Client, RotationError> {
    let mut tls = config.rustls_client_config()?;
    tls.client_auth_cert_resolver = Arc::new(Resolver(cert.clone()));
    // A resumed TLS session keeps the identity of the handshake that made it: after a rotation the server would
    // still see the old certificate. client-go does not resume sessions either.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    // The client-side load balancer listens on 127.0.0.1: the configured server's name is what TLS verifies.
    if let Some(name) = &config.tls_server_name {
        let name = ServerName::try_from(name.clone()).map_err(|e| RotationError::Tls(e.to_string()))?;
        builder = builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = builder.enable_http1().wrap_connector(http);
    let mut connector = hyper_timeout::TimeoutConnector::new(Closing {
        inner: https,
        cert: cert.clone(),
    });
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    let http_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace.clone()).build())
}

/// A connector whose connections close once the certificate they were made with is replaced.
#[derive(Clone)]
struct Closing<C> {
    inner: C,
    cert: ClientCertificate,
}

impl<C> tower::Service<http::Uri> for Closing<C>
where
    C: tower::Service<http::Uri> + Send,
    C::Future: Send + 'static,
{
    type Response = Closable<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        // Taken before connecting: a connection whose handshake raced a rotation closes at once.
        let closed = self.cert.generation().cancelled_owned();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(Closable {
                io,
                closed: Box::pin(closed),
                done: false,
            })
        })
    }
}

struct Closable<T> {
    io: T,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl<T> Closable<T> {
    /// Whether the certificate changed; registers the task to be woken when it does.
    fn is_closed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && self.closed.as_mut().poll(cx).is_ready() {
            self.done = true;
        }
        self.done
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Closable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_closed(cx) {
            // End of stream: hyper drops an idle connection, and a request on it fails and is retried by its owner.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Closable<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.is_closed(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed: the client certificate was rotated",
            )));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: Connection> Connection for Closable<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

/// When to renew a certificate valid from `not_before` to `not_after` that the kubelet obtained at `obtained`:
/// at 70 % plus `jitter` (0 to 1) times 20 % of its lifetime, as upstream. Signers backdate `notBefore` by minutes
/// for clock skew; for a certificate that lives less than that, counting from the backdated start would put the
/// deadline at or before the moment it was issued, so its lifetime counts from when the kubelet obtained it.
pub fn renewal_deadline(
    not_before: SystemTime,
    not_after: SystemTime,
    obtained: SystemTime,
    jitter: f64,
) -> SystemTime {
    let start = not_before.max(obtained.min(not_after));
    let lifetime = not_after.duration_since(start).unwrap_or_default();
    start + lifetime.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// The rotation task's settings.
pub struct Rotation {
    pub node: String,
    /// `<root-dir>/pki`, where the certificates are stored.
    pub pki_dir: PathBuf,
    /// The kubeconfig (host path) whose embedded credentials follow the current certificate.
    pub kubeconfig: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    /// A number from 0 to 1 for each deadline.
    pub jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
}

/// How long a failed renewal waits before the next try, at most.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Sleeps are cut into pieces this long so a clock that jumps (suspend, NTP) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(300);

impl Rotation {
    /// Renews `cert` before each expiry through `client` (which authenticates with `cert`) until `shutdown`.
    pub async fn run(self, client: kube::Client, cert: ClientCertificate, shutdown: CancellationToken) {
        let csrs: kube::Api<CertificateSigningRequest> = kube::Api::all(client);
        let mut retry = Duration::from_secs(1);
        let mut deadline = None;
        loop {
            let now = self.clock.now();
            let due = *deadline.get_or_insert_with(|| {
                let current = cert.snapshot();
                let info = current.cert.info().ok();
                let at = info.map_or(now, |i| {
                    renewal_deadline(i.not_before, i.not_after, current.obtained, (self.jitter)())
                });
                tracing::info!(node = %self.node, renew_in = ?at.duration_since(now).unwrap_or_default(), "client certificate rotation scheduled");
                at
            });
            if let Ok(wait) = due.duration_since(now)
                && !wait.is_zero()
            {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait.min(MAX_SLEEP)) => continue,
                }
            }
            let span = tracing::info_span!("rotate_client_certificate", node = %self.node);
            match self.renew(&csrs, &cert, &shutdown).instrument(span).await {
                Ok(()) => {
                    retry = Duration::from_secs(1);
                    deadline = None;
                }
                Err(RotationError::Bootstrap(BootstrapError::Cancelled(_))) => return,
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, retry_in = ?retry, "client certificate rotation failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                    }
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    async fn renew(
        &self,
        csrs: &kube::Api<CertificateSigningRequest>,
        cert: &ClientCertificate,
        shutdown: &CancellationToken,
    ) -> Result<(), RotationError> {
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
        let issued = bootstrap::request_certificate(csrs, &key, &self.node, shutdown).await?;
        let expected = format!("system:node:{}", self.node);
        let info = issued.info()?;
        if info.common_name != expected || !issued.matches_key(&key)? {
            return Err(RotationError::WrongSubject {
                expected,
                got: info.common_name,
            });
        }
        let now = self.clock.now();
        let path = bootstrap::store_certificate(&self.pki_dir, &issued, &key, now)?;
        if let Some(kubeconfig) = &self.kubeconfig {
            let mut file = pki::Kubeconfig::read(kubeconfig)?;
            file.set_client_credentials(&issued, &key)?;
            file.write(kubeconfig)?;
        }
        cert.replace(issued, &key, now)?;
        tracing::info!(path = %path.display(), not_after = ?info.not_after, "client certificate rotated");
        Ok(())
    }
}

/// A jitter source for [`Rotation::jitter`] from the thread's random numbers.
pub fn random_jitter() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn renewal_falls_between_seventy_and_ninety_percent_of_the_lifetime() {
        // A year-long certificate obtained when it starts.
        let (start, end) = (at(1_000), at(1_000 + 100_000));
        assert_eq!(renewal_deadline(start, end, start, 0.0), at(1_000 + 70_000));
        assert_eq!(renewal_deadline(start, end, start, 1.0), at(1_000 + 90_000));
        assert_eq!(renewal_deadline(start, end, start, 0.5), at(1_000 + 80_000));
        // Out-of-range jitter is clamped rather than trusted.
        assert_eq!(renewal_deadline(start, end, start, 7.0), at(1_000 + 90_000));
    }

    #[test]
    fn a_backdated_short_certificate_is_renewed_within_its_life_after_it_was_obtained() {
        // Issued at 1300 for 30 s, backdated 5 minutes: counting from notBefore would land before 1300.
        let (not_before, not_after, obtained) = (at(1_000), at(1_330), at(1_300));
        let deadline = renewal_deadline(not_before, not_after, obtained, 0.0);
        assert_eq!(deadline, at(1_321));
        assert!(deadline > obtained && deadline < not_after);
    }

    #[test]
    fn a_certificate_known_only_from_an_old_file_keeps_upstreams_schedule() {
        // The file predates notBefore (clock skew): the lifetime counts from notBefore.
        assert_eq!(renewal_deadline(at(100), at(200), at(50), 0.0), at(170));
        // Obtained after expiry (restored from backup): renew at once.
        assert_eq!(renewal_deadline(at(100), at(200), at(500), 0.3), at(200));
    }
}
