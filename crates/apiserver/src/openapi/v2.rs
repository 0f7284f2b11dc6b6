//! The Swagger 2.0 document served at `/openapi/v2` (JSON; [`super::proto`] encodes the same
//! document as protobuf).
//!
//! The definitions keep the neutral form of [`super::definitions`] (upstream's v2 shape), with the
//! few types Swagger 2.0 cannot express written as upstream writes them: `IntOrString` as
//! `type: string, format: int-or-string`, `Quantity` as a string, and the `oneOf`/`anyOf` of
//! custom schemas dropped. kubectl 1.20 parses this document strictly (kube-openapi's
//! `util/proto`): a `$ref` may carry no `type` or `properties`, an array exactly one `items`
//! schema, a primitive one of the four JSON Schema primitive types.

use api::Registry;
use serde_json::{Map, Value, json};

use super::KUBERNETES_VERSION;
use super::definitions::{Definitions, INT_OR_STRING, QUANTITY, REF_PREFIX, kind_definition};
use super::paths::{PathEntry, operation_extensions, param_description, resource_paths, tag};

/// The whole Swagger document.
pub fn document(registry: &Registry, defs: &Definitions) -> Value {
    let mut paths = Map::new();
    for info in registry.iter() {
        let kd = kind_definition(info);
        for entry in resource_paths(info, &kd) {
            paths.insert(entry.path.clone(), path_item(&entry, &kd, info));
        }
    }
    let definitions: Map<String, Value> = defs
        .iter()
        .map(|(name, schema)| (name.clone(), v2_definition(name, schema)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

fn path_item(entry: &PathEntry, kd: &super::definitions::KindDefinition, info: &api::ResourceInfo) -> Value {
    let mut item = Map::new();
    let params: Vec<Value> = entry
        .params
        .iter()
        .map(|p| {
            json!({
                "uniqueItems": true,
                "type": "string",
                "description": param_description(p),
                "name": p,
                "in": "path",
                "required": true,
            })
        })
        .collect();
    item.insert("parameters".into(), params.into());
    for op in &entry.operations {
        let mut o = Map::new();
        o.insert("description".into(), op.description.clone().into());
        o.insert(
            "consumes".into(),
            json!(consumes(op.method, info.custom.is_some())),
        );
        o.insert(
            "produces".into(),
            json!([
                "application/json",
                "application/yaml",
                "application/vnd.kubernetes.protobuf"
            ]),
        );
        o.insert("schemes".into(), json!(["https"]));
        o.insert("tags".into(), json!([tag(&info.group, &info.version)]));
        o.insert("operationId".into(), op.operation_id.clone().into());
        let body = if op.body_is_kind {
            Some(kd.name.as_str())
        } else {
            op.body
        };
        let mut op_params = Vec::new();
        if let Some(body) = body {
            op_params.push(json!({"name": "body", "in": "body", "required": op.body_is_kind || op.method == "patch", "schema": {"$ref": format!("{REF_PREFIX}{body}")}}));
        }
        op_params.extend(write_query_params(op.method));
        if !op_params.is_empty() {
            o.insert("parameters".into(), op_params.into());
        }
        o.insert(
            "responses".into(),
            json!({
                "200": {"description": "OK", "schema": {"$ref": format!("{REF_PREFIX}{}", op.response)}},
                "401": {"description": "Unauthorized"},
            }),
        );
        for (k, v) in operation_extensions(op, kd) {
            o.insert(k, v);
        }
        item.insert(op.method.into(), Value::Object(o));
    }
    Value::Object(item)
}

/// The query parameters of writes that clients look for: kubectl 1.20 only sends `--dry-run=server` when
/// the PATCH operation of a kind lists `dryRun`.
fn write_query_params(method: &str) -> Vec<Value> {
    let param = |name: &str, ty: &str, description: &str| json!({"uniqueItems": true, "type": ty, "description": description, "name": name, "in": "query"});
    let dry_run = param(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
    );
    let manager = param(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    );
    match method {
        "post" | "put" => vec![dry_run, manager],
        "patch" => vec![
            dry_run,
            manager,
            param(
                "force",
                "boolean",
                "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
            ),
        ],
        "delete" => vec![dry_run],
        _ => Vec::new(),
    }
}

/// What a verb accepts. Custom kinds have no strategic merge patch: kubectl reads this to choose a JSON merge patch
/// for them, as upstream publishes it.
fn consumes(method: &str, custom: bool) -> Vec<&'static str> {
    match method {
        "patch" if custom => vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ],
        "patch" => vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ],
        _ => vec!["*/*"],
    }
}

/// One definition in Swagger 2.0 form.
pub fn v2_definition(name: &str, schema: &Value) -> Value {
    let description = schema.get("description").cloned();
    let mut out = match name {
        INT_OR_STRING => json!({"type": "string", "format": "int-or-string"}),
        n if super::definitions::UNTYPED.contains(&n) => json!({}),
        QUANTITY => json!({"type": "string"}),
        _ => {
            let mut s = schema.clone();
            v2_schema(&mut s);
            return s;
        }
    };
    if let (Some(d), Some(o)) = (description, out.as_object_mut()) {
        o.insert("description".into(), d);
    }
    out
}

/// Adapts a (possibly custom, OpenAPI v3 structural) schema to what Swagger 2.0 and kubectl 1.20
/// accept, as upstream's CRD publishing does.
fn v2_schema(v: &mut Value) {
    let Value::Object(o) = v else {
        return;
    };
    for k in ["oneOf", "anyOf", "not", "nullable"] {
        o.remove(k);
    }
    if o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        o.remove("allOf");
        o.insert("type".into(), "string".into());
        o.insert("format".into(), "int-or-string".into());
    }
    if o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        // kubectl 1.20 rejects fields its schema does not list; an untyped schema accepts anything.
        for k in ["type", "properties", "additionalProperties", "items", "required"] {
            o.remove(k);
        }
    }
    for k in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(props)) = o.get_mut(k) {
            props.values_mut().for_each(v2_schema);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(sub) = o.get_mut(k) {
            match sub {
                Value::Array(a) => a.iter_mut().for_each(v2_schema),
                other => v2_schema(other),
            }
        }
    }
    if let Some(Value::Array(all)) = o.get_mut("allOf") {
        all.iter_mut().for_each(v2_schema);
    }
}
