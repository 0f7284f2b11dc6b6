//! The scheduler's view of the cluster: nodes with what is requested on them, including pods assumed (placed here
//! but whose binding has not been seen yet), and the placement algorithm over it.
//!
//! Everything the hot path needs is precomputed as integers when an object arrives ([`NodeInfo`], [`PodInfo`]), so
//! placing a pod is arithmetic over a `Vec` of nodes. As upstream, only enough feasible nodes are searched
//! (`percentageOfNodesToScore`, adaptive by default) starting where the previous search stopped, so that large
//! clusters stay fast and load rotates over the nodes.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, NodeSelector, Pod, PreferredSchedulingTerm, Taint, Toleration};

use crate::filters::{self, HostPort, Reason};
use crate::resources::{self, Resources};
use crate::scores::{self, WEIGHTS};

/// `namespace/name`.
pub type PodKey = String;

pub fn pod_key(pod: &Pod) -> PodKey {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The controller owning a pod (its ReplicaSet, StatefulSet, Job, ...), by uid.
pub fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// What scheduling needs of a pod, computed once per attempt.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub key: PodKey,
    pub requests: Resources,
    pub nonzero_cpu: i64,
    pub nonzero_mem: i64,
    pub ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: BTreeMap<String, String>,
    pub required: Option<NodeSelector>,
    pub preferred: Vec<PreferredSchedulingTerm>,
    pub owner: Option<String>,
}

impl PodInfo {
    pub fn new(pod: &Pod) -> Self {
        let (requests, nonzero_cpu, nonzero_mem) = resources::pod_requests(pod);
        let spec = pod.spec.as_ref();
        let ports = spec
            .map(|s| {
                s.containers
                    .iter()
                    .chain(
                        s.init_containers
                            .iter()
                            .flatten()
                            .filter(|c| c.restart_policy.as_deref() == Some("Always")),
                    )
                    .flat_map(|c| c.ports.iter().flatten())
                    .filter(|p| p.host_port.unwrap_or(0) > 0)
                    .map(|p| HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|ip| !ip.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        port: p.host_port.unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let node_affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref());
        PodInfo {
            key: pod_key(pod),
            requests,
            nonzero_cpu,
            nonzero_mem,
            ports,
            tolerations: spec.and_then(|s| s.tolerations.clone()).unwrap_or_default(),
            node_selector: spec.and_then(|s| s.node_selector.clone()).unwrap_or_default(),
            required: node_affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone()),
            preferred: node_affinity
                .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone())
                .unwrap_or_default(),
            owner: controller_uid(pod),
        }
    }
}

/// A node as the filters see it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Node,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
}

impl NodeInfo {
    pub fn new(node: Node) -> Self {
        NodeInfo {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: filters::effective_taints(&node),
            allocatable: resources::node_allocatable(&node),
            node,
        }
    }

    /// Whether a change from `self` to `other` could make a pod fit that did not (heartbeats change nothing that
    /// matters, so they must not flush the unschedulable pods every few seconds).
    pub fn scheduling_differs(&self, other: &NodeInfo) -> bool {
        self.labels != other.labels
            || self.taints != other.taints
            || self.allocatable != other.allocatable
            || self.node.spec.as_ref().and_then(|s| s.unschedulable)
                != other.node.spec.as_ref().and_then(|s| s.unschedulable)
    }
}

/// What the pods placed on a node use.
#[derive(Debug, Clone, Default)]
struct Usage {
    requested: Resources,
    nonzero_cpu: i64,
    nonzero_mem: i64,
    pods: i64,
    ports: Vec<HostPort>,
    owners: HashMap<String, u32>,
}

struct Slot {
    name: String,
    /// `None` while pods name a node the cache has not seen (yet), or after it was deleted with pods left on it.
    info: Option<NodeInfo>,
    usage: Usage,
}

/// A pod counted on a node.
#[derive(Debug, Clone)]
pub struct Placement {
    pub node: String,
    pub uid: String,
    /// Placed by us, binding not yet observed through the watch.
    pub assumed: bool,
    requests: Resources,
    nonzero_cpu: i64,
    nonzero_mem: i64,
    ports: Vec<HostPort>,
    owner: Option<String>,
}

/// Why no node fits: how many nodes were considered and the reasons histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    pub nodes: usize,
    pub reasons: HashMap<Reason, usize>,
}

