//! RBAC authorization with upstream's semantics: ClusterRoleBindings grant their ClusterRole everywhere,
//! RoleBindings grant a Role or ClusterRole in their namespace; a rule matches on verbs, apiGroups, resources
//! (`*`, `resource/subresource`, `*/subresource`), resourceNames, or nonResourceURLs (`*` and `prefix*`).
//! RBAC only allows: when nothing matches it has no opinion, and the reason reports dangling role references as
//! upstream does (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found`). `aggregationRule` is not evaluated.

use super::objects::{self, str_at, strings_at};
use super::serviceaccount;
use super::{Attributes, Authorizer, Decision, ObjectReader, UserInfo};
use api::ApiError;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Arc;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Reads Roles, ClusterRoles and their bindings through an [`ObjectReader`] on every decision.
#[derive(Clone)]
pub struct RbacAuthorizer {
    reader: Arc<dyn ObjectReader>,
}

impl std::fmt::Debug for RbacAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RbacAuthorizer")
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == want)
}

fn has_or_star(list: &[String], want: &str) -> bool {
    list.iter().any(|v| v == "*" || v == want)
}

/// Whether one PolicyRule (JSON) allows the request.
pub fn rule_allows(attrs: &Attributes, rule: &Value) -> bool {
    if !has_or_star(&strings_at(rule, &["verbs"]), &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return strings_at(rule, &["nonResourceURLs"]).iter().any(|url| {
            url == "*"
                || *url == attrs.path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| attrs.path.starts_with(prefix))
        });
    }
    if !has_or_star(&strings_at(rule, &["apiGroups"]), &attrs.api_group) {
        return false;
    }
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let resource_ok = strings_at(rule, &["resources"]).iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty() && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = strings_at(rule, &["resourceNames"]);
    names.is_empty() || has(&names, &attrs.name)
}

/// Whether a binding subject names `user`. `binding_namespace` is the RoleBinding's namespace (`""` for a
/// ClusterRoleBinding); a ServiceAccount subject without a namespace defaults to it.
pub fn subject_applies(subject: &Value, user: &UserInfo, binding_namespace: &str) -> bool {
    let name = str_at(subject, &["name"]);
    match str_at(subject, &["kind"]) {
        "User" => user.name == name,
        "Group" => has(&user.groups, name),
        "ServiceAccount" => {
            let ns = match str_at(subject, &["namespace"]) {
                "" => binding_namespace,
                ns => ns,
            };
            !ns.is_empty() && user.name == serviceaccount::username(ns, name)
        }
        _ => false,
    }
}

impl RbacAuthorizer {
    pub fn new(reader: Arc<dyn ObjectReader>) -> Self {
        Self { reader }
    }

