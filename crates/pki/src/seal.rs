//! The certificate key of `kubeadm init --upload-certs`: 32 random bytes shown as 64 hex digits, the AES-256-GCM key
//! under which the shared control-plane certificates are stored in the `kubeadm-certs` Secret. Sealed data is
//! `nonce || ciphertext+tag`, kubeadm's layout.

use crate::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::{CryptoRng, RngCore};
use std::fmt;

const NONCE_LEN: usize = 12;

#[derive(Clone, PartialEq, Eq)]
pub struct CertificateKey([u8; 32]);

impl CertificateKey {
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> CertificateKey {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        CertificateKey(key)
    }

    pub fn parse(text: &str) -> Result<CertificateKey> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(Error::BadCertificateKey(format!(
                "expected 64 hexadecimal characters (32 bytes), got {} characters",
                text.chars().count()
            )));
        }
        let bytes = hex::decode(text)
            .map_err(|_| Error::BadCertificateKey("not hexadecimal (expected 0-9, a-f)".into()))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(CertificateKey(key))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> Result<Aes256Gcm> {
        Aes256Gcm::new_from_slice(&self.0).map_err(|e| Error::BadCertificateKey(e.to_string()))
    }

    pub fn seal(&self, plaintext: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()?
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| Error::Decrypt("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(Error::Decrypt("data too short to be sealed".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher()?
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| {
                Error::Decrypt("the certificate key does not match (wrong key or corrupted data)".into())
            })
    }
}

impl fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertificateKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_the_same_key() {
        let mut rng = rand::rngs::OsRng;
        let key = CertificateKey::generate(&mut rng);
        let sealed = key.seal(b"ca.key contents", &mut rng).unwrap();
        assert_eq!(key.open(&sealed).unwrap(), b"ca.key contents");
        let other = CertificateKey::generate(&mut rng);
        assert!(
            other
                .open(&sealed)
                .unwrap_err()
                .to_string()
                .contains("does not match")
        );
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(key.open(&tampered).is_err());
    }

    #[test]
    fn keys_are_64_hex_digits() {
        let key = CertificateKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(key.to_hex().len(), 64);
        assert_eq!(CertificateKey::parse(&key.to_hex()).unwrap(), key);
        assert!(
            CertificateKey::parse("abc")
                .unwrap_err()
                .to_string()
                .contains("got 3 characters")
        );
        let not_hex = "z".repeat(64);
        assert!(
            CertificateKey::parse(&not_hex)
                .unwrap_err()
                .to_string()
                .contains("not hexadecimal")
        );
    }
}
