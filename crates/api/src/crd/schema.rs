//! Structural OpenAPI v3 schemas of custom resources, as upstream's apiextensions-apiserver applies them on every
//! write: [`prune`] drops fields the schema does not declare, [`apply_defaults`] fills in `default`s, [`validate`]
//! checks types, `required`, `enum`, bounds, lengths and patterns with upstream's messages. [`check_structural`]
//! refuses schemas that leave a field's type unspecified.
//!
//! The object root's `apiVersion`, `kind` and `metadata` are the API server's business, not the schema's: they are
//! never pruned or validated here.

use serde_json::{Map, Value, json};

use crate::status::{FieldError, FieldPath};

const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn type_of(schema: &Value) -> &str {
    schema.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Upstream requires a type on every specified field, except where `x-kubernetes-int-or-string` or
/// `x-kubernetes-preserve-unknown-fields` say what may be there.
pub fn check_structural(schema: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let walk_child = |child: &Value, at: FieldPath, errs: &mut Vec<FieldError>| {
        if type_of(child).is_empty()
            && !flag(child, "x-kubernetes-int-or-string")
            && !flag(child, "x-kubernetes-preserve-unknown-fields")
        {
            errs.push(FieldError::required(
                &at.child("type"),
                "must not be empty for specified object fields",
            ));
        }
        check_structural(child, &at, errs);
    };
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, child) in props {
            walk_child(child, path.child("properties").key(k), errs);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        walk_child(items, path.child("items"), errs);
    }
    if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk_child(extra, path.child("additionalProperties"), errs);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Drops from `value` every field `schema` does not declare and returns their paths (for `fieldValidation`).
pub fn prune(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_at(schema, value, "", true, &mut pruned);
    pruned
}

fn prune_at(schema: &Value, value: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            let keeps_unknown = flag(schema, "x-kubernetes-preserve-unknown-fields")
                || extra.is_some_and(|a| a.is_object() || a == &json!(true));
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            if !keeps_unknown {
                let unknown: Vec<String> = map
                    .keys()
                    .filter(|k| !props.is_some_and(|p| p.contains_key(*k)))
                    .filter(|k| !(embedded && ROOT_FIELDS.contains(&k.as_str())))
                    .cloned()
                    .collect();
                for k in unknown {
                    map.remove(&k);
                    pruned.push(join(path, &k));
                }
            }
            for (k, v) in map.iter_mut() {
                if embedded && ROOT_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                match props.and_then(|p| p.get(k)) {
                    Some(child) => prune_at(child, v, &join(path, k), false, pruned),
                    None => {
                        if let Some(child) = extra.filter(|a| a.is_object()) {
                            prune_at(child, v, &join(path, k), false, pruned);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(child) = schema.get("items") {
                for (i, v) in items.iter_mut().enumerate() {
                    prune_at(child, v, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Fills in the `default` of every declared field that is absent (or null where null is not allowed), then
/// defaults inside what it filled in, as upstream does.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, child) in props {
                    let Some(default) = child.get("default") else {
                        continue;
                    };
                    let missing = match map.get(k) {
                        None => true,
                        Some(Value::Null) => !flag(child, "nullable"),
                        Some(_) => false,
                    };
                    if missing {
                        map.insert(k.clone(), default.clone());
                    }
                }
                for (k, v) in map.iter_mut() {
                    if let Some(child) = props.get(k) {
                        apply_defaults(child, v);
                    }
                }
            } else if let Some(child) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    apply_defaults(child, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(child) = schema.get("items") {
                for v in items {
                    apply_defaults(child, v);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type name upstream prints for a value.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "" => true,
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        other => json_type(v) == other,
    }
}

fn number_text(n: &Value) -> String {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => n.to_string(),
    }
}

/// Checks `value` against `schema`; `path` is the field's path from the object root.
pub fn validate(schema: &Value, value: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    validate_at(schema, value, path, true, errs);
}

fn type_error(path: &FieldPath, expected: &str, value: &Value) -> FieldError {
    let actual = json_type(value);
    FieldError::invalid(
        path,
        actual,
        &format!("{path} in body must be of type {expected}: \"{actual}\""),
    )
}

fn validate_at(schema: &Value, value: &Value, path: &FieldPath, root: bool, errs: &mut Vec<FieldError>) {
    if value.is_null() && flag(schema, "nullable") {
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(has_type(value, "integer") || value.is_string()) {
            errs.push(type_error(path, "integer,string", value));
        }
        return;
    }
    let t = type_of(schema);
    if !has_type(value, t) {
        errs.push(type_error(path, t, value));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed
            .iter()
            .map(|a| a.as_str().map(str::to_string).unwrap_or_else(|| a.to_string()))
            .collect();
        let shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        errs.push(FieldError::not_supported(path, value.clone(), &shown));
    }
    match value {
        Value::String(s) => validate_string(schema, s, path, errs),
        Value::Number(_) => validate_number(schema, value, path, errs),
        Value::Array(items) => {
            let count = |k: &str| schema.get(k).and_then(Value::as_u64);
            if let Some(min) = count("minItems")
                && (items.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    path,
                    value.clone(),
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = count("maxItems")
                && (items.len() as u64) > max
            {
                errs.push(FieldError::invalid(
                    path,
                    value.clone(),
                    &format!("{path} in body should have at most {max} items"),
                ));
            }
            if let Some(child) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    validate_at(child, v, &path.index(i), false, errs);
                }
            }
        }
        Value::Object(map) => validate_object(schema, map, path, root, errs),
        _ => {}
    }
}

fn validate_string(schema: &Value, s: &str, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let chars = s.chars().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        errs.push(FieldError::too_long(path, max as usize));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        errs.push(FieldError::invalid(
            path,
            s,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        // A pattern that does not compile was the CRD author's mistake; it cannot be held against the object.
        if let Ok(re) = regex::Regex::new(pattern)
            && !re.is_match(s)
        {
            errs.push(FieldError::invalid(
                path,
                s,
                &format!("{path} in body should match '{pattern}'"),
            ));
        }
    }
}

fn validate_number(schema: &Value, value: &Value, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else {
        return;
    };
    let exclusive = |k: &str| flag(schema, k);
    if let Some(min) = schema.get("minimum").filter(|m| m.is_number()) {
        let m = min.as_f64().unwrap_or(f64::MIN);
        let (bad, words) = if exclusive("exclusiveMinimum") {
            (n <= m, "greater than")
        } else {
            (n < m, "greater than or equal to")
        };
        if bad {
            errs.push(FieldError::invalid(
                path,
                value.clone(),
                &format!("{path} in body should be {words} {}", number_text(min)),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").filter(|m| m.is_number()) {
        let m = max.as_f64().unwrap_or(f64::MAX);
        let (bad, words) = if exclusive("exclusiveMaximum") {
            (n >= m, "less than")
        } else {
            (n > m, "less than or equal to")
        };
        if bad {
            errs.push(FieldError::invalid(
                path,
                value.clone(),
                &format!("{path} in body should be {words} {}", number_text(max)),
            ));
        }
    }
}

fn validate_object(
    schema: &Value,
    map: &Map<String, Value>,
    path: &FieldPath,
    root: bool,
    errs: &mut Vec<FieldError>,
) {
    let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if embedded && ROOT_FIELDS.contains(&r) {
                continue;
            }
            if !map.contains_key(r) {
                errs.push(FieldError::required(&path.child(r), ""));
            }
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let extra = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in map {
        if embedded && ROOT_FIELDS.contains(&k.as_str()) {
            continue;
        }
        match (props.and_then(|p| p.get(k)), extra) {
            (Some(child), _) => validate_at(child, v, &path.child(k), false, errs),
            (None, Some(child)) => validate_at(child, v, &path.child(k), false, errs),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                "image": {"type": "string", "maxLength": 20},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "port": {"x-kubernetes-int-or-string": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "ports": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "protocol": {"type": "string", "default": "TCP"}}}},
                "note": {"type": "string", "nullable": true}
            }},
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
        }})
    }

    fn errors(obj: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate(&schema(), obj, &FieldPath::default(), &mut errs);
        errs.iter()
            .map(|e| format!("{}: {} {}", e.field, e.kind.phrase(), e.detail))
            .collect()
    }

    #[test]
    fn undeclared_fields_are_pruned_except_where_unknown_fields_are_preserved() {
        let mut obj = json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "a", "labels": {"x": "y"}},
            "spec": {"cronSpec": "* * * * */5", "extra": 1, "labels": {"any": "thing"},
                     "free": {"anything": {"goes": true}}, "ports": [{"name": "http", "bogus": 1}]},
            "other": "x"});
        let pruned = prune(&schema(), &mut obj);
        assert_eq!(pruned, vec!["other", "spec.extra", "spec.ports[0].bogus"]);
        assert_eq!(obj["metadata"]["labels"]["x"], "y");
        assert_eq!(obj["spec"]["free"]["anything"]["goes"], true);
        assert_eq!(obj["spec"]["labels"]["any"], "thing");
    }

    #[test]
    fn defaults_fill_absent_and_null_fields_and_reach_into_lists() {
        let mut obj =
            json!({"spec": {"cronSpec": "x", "ports": [{"name": "a"}, {"name": "b", "protocol": "UDP"}]}});
        apply_defaults(&schema(), &mut obj);
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(obj["spec"]["ports"][1]["protocol"], "UDP");
        let mut null = json!({"spec": {"replicas": null}});
        apply_defaults(&schema(), &mut null);
        assert_eq!(null["spec"]["replicas"], 1);
    }

    #[test]
    fn a_valid_object_passes_and_each_broken_rule_names_its_field_as_upstream() {
        let good = json!({"metadata": {"name": "x"}, "spec": {"cronSpec": "* * * * */5", "replicas": 3,
            "mode": "fast", "port": "http", "note": null, "ports": [{"name": "a"}]}});
        assert_eq!(errors(&good), Vec::<String>::new());
        let bad = json!({"spec": {"cronSpec": "nope", "replicas": "three", "image": "x".repeat(21),
            "mode": "medium", "port": true, "labels": {"a": 1}, "ports": [{}, {}, {}], "note": null}});
        assert_eq!(
            errors(&bad),
            vec![
                "spec.cronSpec: Invalid value spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
                "spec.image: Too long may not be more than 20 bytes",
                "spec.labels.a: Invalid value spec.labels.a in body must be of type string: \"integer\"",
                "spec.mode: Unsupported value supported values: \"fast\", \"slow\"",
                "spec.port: Invalid value spec.port in body must be of type integer,string: \"boolean\"",
                "spec.ports: Invalid value spec.ports in body should have at most 2 items",
                "spec.replicas: Invalid value spec.replicas in body must be of type integer: \"string\"",
            ]
        );
        assert_eq!(errors(&json!({})), vec!["spec: Required value "]);
        assert_eq!(
            errors(&json!({"spec": {"cronSpec": "* * * * *", "replicas": 0}})),
            vec!["spec.replicas: Invalid value spec.replicas in body should be greater than or equal to 1"]
        );
    }

    #[test]
    fn a_field_without_a_type_is_not_structural() {
        let mut errs = Vec::new();
        let s = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}},
            "free": {"x-kubernetes-preserve-unknown-fields": true}}});
        check_structural(&s, &FieldPath::new("schema"), &mut errs);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "schema.properties[spec].type");
    }
}
