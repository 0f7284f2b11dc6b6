//! `nodelifecycle`: notices nodes whose kubelet went silent, taints nodes by their conditions, and evicts Pods from
//! nodes tainted `NoExecute`, as upstream's node lifecycle controller and taint-eviction controller do.
//!
//! - Health: per node, the controller remembers, on ITS OWN clock, when it last saw the Ready condition's
//!   `lastHeartbeatTime` or the Lease `kube-node-lease/<node>`'s `renewTime` change ([`Health`]). When neither moved
//!   for `--node-monitor-grace-period`, Ready, MemoryPressure, DiskPressure and PIDPressure become `Unknown`
//!   (reason `NodeStatusUnknown`, message "Kubelet stopped posting node status."; missing ones `NodeStatusNeverUpdated`).
//! - Taints ([`desired_taints`]): `node.kubernetes.io/unreachable` (Ready Unknown) or `node.kubernetes.io/not-ready`
//!   (Ready False) as `NoExecute` and `NoSchedule`; the `NoSchedule` condition taints of TaintNodesByCondition
//!   (memory/disk/pid pressure, network unavailable, unschedulable). Removed when the condition clears.
//! - Eviction ([`eviction`]): a Pod on a node with `NoExecute` taints is deleted at once when it does not tolerate one
//!   of them, else when the shortest `tolerationSeconds` of its matching tolerations has passed since the taint was
//!   added (DefaultTolerationSeconds admission gives 300 s); through DELETE, as upstream.
//!
//! Layout: pure decisions ([`observe`], [`is_stale`], [`unknown_conditions`], [`desired_taints`], [`eviction`]) take the
//! time from a [`Clock`]; [`start`] keeps reflectors of Nodes, Leases and Pods and runs one pass per
//! `--node-monitor-period`, one span per node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "nodelifecycle";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const STOPPED: &str = "Kubelet stopped posting node status.";
const NEVER: &str = "Kubelet never posted node status.";
const WATCHED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// The taints this controller owns (and so may remove).
const CONDITION_TAINTS: [&str; 7] = [
    UNREACHABLE,
    NOT_READY,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "node.kubernetes.io/network-unavailable",
    "node.kubernetes.io/unschedulable",
];

/// Where "now" comes from, so tests can move time without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// What the controller last saw of a node's heartbeats, and when (on the controller's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub probe: Timestamp,
    pub heartbeat: Option<Timestamp>,
    pub lease_renew: Option<Timestamp>,
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// Updates what is known of a node: the probe time moves to `now` when it is first seen or when its Ready heartbeat
/// or its Lease renewal changed since the last look.
pub fn observe(prev: Option<&Health>, node: &Node, lease: Option<&Lease>, now: Timestamp) -> Health {
    let heartbeat = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let lease_renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    match prev {
        Some(p) if p.heartbeat == heartbeat && p.lease_renew == lease_renew => p.clone(),
        _ => Health {
            probe: now,
            heartbeat,
            lease_renew,
        },
    }
}

/// Whether nothing was heard from the node for longer than `grace`.
pub fn is_stale(h: &Health, now: Timestamp, grace: Duration) -> bool {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    h.probe.checked_add(grace).is_ok_and(|deadline| now > deadline)
}

/// The node's conditions with the watched ones turned Unknown, or `None` when they already are.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for kind in WATCHED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some(STOPPED.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some(NEVER.into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

fn taint(key: &str, effect: &str, now: Option<Timestamp>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        time_added: now.map(Time),
        value: None,
    }
}

