//! `daemonset`: one pod of each DaemonSet on every node it fits, as upstream's DaemonSet controller.
//!
//! Layout: [`start`] runs a kube-rs `Controller` on DaemonSets that also watches the pods they own and the nodes
//! (only changes that can move a scheduling decision: labels, taints, appearing, going). [`reconcile`] lists the
//! nodes and the DaemonSet's pods fresh from the API, then acts as upstream's `syncDaemonSet`:
//! 1. [`manage`]: a pod for each node that should run one and has none, pinned to the node by
//!    `spec.affinity.nodeAffinity` `matchFields metadata.name` (the scheduler binds it), failed pods replaced (with
//!    upstream's per-node back-off), extra pods and pods on nodes that no longer fit deleted, pods of deleted nodes
//!    force-deleted (upstream's pod GC does that; there is none here);
//! 2. only when `manage` had nothing to do: [`rolling_update`] (maxUnavailable, or maxSurge) for `RollingUpdate`;
//!    `OnDelete` leaves old pods alone;
//! 3. [`status_of`], written as a full `replace_status`: under `--use-service-account-credentials` the
//!    `daemon-set-controller` role may `update` daemonsets/status but not patch it.
//!
//! Which nodes run a pod is [`node_should_run`] (template `nodeName`, `nodeSelector`, required node affinity, and
//! `NoSchedule`/`NoExecute` taints against the template's tolerations plus those upstream adds to every daemon pod,
//! [`daemon_tolerations`]). Pods carry `controller-revision-hash`, the template hash; the API server has no
//! ControllerRevisions, so the hash comes from the template itself (and `status.collisionCount`).
//! Every decision is a pure function, unit-tested below.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::util;
use crate::{Context, ControllerFuture, Error};

const NAME: &str = "daemonset";
/// The label carrying the template hash on a DaemonSet's pods.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The deprecated template generation: the API server may keep it in this annotation; pods then carry it as label.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Upstream's failed-pod back-off per DaemonSet and node: 1 s doubling up to 15 min.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Why one reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// What reconciles share: the controller context and the failed-pod back-off.
struct Shared {
    ctx: Context,
    backoff: Mutex<Backoff>,
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let shutdown = ctx.shutdown.clone();
    let workers = u16::try_from(ctx.settings.workers).unwrap_or(5);
    let nodes =
        node_changes(watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff())
            .filter_map(|change| async move {
                match change {
                    Ok(_) => Some(()),
                    Err(e) => {
                        debug!(controller = NAME, error = %e, "node watch failed; retrying");
                        None
                    }
                }
            });
    Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            util::owner_request::<DaemonSet, Pod>("DaemonSet"),
        )
        // A node change may concern any DaemonSet.
        .reconcile_all_on(nodes)
        .with_config(Config::default().concurrency(workers))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(
            reconcile,
            error_policy,
            Arc::new(Shared {
                ctx,
                backoff: Mutex::new(Backoff::default()),
            }),
        )
        .for_each(|_| async {})
        .await;
    Ok(())
}

/// What of a node can change where daemon pods belong: its labels and taints (and its name).
fn node_fingerprint(node: &Node) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.metadata.name.hash(&mut h);
    node.metadata.labels.hash(&mut h);
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    for t in taints.into_iter().flatten() {
        (&t.key, &t.value, &t.effect).hash(&mut h);
    }
    h.finish()
}

/// The node watch reduced to changes that matter (every heartbeat rewrites a node's status): nodes that appear,
/// change labels or taints, or go. A node gone while the watch was re-listing is reported at the end of the list.
fn node_changes(
    events: impl futures_util::Stream<Item = Result<watcher::Event<Node>, watcher::Error>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Node, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    events
        .map(move |event| {
            let changed = |node: Node, seen: &mut HashMap<String, u64>| {
                let print = node_fingerprint(&node);
                let name = node.name_any();
                (seen.insert(name, print) != Some(print)).then_some(Ok(node))
            };
            match event {
                Err(e) => vec![Err(e)],
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    vec![]
                }
                Ok(watcher::Event::InitApply(node)) => {
                    listed.insert(node.name_any());
                    changed(node, &mut seen).into_iter().collect()
                }
                Ok(watcher::Event::InitDone) => {
                    let gone: Vec<String> = seen.keys().filter(|n| !listed.contains(*n)).cloned().collect();
                    gone.into_iter()
                        .map(|name| {
                            seen.remove(&name);
                            Ok(Node {
                                metadata: ObjectMeta {
                                    name: Some(name),
                                    ..ObjectMeta::default()
                                },
                                ..Node::default()
                            })
                        })
                        .collect()
                }
                Ok(watcher::Event::Apply(node)) => changed(node, &mut seen).into_iter().collect(),
                Ok(watcher::Event::Delete(node)) => {
                    seen.remove(&node.name_any());
                    vec![Ok(node)]
                }
            }
        })
        .flat_map(futures_util::stream::iter)
}

