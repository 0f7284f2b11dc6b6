//! Patches as the API server accepts them: JSON patch (RFC 6902), JSON merge patch (RFC 7386)
//! and strategic merge patch, all applied to `serde_json::Value` objects.
//!
//! [`apply_patch`] dispatches on [`PatchType`] (parsed from the request's `Content-Type`); the
//! list semantics strategic merge patch needs live in [`schema`], which OpenAPI generation and
//! server-side apply are meant to read too.

pub mod schema;
pub mod strategic;

use serde_json::Value;

use crate::registry::GroupKind;
use crate::status::{ApiError, FieldError, FieldErrorType};

pub use schema::{FieldSchema, ListType, lookup, root_type};
pub use strategic::strategic_merge;

/// The patch formats of `PATCH` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    /// Server-side apply; recognised so the server can answer it, not implemented here.
    Apply,
}

impl PatchType {
    pub const ALL_CONTENT_TYPES: [&'static str; 4] = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// From a `Content-Type` header; parameters such as `; charset=utf-8` are ignored.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        Some(match base.as_str() {
            "application/json-patch+json" => Self::Json,
            "application/merge-patch+json" => Self::Merge,
            "application/strategic-merge-patch+json" => Self::StrategicMerge,
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Self::Apply,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::StrategicMerge => "application/strategic-merge-patch+json",
            Self::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch document itself is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but does not fit the object (422).
    #[error("{0}")]
    Invalid(String),
    /// The kind has no strategic merge semantics (custom resources) or the type is not served.
    #[error("{0}")]
    Unsupported(String),
}

impl PatchError {
    /// The API error the server answers with for a patch of object `name` of `kind`.
    pub fn to_api_error(&self, kind: &GroupKind, name: &str) -> ApiError {
        match self {
            Self::BadRequest(m) => ApiError::BadRequest(m.clone()),
            Self::Invalid(m) => ApiError::invalid(
                kind,
                name,
                vec![FieldError {
                    kind: FieldErrorType::Invalid,
                    field: "patch".into(),
                    bad_value: None,
                    detail: m.clone(),
                }],
            ),
            Self::Unsupported(_) => ApiError::UnsupportedMediaType {
                accepted: vec![
                    PatchType::Json.content_type().into(),
                    PatchType::Merge.content_type().into(),
                ],
            },
        }
    }
}

/// RFC 6902: a list of `add`/`remove`/`replace`/`move`/`copy`/`test` operations.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::BadRequest(format!("invalid JSON patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| PatchError::Invalid(e.to_string()))?;
    Ok(doc)
}

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a patch body to an object of kind `group`/`kind`.
pub fn apply_patch(
    kind: PatchType,
    group: &str,
    object_kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => json_patch(original, patch),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::BadRequest(
                    "invalid JSON merge patch: not an object".into(),
                ));
            }
            Ok(merge_patch(original, patch))
        }
        PatchType::StrategicMerge => match root_type(group, object_kind) {
            Some(root) => strategic_merge(original, patch, Some(root)),
            None => Err(PatchError::Unsupported(format!(
                "strategic merge patch is not supported for {object_kind}{}",
                if group.is_empty() {
                    String::new()
                } else {
                    format!(".{group}")
                }
            ))),
        },
        PatchType::Apply => Err(PatchError::Unsupported(
            "server-side apply is not supported".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_map_to_patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }

    #[test]
    fn json_patch_applies_operations_in_order() {
        let out = json_patch(
            &json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}}),
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "test", "path": "/spec/replicas", "value": 3}
            ]),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 3}})
        );
    }

    #[test]
    fn json_patch_failures_are_reported() {
        assert!(matches!(
            json_patch(&json!({}), &json!({"op": "x"})),
            Err(PatchError::BadRequest(_))
        ));
        assert!(matches!(
            json_patch(&json!({}), &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            json_patch(
                &json!({"a": 1}),
                &json!([{"op": "test", "path": "/a", "value": 2}])
            ),
            Err(PatchError::Invalid(_))
        ));
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let out = merge_patch(
            &json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "x": 1}}),
            &json!({"spec": {"containers": [{"name": "c"}], "x": null}}),
        );
        assert_eq!(out, json!({"spec": {"containers": [{"name": "c"}]}}));
    }

    #[test]
    fn apply_patch_dispatches_and_refuses_strategic_for_custom_kinds() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "1"}]}});
        let smp = json!({"spec": {"containers": [{"name": "a", "image": "2"}]}});
        let out = apply_patch(PatchType::StrategicMerge, "", "Pod", &pod, &smp).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "2"}]));
        let err = apply_patch(
            PatchType::StrategicMerge,
            "example.com",
            "Widget",
            &json!({}),
            &json!({}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_api_error(&GroupKind::new("example.com", "Widget"), "w")
                .code(),
            415
        );
        let invalid = apply_patch(
            PatchType::Json,
            "apps",
            "Deployment",
            &json!({}),
            &json!([{"op": "remove", "path": "/x"}]),
        )
        .unwrap_err()
        .to_api_error(&GroupKind::new("apps", "Deployment"), "web");
        assert_eq!(invalid.code(), 422);
        assert!(
            invalid
                .message()
                .starts_with(r#"Deployment.apps "web" is invalid: patch: Invalid value: "#),
            "{}",
            invalid.message()
        );
        assert!(matches!(
            apply_patch(PatchType::Merge, "", "Pod", &pod, &json!([1])),
            Err(PatchError::BadRequest(_))
        ));
    }
}
