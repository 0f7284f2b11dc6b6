//! The serving TLS configuration: the server certificate from `--tls-cert-file`, optional client certificates
//! verified against `--client-ca-file` (optional so bearer tokens and anonymous requests still work), ALPN for h2;
//! and the client configuration for calls to kubelets ([`kubelet_client_config`]).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::ServeError;

pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Tls(format!("reading certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// Builds the rustls server configuration with the `ring` provider.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| ServeError::Tls(format!("reading private key from {}: {e}", key_file.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| ServeError::Tls(format!("client CA {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| ServeError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ServeError::Tls(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS client configuration for calls to kubelets: `--kubelet-client-certificate`/`--kubelet-client-key` as
/// the client identity; the kubelet's serving certificate is verified against `--kubelet-certificate-authority`
/// when given and, as upstream, not verified otherwise (kubelets serve self-signed certificates by default).
pub fn kubelet_client_config(
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, ServeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let builder = match ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| ServeError::Tls(format!("kubelet CA {}: {e}", ca.display())))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UnverifiedServer(provider))),
    };
    let config = match (cert_file, key_file) {
        (Some(cert), Some(key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ServeError::Tls(format!("reading private key from {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certs(cert)?, key)
                .map_err(|e| ServeError::Tls(format!("kubelet client certificate and key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any kubelet serving certificate but still checks the handshake signatures, so the peer holds the key
/// of the certificate it presented.
#[derive(Debug)]
struct UnverifiedServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