fn error_policy(_: Arc<DaemonSet>, err: &ReconcileError, _: Arc<Shared>) -> Action {
    debug!(controller = NAME, error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

async fn reconcile(ds: Arc<DaemonSet>, shared: Arc<Shared>) -> Result<Action, ReconcileError> {
    let ns = ds.namespace().unwrap_or_default();
    let span = info_span!("reconcile", controller = NAME, namespace = %ns, name = %ds.name_any());
    reconcile_one(ds, shared).instrument(span).await
}

async fn reconcile_one(ds: Arc<DaemonSet>, shared: Arc<Shared>) -> Result<Action, ReconcileError> {
    // Upstream does nothing for a DaemonSet being deleted: the garbage collector removes its pods.
    if util::is_terminating(&ds.metadata) {
        return Ok(Action::await_change());
    }
    let selector = util::selector_string(&ds.spec.selector);
    if selector.is_empty() {
        warn!("this daemon set is selecting all pods; a non-empty selector is required");
        return Ok(Action::await_change());
    }
    let client = shared.ctx.client.clone();
    let ns = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let pods_api = Api::<Pod>::namespaced(client.clone(), &ns);
    let list_pods = || async {
        let listed = pods_api.list(&ListParams::default().labels(&selector)).await?;
        Ok::<_, ReconcileError>(
            listed
                .items
                .into_iter()
                .filter(|p| util::is_controlled_by(&p.metadata, &uid))
                .collect::<Vec<_>>(),
        )
    };
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut pods = list_pods().await?;
    let hash = template_hash(&ds);
    let now = Timestamp::now();
    let mut plan = manage(&ds, &nodes, &pods_by_node(&pods), &hash, now);

    // Failed pods are replaced, but a node that keeps failing them is given time (upstream fights kubelets that
    // reject pods this way).
    let mut wait: Option<Duration> = None;
    {
        let at = Instant::now();
        let mut backoff = shared
            .backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (node, pod) in std::mem::take(&mut plan.failed) {
            let key = format!("{uid}/{node}");
            if let Some(left) = backoff.left(&key, at) {
                wait = Some(wait.map_or(left, |w| w.min(left)));
                continue;
            }
            backoff.next(&key, at);
            warn!(pod = %pod, node = %node, "found failed daemon pod on node, will try to kill it");
            plan.delete.push(pod);
        }
    }

    let mut acted = !plan.is_empty();
    if acted {
        execute(&pods_api, &ds, &plan, &hash).await?;
    } else if let Some((max_surge, max_unavailable)) = rolling_limits(&ds, &nodes)? {
        let step = rolling_update(&ds, &nodes, &pods, &hash, max_surge, max_unavailable, now);
        if !step.is_empty() {
            acted = true;
            execute(&pods_api, &ds, &step, &hash).await?;
        }
    }
    if acted {
        pods = list_pods().await?;
    }

    let now = Timestamp::now();
    let status = status_of(&ds, &nodes, &pods_by_node(&pods), &hash, now);
    if ds.status.as_ref() != Some(&status) {
        let mut next = (*ds).clone();
        next.status = Some(status);
        Api::<DaemonSet>::namespaced(client, &ns)
            .replace_status(&ds.name_any(), &PostParams::default(), &next)
            .await?;
    }
    // Pods ready but not yet available for minReadySeconds turn available without any event: look again then.
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let soonest = pods
        .iter()
        .filter_map(|p| util::becomes_available_in(p, min_ready, now))
        .map(|d| d + Duration::from_millis(100))
        .chain(wait)
        .min();
    Ok(match soonest {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Deletes and creates what a plan says: deletions first (so that a replaced pod's node is free), creations in
/// upstream's slow-start batches (1, 2, 4, ...) so that a template the API server refuses fails once, not per node.
async fn execute(api: &Api<Pod>, ds: &DaemonSet, plan: &Plan, hash: &str) -> Result<(), ReconcileError> {
    let deletes = plan.delete.iter().map(|n| (n, DeleteParams::default())).chain(
        plan.force_delete
            .iter()
            .map(|n| (n, DeleteParams::default().grace_period(0))),
    );
    let results = futures_util::future::join_all(deletes.map(|(name, dp)| async move {
        info!(pod = %name, force = dp.grace_period_seconds == Some(0), "deleting daemon pod");
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }))
    .await;
    for r in results {
        r?;
    }
    let mut left: &[String] = &plan.create;
    let mut batch = 1usize;
    while !left.is_empty() {
        let (now, later) = left.split_at(batch.min(left.len()));
        let pp = PostParams::default();
        let results = futures_util::future::join_all(now.iter().map(|node| {
            let pod = pod_for_node(ds, node, hash);
            let pp = &pp;
            async move {
                let created = api.create(pp, &pod).await?;
                info!(pod = %created.name_any(), node = %node, "created daemon pod");
                Ok::<_, kube::Error>(())
            }
        }))
        .await;
        for r in results {
            r?;
        }
        left = later;
        batch *= 2;
    }
    Ok(())
}

/// The template hash pods carry in `controller-revision-hash`.
pub fn template_hash(ds: &DaemonSet) -> String {
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    util::compute_hash(&ds.spec.template, collisions)
}

fn template_generation(ds: &DaemonSet) -> Option<&str> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)
        .map(String::as_str)
}

/// Upstream's `IsPodUpdated`: the pod runs the current template (by hash, or by the deprecated generation).
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<&str>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    (!hash.is_empty() && label(HASH_LABEL) == Some(hash))
        || generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g))
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations upstream's `AddOrUpdateDaemonPodTolerations` gives every daemon pod: it stays through node
/// problems and is placed on nodes under pressure or cordoned (network-unavailable only with host networking).
pub fn daemon_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        t.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    t
}

/// Upstream's `AddOrUpdateTolerationInPodSpec` for each daemon toleration: one with the same key, operator, value
/// and effect is replaced, others are appended.
fn add_daemon_tolerations(spec: &mut PodSpec) {
    let extra = daemon_tolerations(spec);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in extra {
        let same = |o: &Toleration| {
            o.key == t.key
                && o.operator.as_deref().unwrap_or("Equal") == t.operator.as_deref().unwrap_or("Equal")
                && o.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
                && o.effect.as_deref().unwrap_or("") == t.effect.as_deref().unwrap_or("")
        };
        match tolerations.iter_mut().find(|o| same(o)) {
            Some(o) => *o = t,
            None => tolerations.push(t),
        }
    }
}

/// Upstream's `NodeShouldRunDaemonPod`: `(should run, should continue running)`. A node fits when the template's
/// `nodeName` (if any) names it, `nodeSelector` and required node affinity hold, and the daemon pod tolerates the
/// node's `NoSchedule` and `NoExecute` taints; a pod already there may stay while only `NoSchedule` ones bar it.
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    if !util::required_node_affinity_matches(&spec, node) {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let blocking = |t: &Taint| t.effect == "NoSchedule" || t.effect == "NoExecute";
    if util::untolerated_taint(taints, tolerations, blocking).is_none() {
        return (true, true);
    }
    let evicting = util::untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute");
    (false, evicting.is_none())
}

/// Upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the template's required node affinity (already checked
/// against the node) gives way to one term naming the node by `metadata.name`; preferred terms stay.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            ..NodeSelectorTerm::default()
        }],
    });
    affinity
}

