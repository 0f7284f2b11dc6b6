//! Probes: one worker task per probe of each running container attempt, as upstream's prober does. exec runs the
//! command as a host process with the container's environment; httpGet does an HTTP/1.1 GET, over TLS without
//! certificate verification for `scheme: HTTPS` as upstream (2xx and 3xx succeed); tcpSocket connects. Results count against successThreshold / failureThreshold; the kubelet reads
//! them each pass ([`Prober::results`]): readiness drives `ready`, a failed liveness probe restarts the container,
//! and a startup probe holds the other two back until it succeeds.
//!
//! Entry points: [`Prober::ensure`], [`Prober::retain`], [`Prober::results`].

use crate::runtime::Attempt;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What the probes of one container attempt say so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeResults {
    /// Readiness; true without a readiness probe.
    pub ready: bool,
    /// Startup; true without a startup probe.
    pub started: bool,
    /// The liveness probe reached its failure threshold.
    pub liveness_failed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Readiness,
    Liveness,
}

struct Worker {
    cancel: CancellationToken,
    results: Arc<Mutex<ProbeResults>>,
}

/// Everything a probe needs besides the probe itself.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub env: Vec<(String, String)>,
    pub container: Container,
}

#[derive(Default)]
pub struct Prober {
    workers: Mutex<BTreeMap<Attempt, Worker>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Prober {
    /// Starts the workers of a running attempt unless they run already. Without a tokio runtime (unit tests of the
    /// sync pass) nothing is probed.
    pub fn ensure(&self, attempt: &Attempt, target: &Target) {
        let mut workers = lock(&self.workers);
        if workers.contains_key(attempt) {
            return;
        }
        let c = &target.container;
        let results = Arc::new(Mutex::new(ProbeResults {
            ready: c.readiness_probe.is_none(),
            started: c.startup_probe.is_none(),
            liveness_failed: false,
        }));
        let cancel = CancellationToken::new();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            for (kind, probe) in [
                (Kind::Startup, &c.startup_probe),
                (Kind::Readiness, &c.readiness_probe),
                (Kind::Liveness, &c.liveness_probe),
            ] {
                if let Some(probe) = probe.clone() {
                    handle.spawn(work(
                        kind,
                        probe,
                        target.clone(),
                        results.clone(),
                        cancel.clone(),
                        format!("{}/{}/{}", attempt.pod_uid, attempt.container, attempt.number),
                    ));
                }
            }
        }
        workers.insert(attempt.clone(), Worker { cancel, results });
    }

    /// Stops the workers of every attempt not in `live`.
    pub fn retain(&self, live: &BTreeSet<Attempt>) {
        lock(&self.workers).retain(|attempt, worker| {
            let keep = live.contains(attempt);
            if !keep {
                worker.cancel.cancel();
            }
            keep
        });
    }

    pub fn results(&self, attempt: &Attempt) -> Option<ProbeResults> {
        lock(&self.workers).get(attempt).map(|w| *lock(&w.results))
    }

    pub fn stop_all(&self) {
        for worker in lock(&self.workers).values() {
            worker.cancel.cancel();
        }
    }
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(
        v.and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default),
    )
}