/// The node's taints as its conditions call for (other taints kept; existing ones keep their `timeAdded`), or `None`
/// when they already are.
pub fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let status = |kind: &str| condition(node, kind).map(|c| c.status.as_str());
    let mut wanted: Vec<Taint> = Vec::new();
    match status("Ready") {
        Some("Unknown") => {
            wanted.push(taint(UNREACHABLE, "NoExecute", Some(now)));
            wanted.push(taint(UNREACHABLE, "NoSchedule", None));
        }
        Some("False") => {
            wanted.push(taint(NOT_READY, "NoExecute", Some(now)));
            wanted.push(taint(NOT_READY, "NoSchedule", None));
        }
        _ => {}
    }
    for (kind, key) in [
        ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "node.kubernetes.io/disk-pressure"),
        ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ] {
        if status(kind) == Some("True") {
            wanted.push(taint(key, "NoSchedule", None));
        }
    }
    if status("NetworkUnavailable") == Some("True") {
        wanted.push(taint(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
            None,
        ));
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push(taint("node.kubernetes.io/unschedulable", "NoSchedule", None));
    }
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !CONDITION_TAINTS.contains(&t.key.as_str()) || wanted.iter().any(|w| same(w, t)))
        .cloned()
        .collect();
    for w in wanted {
        if !out.iter().any(|t| same(t, &w)) {
            out.push(w);
        }
    }
    (out != current).then_some(out)
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if tol
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    match tol.operator.as_deref().unwrap_or("Equal") {
        // An empty key with Exists tolerates everything.
        "Exists" => key.is_empty() || key == taint.key,
        "Equal" | "" => {
            key == taint.key && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// When a Pod must leave a node with these taints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Never,
    Now,
    At(Timestamp),
}

/// Upstream's taint-eviction decision: an untolerated `NoExecute` taint evicts at once; otherwise the shortest
/// `tolerationSeconds` among the matching tolerations counts from the taint's `timeAdded` (no seconds: forever).
pub fn eviction(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut at: Option<Timestamp> = None;
    for t in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|tol| tolerates(tol, t)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        let Some(secs) = matching.iter().filter_map(|tol| tol.toleration_seconds).min() else {
            continue;
        };
        let added = t.time_added.as_ref().map_or(now, |a| a.0);
        let deadline = added
            .checked_add(SignedDuration::from_secs(secs.max(0)))
            .unwrap_or(added);
        at = Some(at.map_or(deadline, |a| a.min(deadline)));
    }
    match at {
        Some(a) if a <= now => Eviction::Now,
        Some(a) => Eviction::At(a),
        None => Eviction::Never,
    }
}

struct Controller {
    ctx: Context,
    clock: Arc<dyn Clock>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: HashMap<String, Health>,
}

impl Controller {
    fn err(source: kube::Error) -> Error {
        Error::Api {
            controller: NAME,
            source,
        }
    }

    async fn pass(&mut self) {
        let now = self.clock.now();
        let nodes = self.nodes.state();
        self.health
            .retain(|name, _| nodes.iter().any(|n| n.name_any() == *name));
        for node in nodes {
            let span = tracing::info_span!("reconcile", controller = NAME, node = %node.name_any());
            let result = tracing::Instrument::instrument(self.reconcile(&node, now), span).await;
            if let Err(e) = result {
                tracing::warn!(controller = NAME, node = %node.name_any(), error = %e, "reconcile failed");
            }
        }
    }

    async fn reconcile(&mut self, node: &Node, now: Timestamp) -> Result<(), Error> {
        let name = node.name_any();
        let lease = self
            .leases
            .get(&reflector::ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let health = observe(self.health.get(&name), node, lease.as_deref(), now);
        let stale = is_stale(&health, now, self.ctx.settings.node_monitor_grace_period);
        self.health.insert(name.clone(), health);
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        let mut node = node.clone();
        if stale && let Some(conditions) = unknown_conditions(&node, now) {
            tracing::info!(node = %name, "node stopped posting status; marking its conditions Unknown");
            let patch = serde_json::json!({"status": {"conditions": conditions}});
            node = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Self::err)?;
        }
        if let Some(taints) = desired_taints(&node, now) {
            tracing::info!(node = %name, taints = ?taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "updating node taints");
            // The resourceVersion makes this a compare-and-swap: a concurrent taint edit is never lost.
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "spec": {"taints": taints},
            });
            node = nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Self::err)?;
        }
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if taints.iter().any(|t| t.effect == "NoExecute") {
            self.evict(&name, &taints, now).await?;
        }
        Ok(())
    }

    async fn evict(&self, node: &str, taints: &[Taint], now: Timestamp) -> Result<(), Error> {
        let on_node = self.pods.state().into_iter().filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                && p.metadata.deletion_timestamp.is_none()
        });
        for pod in on_node {
            if eviction(&pod, taints, now) != Eviction::Now {
                continue;
            }
            let api: Api<Pod> =
                Api::namespaced(self.ctx.client.clone(), &pod.namespace().unwrap_or_default());
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&pod.name_any(), &dp).await {
                Ok(_) => {
                    tracing::info!(node, pod = %pod.name_any(), namespace = %pod.namespace().unwrap_or_default(), "evicting pod from NoExecute-tainted node")
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(Self::err(e)),
            }
        }
        Ok(())
    }
}

fn reflect<K>(api: Api<K>, shutdown: tokio_util::sync::CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                item = stream.next() => match item {
                    None => return,
                    Some(Err(e)) => tracing::debug!(controller = NAME, error = %e, "watch error"),
                    Some(Ok(_)) => {}
                },
            }
        }
    });
    reader
}