/// The node a daemon pod is for (upstream's `GetTargetNodeName`): its `nodeName`, or before binding, the one node
/// its required affinity names by `metadata.name`.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        })
}

/// The pod the DaemonSet runs on `node`: the template with the hash label (and template generation), the daemon
/// tolerations and the node affinity pinning it, `generateName: <ds>-`, owned by the DaemonSet.
pub fn pod_for_node(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.template.clone();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.into());
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.into());
    }
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![util::controller_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// The DaemonSet's pods by the node they are for (upstream's `getNodesToDaemonPods` without deleted terminal
/// pods), each list oldest first as upstream's `podByCreationTimestampAndPhase`: bound pods, then by creation.
pub fn pods_by_node(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut out: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if util::is_terminating(&pod.metadata) && terminal(pod) {
            continue;
        }
        match target_node(pod) {
            Some(node) => out.entry(node).or_default().push(pod),
            None => debug!(pod = %pod.name_any(), "daemon pod names no node; ignored"),
        }
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| creation_order(a, b));
    }
    out
}

fn creation_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// What one pass does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// Pods of nodes that are gone: no kubelet will finish a graceful deletion, so they go at once.
    pub force_delete: Vec<String>,
    /// `(node, pod)`: failed pods to replace unless the node is backing off.
    pub failed: Vec<(String, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.delete.is_empty()
            && self.force_delete.is_empty()
            && self.failed.is_empty()
    }
}

