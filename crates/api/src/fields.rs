//! Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Running`).
//!
//! Only `=`, `==` and `!=` exist. Which fields a kind accepts, and the error for others, follow
//! upstream's per-kind field label conversions; values are read from the object's JSON the way
//! upstream's `ToSelectableFields` computes them (absent fields read as `""`).

use std::fmt;

use serde_json::Value;

use crate::labels::SelectorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    Equals,
    DoubleEquals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

impl FieldTerm {
    fn matches(&self, actual: &str) -> bool {
        match self.op {
            FieldOp::Equals | FieldOp::DoubleEquals => actual == self.value,
            FieldOp::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::DoubleEquals => "==",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A conjunction of field terms; empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(Self { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value a selector pins a field to with `=`/`==` (for indexed lookups like the kubelet's
    /// `spec.nodeName=<node>` watch).
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.op != FieldOp::NotEquals)
            .map(|t| t.value.as_str())
    }

    /// Checks every field against what the kind supports and applies upstream's renames
    /// (`spec.host` -> `spec.nodeName`); the error text is upstream's.
    pub fn for_kind(&self, group: &str, kind: &str) -> Result<Self, SelectorError> {
        let rules = kind_fields(group, kind);
        let mut terms = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let field = match rules {
                KindFields::Default => {
                    if t.field != "metadata.name" && t.field != "metadata.namespace" {
                        return Err(SelectorError(format!(
                            "\"{}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                            t.field
                        )));
                    }
                    t.field.clone()
                }
                KindFields::Listed { fields, renames } => {
                    if let Some((_, to)) = renames.iter().find(|(from, _)| *from == t.field) {
                        to.to_string()
                    } else if fields.contains(&t.field.as_str()) {
                        t.field.clone()
                    } else {
                        return Err(SelectorError(format!("field label not supported: {}", t.field)));
                    }
                }
            };
            terms.push(FieldTerm {
                field,
                op: t.op,
                value: t.value.clone(),
            });
        }
        Ok(Self { terms })
    }

    /// Matches an object of the given kind (call [`FieldSelector::for_kind`] first to reject
    /// unsupported fields; here an unknown field simply reads as `""`).
    pub fn matches(&self, group: &str, kind: &str, obj: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| t.matches(&field_value(group, kind, obj, &t.field)))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.terms.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

enum KindFields {
    /// Only `metadata.name` and `metadata.namespace`, with upstream's default-conversion error.
    Default,
    Listed {
        fields: &'static [&'static str],
        renames: &'static [(&'static str, &'static str)],
    },
}

fn kind_fields(group: &str, kind: &str) -> KindFields {
    let listed = |fields| KindFields::Listed { fields, renames: &[] };
    match (group, kind) {
        ("", "Pod") => KindFields::Listed {
            fields: &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            // old v1 clients send spec.host
            renames: &[("spec.host", "spec.nodeName")],
        },
        ("", "Node") => listed(&["metadata.name", "spec.unschedulable"]),
        ("", "Namespace") => listed(&["status.phase", "metadata.name"]),
        ("", "Secret") => listed(&["type", "metadata.namespace", "metadata.name"]),
        ("", "Service") => listed(&[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ]),
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            listed(&["metadata.name", "metadata.namespace", "status.replicas"])
        }
        ("", "Event") => listed(&[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ]),
        ("events.k8s.io", "Event") => listed(&[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
            "metadata.namespace",
            "metadata.name",
        ]),
        ("certificates.k8s.io", "CertificateSigningRequest") => listed(&["metadata.name", "spec.signerName"]),
        _ => KindFields::Default,
    }
}

/// The fields a kind accepts in a field selector.
pub fn supported_fields(group: &str, kind: &str) -> Vec<&'static str> {
    match kind_fields(group, kind) {
        KindFields::Default => vec!["metadata.name", "metadata.namespace"],
        KindFields::Listed { fields, .. } => fields.to_vec(),
    }
}

