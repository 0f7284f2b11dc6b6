//! The CA public-key pin of `--discovery-token-ca-cert-hash`: `sha256:` and the hex SHA-256 of the CA's
//! SubjectPublicKeyInfo. It pins the key, not the certificate, so a re-issued CA with the same key still matches.

use crate::{Certificate, Error, Result};
use sha2::{Digest, Sha256};

pub fn ca_public_key_pin(ca: &Certificate) -> Result<String> {
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(ca.public_key_der()?))
    ))
}

/// Checks the format of a pin as given on the command line.
pub fn parse_pin(pin: &str) -> Result<String> {
    match pin.split_once(':') {
        Some(("sha256", hash)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("sha256:{}", hash.to_ascii_lowercase()))
        }
        _ => Err(Error::BadPin(pin.to_string())),
    }
}

/// Whether `ca` matches any of `pins`. Malformed pins are an error rather than a silent mismatch.
pub fn verify_pin(ca: &Certificate, pins: &[String]) -> Result<bool> {
    let actual = ca_public_key_pin(ca)?;
    let mut matched = false;
    for pin in pins {
        matched |= parse_pin(pin)? == actual;
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CA_VALIDITY, CertificateAuthority, KeyAlgorithm, KeyPair};
    use std::time::SystemTime;

    #[test]
    fn the_pin_is_the_sha256_of_the_public_key_info_and_verifies() {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(key.public_key_der())));
        let ca = CertificateAuthority::self_signed("ca", key, CA_VALIDITY, SystemTime::now()).unwrap();
        let pin = ca_public_key_pin(ca.certificate()).unwrap();
        assert_eq!(pin, expected);
        assert!(
            verify_pin(
                ca.certificate(),
                &[pin.to_uppercase().replace("SHA256", "sha256")]
            )
            .unwrap()
        );
        assert!(!verify_pin(ca.certificate(), &[format!("sha256:{}", "0".repeat(64))]).unwrap());
        assert!(verify_pin(ca.certificate(), &["md5:abc".into()]).is_err());
    }
}