async fn work(
    kind: Kind,
    probe: Probe,
    target: Target,
    results: Arc<Mutex<ProbeResults>>,
    cancel: CancellationToken,
    id: String,
) {
    let period = secs(probe.period_seconds, 10);
    let timeout = secs(probe.timeout_seconds, 1);
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let initial = Duration::from_secs(
        probe
            .initial_delay_seconds
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
    );
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(initial) => {}
    }
    let (mut successes, mut failures) = (0, 0);
    loop {
        let started = lock(&results).started;
        // Readiness and liveness wait for the startup probe, as upstream; the startup probe stops once it passed.
        let due = match kind {
            Kind::Startup => !started,
            _ => started,
        };
        if due {
            let span = tracing::debug_span!("probe", container = %id, kind = ?kind);
            let outcome = {
                let _guard = span.enter();
                tokio::time::timeout(timeout, run_probe(&probe, &target)).await
            };
            let ok = match outcome {
                Ok(Ok(())) => true,
                Ok(Err(reason)) => {
                    tracing::debug!(container = %id, kind = ?kind, %reason, "probe failed");
                    false
                }
                Err(_) => {
                    tracing::debug!(container = %id, kind = ?kind, "probe timed out");
                    false
                }
            };
            if ok {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
            }
            let mut r = lock(&results);
            match kind {
                Kind::Startup if ok => r.started = true,
                Kind::Startup if failures >= failure_threshold => r.liveness_failed = true,
                Kind::Readiness if ok && successes >= success_threshold => r.ready = true,
                Kind::Readiness if !ok && failures >= failure_threshold => r.ready = false,
                Kind::Liveness if !ok && failures >= failure_threshold => r.liveness_failed = true,
                _ => {}
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

fn port_of(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

async fn run_probe(probe: &Probe, target: &Target) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        let (program, args) = argv.split_first().ok_or("exec probe without a command")?;
        let path = target
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/bin:/bin");
        let program =
            crate::pod::resolve_program(program, path).ok_or_else(|| format!("{program}: not found"))?;
        let status = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(target.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| e.to_string())?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("exit status {status}"))
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().unwrap_or_else(|| target.host.clone());
        let port = port_of(&tcp.port, &target.container)?;
        return tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    }
    if let Some(http) = &probe.http_get {
        let host = http.host.clone().unwrap_or_else(|| target.host.clone());
        let port = port_of(&http.port, &target.container)?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for h in http.http_headers.iter().flatten() {
            request.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        request.push_str("\r\n");
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let https = http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
        let response = if https {
            let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(insecure_tls()?)
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            exchange(tls, &request).await?
        } else {
            exchange(stream, &request).await?
        };
        let line = String::from_utf8_lossy(&response[..response.len().min(64)]);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP response: {line:?}"))?;
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    Err("probe has no handler (exec, httpGet or tcpSocket)".into())
}

/// Sends `request` and reads the whole (bounded) response: closing early makes the server see a reset connection.
async fn exchange<S>(mut stream: S, request: &str) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let _ = (&mut stream).take(64 * 1024).read_to_end(&mut response).await;
    Ok(response)
}

/// HTTPS probes do not verify the server's certificate, as upstream's prober (`InsecureSkipVerify`): components
/// such as the scheduler serve health checks with a self-signed certificate made at start.
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

/// Accepts any server certificate, still checking that the handshake is signed by the key it presents.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, TCPSocketAction};

    fn target() -> Target {
        Target {
            host: "127.0.0.1".into(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            container: Container::default(),
        }
    }

    #[tokio::test]
    async fn exec_and_tcp_probes_report_success_and_failure() {
        let exec = |cmd: &str| Probe {
            exec: Some(ExecAction {
                command: Some(vec![cmd.into()]),
            }),
            ..Default::default()
        };
        assert!(run_probe(&exec("true"), &target()).await.is_ok());
        assert!(run_probe(&exec("false"), &target()).await.is_err());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Default::default()
        };
        assert!(run_probe(&tcp, &target()).await.is_ok());
        drop(listener);
        assert!(run_probe(&tcp, &target()).await.is_err());
    }

    #[tokio::test]
    async fn https_probes_accept_a_self_signed_server_and_read_its_status() {
        let shutdown = CancellationToken::new();
        let addr = client::health::serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
            .await
            .unwrap();
        let https = |path: &str| Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                path: Some(path.into()),
                port: IntOrString::Int(i32::from(addr.port())),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(run_probe(&https("/livez"), &target()).await, Ok(()));
        assert_eq!(
            run_probe(&https("/nowhere"), &target()).await,
            Err("HTTP probe failed with statuscode: 404".into())
        );
        shutdown.cancel();
    }
}
