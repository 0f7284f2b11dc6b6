//! Strategic merge patch (`application/strategic-merge-patch+json`) over JSON values, with the
//! list semantics of [`super::schema`]. Behaviour follows upstream's `StrategicMergePatch` as the
//! API server applies it: directives `$patch` (`replace`, `delete`, `merge`), `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>`; `null` deletes a key.

use serde_json::{Map, Value};

use super::PatchError;
use super::schema::field_schema;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// The type (OpenAPI definition name) whose fields are being merged; `None` when unknown, in
/// which case maps merge key by key and lists are replaced.
type Schema = Option<&'static str>;

/// Applies `patch` to `original` for an object whose root type is `root` (see
/// [`super::schema::root_type`]).
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    root: Option<&'static str>,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadRequest("invalid JSON document".into()));
    };
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(PatchError::BadRequest("invalid JSON document".into())),
    };
    Ok(Value::Object(merge_map(original, patch.clone(), root)?))
}

fn short(v: &Value) -> String {
    v.to_string()
}

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> PatchError {
    PatchError::BadRequest(format!(
        "unknown patch type: {} in map: {}",
        t.as_str().map_or_else(|| t.to_string(), str::to_string),
        short(&Value::Object(m.clone()))
    ))
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::Invalid(format!(
        "map: {} does not contain declared merge key: {key}",
        short(&Value::Object(m.clone()))
    ))
}

fn sub_schema(schema: Schema, field: &str) -> (Schema, &'static str, Option<&'static str>) {
    match schema.and_then(|s| field_schema(s, field)) {
        Some(e) => {
            // retainKeys is handled through the directive; what matters here is merge/replace
            let strategy = if e.merges() {
                "merge"
            } else if e.patch_strategy.split(',').any(|s| s == "replace") {
                "replace"
            } else {
                ""
            };
            (e.elem_type, strategy, e.merge_key)
        }
        None => (None, "", None),
    }
}

/// Go's `reflect.TypeOf` equality for decoded JSON: all numbers are one type.
fn same_json_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE).cloned() {
        return match d.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(&d, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, schema)?;

    for (key, patch_v) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(k) if !k.is_empty() => (k.to_string(), true),
            Some(_) => {
                return Err(PatchError::BadRequest(
                    "invalid patch format of primitive list".into(),
                ));
            }
            None => (key, false),
        };
        if patch_v.is_null() {
            original.remove(&key);
            continue;
        }
        let replace_with = |original: &mut Map<String, Value>, mut v: Value| {
            discard_nulls(&mut v);
            match remove_directives(v) {
                Some(v) => {
                    original.insert(key.clone(), v);
                }
                None => {
                    original.remove(&key);
                }
            }
        };
        let Some(orig_v) = original.remove(&key) else {
            if !is_delete_list {
                replace_with(&mut original, patch_v);
            }
            continue;
        };
        if !same_json_type(&orig_v, &patch_v) {
            if is_delete_list {
                original.insert(key, orig_v);
            } else {
                replace_with(&mut original, patch_v);
            }
            continue;
        }
        let (sub, strategy, merge_key) = sub_schema(schema, &key);
        let merged = match (orig_v, patch_v) {
            (Value::Object(o), Value::Object(p)) => {
                if strategy == "replace" {
                    Value::Object(p)
                } else {
                    Value::Object(merge_map(o, p, sub)?)
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                if strategy == "merge" {
                    Value::Array(merge_slice(o, p, sub, merge_key, is_delete_list)?)
                } else {
                    // Upstream replaces non-merge lists with the patch list as sent.
                    Value::Array(p)
                }
            }
            (_, p) => match remove_directives(p) {
                Some(v) => v,
                None => continue,
            },
        };
        original.insert(key, merged);
    }
    Ok(original)
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::BadRequest("invalid patch format of retainKeys".into());
    let Value::Array(list) = retain else {
        return Err(bad());
    };
    let keep = |k: &str| list.iter().any(|v| v.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !keep(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}

fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let Some(order) = patch.remove(&directive_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(PatchError::BadRequest(
                "invalid patch format of setElementOrder list".into(),
            ));
        };
        let field = &directive_key[SET_ELEMENT_ORDER.len()..];
        if field.is_empty() {
            return Err(PatchError::BadRequest(
                "invalid patch format of setElementOrder list".into(),
            ));
        }
        let original_list = match original.get(field) {
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => {
                return Err(PatchError::Invalid(format!(
                    "expected a []interface {{}}, but received a {}",
                    short(other)
                )));
            }
            None => None,
        };
        let patch_list = match patch.get(field) {
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => {
                return Err(PatchError::Invalid(format!(
                    "expected a []interface {{}}, but received a {}",
                    short(other)
                )));
            }
            None => None,
        };
        let (sub, strategy, merge_key) = sub_schema(schema, field);
        validate_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;
        let merged = match (&original_list, &patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => match remove_directives(Value::Array(p.clone())) {
                Some(Value::Array(v)) => v,
                _ => continue,
            },
            (Some(o), Some(p)) => {
                if strategy == "merge" {
                    merge_slice(o.clone(), p.clone(), sub, merge_key, false)?
                } else {
                    p.clone()
                }
            }
            (None, None) => continue,
        };
        let (patch_items, server_only) = partition(&merged, &order, merge_key)?;
        let original_list = original_list.unwrap_or_default();
        let both = normalize_element_order(patch_items, server_only, &order, &original_list, merge_key)?;
        original.insert(field.to_string(), Value::Array(both));
        patch.remove(field);
    }
    Ok(())
}

