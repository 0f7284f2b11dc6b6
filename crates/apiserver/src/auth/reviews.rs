//! TokenReview (`authentication.k8s.io`) and SubjectAccessReview / SelfSubjectAccessReview /
//! LocalSubjectAccessReview / SelfSubjectRulesReview (`authorization.k8s.io`) evaluation: JSON `spec` in, JSON
//! `status` out, so the REST handlers only wrap them into the response object. `kubectl auth can-i` (and `--list`)
//! relies on these.

use super::objects::{str_at, strings_at};
use super::{Attributes, Authenticator, Authorizer, Credentials, Decision, UserInfo};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The `user` object of a TokenReview status (`authentication.k8s.io/v1 UserInfo`).
pub fn user_json(user: &UserInfo) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        u["extra"] = json!(user.extra);
    }
    u
}

/// Evaluates a TokenReview `spec` (`token`, `audiences`) with the server's authenticator; `api_audiences` are the
/// server's own (`--api-audiences`, defaulted), reported when the review names none.
pub async fn review_token(
    authenticator: &dyn Authenticator,
    spec: &Value,
    api_audiences: &[String],
) -> Value {
    let token = str_at(spec, &["token"]);
    if token.is_empty() {
        return json!({"authenticated": false, "error": "token is required"});
    }
    let creds = Credentials {
        bearer_token: Some(token),
        ..Default::default()
    };
    let requested = strings_at(spec, &["audiences"]);
    let audiences = if requested.is_empty() {
        api_audiences.to_vec()
    } else {
        requested
    };
    match authenticator.authenticate(&creds).await {
        Ok(Some(user)) => json!({"authenticated": true, "user": user_json(&user), "audiences": audiences}),
        Ok(None) => json!({"authenticated": false, "user": {}}),
        Err(e) => json!({"authenticated": false, "user": {}, "error": e.to_string()}),
    }
}

/// The user a SubjectAccessReview `spec` asks about (`user`, `uid`, `groups`, `extra`).
pub fn user_from_spec(spec: &Value) -> UserInfo {
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings_at(v, &[]))).collect())
        .unwrap_or_default();
    UserInfo {
        name: str_at(spec, &["user"]).into(),
        uid: str_at(spec, &["uid"]).into(),
        groups: strings_at(spec, &["groups"]),
        extra,
    }
}

/// The attributes an access review `spec` describes for `user` (`resourceAttributes` or
/// `nonResourceAttributes`). For a LocalSubjectAccessReview, pass its namespace as `namespace_override`.
pub fn attributes_from_spec(spec: &Value, user: UserInfo, namespace_override: Option<&str>) -> Attributes {
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let field_selector = str_at(r, &["fieldSelector", "rawSelector"]).to_string();
        let label_selector = str_at(r, &["labelSelector", "rawSelector"]).to_string();
        Attributes {
            user,
            verb: str_at(r, &["verb"]).into(),
            namespace: namespace_override.unwrap_or(str_at(r, &["namespace"])).into(),
            api_group: str_at(r, &["group"]).into(),
            api_version: str_at(r, &["version"]).into(),
            resource: str_at(r, &["resource"]).into(),
            subresource: str_at(r, &["subresource"]).into(),
            name: str_at(r, &["name"]).into(),
            resource_request: true,
            field_selector,
            label_selector,
            ..Default::default()
        }
    } else {
        let n = spec.get("nonResourceAttributes").cloned().unwrap_or(Value::Null);
        Attributes {
            user,
            verb: str_at(&n, &["verb"]).into(),
            path: str_at(&n, &["path"]).into(),
            resource_request: false,
            ..Default::default()
        }
    }
}

