//! RBAC escalation prevention for writes of Roles, ClusterRoles and their bindings, as upstream's RBAC storage
//! enforces it: a user may only grant permissions they hold themselves, unless they may `escalate` the role
//! (for role writes) or `bind` it (for binding writes). `system:masters` is always allowed.
//!
//! Coverage is checked by asking the authorizer about every (verb, group, resource, name) combination a rule
//! grants, with `*` asked literally, so only a held `*` covers a granted `*`.

use super::objects::{self, str_at, strings_at};
use super::rbac::GROUP;
use super::{Attributes, Authorizer, Decision, ObjectReader, UserInfo};
use crate::auth::authorizers::SYSTEM_PRIVILEGED_GROUP;
use api::ApiError;
use serde_json::Value;

async fn allowed(authz: &dyn Authorizer, attrs: &Attributes) -> bool {
    authz.authorize(attrs).await == Decision::Allow
}

/// Whether `user` holds everything `rule` grants, in `namespace` (`""` for cluster-wide rules).
pub async fn covers(authz: &dyn Authorizer, user: &UserInfo, namespace: &str, rule: &Value) -> bool {
    let verbs = strings_at(rule, &["verbs"]);
    let urls = strings_at(rule, &["nonResourceURLs"]);
    for path in &urls {
        for verb in &verbs {
            let attrs = Attributes {
                user: user.clone(),
                verb: verb.clone(),
                path: path.clone(),
                ..Default::default()
            };
            if !allowed(authz, &attrs).await {
                return false;
            }
        }
    }
    let resources = strings_at(rule, &["resources"]);
    let mut names = strings_at(rule, &["resourceNames"]);
    if names.is_empty() {
        names.push(String::new());
    }
    for group in strings_at(rule, &["apiGroups"]) {
        for combined in &resources {
            let (resource, subresource) = combined.split_once('/').unwrap_or((combined, ""));
            for verb in &verbs {
                for name in &names {
                    let attrs = Attributes {
                        user: user.clone(),
                        verb: verb.clone(),
                        namespace: namespace.into(),
                        api_group: group.clone(),
                        resource: resource.into(),
                        subresource: subresource.into(),
                        name: name.clone(),
                        resource_request: true,
                        ..Default::default()
                    };
                    if !allowed(authz, &attrs).await {
                        return false;
                    }
                }
            }
        }
    }
    true
}

fn not_held(resource: &str, name: &str, user: &UserInfo, missing: &[Value]) -> ApiError {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let rules: Vec<String> = missing.iter().map(Value::to_string).collect();
    ApiError::ForbiddenMessage {
        resource: api::GroupResource::new(GROUP, resource),
        name: name.into(),
        message: format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            groups.join(" "),
            rules.join("\n")
        ),
    }
}

async fn uncovered(authz: &dyn Authorizer, user: &UserInfo, namespace: &str, rules: &[Value]) -> Vec<Value> {
    let mut missing = Vec::new();
    for rule in rules {
        if !covers(authz, user, namespace, rule).await {
            missing.push(rule.clone());
        }
    }
    missing
}

fn verb_on(user: &UserInfo, verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        namespace: namespace.into(),
        api_group: GROUP.into(),
        resource: resource.into(),
        name: name.into(),
        resource_request: true,
        ..Default::default()
    }
}

/// Checks a create or update of a Role (`namespace` set) or ClusterRole (`namespace` empty) by `user`.
pub async fn confirm_role_write(
    authz: &dyn Authorizer,
    user: &UserInfo,
    namespace: &str,
    role: &Value,
) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == SYSTEM_PRIVILEGED_GROUP) {
        return Ok(());
    }
    let resource = if namespace.is_empty() {
        "clusterroles"
    } else {
        "roles"
    };
    let name = objects::name(role);
    if allowed(authz, &verb_on(user, "escalate", resource, namespace, name)).await {
        return Ok(());
    }
    let missing = uncovered(authz, user, namespace, objects::array_at(role, &["rules"])).await;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(not_held(resource, name, user, &missing))
    }
}

/// Checks a create or update of a RoleBinding (`namespace` set) or ClusterRoleBinding (`namespace` empty) by
/// `user`: allowed with `bind` on the referenced role, or when the user holds all of its rules.
pub async fn confirm_binding_write(
    authz: &dyn Authorizer,
    reader: &dyn ObjectReader,
    user: &UserInfo,
    namespace: &str,
    binding: &Value,
) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == SYSTEM_PRIVILEGED_GROUP) {
        return Ok(());
    }
    let binding_resource = if namespace.is_empty() {
        "clusterrolebindings"
    } else {
        "rolebindings"
    };
    let role_name = str_at(binding, &["roleRef", "name"]);
    let (role_resource, role_ns) = match str_at(binding, &["roleRef", "kind"]) {
        "Role" => ("roles", Some(namespace)),
        _ => ("clusterroles", None),
    };
    if allowed(authz, &verb_on(user, "bind", role_resource, namespace, role_name)).await {
        return Ok(());
    }
    let role = reader
        .get(&objects::gr(GROUP, role_resource), role_ns, role_name)
        .await?
        .ok_or_else(|| ApiError::not_found(&objects::gr(GROUP, role_resource), role_name))?;
    let missing = uncovered(authz, user, namespace, objects::array_at(&role, &["rules"])).await;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(not_held(binding_resource, objects::name(binding), user, &missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authorizers::{build, parse_modes};
    use crate::auth::testutil::{MemoryReader, user};
    use serde_json::json;
    use std::sync::Arc;

    fn setup() -> (Arc<MemoryReader>, crate::auth::authorizers::AuthorizerChain) {
        let r = Arc::new(MemoryReader::new().with_bootstrap_policy());
        r.put(
            GROUP,
            "rolebindings",
            json!({"metadata": {"namespace": "dev", "name": "alice-admin"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "User", "name": "alice"}]}),
        );
        let chain = build(&parse_modes("RBAC").unwrap(), r.clone());
        (r, chain)
    }

    #[tokio::test]
    async fn a_namespace_admin_may_grant_what_they_hold_but_not_more() {
        let (_, authz) = setup();
        let alice = user("alice", &["system:authenticated"]);
        let ok = json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]});
        assert_eq!(confirm_role_write(&authz, &alice, "dev", &ok).await, Ok(()));
        let too_much = json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
        let err = confirm_role_write(&authz, &alice, "dev", &too_much)
            .await
            .unwrap_err();
        assert!(err.message().starts_with(
            r#"roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held"#
        ), "{}", err.message());
        assert!(confirm_role_write(&authz, &alice, "prod", &ok).await.is_err());
    }

    #[tokio::test]
    async fn binding_cluster_admin_needs_bind_or_its_permissions() {
        let (reader, authz) = setup();
        let alice = user("alice", &["system:authenticated"]);
        let b = |role: &str| {
            json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": "mallory"}]})
        };
        assert_eq!(
            confirm_binding_write(&authz, reader.as_ref(), &alice, "dev", &b("view")).await,
            Ok(())
        );
        assert!(
            confirm_binding_write(&authz, reader.as_ref(), &alice, "dev", &b("cluster-admin"))
                .await
                .is_err()
        );
        let root = user("root", &["system:masters"]);
        assert_eq!(
            confirm_binding_write(&authz, reader.as_ref(), &root, "", &b("cluster-admin")).await,
            Ok(())
        );
    }
}