impl Diagnosis {
    /// Upstream's FitError text followed by the preemption post-filter's. bulwark does not preempt, so every node is
    /// one where preemption is not helpful.
    pub fn message(&self) -> String {
        if self.nodes == 0 {
            return "no nodes available to schedule pods".into();
        }
        let mut parts: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        let n = self.nodes;
        let mut msg = format!("0/{n} nodes are available");
        if !parts.is_empty() {
            msg.push_str(": ");
            msg.push_str(&parts.join(", "));
        }
        msg.push_str(&format!(
            ". preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling."
        ));
        msg
    }
}

/// Nodes, the pods placed on them, and the placement algorithm.
pub struct Cache {
    slots: Vec<Slot>,
    index: HashMap<String, usize>,
    pods: HashMap<PodKey, Placement>,
    nodes_with_info: usize,
    next_start: usize,
    /// `percentageOfNodesToScore`; 0 = upstream's adaptive default.
    percentage: u32,
    rng: u64,
}

impl Cache {
    pub fn new(percentage_of_nodes_to_score: u32, seed: u64) -> Self {
        Cache {
            slots: Vec::new(),
            index: HashMap::new(),
            pods: HashMap::new(),
            nodes_with_info: 0,
            next_start: 0,
            percentage: percentage_of_nodes_to_score,
            rng: seed | 1,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes_with_info
    }

    pub fn node_names(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.info.is_some())
            .map(|s| s.name.clone())
            .collect()
    }

    pub fn placement(&self, key: &str) -> Option<&Placement> {
        self.pods.get(key)
    }

    pub fn placed_keys(&self) -> Vec<PodKey> {
        self.pods.keys().cloned().collect()
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.slots.push(Slot {
            name: name.to_string(),
            info: None,
            usage: Usage::default(),
        });
        let i = self.slots.len() - 1;
        self.index.insert(name.to_string(), i);
        i
    }