fn text(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn flag(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// The selectable value of `field` on `obj`, as upstream's field sets compute it.
pub fn field_value(group: &str, kind: &str, obj: &Value, field: &str) -> String {
    match (group, kind, field) {
        (_, _, "metadata.name") => text(obj, "/metadata/name"),
        (_, _, "metadata.namespace") => text(obj, "/metadata/namespace"),
        ("", "Pod", "spec.hostNetwork") => flag(obj, "/spec/hostNetwork"),
        ("", "Pod", "status.podIP") => {
            let first = text(obj, "/status/podIPs/0/ip");
            if first.is_empty() {
                text(obj, "/status/podIP")
            } else {
                first
            }
        }
        ("", "Pod", "status.podIPs") => String::new(),
        ("", "Node", "spec.unschedulable") => flag(obj, "/spec/unschedulable"),
        ("", "ReplicationController", "status.replicas") | ("apps", "ReplicaSet", "status.replicas") => obj
            .pointer("/status/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
        ("", "Event", "source") => {
            let component = text(obj, "/source/component");
            if component.is_empty() {
                text(obj, "/reportingComponent")
            } else {
                component
            }
        }
        // generic: the dotted path read from the JSON object
        _ => {
            let pointer: String = field.split('.').map(|p| format!("/{p}")).collect();
            text(obj, &pointer)
        }
    }
}

fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return vec![];
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (tok, op) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::DoubleEquals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(tok) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(SelectorError(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its number
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError(
            "invalid field selector: invalid escape sequence: \\".into(),
        ));
    }
    Ok(out)
}

/// Escapes `\`, `,` and `=` in a value so it survives [`FieldSelector::parse`].
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "podIP": "10.0.0.5"}
        })
    }

    fn fsel(s: &str, kind: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap().for_kind("", kind).unwrap()
    }

    #[test]
    fn pod_fields_match_spec_and_status() {
        let p = pod();
        assert!(fsel("spec.nodeName=n1", "Pod").matches("", "Pod", &p));
        assert!(fsel("status.phase!=Pending,metadata.namespace==default", "Pod").matches("", "Pod", &p));
        assert!(fsel("status.podIP=10.0.0.5", "Pod").matches("", "Pod", &p));
        assert!(fsel("spec.hostNetwork=false", "Pod").matches("", "Pod", &p));
        assert!(!fsel("spec.nodeName=", "Pod").matches("", "Pod", &p));
        assert!(
            fsel("spec.nodeName=", "Pod").matches("", "Pod", &json!({"spec": {}})),
            "unscheduled pods have an empty nodeName"
        );
    }

    #[test]
    fn legacy_spec_host_is_renamed_to_node_name() {
        let s = fsel("spec.host=n1", "Pod");
        assert_eq!(s.terms()[0].field, "spec.nodeName");
        assert_eq!(s.exact_value("spec.nodeName"), Some("n1"));
    }

    #[test]
    fn unsupported_fields_give_upstream_messages() {
        let err = |s: &str, g: &str, k: &str| {
            FieldSelector::parse(s)
                .unwrap()
                .for_kind(g, k)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("status.qosClass=BestEffort", "", "Pod"),
            "field label not supported: status.qosClass"
        );
        assert_eq!(
            err("metadata.namespace=x", "", "Node"),
            "field label not supported: metadata.namespace"
        );
        assert_eq!(
            err("spec.replicas=1", "apps", "Deployment"),
            r#""spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#
        );
    }

    #[test]
    fn per_kind_fields_follow_upstream() {
        assert!(supported_fields("", "Secret").contains(&"type"));
        assert!(supported_fields("", "Node").contains(&"spec.unschedulable"));
        assert!(supported_fields("", "Service").contains(&"spec.clusterIP"));
        assert!(supported_fields("", "Event").contains(&"involvedObject.name"));
        assert!(supported_fields("events.k8s.io", "Event").contains(&"regarding.name"));
        assert_eq!(
            supported_fields("", "ConfigMap"),
            ["metadata.name", "metadata.namespace"]
        );
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert!(fsel("spec.unschedulable=true", "Node").matches("", "Node", &node));
        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        assert!(fsel("type=kubernetes.io/tls", "Secret").matches("", "Secret", &secret));
    }

    #[test]
    fn event_source_falls_back_to_reporting_component() {
        let ev = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web-1"}, "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler"});
        let s = fsel(
            "involvedObject.kind=Pod,involvedObject.name=web-1,source=default-scheduler,type=Normal",
            "Event",
        );
        assert!(s.matches("", "Event", &ev));
        let ev2 = json!({"regarding": {"name": "web-1"}, "reportingController": "kubelet"});
        let s2 = FieldSelector::parse("regarding.name=web-1,reportingController=kubelet")
            .unwrap()
            .for_kind("events.k8s.io", "Event")
            .unwrap();
        assert!(s2.matches("events.k8s.io", "Event", &ev2));
    }

    #[test]
    fn syntax_errors_and_escapes() {
        assert_eq!(
            FieldSelector::parse("a").unwrap_err().to_string(),
            "invalid selector: 'a'; can't understand 'a'"
        );
        assert_eq!(
            FieldSelector::parse("a in (b)").unwrap_err().to_string(),
            "invalid selector: 'a in (b)'; can't understand 'a in (b)'"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse(r"a=\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(s.terms()[0].value, "a,b=c");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c");
        assert!(FieldSelector::parse("").unwrap().is_everything());
        assert!(FieldSelector::parse(",").unwrap().is_everything());
    }

    #[test]
    fn terms_are_sorted_and_not_equals_is_no_exact_value() {
        let s = FieldSelector::parse("z=1,a!=2").unwrap();
        assert_eq!(s.to_string(), "a!=2,z=1");
        assert_eq!(s.exact_value("a"), None);
        assert_eq!(s.exact_value("z"), Some("1"));
    }
}
