//! Filters: may this pod run on this node? Pure functions over k8s-openapi types, in upstream's plugin order
//! (NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit).
//!
//! A failing filter yields [`Reason`]s whose `Display` is upstream's text, so that the `FailedScheduling` message
//! reads like kube-scheduler's (`1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }`).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};

use crate::resources::Resources;

/// Why a node was filtered out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reason {
    Unschedulable,
    UntoleratedTaint { key: String, value: String },
    NodeAffinity,
    Ports,
    TooManyPods,
    Insufficient(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Reason::Ports => f.write_str("node(s) didn't have free ports for the requested pod ports"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(name) => write!(f, "Insufficient {name}"),
        }
    }
}

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Does `toleration` tolerate `taint`? (upstream's `ToleratesTaint`)
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // An empty key with Exists tolerates everything; with Equal it tolerates nothing.
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first `NoSchedule`/`NoExecute` taint no toleration tolerates.
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// How many `PreferNoSchedule` taints are not tolerated (the TaintToleration score counts them).
pub fn untolerated_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> usize {
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| {
            !tolerations
                .iter()
                .filter(|tol| {
                    tol.effect
                        .as_deref()
                        .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
                })
                .any(|tol| tolerates(tol, t))
        })
        .count()
}

/// The taints the scheduler holds a node to: its own plus, for a node whose `Ready` condition is not `True`, the
/// taint the node lifecycle controller would add (`not-ready` or, for `Unknown`, `unreachable`). Doing it here
/// keeps a not-ready node unschedulable even before that controller has run, with upstream's wording.
pub fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let synthetic = match ready {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = synthetic
        && !taints.iter().any(|t| t.key == key && t.effect == "NoSchedule")
    {
        taints.push(Taint {
            key: key.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        });
    }
    taints
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn schedulable(node: &Node, tolerations: &[Toleration]) -> Result<(), Reason> {
    if !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    if tolerations.iter().any(|t| tolerates(t, &taint)) {
        Ok(())
    } else {
        Err(Reason::Unschedulable)
    }
}

/// `spec.nodeSelector`: every label must be present with that value.
pub fn matches_node_selector(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let [bound] = values else { return false };
            let (Some(v), Ok(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), bound.parse::<i64>())
            else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// One term: all its label expressions and field expressions hold. An empty term matches nothing (upstream).
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // metadata.name is the only field node selectors support.
            r.key == "metadata.name" && requirement_matches(r, Some(node_name))
        })
}

/// `requiredDuringSchedulingIgnoredDuringExecution`: any term matches.
pub fn matches_node_selector_terms(
    selector: &NodeSelector,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node_name, labels))
}

/// A host port a pod binds: protocol, host IP (`0.0.0.0` for all), port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// NodePorts: none of the wanted host ports is taken on the node.
pub fn ports_free(wanted: &[HostPort], used: &[HostPort]) -> bool {
    wanted.iter().all(|w| !used.iter().any(|u| w.conflicts(u)))
}