    /// The rules a binding grants, or the error upstream reports for a missing role.
    async fn role_rules(&self, binding: &Value, binding_namespace: &str) -> Result<Vec<Value>, ApiError> {
        let role_name = str_at(binding, &["roleRef", "name"]);
        let (resource, ns) = match str_at(binding, &["roleRef", "kind"]) {
            "ClusterRole" => ("clusterroles", None),
            "Role" if !binding_namespace.is_empty() => ("roles", Some(binding_namespace)),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unsupported role reference kind: {other:?}"
                )));
            }
        };
        let gr = objects::gr(GROUP, resource);
        match self.reader.get(&gr, ns, role_name).await {
            Ok(Some(role)) => Ok(objects::array_at(&role, &["rules"]).to_vec()),
            // Upstream's listers name the resource in the singular here.
            Ok(None) => Err(ApiError::not_found(
                &objects::gr(GROUP, resource.trim_end_matches('s')),
                role_name,
            )),
            Err(e) => Err(e),
        }
    }

    /// Every rule granted to `user` in `namespace` (cluster-wide bindings too), and the errors met on the way
    /// (dangling role references), for SelfSubjectRulesReview.
    pub async fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Value>, Vec<ApiError>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for (binding, ns) in self.bindings(namespace, &mut errors).await {
            if objects::array_at(&binding, &["subjects"])
                .iter()
                .any(|s| subject_applies(s, user, &ns))
            {
                match self.role_rules(&binding, &ns).await {
                    Ok(r) => rules.extend(r),
                    Err(e) => errors.push(e),
                }
            }
        }
        (rules, errors)
    }

    /// ClusterRoleBindings, then the RoleBindings of `namespace`, each with its namespace (`""` for cluster ones).
    async fn bindings(&self, namespace: &str, errors: &mut Vec<ApiError>) -> Vec<(Value, String)> {
        let mut bindings: Vec<(Value, String)> = Vec::new();
        match self
            .reader
            .list(&objects::gr(GROUP, "clusterrolebindings"), None)
            .await
        {
            Ok(list) => bindings.extend(list.into_iter().map(|b| (b, String::new()))),
            // Without storage every further read would wait out its own deadline too.
            Err(e @ ApiError::ServiceUnavailable(_)) => {
                errors.push(e);
                return bindings;
            }
            Err(e) => errors.push(e),
        }
        if !namespace.is_empty() {
            match self
                .reader
                .list(&objects::gr(GROUP, "rolebindings"), Some(namespace))
                .await
            {
                Ok(list) => bindings.extend(list.into_iter().map(|b| (b, namespace.to_string()))),
                Err(e) => errors.push(e),
            }
        }
        bindings
    }

    /// Walks every binding that applies to the user until a rule allows (`Ok`), collecting errors otherwise.
    async fn visit(&self, attrs: &Attributes, errors: &mut Vec<ApiError>) -> bool {
        let bindings = self.bindings(&attrs.namespace, errors).await;
        for (binding, ns) in &bindings {
            let applies = objects::array_at(binding, &["subjects"])
                .iter()
                .any(|s| subject_applies(s, &attrs.user, ns));
            if !applies {
                continue;
            }
            match self.role_rules(binding, ns).await {
                Ok(rules) => {
                    if rules.iter().any(|r| rule_allows(attrs, r)) {
                        return true;
                    }
                }
                Err(e @ ApiError::ServiceUnavailable(_)) => {
                    errors.push(e);
                    return false;
                }
                Err(e) => errors.push(e),
            }
        }
        false
    }
}

