//! Bootstrap tokens: `<id>.<secret>`, 6 and 16 characters of `[a-z0-9]`. The id is public (it names the
//! `bootstrap-token-<id>` Secret and the JWS key id); the secret is the credential.

use crate::{Error, Result};
use rand::Rng;
use std::fmt;

const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    pub fn generate(rng: &mut impl Rng) -> BootstrapToken {
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
                .collect()
        };
        let id = pick(6);
        let secret = pick(16);
        BootstrapToken { id, secret }
    }

    pub fn parse(text: &str) -> Result<BootstrapToken> {
        let valid = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
        match text.split_once('.') {
            Some((id, secret)) if valid(id, 6) && valid(secret, 16) => Ok(BootstrapToken {
                id: id.to_string(),
                secret: secret.to_string(),
            }),
            _ => Err(Error::BadToken(redact(text))),
        }
    }
}

/// Keeps an invalid token's shape visible in errors without echoing a possibly real secret.
fn redact(text: &str) -> String {
    match text.split_once('.') {
        Some((id, _)) => format!("{id}.<redacted>"),
        None if text.len() > 6 => format!("{}...", text.chars().take(6).collect::<String>()),
        None => text.to_string(),
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_tokens_have_kubeadms_format_and_parse_back() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let token = BootstrapToken::generate(&mut rng);
            assert_eq!(BootstrapToken::parse(&token.to_string()).unwrap(), token);
        }
    }

    #[test]
    fn malformed_tokens_are_rejected_without_echoing_the_secret() {
        for bad in [
            "",
            "abcdef",
            "abcdef.0123456789abcde",
            "ABCDEF.0123456789abcdef",
            "abcdef:0123456789abcdef",
        ] {
            assert!(BootstrapToken::parse(bad).is_err(), "{bad}");
        }
        let err = BootstrapToken::parse("abcdef.0123456789ABCDEF")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("0123456789ABCDEF"), "{err}");
    }
}