/// NodeResourcesFit: `request` fits `allocatable` minus `requested` (what pods on the node already request), with
/// room for one more pod. Returns every shortage, as upstream lists them all.
pub fn fits(
    request: &Resources,
    requested: &Resources,
    pods_on_node: i64,
    allocatable: &Resources,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if pods_on_node + 1 > allocatable.pods {
        reasons.push(Reason::TooManyPods);
    }
    if request.is_zero() {
        return reasons;
    }
    if request.milli_cpu > 0 && request.milli_cpu > allocatable.milli_cpu - requested.milli_cpu {
        reasons.push(Reason::Insufficient("cpu".into()));
    }
    if request.memory > 0 && request.memory > allocatable.memory - requested.memory {
        reasons.push(Reason::Insufficient("memory".into()));
    }
    if request.ephemeral_storage > 0
        && request.ephemeral_storage > allocatable.ephemeral_storage - requested.ephemeral_storage
    {
        reasons.push(Reason::Insufficient("ephemeral-storage".into()));
    }
    for (name, v) in &request.scalar {
        if *v > 0 && *v > allocatable.scalar(name) - requested.scalar(name) {
            reasons.push(Reason::Insufficient(name.clone()));
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            ..Taint::default()
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            ..Toleration::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn a_no_schedule_taint_keeps_pods_away_unless_tolerated() {
        let taints = [taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")];
        assert_eq!(
            untolerated_taint(&taints, &[]).map(|t| t.key.as_str()),
            Some("node-role.kubernetes.io/control-plane")
        );
        assert!(
            untolerated_taint(
                &taints,
                &[toleration(
                    "node-role.kubernetes.io/control-plane",
                    "Exists",
                    "",
                    "NoSchedule"
                )]
            )
            .is_none()
        );
        assert!(untolerated_taint(&taints, &[toleration("", "Exists", "", "")]).is_none());
        assert!(
            untolerated_taint(
                &taints,
                &[toleration(
                    "node-role.kubernetes.io/control-plane",
                    "Exists",
                    "",
                    "NoExecute"
                )]
            )
            .is_some()
        );
    }

    #[test]
    fn equal_tolerations_need_the_same_value_and_prefer_no_schedule_never_filters() {
        let taints = [
            taint("dedicated", "gpu", "NoExecute"),
            taint("soft", "", "PreferNoSchedule"),
        ];
        assert!(untolerated_taint(&taints, &[toleration("dedicated", "Equal", "gpu", "")]).is_none());
        assert!(untolerated_taint(&taints, &[toleration("dedicated", "Equal", "cpu", "")]).is_some());
        assert_eq!(untolerated_prefer_no_schedule(&taints, &[]), 1);
        assert_eq!(
            untolerated_prefer_no_schedule(&taints, &[toleration("soft", "Exists", "", "")]),
            0
        );
    }

    #[test]
    fn a_node_that_is_not_ready_carries_the_not_ready_taint() {
        let mut node = Node::default();
        assert_eq!(effective_taints(&node)[0].key, TAINT_NOT_READY);
        node.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(effective_taints(&node).is_empty());
        node.status = Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert_eq!(effective_taints(&node)[0].key, TAINT_UNREACHABLE);
    }

    #[test]
    fn a_cordoned_node_takes_only_pods_tolerating_unschedulable() {
        let node = Node {
            spec: Some(NodeSpec {
                unschedulable: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(schedulable(&node, &[]), Err(Reason::Unschedulable));
        assert_eq!(
            schedulable(
                &node,
                &[toleration(TAINT_UNSCHEDULABLE, "Exists", "", "NoSchedule")]
            ),
            Ok(())
        );
        assert_eq!(schedulable(&Node::default(), &[]), Ok(()));
    }

    #[test]
    fn node_selectors_need_every_label() {
        let node = labels(&[("disk", "ssd"), ("zone", "a")]);
        assert!(matches_node_selector(&labels(&[("disk", "ssd")]), &node));
        assert!(!matches_node_selector(&labels(&[("disk", "hdd")]), &node));
        assert!(!matches_node_selector(&labels(&[("gpu", "yes")]), &node));
    }

    #[test]
    fn affinity_expressions_follow_each_operator() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let m = |r: NodeSelectorRequirement| {
            term_matches(
                &NodeSelectorTerm {
                    match_expressions: Some(vec![r]),
                    match_fields: None,
                },
                "n1",
                &node,
            )
        };
        assert!(m(req("zone", "In", &["a", "b"])));
        assert!(!m(req("zone", "In", &["b"])));
        assert!(m(req("zone", "NotIn", &["b"])));
        assert!(m(req("missing", "NotIn", &["b"])));
        assert!(m(req("zone", "Exists", &[])));
        assert!(m(req("missing", "DoesNotExist", &[])));
        assert!(!m(req("zone", "DoesNotExist", &[])));
        assert!(m(req("cores", "Gt", &["4"])));
        assert!(!m(req("cores", "Lt", &["4"])));
        assert!(!m(req("zone", "Gt", &["4"])));
        assert!(!m(req("cores", "Gt", &["4", "5"])));
    }

    #[test]
    fn affinity_terms_are_ored_and_match_fields_name_the_node() {
        let node = labels(&[("zone", "a")]);
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        let by_zone = NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "In", &["b"])]),
            match_fields: None,
        };
        let sel = NodeSelector {
            node_selector_terms: vec![by_zone.clone(), by_name],
        };
        assert!(matches_node_selector_terms(&sel, "n1", &node));
        assert!(!matches_node_selector_terms(&sel, "n2", &node));
        assert!(!matches_node_selector_terms(
            &NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm::default()]
            },
            "n1",
            &node
        ));
        assert!(!matches_node_selector_terms(
            &NodeSelector {
                node_selector_terms: vec![by_zone]
            },
            "n1",
            &node
        ));
    }

    #[test]
    fn host_ports_conflict_on_the_same_protocol_port_and_overlapping_ip() {
        let p = |proto: &str, ip: &str, port| HostPort {
            protocol: proto.into(),
            ip: ip.into(),
            port,
        };
        let used = [p("TCP", "0.0.0.0", 80)];
        assert!(!ports_free(&[p("TCP", "10.0.0.1", 80)], &used));
        assert!(ports_free(&[p("UDP", "0.0.0.0", 80)], &used));
        assert!(ports_free(&[p("TCP", "0.0.0.0", 81)], &used));
        assert!(ports_free(
            &[p("TCP", "10.0.0.1", 80)],
            &[p("TCP", "10.0.0.2", 80)]
        ));
    }

    #[test]
    fn requests_must_fit_what_is_left_of_allocatable() {
        let alloc = Resources {
            milli_cpu: 2000,
            memory: 1 << 30,
            pods: 2,
            ..Default::default()
        };
        let used = Resources {
            milli_cpu: 1500,
            memory: 0,
            ..Default::default()
        };
        let want = Resources {
            milli_cpu: 600,
            memory: 1 << 20,
            ..Default::default()
        };
        assert_eq!(
            fits(&want, &used, 1, &alloc),
            vec![Reason::Insufficient("cpu".into())]
        );
        assert_eq!(
            fits(&want, &Resources::default(), 2, &alloc),
            vec![Reason::TooManyPods]
        );
        assert!(fits(&want, &Resources::default(), 0, &alloc).is_empty());
        let big = Resources {
            milli_cpu: 3000,
            memory: 2 << 30,
            ..Default::default()
        };
        assert_eq!(
            fits(&big, &used, 0, &alloc)
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>(),
            ["Insufficient cpu", "Insufficient memory"]
        );
    }
}
