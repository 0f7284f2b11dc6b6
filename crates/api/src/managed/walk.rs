//! The walks over objects that server-side apply needs, all guided by list semantics: which fields a
//! configuration sets ([`fields_of`]), which fields differ between two versions of an object ([`compare`]),
//! the merge of an applied configuration into a live object ([`merge`]) and the removal of fields
//! ([`remove_path`]).
//!
//! List semantics come from [`Schema`]: the built-in table in [`crate::patch::schema`] for built-in kinds and
//! `metadata`, a custom resource's OpenAPI schema (`x-kubernetes-list-type`, `-list-map-keys`, `-map-type`)
//! for custom kinds. Lists nothing describes are atomic, as upstream.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use crate::patch::schema::{FieldSchema, ListType, field_schema, root_type};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// Metadata the server owns: never part of anyone's field set (upstream strips the same list).
const SERVER_META: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Where list semantics are read from at one point of an object.
#[derive(Debug, Clone, Copy)]
pub enum Schema<'a> {
    /// A type of the built-in table, by OpenAPI definition name.
    Builtin(&'static str),
    /// A node of a custom resource's structural schema.
    Custom(&'a Value),
    /// Nothing known: objects merge, lists are atomic.
    Unknown,
}

/// How a list field merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind<'a> {
    Atomic,
    Set,
    Map(Vec<&'a str>),
}

/// What is known of one field: its own schema (the item schema for lists) and, for lists, how they merge.
#[derive(Debug, Clone)]
pub struct FieldInfo<'a> {
    pub schema: Schema<'a>,
    pub list: ListKind<'a>,
    /// Objects replaced as a whole (`x-kubernetes-map-type: atomic`).
    pub atomic_object: bool,
}

impl<'a> FieldInfo<'a> {
    fn unknown() -> Self {
        Self {
            schema: Schema::Unknown,
            list: ListKind::Atomic,
            atomic_object: false,
        }
    }
}

fn builtin_list(e: &'static FieldSchema) -> ListKind<'static> {
    match (e.list_type, e.merge_key) {
        (Some(ListType::Map), _) if !e.map_keys.is_empty() => ListKind::Map(e.map_keys.to_vec()),
        (Some(ListType::Map) | None, Some(k)) => ListKind::Map(vec![k]),
        (Some(ListType::Set), _) => ListKind::Set,
        (None, None) if e.merges() => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

impl<'a> Schema<'a> {
    /// The root of an object of `group`/`kind`; `custom` is a custom resource's `openAPIV3Schema`.
    pub fn root(group: &str, kind: &str, custom: Option<&'a Value>) -> Self {
        match custom {
            Some(s) => Self::Custom(s),
            None => root_type(group, kind).map_or(Self::Unknown, Self::Builtin),
        }
    }

    pub fn field(self, name: &str, at_root: bool) -> FieldInfo<'a> {
        if at_root && name == "metadata" {
            return FieldInfo {
                schema: Schema::Builtin(OBJECT_META),
                ..FieldInfo::unknown()
            };
        }
        match self {
            Self::Builtin(owner) => match field_schema(owner, name) {
                Some(e) => FieldInfo {
                    schema: e.elem_type.map_or(Schema::Unknown, Schema::Builtin),
                    list: builtin_list(e),
                    atomic_object: false,
                },
                None => FieldInfo::unknown(),
            },
            Self::Custom(s) => {
                let child = s
                    .get("properties")
                    .and_then(|p| p.get(name))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()));
                let Some(child) = child else {
                    return FieldInfo::unknown();
                };
                let list = match child.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListKind::Set,
                    Some("map") => ListKind::Map(
                        child
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default(),
                    ),
                    _ => ListKind::Atomic,
                };
                let list = match list {
                    ListKind::Map(k) if k.is_empty() => ListKind::Atomic,
                    l => l,
                };
                let schema = match child.get("items") {
                    Some(items) if child.get("type").and_then(Value::as_str) == Some("array") => {
                        Schema::Custom(items)
                    }
                    _ => Schema::Custom(child),
                };
                FieldInfo {
                    schema,
                    list,
                    atomic_object: child.get("x-kubernetes-map-type").and_then(Value::as_str)
                        == Some("atomic"),
                }
            }
            Self::Unknown => FieldInfo::unknown(),
        }
    }
}

/// Which top-level parts of an object a write may own: a main-resource write of a kind with a status
/// subresource does not own `status`, a status write owns nothing but `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    NoStatus,
    StatusOnly,
}

