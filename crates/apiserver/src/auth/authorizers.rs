//! The authorizer chain of `--authorization-mode`: the privileged `system:masters` group is always allowed first
//! (upstream's privileged-groups authorizer), then each mode in order; the first Allow or Deny wins, and when all
//! have no opinion the request is denied with their reasons joined by newlines, as upstream's union does.

use super::node::NodeAuthorizer;
use super::rbac::RbacAuthorizer;
use super::{Attributes, Authorizer, Decision, ObjectReader};
use async_trait::async_trait;
use std::sync::Arc;

pub const SYSTEM_PRIVILEGED_GROUP: &str = "system:masters";

/// One `--authorization-mode` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error("authorization-mode {0:?} is not a valid mode")]
    Unknown(String),
    #[error("authorization-mode {0:?} has already been specified")]
    Duplicate(String),
}

/// Parses `--authorization-mode` (comma separated: `Node,RBAC`, `AlwaysAllow`, `AlwaysDeny`).
pub fn parse_modes(flag: &str) -> Result<Vec<Mode>, ModeError> {
    let mut modes = Vec::new();
    for name in flag.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mode = match name {
            "AlwaysAllow" => Mode::AlwaysAllow,
            "AlwaysDeny" => Mode::AlwaysDeny,
            "Node" => Mode::Node,
            "RBAC" => Mode::Rbac,
            other => return Err(ModeError::Unknown(other.into())),
        };
        if modes.contains(&mode) {
            return Err(ModeError::Duplicate(name.into()));
        }
        modes.push(mode);
    }
    Ok(modes)
}

struct AlwaysAllow;
#[async_trait]
impl Authorizer for AlwaysAllow {
    async fn authorize(&self, _: &Attributes) -> Decision {
        Decision::Allow
    }
}

struct AlwaysDeny;
#[async_trait]
impl Authorizer for AlwaysDeny {
    async fn authorize(&self, _: &Attributes) -> Decision {
        Decision::NoOpinion
    }
    async fn authorize_with_reason(&self, _: &Attributes) -> (Decision, String) {
        (Decision::NoOpinion, "Everything is forbidden.".into())
    }
}

struct PrivilegedGroups;
#[async_trait]
impl Authorizer for PrivilegedGroups {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.groups.iter().any(|g| g == SYSTEM_PRIVILEGED_GROUP) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

/// The server's authorizer: answers only [`Decision::Allow`] or [`Decision::Deny`] (with the reason to append to
/// the 403 message, see [`super::forbidden`]).
#[derive(Clone)]
pub struct AuthorizerChain {
    authorizers: Vec<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for AuthorizerChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizerChain")
            .field("authorizers", &self.authorizers.len())
            .finish()
    }
}

/// The chain for `modes`, reading RBAC objects and pods through `reader`.
pub fn build(modes: &[Mode], reader: Arc<dyn ObjectReader>) -> AuthorizerChain {
    let mut authorizers: Vec<Arc<dyn Authorizer>> = vec![Arc::new(PrivilegedGroups)];
    for mode in modes {
        authorizers.push(match mode {
            Mode::AlwaysAllow => Arc::new(AlwaysAllow),
            Mode::AlwaysDeny => Arc::new(AlwaysDeny),
            Mode::Node => Arc::new(NodeAuthorizer::new(reader.clone())),
            Mode::Rbac => Arc::new(RbacAuthorizer::new(reader.clone())),
        });
    }
    AuthorizerChain { authorizers }
}

#[async_trait]
impl Authorizer for AuthorizerChain {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        let mut reasons = Vec::new();
        let mut unavailable = None;
        for authorizer in &self.authorizers {
            let (decision, reason) = authorizer.authorize_with_reason(attrs).await;
            match decision {
                Decision::Allow => return Decision::Allow,
                Decision::Deny(r) => return Decision::Deny(r),
                // A later authorizer may still allow; only if none does is the outage the answer.
                Decision::Unavailable(r) => {
                    unavailable.get_or_insert(r);
                }
                Decision::NoOpinion if !reason.is_empty() => reasons.push(reason),
                Decision::NoOpinion => {}
            }
        }
        match unavailable {
            Some(r) => Decision::Unavailable(r),
            None => Decision::Deny(reasons.join("\n")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::{MemoryReader, attrs, user};

    fn chain(modes: &str) -> AuthorizerChain {
        build(
            &parse_modes(modes).unwrap(),
            Arc::new(MemoryReader::new().with_bootstrap_policy()),
        )
    }

    #[tokio::test]
    async fn system_masters_is_always_allowed() {
        let admin = user("root", &["system:masters"]);
        let a = attrs(&admin, "delete", "", "namespaces", "", "kube-system");
        assert_eq!(chain("Node,RBAC").authorize(&a).await, Decision::Allow);
        assert_eq!(chain("AlwaysDeny").authorize(&a).await, Decision::Allow);
    }

    #[tokio::test]
    async fn a_service_account_without_rbac_is_denied_with_upstreams_message() {
        let sa = crate::auth::serviceaccount::user_info("default", "default", "u");
        let mut sa_user = sa.clone();
        sa_user.groups.push("system:authenticated".into());
        let a = attrs(&sa_user, "list", "", "pods", "default", "");
        let Decision::Deny(reason) = chain("Node,RBAC").authorize(&a).await else {
            panic!("expected deny");
        };
        assert_eq!(
            crate::auth::forbidden(&a, &reason).message(),
            r#"pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default""#
        );
    }

    #[tokio::test]
    async fn node_reasons_reach_the_forbidden_message() {
        let k = user("system:node:node-1", &["system:nodes", "system:authenticated"]);
        let a = attrs(&k, "get", "", "nodes", "", "node-2");
        let Decision::Deny(reason) = chain("Node,RBAC").authorize(&a).await else {
            panic!("expected deny");
        };
        assert_eq!(
            crate::auth::forbidden(&a, &reason).message(),
            r#"nodes "node-2" is forbidden: User "system:node:node-1" cannot get resource "nodes" in API group "" at the cluster scope: node 'node-1' cannot read 'node-2', only its own Node object"#
        );
    }

    #[test]
    fn authorization_modes_parse_as_upstream_spells_them() {
        assert_eq!(parse_modes("Node,RBAC"), Ok(vec![Mode::Node, Mode::Rbac]));
        assert_eq!(parse_modes("Webhook"), Err(ModeError::Unknown("Webhook".into())));
        assert!(parse_modes("RBAC,RBAC").is_err());
    }
}
