//! OpenAPI 3.0 documents, one per group version (`/openapi/v3/apis/apps/v1`), and the index
//! at `/openapi/v3` that lists them.
//!
//! Each document is self-contained: its `components.schemas` hold the group version's kinds,
//! their lists, the kinds of their subresources, the shared meta kinds, and everything those
//! reference. References become `#/components/schemas/<name>`; a reference that carries a
//! description or extensions is wrapped in `allOf`, as upstream does (OpenAPI 3.0 ignores the
//! siblings of a bare `$ref`).

use api::Registry;
use serde_json::{Map, Value, json};

use super::KUBERNETES_VERSION;
use super::definitions::{
    DELETE_OPTIONS, Definitions, INT_OR_STRING, PATCH, QUANTITY, REF_PREFIX, STATUS, WATCH_EVENT, closure,
    kind_definition, rewrite_refs,
};
use super::paths::{PathEntry, gv_prefix, operation_extensions, param_description, resource_paths, tag};

const V3_PREFIX: &str = "#/components/schemas/";

/// The index key of a group version: `api/v1`, `apis/apps/v1`.
pub fn index_key(group: &str, version: &str) -> String {
    gv_prefix(group, version).trim_start_matches('/').to_owned()
}

/// The document of one group version; `None` when the registry serves nothing in it.
pub fn group_version_document(
    registry: &Registry,
    defs: &Definitions,
    group: &str,
    version: &str,
) -> Option<Value> {
    let infos: Vec<_> = registry.in_group_version(group, version).collect();
    if infos.is_empty() {
        return None;
    }
    let mut roots: Vec<String> = vec![
        STATUS.into(),
        DELETE_OPTIONS.into(),
        WATCH_EVENT.into(),
        PATCH.into(),
    ];
    let mut paths = Map::new();
    for info in &infos {
        let kd = kind_definition(info);
        roots.push(kd.name.clone());
        roots.extend(kd.list_name.clone());
        for sub in &info.subresources {
            if let Some(t) = super::definitions::builtin_type(&sub.kind) {
                roots.push((t.name)().into_owned());
            }
        }
        for entry in resource_paths(info, &kd) {
            paths.insert(entry.path.clone(), path_item(&entry, &kd, info));
        }
    }
    let names = closure(defs, roots.iter().map(String::as_str));
    let schemas: Map<String, Value> = names
        .iter()
        .filter_map(|name| defs.get(name).map(|s| (name.clone(), v3_definition(name, s))))
        .collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{V3_PREFIX}{name}")})
}

fn path_item(entry: &PathEntry, kd: &super::definitions::KindDefinition, info: &api::ResourceInfo) -> Value {
    let mut item = Map::new();
    let params: Vec<Value> = entry
        .params
        .iter()
        .map(|p| {
            json!({
                "name": p,
                "in": "path",
                "description": param_description(p),
                "required": true,
                "schema": {"type": "string", "uniqueItems": true},
            })
        })
        .collect();
    item.insert("parameters".into(), params.into());
    for op in &entry.operations {
        let mut o = Map::new();
        o.insert("tags".into(), json!([tag(&info.group, &info.version)]));
        o.insert("description".into(), op.description.clone().into());
        o.insert("operationId".into(), op.operation_id.clone().into());
        let body = if op.body_is_kind {
            Some(kd.name.as_str())
        } else {
            op.body
        };
        if let Some(body) = body {
            let media = if op.method == "patch" {
                "application/merge-patch+json"
            } else {
                "*/*"
            };
            o.insert(
                "requestBody".into(),
                json!({"content": {media: {"schema": schema_ref(body)}}, "required": op.body_is_kind || op.method == "patch"}),
            );
        }
        let mut content = Map::new();
        for media in [
            "application/json",
            "application/yaml",
            "application/vnd.kubernetes.protobuf",
        ] {
            content.insert(media.into(), json!({"schema": schema_ref(&op.response)}));
        }
        o.insert(
            "responses".into(),
            json!({"200": {"description": "OK", "content": content}, "401": {"description": "Unauthorized"}}),
        );
        for (k, v) in operation_extensions(op, kd) {
            o.insert(k, v);
        }
        item.insert(op.method.into(), Value::Object(o));
    }
    Value::Object(item)
}

/// One definition in OpenAPI 3.0 form.
pub fn v3_definition(name: &str, schema: &Value) -> Value {
    let description = schema.get("description").cloned();
    let mut out = match name {
        INT_OR_STRING => json!({
            "format": "int-or-string",
            "oneOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true,
        }),
        n if super::definitions::UNTYPED.contains(&n) => json!({}),
        QUANTITY => json!({"oneOf": [{"type": "string"}, {"type": "number"}]}),
        _ => {
            let mut s = schema.clone();
            wrap_refs(&mut s);
            rewrite_refs(&mut s, &|r| match r.strip_prefix(REF_PREFIX) {
                Some(name) => format!("{V3_PREFIX}{name}"),
                None => r.to_owned(),
            });
            return s;
        }
    };
    if let (Some(d), Some(o)) = (description, out.as_object_mut()) {
        o.insert("description".into(), d);
    }
    out
}

/// `{"$ref": X, "description": D}` -> `{"allOf": [{"$ref": X}], "description": D}`.
fn wrap_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.len() > 1
                && matches!(o.get("$ref"), Some(Value::String(_)))
                && let Some(r) = o.remove("$ref")
            {
                o.insert("allOf".into(), json!([{"$ref": r}]));
            }
            for (k, sub) in o.iter_mut() {
                // A property literally named `$ref` (JSONSchemaProps has one) is a schema, not a reference.
                if k != "allOf" {
                    wrap_refs(sub);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_refs),
        _ => {}
    }
}
