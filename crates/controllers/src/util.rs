//! Helpers shared by the workload controllers (and free for any other controller): owner references, pod
//! readiness/availability as upstream's `podutil` judges it, int-or-percent resolution with upstream's rounding,
//! label selectors as query strings and as matchers, node selectors and required node affinity as upstream's
//! `nodeaffinity` package matches them, taints against tolerations, and upstream's template hash (FNV-32a + safe
//! encoding).
//!
//! Everything here is pure: no I/O, time passed in.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodCondition, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The owner reference a controller puts on what it creates: `controller: true`, `blockOwnerDeletion: true`.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Maps a child to the reconcile request of its controller of `kind`, for `Controller::watches`. Used instead of
/// `Controller::owns`, whose metadata-only watch (`as=PartialObjectMetadata`) the API server does not serve.
pub fn owner_request<K, C>(
    kind: &'static str,
) -> impl Fn(C) -> Option<kube::runtime::reflector::ObjectRef<K>> + Send + Sync + Clone + 'static
where
    K: kube::Resource<DynamicType = ()>,
    C: kube::Resource,
{
    move |child: C| {
        let owner = controller_of(child.meta()).filter(|r| r.kind == kind)?;
        let r = kube::runtime::reflector::ObjectRef::new(&owner.name);
        Some(match &child.meta().namespace {
            Some(ns) => r.within(ns),
            None => r,
        })
    }
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

fn pod_condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// Upstream's `IsPodReady`: condition `Ready` is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Upstream's `IsPodAvailable`: ready, and ready for at least `min_ready_seconds` at `now`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(cond) = pod_condition(pod, "Ready").filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &cond.last_transition_time {
        Some(t) => {
            t.0.checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
                .is_ok_and(|at| at <= now)
        }
        None => false,
    }
}

/// When a ready pod becomes available (for requeueing), if it is ready but not available yet.
pub fn becomes_available_in(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let cond = pod_condition(pod, "Ready").filter(|c| c.status == "True")?;
    let at = cond
        .last_transition_time
        .as_ref()?
        .0
        .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
        .ok()?;
    let left = now.duration_until(at);
    (left.is_positive()).then(|| left.unsigned_abs())
}

/// Whether an object is being deleted.
pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// Upstream's `GetScaledValueFromIntOrPercent`: an integer as is, `"N%"` of `total` rounded up or down.
pub fn scaled_value(
    v: Option<&IntOrString>,
    total: i32,
    round_up: bool,
    default: &str,
) -> Result<i32, String> {
    let s = match v {
        Some(IntOrString::Int(i)) => return Ok(*i),
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let Some(p) = s.strip_suffix('%') else {
        return s
            .parse::<i32>()
            .map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"));
    };
    let p: i64 = p
        .parse()
        .map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))?;
    let product = p * i64::from(total);
    let v = if round_up {
        (product + 99).div_euclid(100)
    } else {
        product.div_euclid(100)
    };
    i32::try_from(v).map_err(|_| format!("{s} of {total} is out of range"))
}

/// A label selector as the `labelSelector` query parameter spells it.
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in sel.match_expressions.iter().flatten() {
        let values = r.values.clone().unwrap_or_default().join(",");
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "Exists" => r.key.clone(),
            _ => format!("!{}", r.key),
        });
    }
    parts.join(",")
}

/// Whether `labels` satisfy one selector requirement (also used for node selector terms, which add `Gt`/`Lt`).
pub fn requirement_matches(
    key: &str,
    op: &str,
    values: &[String],
    labels: &BTreeMap<String, String>,
) -> bool {
    let v = labels.get(key);
    match op {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                v.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// Whether `labels` match a label selector; an empty selector matches everything (as upstream's
/// `LabelSelectorAsSelector` for workloads, whose validation forbids empty ones anyway).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel
            .match_expressions
            .iter()
            .flatten()
            .all(|r: &LabelSelectorRequirement| {
                requirement_matches(
                    &r.key,
                    &r.operator,
                    r.values.as_deref().unwrap_or_default(),
                    labels,
                )
            })
}

/// One node selector term: all its label expressions and field expressions hold. An empty term matches nothing,
/// as upstream; `metadata.name` is the only field node selectors know.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let values = |r: &NodeSelectorRequirement| r.values.clone().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement_matches(&r.key, &r.operator, &values(r), labels))
        && fields.iter().all(|r| {
            let name: BTreeMap<String, String> = [(r.key.clone(), node_name.to_string())].into();
            r.key == "metadata.name" && requirement_matches(&r.key, &r.operator, &values(r), &name)
        })
}

/// Upstream's `GetRequiredNodeAffinity(pod).Match(node)`: `spec.nodeSelector` and the terms of
/// `requiredDuringSchedulingIgnoredDuringExecution` (any one of them) both hold for the node.
pub fn required_node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok
        && required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|t| node_selector_term_matches(t, name, labels))
        })
}

/// Upstream's `FindMatchingUntoleratedTaint`: the first taint `include` selects that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    include: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints.iter().filter(|t| include(t)).find(|t| {
        !tolerations
            .iter()
            .any(|tol| crate::nodelifecycle::tolerates(tol, t))
    })
}

