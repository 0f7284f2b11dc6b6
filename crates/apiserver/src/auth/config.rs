//! Building the authenticator chain from kube-apiserver's flags, in upstream's order: x509 client certificates,
//! then bearer tokens (bootstrap tokens, service-account JWTs), then the anonymous fallback.

use super::bootstrap::BootstrapTokenAuthenticator;
use super::serviceaccount::{ServiceAccountAuthenticator, load_public_keys};
use super::union::AuthenticatorChain;
use super::x509::X509Authenticator;
use super::{AuthError, Authenticator, Clock, ObjectReader};
use std::sync::Arc;

/// The authentication flags of kube-apiserver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthenticationOptions {
    /// `--client-ca-file` was given (TLS verifies client certificates, so x509 authentication is on).
    pub client_ca: bool,
    /// `--enable-bootstrap-token-auth`.
    pub enable_bootstrap_token_auth: bool,
    /// The contents of every `--service-account-key-file` (PEM public keys, private keys or certificates).
    pub service_account_key_pems: Vec<String>,
    /// Every `--service-account-issuer`, the first one being the issuer of new tokens.
    pub service_account_issuers: Vec<String>,
    /// `--api-audiences`; empty means the first issuer, as upstream.
    pub api_audiences: Vec<String>,
    /// `--anonymous-auth` (upstream's default is true).
    pub anonymous_auth: bool,
}

/// The chain for `opts`. Fails only on unreadable service-account keys.
pub fn build_authenticator(
    opts: &AuthenticationOptions,
    reader: Arc<dyn ObjectReader>,
    clock: Clock,
) -> Result<AuthenticatorChain, AuthError> {
    let mut chain: Vec<Arc<dyn Authenticator>> = Vec::new();
    if opts.client_ca {
        chain.push(Arc::new(X509Authenticator));
    }
    if opts.enable_bootstrap_token_auth {
        chain.push(Arc::new(BootstrapTokenAuthenticator::new(
            reader.clone(),
            clock.clone(),
        )));
    }
    if !opts.service_account_key_pems.is_empty() {
        let mut keys = Vec::new();
        for pem in &opts.service_account_key_pems {
            keys.extend(load_public_keys(pem)?);
        }
        chain.push(Arc::new(ServiceAccountAuthenticator::new(
            keys,
            opts.service_account_issuers.clone(),
            opts.api_audiences.clone(),
            reader,
            clock,
        )));
    }
    Ok(AuthenticatorChain::new(chain, opts.anonymous_auth))
}