#[async_trait]
impl Authorizer for RbacAuthorizer {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        self.authorize_with_reason(attrs).await.0
    }

    async fn authorize_with_reason(&self, attrs: &Attributes) -> (Decision, String) {
        let mut errors = Vec::new();
        if self.visit(attrs, &mut errors).await {
            return (Decision::Allow, String::new());
        }
        if let Some(e) = errors
            .iter()
            .find(|e| matches!(e, ApiError::ServiceUnavailable(_)))
        {
            let reason = format!("RBAC: {}", e.message());
            return (Decision::Unavailable(reason.clone()), reason);
        }
        let errors: Vec<String> = errors.iter().map(ApiError::message).collect();
        let reason = match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        };
        (Decision::NoOpinion, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::{MemoryReader, attrs, user};
    use serde_json::json;

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        r.put(GROUP, "roles", json!({"metadata": {"namespace": "dev", "name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]}));
        r.put(
            GROUP,
            "rolebindings",
            json!({"metadata": {"namespace": "dev", "name": "alice-reads"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ci"}]}),
        );
        r.put(GROUP, "clusterroles", json!({"metadata": {"name": "cm-one"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get", "update"]},
                      {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["patch"]},
                      {"nonResourceURLs": ["/healthz", "/logs/*"], "verbs": ["get"]}]}));
        r.put(
            GROUP,
            "clusterrolebindings",
            json!({"metadata": {"name": "ops-cm"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "cm-one"},
            "subjects": [{"kind": "Group", "name": "ops"}]}),
        );
        r.put(
            GROUP,
            "rolebindings",
            json!({"metadata": {"namespace": "dev", "name": "dangling"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "bob"}]}),
        );
        r
    }

    async fn decide(a: &Attributes) -> (Decision, String) {
        RbacAuthorizer::new(Arc::new(reader()))
            .authorize_with_reason(a)
            .await
    }

    #[tokio::test]
    async fn a_role_binding_grants_its_role_in_its_namespace_only() {
        let alice = user("alice", &["system:authenticated"]);
        assert_eq!(
            decide(&attrs(&alice, "list", "", "pods", "dev", "")).await.0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&alice, "get", "", "pods/log", "dev", "p")).await.0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&alice, "list", "", "pods", "prod", "")).await.0,
            Decision::NoOpinion
        );
        assert_eq!(
            decide(&attrs(&alice, "delete", "", "pods", "dev", "p")).await.0,
            Decision::NoOpinion
        );
        assert_eq!(
            decide(&attrs(&alice, "get", "", "pods/exec", "dev", "p")).await.0,
            Decision::NoOpinion
        );
    }

    #[tokio::test]
    async fn a_service_account_subject_without_namespace_means_the_binding_namespace() {
        let ci = user("system:serviceaccount:dev:ci", &["system:serviceaccounts"]);
        assert_eq!(
            decide(&attrs(&ci, "get", "", "pods", "dev", "p")).await.0,
            Decision::Allow
        );
        let other = user("system:serviceaccount:prod:ci", &["system:serviceaccounts"]);
        assert_eq!(
            decide(&attrs(&other, "get", "", "pods", "dev", "p")).await.0,
            Decision::NoOpinion
        );
    }

    #[tokio::test]
    async fn resource_names_and_subresource_wildcards_match_as_upstream() {
        let op = user("carol", &["ops"]);
        assert_eq!(
            decide(&attrs(&op, "get", "", "configmaps", "x", "one")).await.0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&op, "get", "", "configmaps", "x", "two")).await.0,
            Decision::NoOpinion
        );
        // A rule with resourceNames never allows a list (no name).
        assert_eq!(
            decide(&attrs(&op, "list", "", "configmaps", "x", "")).await.0,
            Decision::NoOpinion
        );
        assert_eq!(
            decide(&attrs(&op, "patch", "apps", "deployments/scale", "x", "d"))
                .await
                .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&op, "patch", "apps", "deployments", "x", "d"))
                .await
                .0,
            Decision::NoOpinion
        );
    }

    #[tokio::test]
    async fn non_resource_urls_match_exactly_or_by_star_prefix() {
        let op = user("carol", &["ops"]);
        let path = |p: &str| Attributes {
            user: op.clone(),
            verb: "get".into(),
            path: p.into(),
            ..Default::default()
        };
        assert_eq!(decide(&path("/healthz")).await.0, Decision::Allow);
        assert_eq!(decide(&path("/logs/kube.log")).await.0, Decision::Allow);
        assert_eq!(decide(&path("/healthz/etcd")).await.0, Decision::NoOpinion);
    }

    #[tokio::test]
    async fn a_binding_to_a_missing_role_is_reported_in_the_reason() {
        let bob = user("bob", &[]);
        let (d, reason) = decide(&attrs(&bob, "get", "", "pods", "dev", "p")).await;
        assert_eq!(d, Decision::NoOpinion);
        assert_eq!(
            reason,
            r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
        );
    }

    /// A store that has lost its quorum.
    struct Unreadable;

    #[async_trait]
    impl ObjectReader for Unreadable {
        async fn get(
            &self,
            _: &api::GroupResource,
            _: Option<&str>,
            _: &str,
        ) -> Result<Option<Value>, ApiError> {
            Err(ApiError::ServiceUnavailable(
                "storage unavailable: no leader".into(),
            ))
        }
        async fn list(&self, _: &api::GroupResource, _: Option<&str>) -> Result<Vec<Value>, ApiError> {
            Err(ApiError::ServiceUnavailable(
                "storage unavailable: no leader".into(),
            ))
        }
    }

    #[tokio::test]
    async fn unreadable_bindings_make_the_decision_unavailable_rather_than_a_denial() {
        let rbac = RbacAuthorizer::new(Arc::new(Unreadable));
        let (decision, _) = rbac
            .authorize_with_reason(&attrs(&user("alice", &[]), "create", "", "configmaps", "dev", ""))
            .await;
        let Decision::Unavailable(reason) = decision else {
            panic!("expected Unavailable, got {decision:?}")
        };
        assert!(reason.contains("storage unavailable"), "{reason}");
    }
}