impl Scope {
    fn skips(self, at_root: bool, in_meta: bool, key: &str) -> bool {
        if at_root {
            return match key {
                "apiVersion" | "kind" => true,
                "status" => self == Self::NoStatus,
                "metadata" => self == Self::StatusOnly,
                _ => self == Self::StatusOnly,
            };
        }
        in_meta && SERVER_META.contains(&key)
    }
}

/// Where a walk is: its path and whether it is at the root or directly in the root's `metadata`.
struct Cursor {
    path: Vec<PathElement>,
}

impl Cursor {
    fn at_root(&self) -> bool {
        self.path.is_empty()
    }

    fn in_meta(&self) -> bool {
        matches!(self.path.as_slice(), [PathElement::Field(m)] if m == "metadata")
    }
}

/// The key of an associative list item: its key fields that are present, as canonical JSON. `None` when
/// the item is not an object or has none of them.
pub fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let obj = item.as_object()?;
    let mut key = Map::new();
    for k in keys {
        if let Some(v) = obj.get(*k) {
            key.insert((*k).to_string(), v.clone());
        }
    }
    (!key.is_empty()).then(|| Value::Object(key).to_string())
}

/// Whether `item` matches an applied item's key: the applied item may omit key fields that have
/// server-side defaults (a port's `protocol`), so only the fields it names must agree.
fn key_matches(item: &Value, applied_key: &str, keys: &[&str]) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(applied_key) else {
        return false;
    };
    keys.iter().all(|k| match want.get(*k) {
        Some(v) => item.get(*k) == Some(v),
        None => true,
    })
}

/// Every field `config` sets (what an applier owns).
pub fn fields_of(config: &Value, schema: Schema<'_>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(m) = config {
        let mut cur = Cursor { path: Vec::new() };
        collect_object(m, schema, scope, &mut cur, &mut out);
    }
    out
}

fn collect_object(
    m: &Map<String, Value>,
    schema: Schema<'_>,
    scope: Scope,
    cur: &mut Cursor,
    out: &mut FieldSet,
) {
    if m.is_empty() && !cur.at_root() {
        out.insert(&cur.path);
        return;
    }
    let (at_root, in_meta) = (cur.at_root(), cur.in_meta());
    for (k, v) in m {
        if scope.skips(at_root, in_meta, k) {
            continue;
        }
        let info = schema.field(k, at_root);
        cur.path.push(PathElement::Field(k.clone()));
        collect_value(v, &info, scope, cur, out);
        cur.path.pop();
    }
}

fn collect_value(v: &Value, info: &FieldInfo<'_>, scope: Scope, cur: &mut Cursor, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !info.atomic_object => collect_object(m, info.schema, scope, cur, out),
        Value::Array(items) if !items.is_empty() => match &info.list {
            ListKind::Set => {
                for item in items {
                    cur.path.push(PathElement::Value(item.to_string()));
                    out.insert(&cur.path);
                    cur.path.pop();
                }
            }
            ListKind::Map(keys) => {
                let item_keys: Option<Vec<String>> = items.iter().map(|i| item_key(i, keys)).collect();
                let Some(item_keys) = item_keys else {
                    out.insert(&cur.path);
                    return;
                };
                for (item, key) in items.iter().zip(item_keys) {
                    cur.path.push(PathElement::Key(key));
                    out.insert(&cur.path);
                    if let Value::Object(m) = item {
                        collect_object(m, info.schema, scope, cur, out);
                    }
                    cur.path.pop();
                }
            }
            ListKind::Atomic => out.insert(&cur.path),
        },
        _ => out.insert(&cur.path),
    }
}

/// What differs between two versions of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Fields added or given another value in `new` (an added object or list item is itself a member, with
    /// everything set inside it).
    pub changed: FieldSet,
    /// Fields of `old` that `new` no longer has.
    pub removed: FieldSet,
}

/// Compares two versions of an object, field by field along list semantics.
pub fn compare(old: &Value, new: &Value, schema: Schema<'_>, scope: Scope) -> Comparison {
    let mut c = Comparison::default();
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    if let Value::Object(n) = new {
        let mut cur = Cursor { path: Vec::new() };
        compare_object(o, n, schema, scope, &mut cur, &mut c);
    }
    c
}

