//! Detached JWS (RFC 7515 appendix F) with HS256 keyed by a bootstrap token's secret, as the bootstrap signer puts
//! in `kube-public/cluster-info` (`jws-kubeconfig-<token-id>`). A joining node that knows the token checks that
//! the kubeconfig it downloaded was signed by someone who knows the token too.

use crate::{BootstrapToken, Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(token: &BootstrapToken, header: &str, payload: &[u8]) -> Result<HmacSha256> {
    let mut mac =
        HmacSha256::new_from_slice(token.secret.as_bytes()).map_err(|e| Error::BadJws(e.to_string()))?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(URL_SAFE_NO_PAD.encode(payload).as_bytes());
    Ok(mac)
}

/// Returns `header..signature` (the payload is left out: the verifier has it).
pub fn sign_detached(payload: &[u8], token: &BootstrapToken) -> Result<String> {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, token.id));
    let signature = mac(token, &header, payload)?.finalize().into_bytes();
    Ok(format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Checks a detached JWS over `payload` for `token` (algorithm and key id included), in constant time.
pub fn verify_detached(jws: &str, payload: &[u8], token: &BootstrapToken) -> Result<()> {
    let (header, signature) = jws
        .split_once("..")
        .ok_or_else(|| Error::BadJws("not a detached JWS (header..signature)".into()))?;
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Error::BadJws("header is not base64url".into()))?;
    let fields: serde_json::Value =
        serde_json::from_slice(&header_json).map_err(|_| Error::BadJws("header is not JSON".into()))?;
    if fields.get("alg").and_then(|v| v.as_str()) != Some("HS256") {
        return Err(Error::BadJws("algorithm is not HS256".into()));
    }
    if fields
        .get("kid")
        .and_then(|v| v.as_str())
        .is_some_and(|kid| kid != token.id)
    {
        return Err(Error::BadJws(format!("key id does not match token {}", token.id)));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Error::BadJws("signature is not base64url".into()))?;
    mac(token, header, payload)?
        .verify_slice(&signature)
        .map_err(|_| Error::BadJws("signature does not match the token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_token_and_payload_only() {
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let jws = sign_detached(b"kubeconfig", &token).unwrap();
        assert!(jws.contains(".."));
        verify_detached(&jws, b"kubeconfig", &token).unwrap();
        assert!(verify_detached(&jws, b"kubeconfig!", &token).is_err());
        let other = BootstrapToken::parse("abcdef.0123456789abcdee").unwrap();
        assert!(verify_detached(&jws, b"kubeconfig", &other).is_err());
        let other_id = BootstrapToken::parse("abcdeg.0123456789abcdef").unwrap();
        assert!(
            verify_detached(&jws, b"kubeconfig", &other_id)
                .unwrap_err()
                .to_string()
                .contains("key id")
        );
    }

    #[test]
    fn the_signature_matches_an_independent_hmac() {
        // Computed with: printf "$HEADER.aGVsbG8" | openssl dgst -sha256 -hmac 0123456789abcdef -binary | base64url
        let token = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let jws = sign_detached(b"hello", &token).unwrap();
        assert_eq!(
            jws,
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..MxsnbCjBaYzcbNIFa06F-wuF9LX26rhMlrL4zA1511s"
        );
    }
}
