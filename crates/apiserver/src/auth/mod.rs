//! Authentication and authorization for `kube-apiserver`.
//!
//! Purpose: turn a request's credentials into a [`UserInfo`] ([`Authenticator`]) and decide whether that user may do
//! what the request asks ([`Authorizer`]), with upstream's semantics and messages.
//!
//! Layout:
//! - this file: the interface the serving code calls ([`UserInfo`], [`Credentials`], [`Authenticator`],
//!   [`Attributes`], [`Decision`], [`Authorizer`], [`ObjectReader`]) and small shared helpers ([`forbidden`],
//!   [`Clock`]).
//! - authenticators: `x509` (verified client certificates), `bootstrap` (bootstrap tokens), `serviceaccount`
//!   (service-account JWTs: verification and the token signer), `union` (the chain, the authenticated-group adder
//!   and the anonymous fallback).
//! - authorizers: `rbac` (Role/ClusterRole/bindings read through an [`ObjectReader`]), `node` (the node
//!   authorizer), `authorizers` (`--authorization-mode` chain with the privileged `system:masters` group first).
//! - `policy`: [`bootstrap_policy`], upstream's default ClusterRoles, ClusterRoleBindings, Roles and RoleBindings;
//!   `policy::kubeadm_bootstrap_token_policy` for kubeadm's token RBAC.
//! - `escalation`: RBAC escalation checks for writes of roles and bindings (`escalate`/`bind` verbs).
//! - `reviews`: TokenReview and (Self/Local)SubjectAccessReview evaluation over the chains.
//! - `objects`: JSON field helpers and RFC 3339 times shared by the above.
//!
//! Entry points for the server (wiring, in request order):
//! 1. startup: `config::build_authenticator(&AuthenticationOptions { .. }, reader, system_clock())` (key files via
//!    `config::read_pem_files`), `authorizers::build(&authorizers::parse_modes(flag)?, reader)`,
//!    `serviceaccount::TokenSigner::from_pem(signing_key, first_issuer)`, and create the missing objects of
//!    [`bootstrap_policy`];
//! 2. per request: `authenticate(&Credentials { peer_certificates, bearer_token })`: `Err(_)` or `Ok(None)` is a 401;
//! 3. build [`Attributes`] (set `name` from a `metadata.name=` field selector on list/watch, as upstream's request
//!    info does) and `authorize`: anything but [`Decision::Allow`] is `forbidden(&attrs, reason)` (403);
//! 4. writes of roles and bindings also pass `escalation::confirm_role_write` / `confirm_binding_write`;
//!    `serviceaccounts/token` is `serviceaccount::serve_token_request`; token and access reviews are in `reviews`.

pub mod authorizers;
pub mod bootstrap;
pub mod config;
pub mod escalation;
pub mod node;
pub mod objects;
pub mod policy;
pub mod rbac;
pub mod reviews;
pub mod serviceaccount;
#[cfg(test)]
pub(crate) mod testutil;
pub mod union;
pub mod x509;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The authenticated identity of a request (upstream's `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request presented to prove who it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// DER certificates of the client chain (leaf first), already verified by TLS against `--client-ca-file`.
    pub peer_certificates: &'a [Vec<u8>],
    /// The token of an `Authorization: Bearer <token>` header, without the `Bearer ` prefix.
    pub bearer_token: Option<&'a str>,
}

/// Why presented credentials were rejected (the request gets a 401), or why they could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credentials were presented but are not valid (bad signature, expired, unknown token...).
    #[error("{0}")]
    Invalid(String),
    /// Checking failed for a reason other than the credentials (storage unavailable, ...).
    #[error("{0}")]
    Internal(String),
    /// Several authenticators rejected the request.
    #[error("[{}]", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Aggregate(Vec<AuthError>),
}

/// Turns credentials into a user. `Ok(None)`: these credentials are not of a kind this authenticator handles.
#[async_trait]
pub trait Authenticator: Send + Sync {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError>;
}

/// What a request wants to do (upstream's `authorizer.Attributes`).
///
/// Build it with `..Default::default()` so fields added later do not break callers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or for non-resource
    /// requests the lower-cased HTTP method (`get`, `post`, ...).
    pub verb: String,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub resource_request: bool,
    /// The URL path (used for non-resource requests).
    pub path: String,
    /// The raw `fieldSelector` query parameter of a list/watch (the node authorizer needs `spec.nodeName=`).
    pub field_selector: String,
    /// The raw `labelSelector` query parameter of a list/watch.
    pub label_selector: String,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied, with the reason appended to the Forbidden message (may be empty).
    Deny(String),
    /// This authorizer has no say; the next one in the chain decides.
    NoOpinion,
    /// The authorizer could not decide because the data it decides on (roles, bindings) could not be read: the
    /// request fails with 503, not with a 403 that would blame the user for an outage.
    Unavailable(String),
}

#[async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, attrs: &Attributes) -> Decision;

    /// The decision with the reason upstream reports even for "no opinion" (it ends up in the 403 message when no
    /// authorizer allows). Authorizers that explain themselves override this.
    async fn authorize_with_reason(&self, attrs: &Attributes) -> (Decision, String) {
        let decision = self.authorize(attrs).await;
        let reason = match &decision {
            Decision::Deny(r) | Decision::Unavailable(r) => r.clone(),
            _ => String::new(),
        };
        (decision, reason)
    }
}

/// Read access to stored objects; the serving engineer implements it over the store.
#[async_trait]
pub trait ObjectReader: Send + Sync {
    /// One object, `None` if it does not exist. `namespace` is `None` for cluster-scoped resources.
    async fn get(
        &self,
        resource: &api::GroupResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, api::ApiError>;
    /// Every object of a resource; `namespace` `None` lists across all namespaces (or a cluster-scoped resource).
    async fn list(
        &self,
        resource: &api::GroupResource,
        namespace: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, api::ApiError>;
}

/// The wall clock, injected so tests can pin time.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// The 403 for a request no authorizer allowed: upstream's sentence (`pods is forbidden: User "x" cannot list
/// resource "pods" in API group "" in the namespace "default"`), with `reason` appended when not empty.
pub fn forbidden(attrs: &Attributes, reason: &str) -> api::ApiError {
    let denied = if attrs.resource_request {
        api::DeniedRequest::Resource {
            user: attrs.user.name.clone(),
            verb: attrs.verb.clone(),
            group: attrs.api_group.clone(),
            resource: attrs.resource.clone(),
            subresource: attrs.subresource.clone(),
            namespace: attrs.namespace.clone(),
            name: attrs.name.clone(),
        }
    } else {
        api::DeniedRequest::NonResource {
            user: attrs.user.name.clone(),
            verb: attrs.verb.clone(),
            path: attrs.path.clone(),
        }
    };
    api::ApiError::Forbidden {
        denied,
        reason: reason.to_string(),
    }
}

/// Upstream's bootstrap RBAC policy: every default ClusterRole, ClusterRoleBinding, Role and RoleBinding as JSON
/// objects (`rbac.authorization.k8s.io/v1`), labelled `kubernetes.io/bootstrapping: rbac-defaults` and annotated
/// `rbac.authorization.kubernetes.io/autoupdate: "true"`. The server creates the missing ones at startup.
pub fn bootstrap_policy() -> Vec<serde_json::Value> {
    policy::bootstrap_policy()
}
