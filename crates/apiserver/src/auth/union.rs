//! The authenticator chain as upstream assembles it: the configured authenticators are tried in order (first user
//! wins; errors are remembered), every authenticated user gets the `system:authenticated` group, and with
//! `--anonymous-auth` a request that presented no valid-looking credentials becomes `system:anonymous`. A request
//! whose credentials were rejected stays rejected (401) even with anonymous auth on, as upstream's
//! fail-on-error union does.

use super::{AuthError, Authenticator, Credentials, UserInfo};
use async_trait::async_trait;
use std::sync::Arc;

pub const ALL_AUTHENTICATED: &str = "system:authenticated";
pub const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
pub const ANONYMOUS_USER: &str = "system:anonymous";
const INVALID_BEARER_TOKEN: &str = "invalid bearer token";

/// The anonymous authenticator (`--anonymous-auth`): every request is `system:anonymous`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnonymousAuthenticator;

#[async_trait]
impl Authenticator for AnonymousAuthenticator {
    async fn authenticate(&self, _creds: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError> {
        Ok(Some(UserInfo {
            name: ANONYMOUS_USER.into(),
            groups: vec![ALL_UNAUTHENTICATED.into()],
            ..Default::default()
        }))
    }
}

/// The whole authentication stack of the server.
#[derive(Clone, Default)]
pub struct AuthenticatorChain {
    authenticators: Vec<Arc<dyn Authenticator>>,
    anonymous: bool,
}

impl std::fmt::Debug for AuthenticatorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatorChain")
            .field("authenticators", &self.authenticators.len())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl AuthenticatorChain {
    /// `authenticators` in the order to try them (upstream: x509, then tokens: bootstrap, service accounts);
    /// `anonymous` is `--anonymous-auth` (upstream's default is true).
    pub fn new(authenticators: Vec<Arc<dyn Authenticator>>, anonymous: bool) -> Self {
        Self {
            authenticators,
            anonymous,
        }
    }
}

#[async_trait]
impl Authenticator for AuthenticatorChain {
    /// `Ok(Some(user))`: authenticated (or anonymous); `Ok(None)`: no credentials and anonymous auth off (401);
    /// `Err`: credentials rejected (401).
    async fn authenticate(&self, creds: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError> {
        let mut errors = Vec::new();
        for authenticator in &self.authenticators {
            match authenticator.authenticate(creds).await {
                Ok(Some(mut user)) => {
                    if !user.groups.iter().any(|g| g == ALL_AUTHENTICATED) && user.name != ANONYMOUS_USER {
                        user.groups.push(ALL_AUTHENTICATED.into());
                    }
                    return Ok(Some(user));
                }
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        match errors.len() {
            // A bearer token nobody accepted is rejected, not ignored (upstream's "invalid bearer token").
            0 if creds.bearer_token.is_some() => Err(AuthError::Invalid(INVALID_BEARER_TOKEN.into())),
            0 if self.anonymous => AnonymousAuthenticator.authenticate(creds).await,
            0 => Ok(None),
            1 => Err(errors.remove(0)),
            _ => Err(AuthError::Aggregate(errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<Option<UserInfo>, AuthError>);
    #[async_trait]
    impl Authenticator for Fixed {
        async fn authenticate(&self, _: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError> {
            self.0.clone()
        }
    }

    fn chain(results: Vec<Result<Option<UserInfo>, AuthError>>, anonymous: bool) -> AuthenticatorChain {
        AuthenticatorChain::new(
            results
                .into_iter()
                .map(|r| Arc::new(Fixed(r)) as Arc<dyn Authenticator>)
                .collect(),
            anonymous,
        )
    }

    #[tokio::test]
    async fn the_first_authenticated_user_wins_and_gets_system_authenticated() {
        let alice = UserInfo {
            name: "alice".into(),
            groups: vec!["devs".into()],
            ..Default::default()
        };
        let c = chain(
            vec![Ok(None), Ok(Some(alice)), Err(AuthError::Invalid("x".into()))],
            false,
        );
        let user = c.authenticate(&Credentials::default()).await.unwrap().unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, vec!["devs", "system:authenticated"]);
    }

    #[tokio::test]
    async fn no_credentials_with_anonymous_auth_is_system_anonymous_in_system_unauthenticated() {
        let user = chain(vec![Ok(None)], true)
            .authenticate(&Credentials::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.name, "system:anonymous");
        assert_eq!(user.groups, vec!["system:unauthenticated"]);
    }

    #[tokio::test]
    async fn no_credentials_without_anonymous_auth_is_unauthenticated() {
        assert_eq!(
            chain(vec![Ok(None)], false)
                .authenticate(&Credentials::default())
                .await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn a_bearer_token_no_authenticator_accepts_is_rejected_even_with_anonymous_auth() {
        let creds = Credentials {
            bearer_token: Some("abc"),
            ..Default::default()
        };
        assert_eq!(
            chain(vec![Ok(None)], true).authenticate(&creds).await,
            Err(AuthError::Invalid("invalid bearer token".into()))
        );
    }

    #[tokio::test]
    async fn rejected_credentials_are_not_downgraded_to_anonymous() {
        let c = chain(vec![Err(AuthError::Invalid("bad token".into()))], true);
        assert_eq!(
            c.authenticate(&Credentials::default()).await,
            Err(AuthError::Invalid("bad token".into()))
        );
    }
}
