//! Private keys. kubeadm's default is RSA-2048 written as PKCS#1 (`RSA PRIVATE KEY`); ECDSA P-256 keys are written
//! as PKCS#8 (`PRIVATE KEY`), which Go's `tls.LoadX509KeyPair` and etcd read as well.

use crate::{Error, Result};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use std::fmt;

/// The key types kubeadm can produce (`encryptionAlgorithm` in its newer config API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    #[default]
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
}

impl KeyAlgorithm {
    /// Parses kubeadm's spelling (`RSA-2048`, `RSA-3072`, `RSA-4096`, `ECDSA-P256`).
    pub fn parse(s: &str) -> Option<KeyAlgorithm> {
        match s {
            "RSA-2048" | "RSA" | "" => Some(KeyAlgorithm::Rsa2048),
            "RSA-3072" => Some(KeyAlgorithm::Rsa3072),
            "RSA-4096" => Some(KeyAlgorithm::Rsa4096),
            "ECDSA-P256" | "ECDSA" => Some(KeyAlgorithm::EcdsaP256),
            _ => None,
        }
    }

    fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyAlgorithm::Rsa2048 => Some(2048),
            KeyAlgorithm::Rsa3072 => Some(3072),
            KeyAlgorithm::Rsa4096 => Some(4096),
            KeyAlgorithm::EcdsaP256 => None,
        }
    }

    pub fn is_rsa(self) -> bool {
        self.rsa_bits().is_some()
    }
}

/// A private key together with the signer rcgen needs. Keeps the PKCS#8 form so it can be re-encoded.
pub struct KeyPair {
    algorithm: KeyAlgorithm,
    pkcs8: Vec<u8>,
    signer: rcgen::KeyPair,
}

impl fmt::Debug for KeyPair {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a fresh key from the operating system's randomness.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<KeyPair> {
        match algorithm.rsa_bits() {
            Some(bits) => {
                // ring cannot generate RSA keys, so the `rsa` crate does and ring signs.
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
                    .map_err(|e| Error::Generate(format!("RSA key: {e}")))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| Error::Generate(format!("RSA key: {e}")))?;
                Self::from_pkcs8(der.as_bytes().to_vec(), algorithm)
            }
            None => {
                let signer = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| Error::Generate(format!("ECDSA key: {e}")))?;
                Ok(KeyPair {
                    algorithm,
                    pkcs8: signer.serialize_der(),
                    signer,
                })
            }
        }
    }

    /// Generates `count` keys using every core. RSA generation dominates the time of kubeadm's phases (a dozen
    /// keys for a control-plane node), and the keys are independent.
    pub fn generate_many(algorithm: KeyAlgorithm, count: usize) -> Result<Vec<KeyPair>> {
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, count.max(1));
        let per_thread: Vec<usize> = (0..threads)
            .map(|t| count / threads + usize::from(t < count % threads))
            .collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = per_thread
                .iter()
                .map(|&n| {
                    scope.spawn(move || {
                        (0..n)
                            .map(|_| KeyPair::generate(algorithm))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            let mut keys = Vec::with_capacity(count);
            for handle in handles {
                keys.extend(
                    handle
                        .join()
                        .map_err(|_| Error::Generate("key generation thread failed".into()))??,
                );
            }
            Ok(keys)
        })
    }

    fn from_pkcs8(pkcs8: Vec<u8>, algorithm: KeyAlgorithm) -> Result<KeyPair> {
        let alg = if algorithm.is_rsa() {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        };
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_slice());
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg)
            .map_err(|e| Error::BadKey(e.to_string()))?;
        Ok(KeyPair {
            algorithm,
            pkcs8,
            signer,
        })
    }

    /// Reads `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8, RSA or ECDSA P-256).
    pub fn from_pem(text: &str) -> Result<KeyPair> {
        let block = pem::parse(text).map_err(|e| Error::BadKey(format!("not PEM: {e}")))?;
        match block.tag() {
            "RSA PRIVATE KEY" => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(block.contents())
                    .map_err(|e| Error::BadKey(format!("PKCS#1: {e}")))?;
                let algorithm = rsa_algorithm(&key)?;
                let der = key.to_pkcs8_der().map_err(|e| Error::BadKey(e.to_string()))?;
                Self::from_pkcs8(der.as_bytes().to_vec(), algorithm)
            }
            "PRIVATE KEY" => match rsa::RsaPrivateKey::from_pkcs8_der(block.contents()) {
                Ok(key) => Self::from_pkcs8(block.contents().to_vec(), rsa_algorithm(&key)?),
                Err(_) => Self::from_pkcs8(block.contents().to_vec(), KeyAlgorithm::EcdsaP256),
            },
            other => Err(Error::BadKey(format!(
                "unsupported PEM block {other:?}; expected RSA PRIVATE KEY or PRIVATE KEY"
            ))),
        }
    }

    /// The PEM text kubeadm would write for this key.
    pub fn to_pem(&self) -> Result<String> {
        if self.algorithm.is_rsa() {
            let key =
                rsa::RsaPrivateKey::from_pkcs8_der(&self.pkcs8).map_err(|e| Error::BadKey(e.to_string()))?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| Error::BadKey(e.to_string()))?;
            Ok(pem.to_string())
        } else {
            Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", self.pkcs8.clone())))
        }
    }

    /// The public half as a PKIX `PUBLIC KEY` block (the format of kubeadm's `sa.pub`).
    pub fn public_key_pem(&self) -> String {
        self.signer.public_key_pem()
    }

    /// DER of the SubjectPublicKeyInfo, what certificate pins hash.
    pub fn public_key_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.signer.subject_public_key_info()
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    pub(crate) fn signer(&self) -> &rcgen::KeyPair {
        &self.signer
    }
}

