//! x509 client-certificate authentication: the leaf certificate's CN is the user name, its O values the groups.
//! The TLS layer has already verified the chain against `--client-ca-file` at the handshake; as upstream, which
//! verifies the chain on every request, a certificate that expired (or is not valid yet) since the connection was
//! made no longer authenticates, so a long-lived connection cannot outlive its credential.

use super::{AuthError, Authenticator, Credentials, UserInfo};
use async_trait::async_trait;

/// Authenticates requests that presented a verified client certificate.
#[derive(Debug, Clone, Copy, Default)]
pub struct X509Authenticator;

#[async_trait]
impl Authenticator for X509Authenticator {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError> {
        let Some(leaf) = creds.peer_certificates.first() else {
            return Ok(None);
        };
        let cert = pki::Certificate::from_der(leaf.clone())
            .map_err(|e| AuthError::Invalid(format!("x509: invalid client certificate: {e}")))?;
        let info = cert
            .info()
            .map_err(|e| AuthError::Invalid(format!("x509: invalid client certificate: {e}")))?;
        // The system clock, as the TLS layer's verification at the handshake uses.
        let now = std::time::SystemTime::now();
        if now > info.not_after || now < info.not_before {
            return Err(AuthError::Invalid(
                "x509: certificate has expired or is not yet valid".into(),
            ));
        }
        if info.common_name.is_empty() {
            // Upstream's CommonNameUserConversion rejects certificates without a CN.
            return Err(AuthError::Invalid(
                "x509: common name of client certificate is empty".into(),
            ));
        }
        Ok(Some(UserInfo {
            name: info.common_name,
            groups: info.organizations,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn client_cert(cn: &str, orgs: &[&str]) -> Vec<u8> {
        client_cert_issued(cn, orgs, SystemTime::now())
    }

    fn client_cert_issued(cn: &str, orgs: &[&str], issued: SystemTime) -> Vec<u8> {
        let ca_key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256).unwrap();
        let ca = pki::CertificateAuthority::self_signed(
            "kubernetes",
            ca_key,
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256).unwrap();
        let spec = pki::CertSpec {
            common_name: cn.into(),
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            dns_names: vec![],
            ips: vec![],
            usages: vec![pki::Usage::ClientAuth],
            validity: Duration::from_secs(3600),
        };
        ca.issue(&spec, &key, issued).unwrap().der().to_vec()
    }

    #[tokio::test]
    async fn a_client_certificate_authenticates_its_common_name_with_its_organizations_as_groups() {
        let der = client_cert("kubernetes-admin", &["kubeadm:cluster-admins"]);
        let certs = [der];
        let creds = Credentials {
            peer_certificates: &certs,
            bearer_token: None,
        };
        let user = X509Authenticator.authenticate(&creds).await.unwrap().unwrap();
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, vec!["kubeadm:cluster-admins"]);
    }

    #[tokio::test]
    async fn a_certificate_that_expired_since_the_handshake_no_longer_authenticates() {
        // Issued two hours ago for one hour.
        let der = client_cert_issued(
            "system:node:n1",
            &["system:nodes"],
            SystemTime::now() - Duration::from_secs(7200),
        );
        let certs = [der];
        let creds = Credentials {
            peer_certificates: &certs,
            bearer_token: None,
        };
        let err = X509Authenticator.authenticate(&creds).await.unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[tokio::test]
    async fn no_client_certificate_is_no_opinion() {
        let creds = Credentials::default();
        assert_eq!(X509Authenticator.authenticate(&creds).await.unwrap(), None);
    }
}
