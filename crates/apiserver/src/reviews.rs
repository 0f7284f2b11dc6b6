//! Resources that are answered rather than stored: TokenReview, SubjectAccessReview, SelfSubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectRulesReview, and TokenRequest (`serviceaccounts/<name>/token`).

use api::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use crate::rest::{Reply, Target, check_type};
use crate::security::{Attributes, Decision, UserInfo};
use crate::state::AppState;

fn attributes_from_spec(spec: &Value, user: UserInfo) -> Attributes {
    let s = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ra = spec.get("resourceAttributes");
    let nra = spec.get("nonResourceAttributes");
    match (ra, nra) {
        (Some(_), _) => Attributes {
            user,
            verb: s(ra, "verb"),
            namespace: s(ra, "namespace"),
            api_group: s(ra, "group"),
            api_version: s(ra, "version"),
            resource: s(ra, "resource"),
            subresource: s(ra, "subresource"),
            name: s(ra, "name"),
            resource_request: true,
            path: String::new(),
        },
        _ => Attributes {
            user,
            verb: s(nra, "verb"),
            path: s(nra, "path"),
            resource_request: false,
            ..Default::default()
        },
    }
}

fn decision_status(d: Decision) -> Value {
    match d {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion => json!({"allowed": false}),
    }
}

/// `POST` of a review kind.
pub fn create(
    state: &AppState,
    info: &ResourceInfo,
    user: &UserInfo,
    body: Value,
) -> Result<Reply, ApiError> {
    let mut obj = check_type(info, &info.kind, &info.api_version(), body)?;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match info.kind.as_str() {
        "SelfSubjectAccessReview" => decision_status(
            state
                .security
                .authorize(&attributes_from_spec(&spec, user.clone())),
        ),
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            let subject = UserInfo {
                name: spec.get("user").and_then(Value::as_str).unwrap_or("").into(),
                uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").into(),
                groups: spec
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|g| g.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
                ..Default::default()
            };
            decision_status(state.security.authorize(&attributes_from_spec(&spec, subject)))
        }
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        "TokenReview" => json!({"authenticated": false, "error": "token authentication is not enabled"}),
        _ => {
            return Err(ApiError::MethodNotAllowed {
                resource: info.group_resource(),
                action: "create".into(),
            });
        }
    };
    obj["status"] = status;
    Ok(Reply { code: 201, body: obj })
}

/// `POST serviceaccounts/<name>/token`: needs the service-account token signer.
pub fn token_request(_state: &AppState, t: &Target, _body: Value) -> Result<Reply, ApiError> {
    Err(ApiError::MethodNotAllowed {
        resource: t.resource(),
        action: "create token (no --service-account-signing-key-file configured)".into(),
    })
}