fn is_rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// Upstream's `SurgeCount` / `UnavailableCount` for `desired` nodes, rounded up; both zero only when not rolling.
fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    if !is_rolling(ds) {
        return Ok((0, 0));
    }
    let r = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let surge = util::scaled_value(r.and_then(|r| r.max_surge.as_ref()), desired, true, "0")?;
    let unavailable = util::scaled_value(r.and_then(|r| r.max_unavailable.as_ref()), desired, true, "1")?;
    Ok((surge, unavailable))
}

/// Upstream's `AllowsSurge`: maxSurge is non-zero (judged against one node, so any percentage counts).
fn allows_surge(ds: &DaemonSet) -> bool {
    surge_and_unavailable(ds, 1).is_ok_and(|(s, _)| s != 0)
}

/// Upstream's `manage` (with `podsShouldBeOnNode` per node): what to create and delete so that each fitting node
/// runs one pod (two while surging), failed and succeeded pods are replaced, and nodes that no longer fit, or no
/// longer exist, run none.
pub fn manage(
    ds: &DaemonSet,
    nodes: &[Node],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let surge = allows_surge(ds);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let mut known = HashSet::new();
    for node in nodes {
        let name = node.name_any();
        let (should_run, should_continue) = node_should_run(ds, node);
        let pods = by_node.get(&name).map(Vec::as_slice).unwrap_or_default();
        known.insert(name.clone());
        if should_run && pods.is_empty() {
            plan.create.push(name);
        } else if should_continue {
            let mut running = Vec::new();
            for pod in pods.iter().filter(|p| !util::is_terminating(&p.metadata)) {
                match phase(pod) {
                    Some("Failed") => plan.failed.push((name.clone(), pod.name_any())),
                    Some("Succeeded") => plan.delete.push(pod.name_any()),
                    _ => running.push(*pod),
                }
            }
            if !surge {
                // One pod per node: all but the oldest go.
                plan.delete.extend(running.iter().skip(1).map(|p| p.name_any()));
                continue;
            }
            // Surging allows an old and a new pod side by side while the new one is not yet available.
            let (mut oldest_new, mut oldest_old) = (None, None);
            for pod in running {
                let slot = if is_updated(pod, hash, None) {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    plan.delete.push(pod.name_any());
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                && (!util::is_pod_ready(old) || util::is_pod_available(new, min_ready, now))
            {
                plan.delete.push(old.name_any());
            }
        } else {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| !util::is_terminating(&p.metadata))
                    .map(|p| p.name_any()),
            );
        }
    }
    for (node, pods) in by_node {
        if !known.contains(node) {
            plan.force_delete.extend(pods.iter().map(|p| p.name_any()));
        }
    }
    plan
}

/// `(maxSurge, maxUnavailable)` for a `RollingUpdate` DaemonSet (upstream's `updatedDesiredNodeCounts`: an
/// impossible zero/zero becomes one unavailable), `None` for `OnDelete`.
fn rolling_limits(ds: &DaemonSet, nodes: &[Node]) -> Result<Option<(i32, i32)>, ReconcileError> {
    if !is_rolling(ds) {
        return Ok(None);
    }
    let desired = desired_nodes(ds, nodes).len();
    let desired = i32::try_from(desired).unwrap_or(i32::MAX);
    let (surge, mut unavailable) = surge_and_unavailable(ds, desired).map_err(ReconcileError::Invalid)?;
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok(Some((surge, unavailable)))
}

fn desired_nodes<'a>(ds: &DaemonSet, nodes: &'a [Node]) -> Vec<&'a Node> {
    nodes.iter().filter(|n| node_should_run(ds, n).0).collect()
}

