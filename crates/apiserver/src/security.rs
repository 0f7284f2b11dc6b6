//! The authentication and authorization steps every request goes through.
//!
//! Until the authenticators and authorizers of [`crate::auth`] are wired in, this holds the minimal policy the
//! server needs to be usable: a verified client certificate names the user (CN) and groups (O), requests without
//! credentials are `system:anonymous` when anonymous auth is enabled, and every request is allowed.

use std::collections::BTreeMap;

use api::ApiError;

/// Who made a request (upstream's `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub resource_request: bool,
    pub path: String,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion,
}

/// The configured request-security policy.
#[derive(Debug, Clone)]
pub struct Security {
    pub anonymous_auth: bool,
}

impl Security {
    /// The user behind the request's credentials; `Unauthorized` when there are none and anonymous auth is off.
    pub fn authenticate(
        &self,
        peer_certificates: &[Vec<u8>],
        bearer_token: Option<&str>,
    ) -> Result<UserInfo, ApiError> {
        if let Some(der) = peer_certificates.first()
            && let Some(user) = user_from_certificate(der)
        {
            return Ok(user);
        }
        if bearer_token.is_some() {
            // Token authenticators are not wired in yet: an unknown token is a failed login, as upstream.
            return Err(ApiError::Unauthorized(String::new()));
        }
        if self.anonymous_auth {
            return Ok(UserInfo {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
                ..Default::default()
            });
        }
        Err(ApiError::Unauthorized(String::new()))
    }

    pub fn authorize(&self, _attrs: &Attributes) -> Decision {
        Decision::Allow
    }
}

/// CN is the user name and each O a group, as upstream's x509 authenticator reads client certificates.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo {
        name,
        groups,
        ..Default::default()
    })
}