fn added(v: &Value, info: &FieldInfo<'_>, scope: Scope, cur: &mut Cursor, c: &mut Comparison) {
    // The typed top-level parts of a built-in kind (`metadata`, `spec`, `status`) are not owned as a whole, only
    // what is set inside them: upstream's typed objects always carry them, so they are never "added". Maps such
    // as a ConfigMap's `data` are.
    let always_present = matches!(cur.path.as_slice(), [PathElement::Field(_)])
        && v.is_object()
        && matches!(info.schema, Schema::Builtin(_));
    // Nor is an associative list: its items are.
    let keyed_list = match (v, &info.list) {
        (Value::Array(a), ListKind::Map(keys)) => {
            !a.is_empty() && a.iter().all(|i| item_key(i, keys).is_some())
        }
        _ => false,
    };
    if !always_present && !keyed_list {
        c.changed.insert(&cur.path);
    }
    match v {
        Value::Object(m) if !info.atomic_object => {
            let (at_root, in_meta) = (cur.at_root(), cur.in_meta());
            for (k, child) in m {
                if scope.skips(at_root, in_meta, k) {
                    continue;
                }
                let child_info = info.schema.field(k, at_root);
                cur.path.push(PathElement::Field(k.clone()));
                added(child, &child_info, scope, cur, c);
                cur.path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match &info.list {
            ListKind::Map(keys) if keyed_list => {
                let item_info = FieldInfo {
                    list: ListKind::Atomic,
                    ..info.clone()
                };
                for item in items {
                    cur.path
                        .push(PathElement::Key(item_key(item, keys).unwrap_or_default()));
                    added(item, &item_info, scope, cur, c);
                    cur.path.pop();
                }
            }
            ListKind::Set => collect_value(v, info, scope, cur, &mut c.changed),
            _ => {}
        },
        _ => {}
    }
}

fn compare_object(
    o: &Map<String, Value>,
    n: &Map<String, Value>,
    schema: Schema<'_>,
    scope: Scope,
    cur: &mut Cursor,
    c: &mut Comparison,
) {
    let (at_root, in_meta) = (cur.at_root(), cur.in_meta());
    for (k, nv) in n {
        if scope.skips(at_root, in_meta, k) {
            continue;
        }
        let info = schema.field(k, at_root);
        cur.path.push(PathElement::Field(k.clone()));
        match o.get(k) {
            None => added(nv, &info, scope, cur, c),
            Some(ov) if ov == nv => {}
            Some(ov) => compare_value(ov, nv, &info, scope, cur, c),
        }
        cur.path.pop();
    }
    for k in o.keys() {
        if !n.contains_key(k) && !scope.skips(at_root, in_meta, k) {
            cur.path.push(PathElement::Field(k.clone()));
            c.removed.insert(&cur.path);
            cur.path.pop();
        }
    }
}

fn compare_value(
    ov: &Value,
    nv: &Value,
    info: &FieldInfo<'_>,
    scope: Scope,
    cur: &mut Cursor,
    c: &mut Comparison,
) {
    match (ov, nv, &info.list) {
        (Value::Object(o), Value::Object(n), _) if !info.atomic_object => {
            compare_object(o, n, info.schema, scope, cur, c)
        }
        (Value::Array(o), Value::Array(n), ListKind::Set) => {
            for v in n.iter().filter(|v| !o.contains(v)) {
                cur.path.push(PathElement::Value(v.to_string()));
                c.changed.insert(&cur.path);
                cur.path.pop();
            }
            for v in o.iter().filter(|v| !n.contains(v)) {
                cur.path.push(PathElement::Value(v.to_string()));
                c.removed.insert(&cur.path);
                cur.path.pop();
            }
        }
        (Value::Array(o), Value::Array(n), ListKind::Map(keys)) => {
            let keyed = |items: &[Value]| -> Option<Vec<(String, usize)>> {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| item_key(item, keys).map(|k| (k, i)))
                    .collect()
            };
            let (Some(ok), Some(nk)) = (keyed(o), keyed(n)) else {
                c.changed.insert(&cur.path);
                return;
            };
            for (key, ni) in &nk {
                cur.path.push(PathElement::Key(key.clone()));
                match ok.iter().find(|(k, _)| k == key) {
                    None => added(&n[*ni], info, scope, cur, c),
                    Some((_, oi)) if o[*oi] == n[*ni] => {}
                    Some((_, oi)) => match (&o[*oi], &n[*ni]) {
                        (Value::Object(oo), Value::Object(no)) => {
                            compare_object(oo, no, info.schema, scope, cur, c)
                        }
                        _ => c.changed.insert(&cur.path),
                    },
                }
                cur.path.pop();
            }
            for (key, _) in ok.iter().filter(|(k, _)| !nk.iter().any(|(n, _)| n == k)) {
                cur.path.push(PathElement::Key(key.clone()));
                c.removed.insert(&cur.path);
                cur.path.pop();
            }
        }
        _ => {
            c.changed.insert(&cur.path);
            // A value that changed shape (say a scalar became an object) brings its inner fields along.
            if nv.is_object() || nv.is_array() {
                collect_value(nv, info, scope, cur, &mut c.changed);
            }
        }
    }
}

/// Merges an applied configuration into a live object: objects merge field by field, associative lists by
/// key (live order kept, new items appended), sets by value, everything else is replaced.
pub fn merge(live: &Value, applied: &Value, schema: Schema<'_>, scope: Scope) -> Value {
    let mut out = live.clone();
    if let (Value::Object(l), Value::Object(a)) = (&mut out, applied) {
        let mut cur = Cursor { path: Vec::new() };
        merge_object(l, a, schema, scope, &mut cur);
    } else {
        out = applied.clone();
    }
    out
}

fn merge_object(
    l: &mut Map<String, Value>,
    a: &Map<String, Value>,
    schema: Schema<'_>,
    scope: Scope,
    cur: &mut Cursor,
) {
    let (at_root, in_meta) = (cur.at_root(), cur.in_meta());
    for (k, av) in a {
        if scope.skips(at_root, in_meta, k) && !(at_root && matches!(k.as_str(), "apiVersion" | "kind")) {
            continue;
        }
        let info = schema.field(k, at_root);
        match l.get_mut(k) {
            None => {
                l.insert(k.clone(), av.clone());
            }
            Some(lv) => {
                cur.path.push(PathElement::Field(k.clone()));
                merge_value(lv, av, &info, scope, cur);
                cur.path.pop();
            }
        }
    }
}

fn merge_value(lv: &mut Value, av: &Value, info: &FieldInfo<'_>, scope: Scope, cur: &mut Cursor) {
    match (&mut *lv, av, &info.list) {
        (Value::Object(l), Value::Object(a), _) if !info.atomic_object => {
            merge_object(l, a, info.schema, scope, cur)
        }
        (Value::Array(l), Value::Array(a), ListKind::Set) => {
            for v in a {
                if !l.contains(v) {
                    l.push(v.clone());
                }
            }
        }
        (Value::Array(l), Value::Array(a), ListKind::Map(keys)) => {
            if a.iter().any(|i| item_key(i, keys).is_none()) {
                *lv = av.clone();
                return;
            }
            for item in a {
                let key = item_key(item, keys).unwrap_or_default();
                match l.iter_mut().find(|li| key_matches(li, &key, keys)) {
                    Some(live_item) => match (live_item, item) {
                        (Value::Object(lo), Value::Object(ao)) => {
                            merge_object(lo, ao, info.schema, scope, cur)
                        }
                        (li, _) => *li = item.clone(),
                    },
                    None => l.push(item.clone()),
                }
            }
        }
        _ => *lv = av.clone(),
    }
}

/// Removes the field at `path` from `obj`, if it is there.
pub fn remove_path(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    for pe in parents {
        let next = match (pe, node) {
            (PathElement::Field(n), Value::Object(m)) => m.get_mut(n),
            (PathElement::Key(k), Value::Array(items)) => items.iter_mut().find(|i| key_equals(i, k)),
            (PathElement::Value(v), Value::Array(items)) => items.iter_mut().find(|i| set_item_is(i, v)),
            (PathElement::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match (last, node) {
        (PathElement::Field(n), Value::Object(m)) => {
            m.remove(n);
        }
        (PathElement::Key(k), Value::Array(items)) => items.retain(|i| !key_equals(i, k)),
        (PathElement::Value(v), Value::Array(items)) => items.retain(|i| !set_item_is(i, v)),
        (PathElement::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
}

/// Whether a set item is the one a `v:` path element names (canonical JSON).
fn set_item_is(item: &Value, encoded: &str) -> bool {
    serde_json::from_str::<Value>(encoded).is_ok_and(|v| *item == v)
}

/// Whether a list item has exactly the key fields of a stored key.
fn key_equals(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    !want.is_empty() && want.iter().all(|(k, v)| item.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::fieldset::path_string;
    use serde_json::json;

    fn deploy() -> Schema<'static> {
        Schema::root("apps", "Deployment", None)
    }

    fn paths(s: &FieldSet) -> Vec<String> {
        s.members().iter().map(|p| path_string(p)).collect()
    }

    #[test]
    fn an_applied_configuration_owns_its_leaves_and_list_items_but_not_server_metadata() {
        let cfg = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"replicas": 1},
        });
        let set = fields_of(&cfg, deploy(), Scope::NoStatus);
        assert_eq!(
            paths(&set),
            [
                ".metadata.labels.app",
                ".spec.replicas",
                r#".spec.template.spec.containers[name="c"]"#,
                r#".spec.template.spec.containers[name="c"].image"#,
                r#".spec.template.spec.containers[name="c"].name"#,
            ]
        );
        let status_only = fields_of(&cfg, deploy(), Scope::StatusOnly);
        assert_eq!(paths(&status_only), [".status.replicas"]);
    }

    #[test]
    fn comparing_versions_finds_added_changed_and_removed_fields() {
        let old = json!({"metadata": {"name": "x", "resourceVersion": "1"},
            "spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [
                {"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}});
        let new = json!({"metadata": {"name": "x", "resourceVersion": "2", "labels": {"l": "v"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "a", "image": "2"}, {"name": "c", "image": "1"}]}}}});
        let c = compare(&old, &new, deploy(), Scope::All);
        assert_eq!(
            paths(&c.changed),
            [
                ".metadata.labels",
                ".metadata.labels.l",
                ".spec.replicas",
                r#".spec.template.spec.containers[name="a"].image"#,
                r#".spec.template.spec.containers[name="c"]"#,
                r#".spec.template.spec.containers[name="c"].image"#,
                r#".spec.template.spec.containers[name="c"].name"#,
            ]
        );
        assert_eq!(
            paths(&c.removed),
            [".spec.paused", r#".spec.template.spec.containers[name="b"]"#]
        );
        // A create: the kind's always-present parts are not owned as a whole.
        let created = compare(
            &json!({}),
            &json!({"spec": {"replicas": 1}}),
            deploy(),
            Scope::All,
        );
        assert_eq!(paths(&created.changed), [".spec.replicas"]);
    }

    #[test]
    fn merge_follows_list_semantics() {
        let live = json!({"metadata": {"finalizers": ["a"]},
            "spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                               {"name": "b", "image": "1"}],
                "tolerations": [{"key": "x"}]}}}});
        let applied = json!({"metadata": {"finalizers": ["b"]},
            "spec": {"template": {"spec": {
                "containers": [{"name": "a", "image": "2", "ports": [{"containerPort": 80, "name": "http"}]},
                               {"name": "z", "image": "9"}],
                "tolerations": [{"key": "y"}]}}}});
        let out = merge(&live, &applied, deploy(), Scope::All);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                {"name": "a", "image": "2", "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]},
                {"name": "b", "image": "1"},
                {"name": "z", "image": "9"},
            ])
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "y"}])
        );
    }

    #[test]
    fn custom_schemas_declare_their_own_list_types() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "hosts": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["path"],
                       "items": {"type": "object", "properties": {"path": {"type": "string"}, "to": {"type": "string"}}}},
            "args": {"type": "array", "items": {"type": "string"}},
        }}}});
        let s = Schema::root("example.com", "Widget", Some(&schema));
        let live = json!({"spec": {"hosts": ["a"], "routes": [{"path": "/", "to": "x"}], "args": ["1"]}});
        let applied =
            json!({"spec": {"hosts": ["b"], "routes": [{"path": "/api", "to": "y"}], "args": ["2"]}});
        let out = merge(&live, &applied, s, Scope::All);
        assert_eq!(
            out["spec"],
            json!({"hosts": ["a", "b"], "routes": [{"path": "/", "to": "x"}, {"path": "/api", "to": "y"}], "args": ["2"]})
        );
        assert_eq!(
            paths(&fields_of(&applied, s, Scope::All)),
            [
                ".spec.args",
                r#".spec.hosts[="b"]"#,
                r#".spec.routes[path="/api"]"#,
                r#".spec.routes[path="/api"].path"#,
                r#".spec.routes[path="/api"].to"#,
            ]
        );
    }

    #[test]
    fn removing_paths_reaches_into_keyed_items_and_sets() {
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"]},
            "spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "E", "value": "v"}]}]}});
        let key = PathElement::Key(json!({"name": "a"}).to_string());
        let f = |n: &str| PathElement::Field(n.into());
        remove_path(&mut obj, &[f("spec"), f("containers"), key.clone(), f("image")]);
        remove_path(
            &mut obj,
            &[
                f("spec"),
                f("containers"),
                key.clone(),
                f("env"),
                PathElement::Key(json!({"name": "E"}).to_string()),
            ],
        );
        remove_path(
            &mut obj,
            &[f("metadata"), f("finalizers"), PathElement::Value("\"a\"".into())],
        );
        remove_path(&mut obj, &[f("nope"), f("deeper")]);
        assert_eq!(
            obj,
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "a", "env": []}]}})
        );
    }
}