fn is_delete_item(v: &Value) -> bool {
    v.get(DIRECTIVE).and_then(Value::as_str) == Some("delete")
}

fn validate_order(patch_list: &[Value], order: &[Value], merge_key: Option<&str>) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match merge_key {
        Some(_) => patch_list.iter().filter(|v| !is_delete_item(v)).collect(),
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if key_of(non_delete[pi], merge_key)? == key_of(&order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(PatchError::BadRequest(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            short(&Value::Array(patch_list.to_vec())),
            short(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

/// The identity of a list item: its merge key value, or the item itself for scalars.
fn key_of<'a>(v: &'a Value, merge_key: Option<&str>) -> Result<&'a Value, PatchError> {
    match merge_key {
        None => Ok(v),
        Some(k) => match v {
            Value::Object(m) => m.get(k).ok_or_else(|| no_merge_key(m, k)),
            other => Err(PatchError::Invalid(format!(
                "expected a map, but received a {}",
                short(other)
            ))),
        },
    }
}

fn position(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let want = match merge_key {
        None => Some(item),
        Some(k) => item.get(k),
    }?;
    list.iter().position(|v| match merge_key {
        None => v == want,
        Some(k) => v.get(k) == Some(want),
    })
}

fn partition(
    merged: &[Value],
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let id = key_of(v, merge_key)?;
        let found = by.iter().any(|b| match merge_key {
            None => b == id,
            Some(k) => b.get(k) == Some(id),
        });
        if found {
            in_patch.push(v.clone())
        } else {
            server_only.push(v.clone())
        }
    }
    Ok((in_patch, server_only))
}

/// Sorts items by their position in `order`; items `order` does not know keep their relative
/// order after the known ones (upstream leaves that case unspecified).
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let (mut items, to_delete): (Vec<Value>, Vec<Value>) = match merge_key {
        Some(_) => {
            for v in items.iter().chain(order.iter()) {
                key_of(v, merge_key)?;
            }
            items.into_iter().partition(|v| !is_delete_item(v))
        }
        None => (items, vec![]),
    };
    items.sort_by_key(|v| position(order, v, merge_key).unwrap_or(usize::MAX));
    items.extend(to_delete);
    Ok(items)
}

fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let right = sort_by_order(patch_items, patch_order, merge_key)?;
    let left = sort_by_order(server_only, server_order, merge_key)?;
    // Interleave server-only items into the patch order, using the live order to place them.
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() || j < right.len() {
        if i >= left.len() {
            out.push(right[j].clone());
            j += 1;
        } else if j >= right.len() {
            out.push(left[i].clone());
            i += 1;
        } else {
            let li = position(server_order, &left[i], merge_key);
            let ri = position(server_order, &right[j], merge_key);
            if matches!((li, ri), (Some(a), Some(b)) if a < b) {
                out.push(left[i].clone());
                i += 1;
            } else {
                out.push(right[j].clone());
                j += 1;
            }
        }
    }
    Ok(out)
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema,
    merge_key: Option<&str>,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let mut first: Option<&Value> = None;
    for v in original.iter().chain(patch.iter()) {
        if v.is_array() {
            return Err(PatchError::BadRequest("lists of lists are not supported".into()));
        }
        match first {
            None => first = Some(v),
            Some(f) if !same_json_type(f, v) => {
                return Err(PatchError::BadRequest(format!(
                    "list element types are not identical: {}",
                    short(&Value::Array(
                        original.iter().chain(patch.iter()).cloned().collect()
                    ))
                )));
            }
            Some(_) => {}
        }
    }
    let of_maps = first.is_some_and(Value::is_object);
    if !of_maps {
        if is_delete_list {
            return Ok(original.into_iter().filter(|v| !patch.contains(v)).collect());
        }
        let mut merged = original.clone();
        for v in &patch {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (p, s) = partition(&merged, &patch, None)?;
        return normalize_element_order(p, s, &patch, &original, None);
    }
    let Some(key) = merge_key else {
        return Err(PatchError::BadRequest(format!(
            "cannot merge lists without merge key for {}",
            schema.unwrap_or("")
        )));
    };
    let (base, patch_items) = merge_special_elements(original.clone(), patch, key)?;
    let merged = merge_without_special_elements(base, patch_items.clone(), key, schema)?;
    let (p, s) = partition(&merged, &patch_items, Some(key))?;
    normalize_element_order(p, s, &patch_items, &original, Some(key))
}

/// Handles `{"$patch": "delete", key: v}` and `{"$patch": "replace"}` items.
fn merge_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            return Err(PatchError::Invalid(format!(
                "expected a map, but received a {}",
                short(&v)
            )));
        };
        match m.get(DIRECTIVE) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some("delete") => {
                    let Some(kv) = m.get(key) else {
                        return Err(no_merge_key(m, key));
                    };
                    original.retain(|o| o.get(key) != Some(kv));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(PatchError::BadRequest(
                        "merging lists cannot yet be specified in the patch".into(),
                    ));
                }
                _ => return Err(bad_patch_type(d, m)),
            },
        }
    }
    if replace {
        Ok((plain, vec![]))
    } else {
        Ok((original, plain))
    }
}

