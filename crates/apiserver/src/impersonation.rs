//! User impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`, `Impersonate-Extra-<key>`
//! headers, as `kubectl --as/--as-group` sends them): each requested attribute is authorized as the `impersonate`
//! verb for the authenticated user, then the request runs as the impersonated user, as upstream's filter does.

use std::collections::BTreeMap;

use api::ApiError;
use http::HeaderMap;

use crate::auth::{Attributes, UserInfo};
use crate::state::AppState;

const SA_PREFIX: &str = "system:serviceaccount:";

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// Upstream percent-encodes extra keys in header names.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(h) = key.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

fn check(user: &UserInfo, group: &str, resource: &str, namespace: &str, name: &str, sub: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: "impersonate".into(),
        namespace: namespace.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        resource_request: true,
        ..Default::default()
    }
}

/// The user the request acts as: `user` itself without impersonation headers, otherwise the impersonated user once
/// every requested attribute is allowed.
pub async fn apply(state: &AppState, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let name = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let groups = values(headers, "impersonate-group");
    let uid = headers
        .get("impersonate-uid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix("impersonate-extra-")
            && let Ok(v) = v.to_str()
        {
            extra.entry(unescape(key)).or_default().push(v.to_string());
        }
    }
    let Some(name) = name else {
        if !groups.is_empty() || !extra.is_empty() || uid.is_some() {
            let mut what: Vec<String> = groups.iter().map(|g| format!("group {g:?}")).collect();
            what.extend(extra.keys().map(|k| format!("extra {k:?}")));
            what.extend(uid.iter().map(|u| format!("uid {u:?}")));
            return Err(ApiError::bad_request(format!(
                "requested [{}] without impersonating a user",
                what.join(" ")
            )));
        }
        return Ok(user);
    };

    let mut implied_groups = Vec::new();
    let attrs = match name.strip_prefix(SA_PREFIX).and_then(|r| r.split_once(':')) {
        Some((ns, sa)) => {
            implied_groups = vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{ns}"),
            ];
            check(&user, "", "serviceaccounts", ns, sa, "")
        }
        None => check(&user, "", "users", "", &name, ""),
    };
    state.security.authorize(&attrs).await?;
    for g in &groups {
        state
            .security
            .authorize(&check(&user, "", "groups", "", g, ""))
            .await?;
    }
    if let Some(u) = &uid {
        state
            .security
            .authorize(&check(&user, "authentication.k8s.io", "uids", "", u, ""))
            .await?;
    }
    for (k, vs) in &extra {
        for v in vs {
            state
                .security
                .authorize(&check(&user, "authentication.k8s.io", "userextras", "", v, k))
                .await?;
        }
    }
    let mut groups = if groups.is_empty() { implied_groups } else { groups };
    if name != "system:anonymous" && !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    tracing::debug!(impersonator = %user.name, as_user = %name, "impersonating");
    Ok(UserInfo {
        name,
        uid: uid.unwrap_or_default(),
        groups,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_percent_decoded_and_lower_cased() {
        assert_eq!(unescape("Scopes%2Fa"), "scopes/a");
        assert_eq!(unescape("bad%zz"), "bad%zz");
    }
}