/// FNV-1a, 32 bits: the hash upstream computes pod-template hashes with.
pub fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: maps each byte onto an alphabet without vowels (no accidental words) and
/// without look-alike characters.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// A template hash as upstream's `ComputeHash`: FNV-32a of the serialised template, plus the collision count, safely
/// encoded. The serialisation is JSON rather than Go's spew dump, so values differ from upstream's, not their shape.
pub fn compute_hash<T: serde::Serialize>(template: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_upstream() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(Some(&pct("25%")), 10, true, "25%"), Ok(3));
        assert_eq!(scaled_value(Some(&pct("25%")), 10, false, "25%"), Ok(2));
        assert_eq!(scaled_value(None, 4, false, "25%"), Ok(1));
        assert_eq!(scaled_value(Some(&IntOrString::Int(2)), 10, false, "25%"), Ok(2));
        assert!(scaled_value(Some(&pct("x%")), 10, false, "25%").is_err());
    }

    #[test]
    fn selectors_render_and_match_alike() {
        let sel = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: Some(vec!["a".into(), "b".into()]),
            }]),
        };
        assert_eq!(selector_string(&sel), "app=web,tier in (a,b)");
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "b")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert!(selector_matches(&sel, &labels));
        let other: BTreeMap<String, String> = [("app", "web")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        assert!(!selector_matches(&sel, &other));
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn required_node_affinity_ors_terms_ands_requirements_and_matches_the_node_name_by_field() {
        use k8s_openapi::api::core::v1::{Affinity, NodeAffinity, NodeSelector};
        let spec = |terms: Vec<NodeSelectorTerm>, selector: &[(&str, &str)]| PodSpec {
            node_selector: (!selector.is_empty()).then(|| {
                selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        };
        let by_name = NodeSelectorTerm {
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
            ..NodeSelectorTerm::default()
        };
        let ssd = NodeSelectorTerm {
            match_expressions: Some(vec![req("disk", "In", &["ssd"]), req("zone", "Exists", &[])]),
            ..NodeSelectorTerm::default()
        };
        let n1 = node("n1", &[]);
        let n2 = node("n2", &[("disk", "ssd"), ("zone", "a")]);
        let n3 = node("n3", &[("disk", "ssd")]);
        let s = spec(vec![by_name.clone(), ssd], &[]);
        assert!(required_node_affinity_matches(&s, &n1));
        assert!(required_node_affinity_matches(&s, &n2));
        assert!(!required_node_affinity_matches(&s, &n3));
        // nodeSelector must hold as well.
        let s = spec(vec![by_name], &[("disk", "ssd")]);
        assert!(!required_node_affinity_matches(&s, &n1));
        // An empty term matches nothing; no affinity at all matches everything.
        assert!(!required_node_affinity_matches(
            &spec(vec![NodeSelectorTerm::default()], &[]),
            &n1
        ));
        assert!(required_node_affinity_matches(&PodSpec::default(), &n3));
        // Fields other than metadata.name never match.
        let other = NodeSelectorTerm {
            match_fields: Some(vec![req("spec.unschedulable", "In", &["n1"])]),
            ..NodeSelectorTerm::default()
        };
        assert!(!required_node_affinity_matches(&spec(vec![other], &[]), &n1));
    }

    #[test]
    fn untolerated_taints_are_found_among_the_selected_effects_only() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            ..Taint::default()
        };
        let tol = |k: &str, op: &str, v: Option<&str>, e: Option<&str>| Toleration {
            key: Some(k.into()),
            operator: Some(op.into()),
            value: v.map(str::to_string),
            effect: e.map(str::to_string),
            ..Toleration::default()
        };
        let taints = [taint("gpu", "yes", "NoSchedule"), taint("maint", "", "NoExecute")];
        let all = |_: &Taint| true;
        assert_eq!(
            untolerated_taint(&taints, &[], all).map(|t| t.key.as_str()),
            Some("gpu")
        );
        let gpu = tol("gpu", "Equal", Some("yes"), Some("NoSchedule"));
        assert_eq!(
            untolerated_taint(&taints, std::slice::from_ref(&gpu), all).map(|t| t.key.as_str()),
            Some("maint")
        );
        // Wrong value or wrong effect does not tolerate; Exists with an empty key tolerates everything.
        assert!(untolerated_taint(&taints[..1], &[tol("gpu", "Equal", Some("no"), None)], all).is_some());
        assert!(
            untolerated_taint(
                &taints[..1],
                &[tol("gpu", "Exists", None, Some("NoExecute"))],
                all
            )
            .is_some()
        );
        assert!(untolerated_taint(&taints, &[tol("", "Exists", None, None)], all).is_none());
        // Only NoExecute taints selected: the NoSchedule one is ignored.
        let no_execute = |t: &Taint| t.effect == "NoExecute";
        assert!(untolerated_taint(&taints, &[tol("maint", "Exists", None, None)], no_execute).is_none());
    }

    #[test]
    fn hashes_use_the_safe_alphabet_and_change_with_collisions() {
        let a = compute_hash(&"template", None);
        let b = compute_hash(&"template", Some(1));
        assert_ne!(a, b);
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Timestamp::from_second(1000).unwrap();
        let pod = Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        Timestamp::from_second(995).unwrap(),
                    )),
                    ..PodCondition::default()
                }]),
                ..Default::default()
            }),
            ..Pod::default()
        };
        assert!(is_pod_available(&pod, 0, now));
        assert!(is_pod_available(&pod, 5, now));
        assert!(!is_pod_available(&pod, 10, now));
        assert_eq!(
            becomes_available_in(&pod, 10, now),
            Some(std::time::Duration::from_secs(5))
        );
    }
}
