//! Bootstrap-token authentication (`--enable-bootstrap-token-auth`): a bearer `<id>.<secret>` is checked against the
//! Secret `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`. As upstream, a token that does
//! not match (unknown id, wrong secret, expired, not for authentication) is simply not accepted; the chain then
//! answers 401 "invalid bearer token".

use super::objects::{self, str_at};
use super::{AuthError, Authenticator, Clock, Credentials, ObjectReader, UserInfo};
use async_trait::async_trait;
use base64::Engine;
use serde_json::Value;
use std::sync::Arc;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const USER_PREFIX: &str = "system:bootstrap:";
pub const DEFAULT_GROUP: &str = "system:bootstrappers";

/// Looks bootstrap tokens up through `reader`; `clock` decides expiry.
#[derive(Clone)]
pub struct BootstrapTokenAuthenticator {
    reader: Arc<dyn ObjectReader>,
    clock: Clock,
}

impl std::fmt::Debug for BootstrapTokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BootstrapTokenAuthenticator")
    }
}

impl BootstrapTokenAuthenticator {
    pub fn new(reader: Arc<dyn ObjectReader>, clock: Clock) -> Self {
        Self { reader, clock }
    }
}

/// A `data` value of a Secret, base64-decoded (`""` when absent or not decodable).
pub fn secret_data(secret: &Value, key: &str) -> String {
    let encoded = str_at(secret, &["data", key]);
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// `system:bootstrappers` plus the valid `auth-extra-groups`, sorted and unique as upstream returns them; `None`
/// when an extra group is outside `system:bootstrappers:`.
fn groups(secret: &Value) -> Option<Vec<String>> {
    let mut groups = std::collections::BTreeSet::from([DEFAULT_GROUP.to_string()]);
    let extra = secret_data(secret, "auth-extra-groups");
    for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let rest = g.strip_prefix("system:bootstrappers:")?;
        let ok = !rest.is_empty()
            && rest.len() <= 256
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
            && rest
                .as_bytes()
                .last()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return None;
        }
        groups.insert(g.to_string());
    }
    Some(groups.into_iter().collect())
}

#[async_trait]
impl Authenticator for BootstrapTokenAuthenticator {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError> {
        let Some(Ok(token)) = creds.bearer_token.map(pki::BootstrapToken::parse) else {
            return Ok(None);
        };
        let name = format!("{SECRET_PREFIX}{}", token.id);
        let secret = self
            .reader
            .get(&objects::secrets(), Some("kube-system"), &name)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let Some(secret) = secret else {
            tracing::debug!(secret = %name, "no secret to match bootstrap bearer token");
            return Ok(None);
        };
        let reject = |why: &str| {
            tracing::debug!(secret = %name, "bootstrap token secret {why}");
            Ok(None)
        };
        if objects::is_terminating(&secret) {
            return reject("is deleted and awaiting removal");
        }
        if str_at(&secret, &["type"]) != SECRET_TYPE {
            return reject("has the wrong type");
        }
        if !objects::constant_time_eq(
            secret_data(&secret, "token-secret").as_bytes(),
            token.secret.as_bytes(),
        ) {
            return reject("has invalid value for key token-secret");
        }
        if secret_data(&secret, "token-id") != token.id {
            return reject("has invalid value for key token-id");
        }
        let expiration = secret_data(&secret, "expiration");
        if !expiration.is_empty() {
            // An unparsable expiration counts as expired, as upstream.
            match objects::parse_rfc3339(&expiration) {
                Some(at) if (self.clock)() <= at => {}
                _ => return reject("has expired"),
            }
        }
        if secret_data(&secret, "usage-bootstrap-authentication") != "true" {
            return reject("is not marked for authentication");
        }
        let Some(groups) = groups(&secret) else {
            return reject("has invalid value for key auth-extra-groups");
        };
        Ok(Some(UserInfo {
            name: format!("{USER_PREFIX}{}", token.id),
            groups,
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::MemoryReader;
    use serde_json::json;
    use std::time::{Duration, SystemTime};

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn token_secret(id: &str, secret: &str, expiration: &str, extra: &str) -> Value {
        let mut data = json!({
            "token-id": b64(id), "token-secret": b64(secret),
            "usage-bootstrap-authentication": b64("true"), "usage-bootstrap-signing": b64("true"),
        });
        if !expiration.is_empty() {
            data["expiration"] = json!(b64(expiration));
        }
        if !extra.is_empty() {
            data["auth-extra-groups"] = json!(b64(extra));
        }
        json!({"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
               "metadata": {"namespace": "kube-system", "name": format!("bootstrap-token-{id}")}, "data": data})
    }

    fn at(s: &str) -> SystemTime {
        objects::parse_rfc3339(s).unwrap()
    }

    fn authenticator(secret: Value, now: SystemTime) -> BootstrapTokenAuthenticator {
        let reader = MemoryReader::new();
        reader.put("", "secrets", secret);
        BootstrapTokenAuthenticator::new(Arc::new(reader), Arc::new(move || now))
    }

    async fn auth(a: &BootstrapTokenAuthenticator, token: &str) -> Option<UserInfo> {
        let creds = Credentials {
            bearer_token: Some(token),
            ..Default::default()
        };
        a.authenticate(&creds).await.unwrap()
    }

    #[tokio::test]
    async fn a_valid_token_is_system_bootstrap_id_in_system_bootstrappers_and_its_extra_groups() {
        let secret = token_secret(
            "abcdef",
            "0123456789abcdef",
            "2030-01-01T00:00:00Z",
            "system:bootstrappers:kubeadm:default-node-token",
        );
        let a = authenticator(secret, at("2029-01-01T00:00:00Z"));
        let user = auth(&a, "abcdef.0123456789abcdef").await.unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            vec![
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token"
            ]
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_not_accepted() {
        let a = authenticator(
            token_secret("abcdef", "0123456789abcdef", "2030-01-01T00:00:00Z", ""),
            at("2030-01-01T00:00:00Z") + Duration::from_secs(1),
        );
        assert_eq!(auth(&a, "abcdef.0123456789abcdef").await, None);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_not_accepted() {
        let a = authenticator(
            token_secret("abcdef", "0123456789abcdef", "", ""),
            SystemTime::now(),
        );
        assert_eq!(auth(&a, "abcdef.0123456789abcdeg").await, None);
    }

    #[tokio::test]
    async fn an_unknown_token_id_is_not_accepted() {
        let a = authenticator(
            token_secret("abcdef", "0123456789abcdef", "", ""),
            SystemTime::now(),
        );
        assert_eq!(auth(&a, "zzzzzz.0123456789abcdef").await, None);
    }

    #[tokio::test]
    async fn a_token_not_marked_for_authentication_is_not_accepted() {
        let mut secret = token_secret("abcdef", "0123456789abcdef", "", "");
        secret["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        let a = authenticator(secret, SystemTime::now());
        assert_eq!(auth(&a, "abcdef.0123456789abcdef").await, None);
    }

    #[tokio::test]
    async fn extra_groups_outside_system_bootstrappers_void_the_token() {
        let a = authenticator(
            token_secret("abcdef", "0123456789abcdef", "", "system:masters"),
            SystemTime::now(),
        );
        assert_eq!(auth(&a, "abcdef.0123456789abcdef").await, None);
    }

    #[tokio::test]
    async fn a_bearer_token_of_another_shape_is_left_to_other_authenticators() {
        let a = authenticator(
            token_secret("abcdef", "0123456789abcdef", "", ""),
            SystemTime::now(),
        );
        assert_eq!(auth(&a, "eyJhbGciOiJSUzI1NiJ9.e30.sig").await, None);
    }
}
