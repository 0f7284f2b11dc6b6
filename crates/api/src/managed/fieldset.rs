//! Sets of field paths, as structured-merge-diff keeps them, and their `FieldsV1` encoding.
//!
//! A path is a list of [`PathElement`]s (`f:spec`, `k:{"name":"web"}`, `v:"x"`, `i:0`). A [`FieldSet`] is a
//! trie of them in which a node is a member when the path ending there is in the set. `FieldsV1` writes the
//! trie as nested objects: a member leaf is `{}`, a member with children carries `".": {}` among them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object: `f:<name>`.
    Field(String),
    /// An item of an associative list, by its key fields as canonical JSON (keys sorted): `k:{"name":"a"}`.
    Key(String),
    /// An item of a set, as canonical JSON: `v:"a"`.
    Value(String),
    /// An item of a list by position (only read from stored sets): `i:0`.
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            Self::Field(n) => format!("f:{n}"),
            Self::Key(k) => format!("k:{k}"),
            Self::Value(v) => format!("v:{v}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (prefix, rest) = s.split_at_checked(2)?;
        Some(match prefix {
            "f:" => Self::Field(rest.to_string()),
            // Re-serialised so that equal keys compare equal whatever spacing or order the writer used.
            "k:" => Self::Key(serde_json::from_str::<Value>(rest).ok()?.to_string()),
            "v:" => Self::Value(serde_json::from_str::<Value>(rest).ok()?.to_string()),
            "i:" => Self::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// Upstream's `fieldpath.PathElement.String`: `.name`, `[k=v,k2=v2]`, `[=v]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(n) => write!(f, ".{n}"),
            Self::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(v) => write!(f, "[={v}]"),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as upstream prints it in conflicts: `.spec.template.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Why a stored `fieldsV1` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fieldsV1: {0}")]
pub struct FieldsV1Error(String);

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `path` as a member.
    pub fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    fn node(&self, path: &[PathElement]) -> Option<&FieldSet> {
        path.iter().try_fold(self, |n, pe| n.children.get(pe))
    }

    /// Whether `path` or anything below it is a member.
    pub fn has_any_under(&self, path: &[PathElement]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// Every member path, parents before children.
    pub fn members(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.collect_members(&mut path, &mut out);
        out
    }

    fn collect_members(&self, path: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(path.clone());
        }
        for (pe, child) in &self.children {
            path.push(pe.clone());
            child.collect_members(path, out);
            path.pop();
        }
    }

    pub fn union_with(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, child) in &other.children {
            self.children.entry(pe.clone()).or_default().union_with(child);
        }
    }

    /// Member paths of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = child.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Members of `self` that are not members of `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let d = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !d.is_empty() {
                out.children.insert(pe.clone(), d);
            }
        }
        out
    }

    /// Removes the members of `other`, each with everything below it: a field that changed or went away
    /// takes its sub-fields with it.
    pub fn remove_subtrees(&mut self, other: &FieldSet) {
        for (pe, o) in &other.children {
            if o.member {
                self.children.remove(pe);
            } else if let Some(child) = self.children.get_mut(pe) {
                child.remove_subtrees(o);
                if child.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    /// Removes the exact members of `other`, leaving what lies below them.
    pub fn remove_members(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (pe, o) in &other.children {
            if let Some(child) = self.children.get_mut(pe) {
                child.remove_members(o);
                if child.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    /// The `fieldsV1` object.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe.encode(), child.to_fields_v1());
        }
        Value::Object(m)
    }

    pub fn from_fields_v1(v: &Value) -> Result<Self, FieldsV1Error> {
        let mut set = Self::default();
        set.read(v)?;
        // A bare `{}` at the root is the empty set, not "the whole object".
        set.member = false;
        Ok(set)
    }

    fn read(&mut self, v: &Value) -> Result<(), FieldsV1Error> {
        let m = v
            .as_object()
            .ok_or_else(|| FieldsV1Error(format!("expected an object, got {v}")))?;
        if m.is_empty() {
            self.member = true;
        }
        for (k, child) in m {
            if k == "." {
                self.member = true;
                continue;
            }
            let pe =
                PathElement::decode(k).ok_or_else(|| FieldsV1Error(format!("bad path element {k:?}")))?;
            let node = self.children.entry(pe).or_default();
            node.read(child)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(n: &str) -> PathElement {
        PathElement::Field(n.into())
    }

    fn k(v: Value) -> PathElement {
        PathElement::Key(v.to_string())
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let v = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:finalizers": {"v:\"a\"": {}}, "f:replicas": {}},
        });
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert!(set.contains(&[f("metadata"), f("labels")]));
        assert!(set.contains(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.contains(&[f("metadata")]));
        assert!(set.contains(&[f("spec"), f("containers"), k(json!({"name": "web"}))]));
        assert!(set.contains(&[f("spec"), f("finalizers"), PathElement::Value("\"a\"".into())]));
        assert_eq!(set.to_fields_v1(), v);
    }

    #[test]
    fn keys_are_canonical_whatever_the_writer_spacing() {
        let a = FieldSet::from_fields_v1(&json!({"k:{\"protocol\": \"TCP\", \"containerPort\": 80}": {}}))
            .unwrap();
        let b =
            FieldSet::from_fields_v1(&json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}})).unwrap();
        assert_eq!(a, b);
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }

    #[test]
    fn paths_print_like_upstream() {
        let p = [
            f("spec"),
            f("containers"),
            k(json!({"name": "web"})),
            f("ports"),
            k(json!({"containerPort": 80, "protocol": "TCP"})),
            f("name"),
        ];
        assert_eq!(
            path_string(&p),
            r#".spec.containers[name="web"].ports[containerPort=80,protocol="TCP"].name"#
        );
        assert_eq!(
            path_string(&[f("metadata"), f("finalizers"), PathElement::Value("\"x\"".into())]),
            r#".metadata.finalizers[="x"]"#
        );
    }

    #[test]
    fn set_algebra_keeps_members_exact_and_removes_whole_subtrees() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("template"), f("x")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("spec"), f("paused")]);
        assert_eq!(a.intersection(&b).members(), vec![vec![f("spec"), f("replicas")]]);
        assert_eq!(
            a.difference(&b).members(),
            vec![vec![f("spec"), f("template"), f("x")]]
        );
        let mut gone = FieldSet::new();
        gone.insert(&[f("spec"), f("template")]);
        let mut c = a.clone();
        c.remove_subtrees(&gone);
        assert_eq!(c.members(), vec![vec![f("spec"), f("replicas")]]);
        // Removing only the member `spec.template` leaves what is below it.
        let mut d = a.clone();
        d.remove_members(&gone);
        assert_eq!(d, a);
        assert!(a.has_any_under(&[f("spec"), f("template")]));
        let mut u = a.clone();
        u.union_with(&b);
        assert_eq!(u.members().len(), 3);
    }
}