fn rsa_algorithm(key: &rsa::RsaPrivateKey) -> Result<KeyAlgorithm> {
    use rsa::traits::PublicKeyParts;
    match key.size() * 8 {
        2048 => Ok(KeyAlgorithm::Rsa2048),
        3072 => Ok(KeyAlgorithm::Rsa3072),
        4096 => Ok(KeyAlgorithm::Rsa4096),
        bits => Err(Error::BadKey(format!(
            "RSA keys of {bits} bits are not supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_keys_round_trip_through_pkcs1_pem() {
        let key = KeyPair::generate(KeyAlgorithm::Rsa2048).unwrap();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let back = KeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.algorithm(), KeyAlgorithm::Rsa2048);
        assert_eq!(back.public_key_der(), key.public_key_der());
    }

    #[test]
    fn ecdsa_keys_round_trip_through_pkcs8_pem() {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = KeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.algorithm(), KeyAlgorithm::EcdsaP256);
        assert_eq!(back.public_key_der(), key.public_key_der());
    }

    #[test]
    fn many_keys_are_generated_in_parallel_and_all_differ() {
        let keys = KeyPair::generate_many(KeyAlgorithm::EcdsaP256, 5).unwrap();
        assert_eq!(keys.len(), 5);
        let distinct: std::collections::BTreeSet<Vec<u8>> =
            keys.iter().map(KeyPair::public_key_der).collect();
        assert_eq!(distinct.len(), 5);
        assert!(
            KeyPair::generate_many(KeyAlgorithm::EcdsaP256, 0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(matches!(KeyPair::from_pem("hello"), Err(Error::BadKey(_))));
        let cert_block = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        assert!(
            KeyPair::from_pem(&cert_block)
                .unwrap_err()
                .to_string()
                .contains("unsupported PEM block")
        );
    }

    #[test]
    fn debug_output_hides_key_material() {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert_eq!(format!("{key:?}"), "KeyPair { algorithm: EcdsaP256, .. }");
    }
}