/// The `status` of an access review. `denied` is set only for an explicit deny, which none of the built-in
/// authorizers gives (like upstream's, they have no opinion instead).
pub async fn review_access(authorizer: &dyn Authorizer, attrs: &Attributes) -> Value {
    let (decision, reason) = authorizer.authorize_with_reason(attrs).await;
    let (allowed, reason) = match decision {
        Decision::Allow => (true, reason),
        Decision::Deny(r) | Decision::Unavailable(r) => (false, r),
        Decision::NoOpinion => (false, reason),
    };
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

/// The `status` of a SelfSubjectRulesReview for `user` in `namespace`: RBAC's rules split into resource and
/// non-resource rules. `incomplete` is true when a role could not be read, or when the node authorizer may grant
/// more than RBAC shows (users in `system:nodes`).
pub async fn review_rules(rbac: &super::rbac::RbacAuthorizer, user: &UserInfo, namespace: &str) -> Value {
    let (rules, errors) = rbac.rules_for(user, namespace).await;
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for rule in rules {
        let verbs = strings_at(&rule, &["verbs"]);
        let urls = strings_at(&rule, &["nonResourceURLs"]);
        if !urls.is_empty() {
            non_resource_rules.push(json!({"verbs": verbs, "nonResourceURLs": urls}));
        }
        let resources = strings_at(&rule, &["resources"]);
        if !resources.is_empty() {
            let mut r = json!({"verbs": verbs, "apiGroups": strings_at(&rule, &["apiGroups"]), "resources": resources});
            let names = strings_at(&rule, &["resourceNames"]);
            if !names.is_empty() {
                r["resourceNames"] = json!(names);
            }
            resource_rules.push(r);
        }
    }
    let is_node = super::node::node_identity(user).is_some();
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty() || is_node,
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(
            errors
                .iter()
                .map(api::ApiError::message)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authorizers::{build, parse_modes};
    use crate::auth::testutil::{MemoryReader, user};
    use crate::auth::union::AuthenticatorChain;
    use std::sync::Arc;

    #[tokio::test]
    async fn can_i_answers_yes_for_system_masters_and_no_for_a_bare_service_account() {
        let chain = build(
            &parse_modes("Node,RBAC").unwrap(),
            Arc::new(MemoryReader::new().with_bootstrap_policy()),
        );
        let spec =
            json!({"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}});
        let admin = attributes_from_spec(&spec, user("admin", &["system:masters"]), None);
        assert_eq!(review_access(&chain, &admin).await, json!({"allowed": true}));
        let sa = attributes_from_spec(
            &spec,
            user(
                "system:serviceaccount:default:default",
                &["system:serviceaccounts"],
            ),
            None,
        );
        assert_eq!(review_access(&chain, &sa).await, json!({"allowed": false}));
    }

    #[tokio::test]
    async fn a_local_review_takes_its_namespace_and_non_resource_reviews_their_path() {
        let spec = json!({"resourceAttributes": {"namespace": "x", "verb": "get", "resource": "pods", "name": "p"},
                          "user": "u", "groups": ["g"], "extra": {"k": ["v"]}});
        let a = attributes_from_spec(&spec, user_from_spec(&spec), Some("dev"));
        assert_eq!(
            (a.namespace.as_str(), a.name.as_str(), a.user.name.as_str()),
            ("dev", "p", "u")
        );
        assert_eq!(a.user.extra["k"], vec!["v"]);
        let n = attributes_from_spec(
            &json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
            user("u", &[]),
            None,
        );
        assert!(!n.resource_request);
        assert_eq!(n.path, "/healthz");
    }

    #[tokio::test]
    async fn a_rules_review_lists_what_rbac_grants_in_the_namespace() {
        let rbac =
            crate::auth::rbac::RbacAuthorizer::new(Arc::new(MemoryReader::new().with_bootstrap_policy()));
        let status = review_rules(&rbac, &user("anyone", &["system:authenticated"]), "default").await;
        assert_eq!(status["incomplete"], false);
        let self_review = status["resourceRules"].as_array().unwrap().iter().any(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "selfsubjectaccessreviews")
        });
        assert!(self_review, "{status}");
        assert!(
            status["nonResourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["nonResourceURLs"][0] == "/api")
        );
    }

    #[tokio::test]
    async fn a_token_review_of_a_bad_token_is_unauthenticated_with_an_error() {
        let authn = AuthenticatorChain::new(vec![], true);
        let status = review_token(&authn, &json!({"token": "nope"}), &[]).await;
        assert_eq!(status["authenticated"], false);
        assert_eq!(status["error"], "invalid bearer token");
    }
}