    /// Drops a slot that has neither a node nor pods.
    fn gc(&mut self, i: usize) {
        let s = &self.slots[i];
        if s.info.is_some() || s.usage.pods > 0 {
            return;
        }
        let name = s.name.clone();
        self.slots.swap_remove(i);
        self.index.remove(&name);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// Adds or replaces a node; true when the change could let pending pods fit.
    pub fn upsert_node(&mut self, node: Node) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let info = NodeInfo::new(node);
        let i = self.slot(&name);
        let relevant = match &self.slots[i].info {
            Some(old) => old.scheduling_differs(&info),
            None => {
                self.nodes_with_info += 1;
                true
            }
        };
        self.slots[i].info = Some(info);
        relevant
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name)
            && self.slots[i].info.take().is_some()
        {
            self.nodes_with_info -= 1;
            self.gc(i);
        }
    }

    /// Counts a pod on `node` (replacing an earlier placement of the same key).
    pub fn place(&mut self, pod: &PodInfo, uid: &str, node: &str, assumed: bool) {
        self.unplace(&pod.key);
        let placement = Placement {
            node: node.to_string(),
            uid: uid.to_string(),
            assumed,
            requests: pod.requests.clone(),
            nonzero_cpu: pod.nonzero_cpu,
            nonzero_mem: pod.nonzero_mem,
            ports: pod.ports.clone(),
            owner: pod.owner.clone(),
        };
        let i = self.slot(node);
        let u = &mut self.slots[i].usage;
        u.requested.add(&placement.requests, 1);
        u.nonzero_cpu += placement.nonzero_cpu;
        u.nonzero_mem += placement.nonzero_mem;
        u.pods += 1;
        u.ports.extend(placement.ports.iter().cloned());
        if let Some(owner) = &placement.owner {
            *u.owners.entry(owner.clone()).or_default() += 1;
        }
        self.pods.insert(pod.key.clone(), placement);
    }

    /// Uncounts a pod; returns its placement if it had one.
    pub fn unplace(&mut self, key: &str) -> Option<Placement> {
        let p = self.pods.remove(key)?;
        if let Some(&i) = self.index.get(&p.node) {
            let u = &mut self.slots[i].usage;
            u.requested.add(&p.requests, -1);
            u.nonzero_cpu -= p.nonzero_cpu;
            u.nonzero_mem -= p.nonzero_mem;
            u.pods -= 1;
            for port in &p.ports {
                if let Some(j) = u.ports.iter().position(|x| x == port) {
                    u.ports.swap_remove(j);
                }
            }
            if let Some(owner) = &p.owner
                && let Some(n) = u.owners.get_mut(owner)
            {
                *n -= 1;
                if *n == 0 {
                    u.owners.remove(owner);
                }
            }
            self.gc(i);
        }
        Some(p)
    }

    /// How many feasible nodes to look for before scoring (upstream's `numFeasibleNodesToFind`).
    fn feasible_to_find(&self, all: usize) -> usize {
        const MIN_FEASIBLE: usize = 100;
        if all < MIN_FEASIBLE || self.percentage >= 100 {
            return all;
        }
        let pct = if self.percentage == 0 {
            (50 - all / 125).max(5)
        } else {
            self.percentage as usize
        };
        (all * pct / 100).max(MIN_FEASIBLE)
    }

    fn filter(info: &NodeInfo, usage: &Usage, pod: &PodInfo, reasons: &mut Vec<Reason>) {
        if let Err(r) = filters::schedulable(&info.node, &pod.tolerations) {
            reasons.push(r);
            return;
        }
        if let Some(t) = filters::untolerated_taint(&info.taints, &pod.tolerations) {
            reasons.push(Reason::UntoleratedTaint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
            });
            return;
        }
        let name = info.node.metadata.name.as_deref().unwrap_or("");
        if !filters::matches_node_selector(&pod.node_selector, &info.labels)
            || pod
                .required
                .as_ref()
                .is_some_and(|r| !filters::matches_node_selector_terms(r, name, &info.labels))
        {
            reasons.push(Reason::NodeAffinity);
            return;
        }
        if !pod.ports.is_empty() && !filters::ports_free(&pod.ports, &usage.ports) {
            reasons.push(Reason::Ports);
            return;
        }
        reasons.extend(filters::fits(
            &pod.requests,
            &usage.requested,
            usage.pods,
            &info.allocatable,
        ));
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: tie-breaking only needs to be cheap and spread evenly.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Picks a node for `pod`, or says why none fits.
    pub fn find_node(&mut self, pod: &PodInfo) -> Result<String, Diagnosis> {
        let all = self.nodes_with_info;
        if all == 0 {
            return Err(Diagnosis::default());
        }
        let want = self.feasible_to_find(all);
        let len = self.slots.len();
        let mut feasible: Vec<usize> = Vec::with_capacity(want.min(1024));
        let mut diagnosis = Diagnosis {
            nodes: all,
            reasons: HashMap::new(),
        };
        let mut reasons = Vec::new();
        let start = self.next_start % len;
        let mut visited = 0;
        for step in 0..len {
            let i = (start + step) % len;
            visited = step + 1;
            let slot = &self.slots[i];
            let Some(info) = &slot.info else { continue };
            reasons.clear();
            Self::filter(info, &slot.usage, pod, &mut reasons);
            if reasons.is_empty() {
                feasible.push(i);
                if feasible.len() >= want {
                    break;
                }
            } else {
                for r in reasons.drain(..) {
                    *diagnosis.reasons.entry(r).or_default() += 1;
                }
            }
        }
        self.next_start = (start + visited) % len;
        if feasible.is_empty() {
            return Err(diagnosis);
        }
        if feasible.len() == 1 {
            return Ok(self.slots[feasible[0]].name.clone());
        }
        // Raw scores first: spreading, affinity and taint scores are normalised over the feasible nodes.
        let mut max_owner = 0u32;
        let mut max_affinity = 0i64;
        let mut max_taints = 0i64;
        let mut raw: Vec<(i64, u32, i64, i64)> = Vec::with_capacity(feasible.len());
        for &i in &feasible {
            let slot = &self.slots[i];
            let Some(info) = &slot.info else { continue };
            let u = &slot.usage;
            let la = scores::least_allocated(
                u.nonzero_cpu + pod.nonzero_cpu,
                info.allocatable.milli_cpu,
                u.nonzero_mem + pod.nonzero_mem,
                info.allocatable.memory,
            );
            let owners = pod
                .owner
                .as_ref()
                .and_then(|o| u.owners.get(o))
                .copied()
                .unwrap_or(0);
            let name = info.node.metadata.name.as_deref().unwrap_or("");
            let aff = if pod.preferred.is_empty() {
                0
            } else {
                scores::preferred_affinity_raw(&pod.preferred, name, &info.labels)
            };
            let taints = filters::untolerated_prefer_no_schedule(&info.taints, &pod.tolerations) as i64;
            max_owner = max_owner.max(owners);
            max_affinity = max_affinity.max(aff);
            max_taints = max_taints.max(taints);
            raw.push((la, owners, aff, taints));
        }
        let mut best = (i64::MIN, 0usize);
        let mut ties = 0u64;
        for (k, (la, owners, aff, taints)) in raw.into_iter().enumerate() {
            let total = la * WEIGHTS.least_allocated
                + scores::spread(owners, max_owner) * WEIGHTS.spread
                + scores::normalize(aff, max_affinity, false) * WEIGHTS.affinity
                + scores::normalize(taints, max_taints, true) * WEIGHTS.taints;
            if total > best.0 {
                best = (total, k);
                ties = 1;
            } else if total == best.0 {
                // Reservoir sampling: each tied node is equally likely.
                ties += 1;
                if self.next_random().is_multiple_of(ties) {
                    best.1 = k;
                }
            }
        }
        Ok(self.slots[feasible[best.1]].name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeCondition, NodeSpec, NodeStatus, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn node(name: &str, cpu: &str, taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                allocatable: Some(
                    [("cpu", cpu), ("memory", "8Gi"), ("pods", "110")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.into())))
                        .collect(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, cpu: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        controller: Some(true),
                        uid: uid.into(),
                        kind: "ReplicaSet".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_failure_message_counts_reasons_per_node_like_upstream() {
        let mut cache = Cache::new(0, 1);
        cache.upsert_node(node(
            "cp",
            "4",
            vec![Taint {
                key: "node-role.kubernetes.io/control-plane".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            }],
        ));
        cache.upsert_node(node("w1", "1", vec![]));
        cache.upsert_node(node("w2", "1", vec![]));
        let err = cache
            .find_node(&PodInfo::new(&pod("big", "2", None)))
            .err()
            .unwrap_or_default();
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            Cache::new(0, 1)
                .find_node(&PodInfo::new(&pod("p", "1", None)))
                .err()
                .map(|d| d.message())
                .as_deref(),
            Some("no nodes available to schedule pods")
        );
    }

    #[test]
    fn assumed_pods_use_up_the_node_until_forgotten() {
        let mut cache = Cache::new(0, 1);
        cache.upsert_node(node("w1", "1", vec![]));
        let p1 = PodInfo::new(&pod("p1", "600m", None));
        let p2 = PodInfo::new(&pod("p2", "600m", None));
        assert_eq!(cache.find_node(&p1).ok().as_deref(), Some("w1"));
        cache.place(&p1, "u1", "w1", true);
        assert!(cache.find_node(&p2).is_err());
        cache.unplace(&p1.key);
        assert_eq!(cache.find_node(&p2).ok().as_deref(), Some("w1"));
    }

    #[test]
    fn pods_of_one_owner_spread_over_equal_nodes() {
        let mut cache = Cache::new(0, 7);
        for n in ["a", "b", "c"] {
            cache.upsert_node(node(n, "100", vec![]));
        }
        let mut per_node: HashMap<String, u32> = HashMap::new();
        for i in 0..9 {
            let p = PodInfo::new(&pod(&format!("p{i}"), "0", Some("rs-1")));
            let n = cache.find_node(&p).unwrap_or_default();
            cache.place(&p, "", &n, true);
            *per_node.entry(n).or_default() += 1;
        }
        assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
    }

    #[test]
    fn emptier_nodes_are_preferred() {
        let mut cache = Cache::new(0, 1);
        cache.upsert_node(node("small", "1", vec![]));
        cache.upsert_node(node("big", "16", vec![]));
        assert_eq!(
            cache
                .find_node(&PodInfo::new(&pod("p", "500m", None)))
                .ok()
                .as_deref(),
            Some("big")
        );
    }

    #[test]
    fn large_clusters_search_only_part_of_the_nodes_as_upstream() {
        let cache = Cache::new(0, 1);
        assert_eq!(cache.feasible_to_find(50), 50);
        assert_eq!(cache.feasible_to_find(1000), 420);
        assert_eq!(cache.feasible_to_find(5000), 500);
        assert_eq!(Cache::new(100, 1).feasible_to_find(1000), 1000);
    }

    #[test]
    fn pods_placed_on_unknown_nodes_are_kept_until_the_node_appears() {
        let mut cache = Cache::new(0, 1);
        let p1 = PodInfo::new(&pod("p1", "800m", None));
        cache.place(&p1, "u1", "late", false);
        cache.upsert_node(node("late", "1", vec![]));
        assert!(cache.find_node(&PodInfo::new(&pod("p2", "800m", None))).is_err());
        cache.remove_node("late");
        cache.unplace(&p1.key);
        assert_eq!(cache.node_count(), 0);
        assert!(cache.slots.is_empty());
    }
}
