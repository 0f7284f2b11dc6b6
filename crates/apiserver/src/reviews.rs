//! Resources that are answered rather than stored: TokenReview, SubjectAccessReview, SelfSubjectAccessReview,
//! LocalSubjectAccessReview, SelfSubjectRulesReview, and TokenRequest (`serviceaccounts/<name>/token`).

use api::{ApiError, ResourceInfo};
use serde_json::{Value, json};

use crate::auth::{UserInfo, reviews};
use crate::rest::{Reply, Target, check_type, decode};
use crate::state::AppState;

/// `POST` of a review kind.
pub async fn create(
    state: &AppState,
    info: &ResourceInfo,
    user: &UserInfo,
    namespace: Option<&str>,
    body: Value,
) -> Result<Reply, ApiError> {
    let mut obj = check_type(info, &info.kind, &info.api_version(), body)?;
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let sec = &state.security;
    let status = match info.kind.as_str() {
        "SelfSubjectAccessReview" => {
            let attrs = reviews::attributes_from_spec(&spec, user.clone(), None);
            reviews::review_access(sec.authorizer.as_ref(), &attrs).await
        }
        "SubjectAccessReview" => {
            let attrs = reviews::attributes_from_spec(&spec, reviews::user_from_spec(&spec), None);
            reviews::review_access(sec.authorizer.as_ref(), &attrs).await
        }
        "LocalSubjectAccessReview" => {
            let attrs = reviews::attributes_from_spec(&spec, reviews::user_from_spec(&spec), namespace);
            obj["metadata"]["namespace"] = json!(namespace.unwrap_or(""));
            reviews::review_access(sec.authorizer.as_ref(), &attrs).await
        }
        "SelfSubjectRulesReview" => {
            let rbac = crate::auth::rbac::RbacAuthorizer::new(sec.reader.clone());
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            reviews::review_rules(&rbac, user, ns).await
        }
        "TokenReview" => reviews::review_token(sec.authenticator.as_ref(), &spec, &sec.api_audiences).await,
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

/// `POST serviceaccounts/<name>/token`, signed with `--service-account-signing-key-file`.
pub async fn token_request(state: &AppState, t: &Target, body: Value) -> Result<Reply, ApiError> {
    let sec = &state.security;
    let Some(signer) = &sec.signer else {
        return Err(ApiError::MethodNotAllowed {
            resource: t.resource(),
            action: "create token (no --service-account-signing-key-file configured)".into(),
        });
    };
    let key = t
        .info
        .storage_key(t.namespace.as_deref(), t.name.as_deref().unwrap_or(""));
    let key = key.ok_or_else(|| ApiError::internal("not stored"))?;
    let sa = state
        .store
        .get(&key)
        .await
        .map_err(|e| crate::error::store_error(&t.resource(), t.name.as_deref().unwrap_or(""), e))?;
    let sa = decode(&sa)?;
    let jti = crate::auth::serviceaccount::new_jti(&mut rand::thread_rng());
    let out = crate::auth::serviceaccount::serve_token_request(
        signer,
        sec.reader.as_ref(),
        &sa,
        &body,
        &sec.api_audiences,
        state.clock.now(),
        &jti,
    )
    .await?;
    Ok(Reply { code: 201, body: out })
}