/// Upstream's `findUpdatedPodsOnNode`: the node's one current and one old pod (terminating ones aside), or `None`
/// when there are more, which `manage` sorts out first.
fn updated_and_old<'a>(
    pods: &[&'a Pod],
    hash: &str,
    generation: Option<&str>,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !util::is_terminating(&p.metadata)) {
        let slot = if is_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

/// Upstream's `rollingUpdate`. Without surge, old pods are deleted (the next pass creates their successors) while
/// no more than maxUnavailable nodes lack an available current pod; old pods that are not available anyway go at
/// once. With surge, a new pod starts beside an old one on up to maxSurge nodes, and the old pod goes once the new
/// one is available.
pub fn rolling_update(
    ds: &DaemonSet,
    nodes: &[Node],
    pods: &[Pod],
    hash: &str,
    max_surge: i32,
    max_unavailable: i32,
    now: Timestamp,
) -> Plan {
    let generation = template_generation(ds);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| util::is_pod_available(p, min_ready, now);
    let mut by_node = pods_by_node(pods);
    let desired = desired_nodes(ds, nodes);
    // Nodes that should run a pod but have none count as unavailable.
    for node in &desired {
        by_node.entry(node.name_any()).or_default();
    }
    let desired_count = desired.len();
    let mut plan = Plan::default();
    if max_surge == 0 {
        let mut unavailable = 0i32;
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            match updated_and_old(pods, hash, generation) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(old) {
                        plan.delete.push(old.name_any());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name_any());
                    }
                }
            }
        }
        let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }

    let node_fits = |name: &str| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(name))
            .is_some_and(|n| node_should_run(ds, n).0)
    };
    let mut surging = 0i32;
    let mut available_count = 0usize;
    let mut should_not_run = Vec::new();
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in &by_node {
        let Some((new, old)) = updated_and_old(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            available_count += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if node_fits(node) {
                    allowed.push(node.clone());
                } else {
                    plan.delete.push(old.name_any());
                }
            }
            (None, Some(old)) => {
                if !node_fits(node) {
                    should_not_run.push(old.name_any());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(old.name_any());
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes that no longer fit go only as far as availability above the desired count allows.
    let deletable = available_count
        .saturating_sub(desired_count)
        .min(should_not_run.len());
    plan.delete.extend(should_not_run.into_iter().take(deletable));
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    plan.create = allowed;
    plan.create.extend(candidates.into_iter().take(room));
    plan
}

/// Upstream's `updateDaemonSetStatus`: per fitting node, whether a pod is there, and whether the oldest is ready,
/// available and current; pods on nodes that do not fit are misscheduled. Fields upstream omits when zero stay
/// unset, so the status reads as upstream's.
pub fn status_of(
    ds: &DaemonSet,
    nodes: &[Node],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let generation = template_generation(ds);
    let (mut desired, mut current, mut ready, mut available, mut updated, mut misscheduled) =
        (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let pods = by_node
            .get(&node.name_any())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (should_run, _) = node_should_run(ds, node);
        if !should_run {
            if !pods.is_empty() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        let Some(pod) = pods.first() else { continue };
        current += 1;
        if util::is_pod_ready(pod) {
            ready += 1;
            if util::is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_updated(pod, hash, generation) {
            updated += 1;
        }
    }
    let omit_zero = |v: i32| (v != 0).then_some(v);
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        collision_count: old.collision_count,
        conditions: old.conditions,
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_available: omit_zero(available),
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_unavailable: omit_zero(desired - available),
        observed_generation: ds.metadata.generation,
        updated_number_scheduled: omit_zero(updated),
    }
}

/// Upstream's `flowcontrol.Backoff` as the DaemonSet controller uses it for failed pods: per key, a delay that
/// starts at one second and doubles on each failure up to 15 minutes, forgotten after twice that of quiet.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, (Instant, Duration)>,
}

impl Backoff {
    /// How long `key` still has to wait at `now`, if it is backing off.
    pub fn left(&self, key: &str, now: Instant) -> Option<Duration> {
        let (last, delay) = self.entries.get(key)?;
        let since = now.saturating_duration_since(*last);
        (since < *delay && since <= 2 * BACKOFF_MAX).then(|| *delay - since)
    }

    /// Records a failure of `key` at `now`.
    pub fn next(&mut self, key: &str, now: Instant) {
        self.entries
            .retain(|_, (last, _)| now.saturating_duration_since(*last) <= 2 * BACKOFF_MAX);
        let delay = match self.entries.get(key) {
            Some((_, d)) => (*d * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        self.entries.insert(key.to_string(), (now, delay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
    use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("ds-uid".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: DaemonSetSpec {
                selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some([("app".to_string(), "agent".to_string())].into()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "agent".to_string())].into()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(spec),
                },
                ..DaemonSetSpec::default()
            },
            status: None,
        }
    }

    fn rolling(d: &mut DaemonSet, surge: i32, unavailable: i32) {
        d.spec.update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_surge: Some(IntOrString::Int(surge)),
                max_unavailable: Some(IntOrString::Int(unavailable)),
            }),
        });
    }

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
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
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    /// A pod of `d` for `node` with the given hash; ready since `ready_at` (seconds) if any.
    fn pod(d: &DaemonSet, name: &str, node: &str, hash: &str, created: i64, ready_at: Option<i64>) -> Pod {
        let mut p = pod_for_node(d, node, hash);
        p.metadata.name = Some(name.into());
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready_at.is_some() { "True" } else { "False" }.into(),
                last_transition_time: ready_at.map(|s| Time(Timestamp::from_second(s).unwrap())),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        p
    }

    fn names(pods: &[String]) -> Vec<&str> {
        let mut v: Vec<&str> = pods.iter().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1000).unwrap()
    }

    #[test]
    fn a_node_runs_a_daemon_pod_when_selector_affinity_name_and_taints_allow() {
        let plain = ds(PodSpec::default());
        assert_eq!(node_should_run(&plain, &node("n1", &[], &[])), (true, true));

        let mut selective = PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..PodSpec::default()
        };
        let d = ds(selective.clone());
        assert_eq!(node_should_run(&d, &node("n1", &[], &[])), (false, false));
        assert_eq!(
            node_should_run(&d, &node("n2", &[("disk", "ssd")], &[])),
            (true, true)
        );

        selective.node_name = Some("n3".into());
        let d = ds(selective);
        assert_eq!(
            node_should_run(&d, &node("n2", &[("disk", "ssd")], &[])),
            (false, false)
        );
        assert_eq!(
            node_should_run(&d, &node("n3", &[("disk", "ssd")], &[])),
            (true, true)
        );

        // Required affinity, including a term naming nodes by field.
        let d = ds(PodSpec {
            affinity: Some(pin_to_node(None, "n4")),
            ..PodSpec::default()
        });
        assert_eq!(node_should_run(&d, &node("n4", &[], &[])), (true, true));
        assert_eq!(node_should_run(&d, &node("n5", &[], &[])), (false, false));
    }

    #[test]
    fn untolerated_no_schedule_keeps_new_pods_off_but_lets_running_ones_stay_and_no_execute_removes_them() {
        let d = ds(PodSpec::default());
        let gpu = node("g", &[], &[("gpu", "NoSchedule")]);
        assert_eq!(node_should_run(&d, &gpu), (false, true));
        let maint = node("m", &[], &[("maintenance", "NoExecute")]);
        assert_eq!(node_should_run(&d, &maint), (false, false));
        let prefer = node("p", &[], &[("slow", "PreferNoSchedule")]);
        assert_eq!(node_should_run(&d, &prefer), (true, true));
        // With a toleration both are fine.
        let tolerant = ds(PodSpec {
            tolerations: Some(vec![
                Toleration {
                    key: Some("gpu".into()),
                    operator: Some("Exists".into()),
                    ..Toleration::default()
                },
                Toleration {
                    key: Some("maintenance".into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    ..Toleration::default()
                },
            ]),
            ..PodSpec::default()
        });
        assert_eq!(node_should_run(&tolerant, &gpu), (true, true));
        assert_eq!(node_should_run(&tolerant, &maint), (true, true));
    }

    #[test]
    fn daemon_pods_tolerate_node_problems_pressure_and_cordons_as_upstream_adds() {
        let d = ds(PodSpec::default());
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
            ("node.kubernetes.io/pid-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
        ] {
            assert_eq!(
                node_should_run(&d, &node("n", &[], &[(key, effect)])),
                (true, true),
                "{key}"
            );
        }
        // Network-unavailable only for host-network pods.
        let net = node(
            "n",
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
        );
        assert_eq!(node_should_run(&d, &net), (false, true));
        let host = ds(PodSpec {
            host_network: Some(true),
            ..PodSpec::default()
        });
        assert_eq!(node_should_run(&host, &net), (true, true));
        // A not-ready NoSchedule taint is not among them (upstream tolerates only the NoExecute one).
        let not_ready = node("n", &[], &[("node.kubernetes.io/not-ready", "NoSchedule")]);
        assert_eq!(node_should_run(&d, &not_ready), (false, true));
        // The template's own toleration of the same kind is replaced, not doubled.
        let mut spec = PodSpec {
            tolerations: Some(vec![toleration("node.kubernetes.io/unschedulable", "NoSchedule")]),
            ..PodSpec::default()
        };
        add_daemon_tolerations(&mut spec);
        assert_eq!(spec.tolerations.unwrap().len(), 6);
    }

    #[test]
    fn daemon_pods_are_pinned_by_node_affinity_carry_the_hash_and_name_their_node() {
        let d = ds(PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm::default()],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        });
        let p = pod_for_node(&d, "n7", "abc");
        let terms = &p
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        let field = &terms[0].match_fields.as_ref().unwrap()[0];
        assert_eq!(
            (field.key.as_str(), field.operator.as_str()),
            ("metadata.name", "In")
        );
        assert_eq!(target_node(&p).as_deref(), Some("n7"));
        assert_eq!(p.labels().get(HASH_LABEL).map(String::as_str), Some("abc"));
        assert_eq!(p.labels().get("app").map(String::as_str), Some("agent"));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(
            util::controller_of(&p.metadata).map(|r| r.kind.as_str()),
            Some("DaemonSet")
        );
        assert_eq!(p.spec.unwrap().tolerations.unwrap().len(), 6);
        // A bound pod names its node by nodeName.
        let mut bound = pod_for_node(&d, "n7", "abc");
        bound.spec.as_mut().unwrap().node_name = Some("n8".into());
        assert_eq!(target_node(&bound).as_deref(), Some("n8"));
    }

    #[test]
    fn manage_creates_on_empty_fitting_nodes_and_removes_extra_misplaced_failed_and_orphaned_pods() {
        let d = ds(PodSpec::default());
        let nodes = [
            node("empty", &[], &[]),
            node("double", &[], &[]),
            node("evict", &[], &[("maintenance", "NoExecute")]),
            node("failed", &[], &[]),
        ];
        let mut failed = pod(&d, "f", "failed", "h", 1, None);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let pods = vec![
            pod(&d, "d-old", "double", "h", 1, Some(1)),
            pod(&d, "d-new", "double", "h", 2, Some(2)),
            pod(&d, "e", "evict", "h", 1, Some(1)),
            failed,
            pod(&d, "gone", "deleted-node", "h", 1, Some(1)),
        ];
        let plan = manage(&d, &nodes, &pods_by_node(&pods), "h", now());
        assert_eq!(plan.create, vec!["empty"]);
        assert_eq!(names(&plan.delete), vec!["d-new", "e"]);
        assert_eq!(plan.force_delete, vec!["gone"]);
        assert_eq!(plan.failed, vec![("failed".to_string(), "f".to_string())]);
    }

    #[test]
    fn a_terminating_pod_holds_its_node_until_it_is_gone() {
        let d = ds(PodSpec::default());
        let mut leaving = pod(&d, "l", "n1", "h", 1, Some(1));
        leaving.metadata.deletion_timestamp = Some(Time(now()));
        let pods = vec![leaving];
        let plan = manage(&d, &[node("n1", &[], &[])], &pods_by_node(&pods), "h", now());
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn rolling_update_replaces_at_most_max_unavailable_nodes_at_a_time() {
        let mut d = ds(PodSpec::default());
        rolling(&mut d, 0, 1);
        let nodes: Vec<Node> = (1..=3).map(|i| node(&format!("n{i}"), &[], &[])).collect();
        let old: Vec<Pod> = (1..=3)
            .map(|i| pod(&d, &format!("old{i}"), &format!("n{i}"), "old", 1, Some(1)))
            .collect();
        let plan = rolling_update(&d, &nodes, &old, "new", 0, 1, now());
        assert_eq!(plan.delete.len(), 1);
        assert!(plan.create.is_empty());

        // n1 has a new pod that is not ready yet: no room for another deletion.
        let mut pods = old[1..].to_vec();
        pods.push(pod(&d, "new1", "n1", "new", 5, None));
        assert!(rolling_update(&d, &nodes, &pods, "new", 0, 1, now()).is_empty());
        // A node with no pod at all counts as unavailable too.
        assert!(rolling_update(&d, &nodes, &old[1..], "new", 0, 1, now()).is_empty());

        // Once it is available the next old pod goes; with two allowed, two go.
        pods[2] = pod(&d, "new1", "n1", "new", 5, Some(6));
        assert_eq!(
            rolling_update(&d, &nodes, &pods, "new", 0, 1, now()).delete.len(),
            1
        );
        assert_eq!(
            rolling_update(&d, &nodes, &old, "new", 0, 2, now()).delete.len(),
            2
        );

        // Old pods that are not available are replaced regardless of the budget.
        let mut broken = old.clone();
        for p in &mut broken {
            p.status = None;
        }
        assert_eq!(
            rolling_update(&d, &nodes, &broken, "new", 0, 1, now())
                .delete
                .len(),
            3
        );
    }

    #[test]
    fn rolling_update_with_surge_starts_new_pods_beside_old_ones_then_removes_the_old() {
        let mut d = ds(PodSpec::default());
        rolling(&mut d, 1, 0);
        let nodes: Vec<Node> = (1..=2).map(|i| node(&format!("n{i}"), &[], &[])).collect();
        let old: Vec<Pod> = (1..=2)
            .map(|i| pod(&d, &format!("old{i}"), &format!("n{i}"), "old", 1, Some(1)))
            .collect();
        let plan = rolling_update(&d, &nodes, &old, "new", 1, 0, now());
        assert_eq!(plan.create.len(), 1);
        assert!(plan.delete.is_empty());
        // A surged pod not yet available uses the surge budget.
        let mut pods = old.clone();
        pods.push(pod(&d, "new1", "n1", "new", 5, None));
        assert!(rolling_update(&d, &nodes, &pods, "new", 1, 0, now()).is_empty());
        // Available: the old pod beside it goes.
        pods[2] = pod(&d, "new1", "n1", "new", 5, Some(6));
        let plan = rolling_update(&d, &nodes, &pods, "new", 1, 0, now());
        assert_eq!(plan.delete, vec!["old1"]);
        // manage keeps both while the new one is not available, and drops the old one after.
        let by_node = pods_by_node(&pods);
        assert_eq!(manage(&d, &nodes, &by_node, "new", now()).delete, vec!["old1"]);
        pods[2] = pod(&d, "new1", "n1", "new", 5, None);
        assert!(manage(&d, &nodes, &pods_by_node(&pods), "new", now()).is_empty());
    }

    #[test]
    fn status_counts_desired_current_ready_available_updated_and_misscheduled() {
        let mut d = ds(PodSpec::default());
        d.spec.min_ready_seconds = Some(10);
        let nodes = [
            node("a", &[], &[]),
            node("b", &[], &[]),
            node("c", &[], &[]),
            node("tainted", &[], &[("gpu", "NoSchedule")]),
        ];
        let pods = vec![
            pod(&d, "pa", "a", "h", 1, Some(1)),     // ready and available
            pod(&d, "pb", "b", "old", 1, Some(995)), // ready, not yet available, old template
            pod(&d, "pt", "tainted", "h", 1, Some(1)),
        ];
        let s = status_of(&d, &nodes, &pods_by_node(&pods), "h", now());
        assert_eq!(
            (
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.number_available,
                s.updated_number_scheduled,
                s.number_misscheduled,
                s.number_unavailable,
                s.observed_generation
            ),
            (3, 2, 2, Some(1), Some(1), 1, Some(2), Some(2))
        );
        // Zero counts upstream omits stay unset.
        let s = status_of(&d, &[], &BTreeMap::new(), "h", now());
        assert_eq!(
            (
                s.number_available,
                s.number_unavailable,
                s.updated_number_scheduled
            ),
            (None, None, None)
        );
    }

    #[test]
    fn on_delete_never_rolls_and_the_template_generation_counts_as_current() {
        let mut d = ds(PodSpec::default());
        d.spec.update_strategy = Some(DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        assert!(rolling_limits(&d, &[node("n", &[], &[])]).unwrap().is_none());
        rolling(&mut d, 0, 0);
        assert_eq!(rolling_limits(&d, &[node("n", &[], &[])]).unwrap(), Some((0, 1)));
        let mut p = pod(&d, "p", "n", "old", 1, None);
        assert!(!is_updated(&p, "new", Some("3")));
        p.labels_mut()
            .insert(TEMPLATE_GENERATION_LABEL.into(), "3".into());
        assert!(is_updated(&p, "new", Some("3")));
    }

    #[test]
    fn failed_pod_backoff_doubles_per_node_up_to_a_limit() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert_eq!(b.left("k", t0), None);
        b.next("k", t0);
        assert_eq!(b.left("k", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.left("k", t0 + Duration::from_secs(1)), None);
        b.next("k", t0 + Duration::from_secs(1));
        assert_eq!(
            b.left("k", t0 + Duration::from_secs(2)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(b.left("other", t0), None);
        for i in 0..20 {
            b.next("k", t0 + Duration::from_secs(2 + i));
        }
        assert_eq!(b.left("k", t0 + Duration::from_secs(21)), Some(BACKOFF_MAX));
    }
}
