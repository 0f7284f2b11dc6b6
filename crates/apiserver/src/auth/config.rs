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

/// Reads PEM files named by flags (`--service-account-key-file`, `--service-account-signing-key-file`).
pub fn read_pem_files(paths: &[std::path::PathBuf]) -> Result<Vec<String>, AuthError> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map_err(|e| AuthError::Internal(format!("reading {}: {e}", p.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::MemoryReader;
    use crate::auth::{Credentials, system_clock};

    #[tokio::test]
    async fn the_chain_from_flags_verifies_tokens_signed_with_kubeadms_sa_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::Rsa2048).unwrap();
        let (key_path, pub_path) = (dir.path().join("sa.key"), dir.path().join("sa.pub"));
        std::fs::write(&key_path, key.to_pem().unwrap()).unwrap();
        std::fs::write(&pub_path, key.public_key_pem()).unwrap();
        let issuer = "https://kubernetes.default.svc.cluster.local";
        let opts = AuthenticationOptions {
            service_account_key_pems: read_pem_files(&[pub_path]).unwrap(),
            service_account_issuers: vec![issuer.into()],
            anonymous_auth: false,
            ..Default::default()
        };
        let reader = MemoryReader::new();
        reader.put(
            "",
            "serviceaccounts",
            serde_json::json!({"metadata": {"namespace": "default", "name": "default", "uid": "u"}}),
        );
        let chain = build_authenticator(&opts, Arc::new(reader), system_clock()).unwrap();
        let signing = read_pem_files(&[key_path]).unwrap();
        let signer = crate::auth::serviceaccount::TokenSigner::from_pem(&signing[0], issuer).unwrap();
        let req = crate::auth::serviceaccount::BoundTokenRequest {
            namespace: "default".into(),
            service_account_name: "default".into(),
            service_account_uid: "u".into(),
            audiences: vec![issuer.into()],
            expiration_seconds: 3600,
            ..Default::default()
        };
        let (token, _) = signer
            .sign_bound(&req, std::time::SystemTime::now(), "j")
            .unwrap();
        let creds = Credentials {
            bearer_token: Some(&token),
            ..Default::default()
        };
        let user = chain.authenticate(&creds).await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:default");
        assert!(user.groups.contains(&"system:authenticated".to_string()));
        assert_eq!(chain.authenticate(&Credentials::default()).await, Ok(None));
    }
}
