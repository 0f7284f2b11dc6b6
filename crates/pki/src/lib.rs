//! Public-key infrastructure in kubeadm's shapes, with no knowledge of kubeadm's configuration.
//!
//! Layout:
//! - [`key`]: private keys (RSA as kubeadm's default, ECDSA P-256), PEM in the formats kubeadm writes.
//! - [`cert`]: certificates, certificate authorities, issuing leaves from a [`CertSpec`], inspecting existing ones.
//! - [`files`]: atomic writes (keys 0600), reading cert/key pairs with errors that name the file.
//! - [`kubeconfig`]: the `Config` file kubectl and every component read.
//! - [`csr`]: certificate signing requests: create, parse, sign with a CA.
//! - [`token`]: bootstrap tokens (`[a-z0-9]{6}.[a-z0-9]{16}`).
//! - [`pin`]: the CA public-key pin used by `--discovery-token-ca-cert-hash`.
//! - [`seal`]: the certificate key and AES-256-GCM sealing used by `--upload-certs`.
//! - [`jws`]: detached HS256 JWS over `cluster-info`, keyed by a bootstrap token.
//!
//! Entry points: [`CertificateAuthority::self_signed`], [`CertificateAuthority::issue`], [`KeyPair::generate`],
//! [`Kubeconfig::for_client_cert`], [`BootstrapToken::generate`], [`ca_public_key_pin`], [`CertificateKey`],
//! [`jws::sign_detached`].
//!
//! Time and randomness come in as arguments (`now`, `rng`), so callers and tests control both.

pub mod cert;
pub mod csr;
pub mod files;
pub mod jws;
pub mod key;
pub mod kubeconfig;
pub mod pin;
pub mod seal;
pub mod token;

pub use cert::{CA_VALIDITY, CertInfo, CertSpec, Certificate, CertificateAuthority, LEAF_VALIDITY, Usage};
pub use files::{read_cert, read_key, write_cert_and_key, write_private, write_public};
pub use key::{KeyAlgorithm, KeyPair};
pub use kubeconfig::Kubeconfig;
pub use pin::{ca_public_key_pin, parse_pin, verify_pin};
/// The operating system's randomness, for callers that have no reason to inject their own.
pub use rand::rngs::OsRng;
pub use seal::CertificateKey;
pub use token::BootstrapToken;

use std::path::PathBuf;

/// Everything that can go wrong in this crate. Variants that concern a file carry its path, so the CLI can name it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    #[error("invalid private key: {0}")]
    BadKey(String),
    #[error("invalid subject alternative name {0:?}: neither an IP address nor a DNS name")]
    BadSan(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("invalid bootstrap token {0:?}: the format is [a-z0-9]{{6}}.[a-z0-9]{{16}}")]
    BadToken(String),
    #[error("invalid certificate key: {0}")]
    BadCertificateKey(String),
    #[error("decryption failed: {0}")]
    Decrypt(String),
    #[error("invalid JWS: {0}")]
    BadJws(String),
    #[error("invalid CA public key pin {0:?}: the format is sha256:<64 hex digits>")]
    BadPin(String),
    #[error("invalid kubeconfig: {0}")]
    BadKubeconfig(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Attaches a file path to an error that was found while reading that file.
    pub fn in_file(self, path: &std::path::Path) -> Error {
        match self {
            Error::Io { .. } | Error::BadFile { .. } => self,
            other => Error::BadFile {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        }
    }
}
