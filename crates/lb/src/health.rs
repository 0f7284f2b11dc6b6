//! Active health checks: one probe ([`Prober`]: TCP connect, or `GET <path>` over TLS without verification) and
//! the rise/fall state machine ([`Health`]) that turns probe results into up/down transitions as HAProxy does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Check, Error};

/// A backend's health as the checks have seen it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    pub healthy: bool,
    pub passed_in_row: u32,
    pub failed_in_row: u32,
    pub checks: u64,
    /// Why the most recent check failed; `None` once a check passes.
    pub last_error: Option<String>,
}

/// A change of a backend's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Up,
    Down,
}

impl Health {
    /// A new backend starts up, as HAProxy's servers do (`init-state fully-up`): it takes `fall` failed checks to
    /// take it down. Until then a refused connect just moves the client on to the next backend.
    pub fn new() -> Self {
        Self {
            healthy: true,
            passed_in_row: 0,
            failed_in_row: 0,
            checks: 0,
            last_error: None,
        }
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn record(&mut self, result: Result<(), String>, rise: u32, fall: u32) -> Option<Transition> {
        self.checks += 1;
        match result {
            Ok(()) => {
                self.failed_in_row = 0;
                self.passed_in_row = self.passed_in_row.saturating_add(1);
                self.last_error = None;
                if !self.healthy && self.passed_in_row >= rise {
                    self.healthy = true;
                    return Some(Transition::Up);
                }
            }
            Err(error) => {
                self.passed_in_row = 0;
                self.failed_in_row = self.failed_in_row.saturating_add(1);
                self.last_error = Some(error);
                if self.healthy && self.failed_in_row >= fall {
                    self.healthy = false;
                    return Some(Transition::Down);
                }
            }
        }
        None
    }
}

/// Runs one configured check against a backend.
pub(crate) struct Prober {
    check: Check,
    timeout: Duration,
    tls: TlsConnector,
}

impl Prober {
    pub fn new(check: Check, timeout: Duration) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            check,
            timeout,
            tls: TlsConnector::from(Arc::new(tls)),
        })
    }

    /// `Ok` if the backend passes the check within the timeout, else why not.
    pub async fn probe(&self, addr: SocketAddr) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.probe_unbounded(addr)).await {
            Ok(result) => result,
            Err(_) => Err(format!("check timed out after {:?}", self.timeout)),
        }
    }

    async fn probe_unbounded(&self, addr: SocketAddr) -> Result<(), String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let path = match &self.check {
            Check::Tcp => return Ok(()),
            Check::Https { path } => path,
        };
        let _ = stream.set_nodelay(true);
        let mut tls = self
            .tls
            .connect(ServerName::from(addr.ip()), stream)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: bulwark-lb\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending GET {path}: {e}"))?;
        // Only the status line matters; the rest of the answer is not worth waiting for.
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = tls
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading the answer to GET {path}: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let line = line.lines().next().unwrap_or_default();
        match status_code(line) {
            Some(200) => Ok(()),
            Some(code) => Err(format!("GET {path}: HTTP {code}")),
            None => Err(format!("GET {path}: not an HTTP answer: {line:?}")),
        }
    }
}

/// The code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Accepts any server certificate, as `check-ssl verify none` does: the balancer forwards TCP and never sees the
/// clients' traffic, so the check only asks "is it ready", not "is it who it claims". Handshake signatures are
/// still checked, with the ring provider's algorithms, so the TLS session itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Result<(), String> {
        Err("connect: refused".into())
    }

    #[test]
    fn an_up_backend_goes_down_only_after_fall_failed_checks_in_a_row() {
        let mut h = Health::new();
        assert_eq!(h.record(fail(), 2, 3), None);
        assert_eq!(h.record(fail(), 2, 3), None);
        assert!(h.healthy, "down before fall failures");
        // A pass in between starts the count again.
        assert_eq!(h.record(Ok(()), 2, 3), None);
        assert_eq!(h.record(fail(), 2, 3), None);
        assert_eq!(h.record(fail(), 2, 3), None);
        assert_eq!(h.record(fail(), 2, 3), Some(Transition::Down));
        assert!(!h.healthy);
        assert_eq!(h.failed_in_row, 3);
        assert_eq!(h.last_error.as_deref(), Some("connect: refused"));
        assert_eq!(h.record(fail(), 2, 3), None, "down is reported once");
    }

    #[test]
    fn a_down_backend_comes_up_only_after_rise_passed_checks_in_a_row() {
        let mut h = Health::new();
        assert_eq!(h.record(fail(), 2, 1), Some(Transition::Down));
        assert_eq!(h.record(Ok(()), 2, 1), None);
        assert!(!h.healthy, "up before rise passes");
        assert_eq!(h.last_error, None);
        assert_eq!(h.record(fail(), 2, 1), None);
        assert_eq!(h.record(Ok(()), 2, 1), None);
        assert_eq!(h.record(Ok(()), 2, 1), Some(Transition::Up));
        assert!(h.healthy);
        assert_eq!(h.checks, 5);
    }

    #[test]
    fn only_a_200_status_line_counts_as_ready() {
        assert_eq!(status_code("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(""), None);
    }
}