fn merge_without_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    schema: Schema,
) -> Result<Vec<Value>, PatchError> {
    for v in patch {
        let Value::Object(m) = v else {
            return Err(PatchError::Invalid(format!(
                "expected a map, but received a {}",
                short(&v)
            )));
        };
        let Some(kv) = m.get(key).cloned() else {
            return Err(no_merge_key(&m, key));
        };
        match original.iter().position(|o| o.get(key) == Some(&kv)) {
            Some(i) => {
                let base = match std::mem::take(&mut original[i]) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(base, m, schema)?);
            }
            None => {
                // New items may still carry directives ($retainKeys, nested $patch); strip them.
                if let Some(v) = remove_directives(Value::Object(m)) {
                    original.push(v);
                }
            }
        }
    }
    Ok(original)
}

fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(discard_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Drops maps carrying `$patch` and every other `$`-directive key, so nothing of the patch
/// language ends up stored.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let out: Map<String, Value> = m
                .into_iter()
                .filter(|(k, _)| {
                    k != RETAIN_KEYS
                        && !k.starts_with(SET_ELEMENT_ORDER)
                        && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                })
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::schema::root_type;
    use serde_json::json;

    fn smp(group: &str, kind: &str, original: Value, patch: Value) -> Value {
        strategic_merge(&original, &patch, root_type(group, kind)).unwrap()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn containers_merge_by_name_and_keep_unpatched_fields() {
        let out = smp(
            "",
            "Pod",
            pod(json!([{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:1"}])),
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "a:1", "args": ["x"]}, {"name": "b", "image": "b:2"}])
        );
    }

    #[test]
    fn new_list_items_come_before_server_only_items_as_upstream_orders_them() {
        // Server-only items are placed by the live order, which knows nothing of new items,
        // so upstream's merge puts patch items first.
        let out = smp(
            "",
            "Pod",
            pod(json!([{"name": "a"}])),
            json!({"spec": {"containers": [{"name": "c", "image": "c"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "c"}, {"name": "a"}])
        );
    }

    #[test]
    fn deployment_template_lists_merge_like_pods() {
        let orig = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "3"}]}]}}}});
        let out = smp("apps", "Deployment", orig, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}]})
        );
    }

    #[test]
    fn atomic_lists_are_replaced() {
        let orig = json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "c", "args": ["1", "2"]}]}});
        let patch =
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["3"]}]}});
        let out = smp("", "Pod", orig, patch);
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
    }

    #[test]
    fn null_deletes_keys_and_maps_merge() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "y"}}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": null}});
        let out = smp("", "ConfigMap", orig, patch);
        assert_eq!(out["metadata"], json!({"labels": {"b": "2", "c": "3"}}));
    }

    #[test]
    fn patch_delete_directive_removes_list_items_by_merge_key() {
        let out = smp(
            "",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn patch_replace_directive_replaces_lists_and_maps() {
        let out = smp(
            "",
            "Pod",
            pod(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "z"}]));
        let out = smp(
            "",
            "ConfigMap",
            json!({"data": {"a": "1", "b": "2"}}),
            json!({"data": {"$patch": "replace", "c": "3"}}),
        );
        assert_eq!(out["data"], json!({"c": "3"}));
        let out = smp(
            "",
            "ConfigMap",
            json!({"data": {"a": "1"}, "x": 1}),
            json!({"data": {"$patch": "delete"}}),
        );
        assert_eq!(out, json!({"data": {}, "x": 1}));
    }

    #[test]
    fn unknown_patch_directive_is_rejected() {
        let err = strategic_merge(
            &json!({"data": {}}),
            &json!({"data": {"$patch": "bogus"}}),
            root_type("", "ConfigMap"),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("unknown patch type: bogus in map:"),
            "{err}"
        );
        let err = strategic_merge(
            &pod(json!([{"name": "a"}])),
            &json!({"spec": {"containers": [{"image": "x"}]}}),
            root_type("", "Pod"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"map: {"image":"x"} does not contain declared merge key: name"#
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let orig = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(
            "",
            "ConfigMap",
            orig.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = smp(
            "",
            "ConfigMap",
            orig,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn set_element_order_reorders_the_merged_list() {
        let orig = pod(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "new"}]
        }});
        let out = smp("", "Pod", orig, patch);
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c"}, {"name": "a", "image": "new"}, {"name": "b"}])
        );
    }

    #[test]
    fn set_element_order_without_list_in_patch_reorders_live_items() {
        let orig = json!({"metadata": {"finalizers": ["x", "y"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["y", "x"]}});
        let out = smp("", "ConfigMap", orig, patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["y", "x"]));
    }

    #[test]
    fn retain_keys_drops_unlisted_fields_of_deployment_strategy() {
        let orig = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let out = smp("apps", "Deployment", orig, patch);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_in_volumes_switches_volume_source() {
        let orig = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        let patch = json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"], "hostPath": {"path": "/x"}}]}});
        let out = smp("", "Pod", orig, patch);
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "v", "hostPath": {"path": "/x"}}])
        );
    }

    #[test]
    fn retain_keys_must_list_every_patched_field() {
        let err = strategic_merge(
            &json!({"spec": {"strategy": {}}}),
            &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
            root_type("apps", "Deployment"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "invalid patch format of retainKeys");
    }

    #[test]
    fn directives_never_reach_new_values() {
        let out = smp(
            "",
            "Pod",
            json!({"spec": {}}),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"]}], "x": {"$patch": "delete"}}}),
        );
        assert_eq!(out["spec"], json!({"volumes": [{"name": "v"}]}));
    }

    #[test]
    fn service_ports_merge_by_port_and_node_addresses_by_type() {
        let out = smp(
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
        let out = smp(
            "",
            "Node",
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}]}}),
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
        );
        assert_eq!(out["status"]["addresses"][0]["address"], "10.0.0.2");
        assert_eq!(out["status"]["addresses"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn pod_conditions_merge_by_type() {
        let out = smp(
            "",
            "Pod",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
    }

    #[test]
    fn unknown_kinds_merge_maps_and_replace_lists() {
        let out = strategic_merge(
            &json!({"a": {"b": 1, "c": [1, 2]}}),
            &json!({"a": {"d": 2, "c": [3]}}),
            None,
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b": 1, "c": [3], "d": 2}}));
    }

    #[test]
    fn type_changes_replace_the_value() {
        let out = smp("", "ConfigMap", json!({"data": {"a": "1"}}), json!({"data": "x"}));
        assert_eq!(out["data"], "x");
    }
}
