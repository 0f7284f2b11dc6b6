//! Server-side field validation (`?fieldValidation=Strict|Warn|Ignore`): fields the kind's schema does not
//! declare are dropped from the object before it is stored, as upstream's decoding into Go types drops them, and
//! reported as a 400 `strict decoding error: unknown field "spec.foo"` (Strict), as `Warning` headers (Warn, the
//! default) or not at all (Ignore).
//!
//! The schemas are the OpenAPI definitions of the built-in kinds ([`crate::openapi::definitions`]); objects of
//! custom kinds are checked against their CRD's structural schema; free-form parts (`RawExtension`, maps) are
//! left alone.
//! Duplicate JSON fields are not detected.

use std::sync::OnceLock;

use api::{ApiError, ResourceInfo};
use serde_json::Value;

use crate::openapi::definitions::{self, Definitions, NoCustomSchemas};

/// What `fieldValidation` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ignore,
    Warn,
    Strict,
}

impl Mode {
    /// Parses the query parameter (default Warn, as upstream).
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got \"{other}\""
            ))),
        }
    }
}

fn builtin_definitions(registry: &api::Registry) -> &'static Definitions {
    // Built-in kinds' definitions never change at runtime; custom kinds are free-form here either way.
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(|| definitions::build(registry, &NoCustomSchemas))
}

fn resolve<'a>(defs: &'a Definitions, schema: &'a Value) -> Option<&'a Value> {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => defs.get(r.rsplit('/').next().unwrap_or(r)),
        None => Some(schema),
    }
}

fn walk(defs: &Definitions, schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    let Some(schema) = resolve(defs, schema) else {
        return;
    };
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                // `$`-keys are strategic-merge-patch directives (`$patch`, `$setElementOrder/...`), not fields.
                let extra: Vec<String> = map
                    .keys()
                    .filter(|k| !props.contains_key(*k) && !k.starts_with('$'))
                    .cloned()
                    .collect();
                for k in extra {
                    map.remove(&k);
                    unknown.push(if path.is_empty() { k } else { format!("{path}.{k}") });
                }
                for (k, v) in map.iter_mut() {
                    if let Some(s) = props.get(k) {
                        let p = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        walk(defs, s, v, &p, unknown);
                    }
                }
            } else if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                for (k, v) in map.iter_mut() {
                    walk(defs, s, v, &format!("{path}.{k}"), unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(defs, s, v, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Drops the fields `info`'s kind does not declare from `obj` and returns their paths, in the body's order.
pub fn prune(registry: &api::Registry, info: &ResourceInfo, obj: &mut Value) -> Vec<String> {
    if let Some(custom) = &info.custom {
        return match &custom.schema {
            Some(schema) => api::crd::schema::prune(schema, obj),
            None => Vec::new(),
        };
    }
    let defs = builtin_definitions(registry);
    let gvk = info.gvk();
    if definitions::builtin_type(&gvk).is_none() {
        return Vec::new();
    }
    let Some(schema) = defs.get(&definitions::definition_name(&gvk)) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    walk(defs, schema, obj, "", &mut unknown);
    unknown
}

/// Applies `mode` to the unknown fields found: Strict fails, Warn returns the warnings to send.
pub fn enforce(mode: Mode, unknown: Vec<String>) -> Result<Vec<String>, ApiError> {
    let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
    match mode {
        _ if msgs.is_empty() => Ok(Vec::new()),
        Mode::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            msgs.join(", ")
        ))),
        Mode::Warn => Ok(msgs),
        Mode::Ignore => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments(r: &api::Registry) -> ResourceInfo {
        r.by_gvr(&api::GroupVersionResource::new("apps", "v1", "deployments"))
            .cloned()
            .unwrap()
    }

    #[test]
    fn unknown_fields_are_dropped_and_named_by_their_path() {
        let r = api::Registry::builtin();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "labels": {"any": "x"}},
            "spec": {"foo": 1, "replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i", "bar": true}]}}}});
        let unknown = prune(&r, &deployments(&r), &mut d);
        assert_eq!(unknown, ["spec.foo", "spec.template.spec.containers[0].bar"]);
        assert!(d["spec"].get("foo").is_none());
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["labels"]["any"], "x");
        let err = enforce(Mode::Strict, unknown.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"strict decoding error: unknown field "spec.foo", unknown field "spec.template.spec.containers[0].bar""#
        );
        assert_eq!(enforce(Mode::Warn, unknown.clone()).unwrap().len(), 2);
        assert!(enforce(Mode::Ignore, unknown).unwrap().is_empty());
    }

    #[test]
    fn a_known_object_is_left_as_it_is() {
        let r = api::Registry::builtin();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "annotations": {"a": "b"}},
            "spec": {"selector": {"matchLabels": {"app": "w"}}, "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
            "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 80}]}]}}}, "status": {}});
        let before = d.clone();
        assert!(prune(&r, &deployments(&r), &mut d).is_empty());
        assert_eq!(d, before);
    }
}