/// Runs the controller with the given clock (tests pass a fake one).
pub async fn run_with_clock(ctx: Context, clock: Arc<dyn Clock>) -> Result<(), Error> {
    let shutdown = ctx.shutdown.clone();
    let nodes = reflect(Api::<Node>::all(ctx.client.clone()), shutdown.clone());
    let leases = reflect(
        Api::<Lease>::namespaced(ctx.client.clone(), LEASE_NAMESPACE),
        shutdown.clone(),
    );
    let pods = reflect(Api::<Pod>::all(ctx.client.clone()), shutdown.clone());
    let ready = async {
        nodes.wait_until_ready().await?;
        leases.wait_until_ready().await?;
        pods.wait_until_ready().await
    };
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = ready => r.map_err(|e| Error::Other { controller: NAME, message: e.to_string() })?,
    }
    let period = ctx.settings.node_monitor_period;
    let mut c = Controller {
        ctx,
        clock,
        nodes,
        leases,
        pods,
        health: HashMap::new(),
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => c.pass().await,
        }
    }
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(run_with_clock(ctx, Arc::new(SystemClock)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_900_000_000 + s).unwrap()
    }

    fn node(ready: &str, heartbeat: i64) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_heartbeat_time: Some(Time(t(heartbeat))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(t(renew))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn a_node_is_stale_only_when_neither_heartbeat_nor_lease_moved_within_the_grace_period() {
        let n = node("True", 0);
        let h = observe(None, &n, Some(&lease(0)), t(0));
        assert!(!is_stale(&h, t(40), GRACE));
        assert!(is_stale(&h, t(41), GRACE));
        // The lease renewed at t=30 (seen at 30): fresh again, whatever the node object says.
        let h2 = observe(Some(&h), &n, Some(&lease(30)), t(30));
        assert_eq!(h2.probe, t(30));
        assert!(!is_stale(&h2, t(60), GRACE));
        // Nothing changed at t=65: the probe stays at 30.
        let h3 = observe(Some(&h2), &n, Some(&lease(30)), t(65));
        assert!(is_stale(&h3, t(71), GRACE));
    }

    #[test]
    fn a_silent_node_gets_unknown_conditions_once() {
        let n = node("True", 0);
        let conds = unknown_conditions(&n, t(50)).unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("Unknown", Some("NodeStatusUnknown"))
        );
        assert_eq!(ready.message.as_deref(), Some(STOPPED));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t(0))));
        assert_eq!(conds.len(), 4);
        assert_eq!(
            conds
                .iter()
                .find(|c| c.type_ == "DiskPressure")
                .unwrap()
                .reason
                .as_deref(),
            Some("NodeStatusNeverUpdated")
        );
        let mut marked = n.clone();
        marked.status.as_mut().unwrap().conditions = Some(conds);
        assert_eq!(unknown_conditions(&marked, t(60)), None);
    }

    #[test]
    fn taints_follow_the_ready_condition_and_other_taints_stay() {
        let mut n = node("Unknown", 0);
        n.spec = Some(NodeSpec {
            taints: Some(vec![taint("dedicated", "NoSchedule", None)]),
            ..Default::default()
        });
        let tainted = desired_taints(&n, t(5)).unwrap();
        let keys: Vec<_> = tainted
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        assert_eq!(
            keys,
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute",
                "node.kubernetes.io/unreachable:NoSchedule"
            ]
        );
        n.spec.as_mut().unwrap().taints = Some(tainted.clone());
        assert_eq!(
            desired_taints(&n, t(9)),
            None,
            "timeAdded is kept, nothing to change"
        );
        let mut not_ready = n.clone();
        not_ready.status = node("False", 0).status;
        let keys: Vec<_> = desired_taints(&not_ready, t(9))
            .unwrap()
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(keys, ["dedicated", NOT_READY, NOT_READY]);
        let mut ready = n.clone();
        ready.status = node("True", 0).status;
        assert_eq!(desired_taints(&ready, t(9)).unwrap().len(), 1);
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn tol(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn pods_leave_at_once_without_toleration_and_after_toleration_seconds_with_one() {
        let taints = [
            taint(UNREACHABLE, "NoExecute", Some(t(100))),
            taint(UNREACHABLE, "NoSchedule", None),
        ];
        assert_eq!(eviction(&pod(vec![]), &taints, t(100)), Eviction::Now);
        let defaulted = pod(vec![tol(NOT_READY, Some(300)), tol(UNREACHABLE, Some(300))]);
        assert_eq!(eviction(&defaulted, &taints, t(200)), Eviction::At(t(400)));
        assert_eq!(eviction(&defaulted, &taints, t(400)), Eviction::Now);
        assert_eq!(
            eviction(&pod(vec![tol(UNREACHABLE, None)]), &taints, t(10_000)),
            Eviction::Never
        );
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            eviction(&pod(vec![everything]), &taints, t(10_000)),
            Eviction::Never
        );
        assert_eq!(
            eviction(&pod(vec![tol(NOT_READY, None)]), &taints, t(100)),
            Eviction::Now
        );
        assert_eq!(
            eviction(&pod(vec![]), &[taint(UNREACHABLE, "NoSchedule", None)], t(100)),
            Eviction::Never
        );
    }
}
