//! `garbagecollector`: deletes objects whose owners are gone and runs the `orphan` and `foregroundDeletion`
//! finalizers, as upstream's garbage collector.
//!
//! Layout: [`start`] discovers every resource that can be listed, watched and deleted, watches them all and keeps a
//! [`Graph`] of objects by uid with their owner references. After each burst of events (and once a second) the pure
//! [`decide`] turns the graph into [`Step`]s, which [`act`] carries out through the API:
//! - an owner being deleted with the `orphan` finalizer: its dependents lose their reference to it, then the
//!   finalizer goes;
//! - an owner being deleted with `foregroundDeletion`: its dependents are deleted (those that block it in the
//!   foreground too), and the finalizer goes once no dependent with `blockOwnerDeletion` is left;
//! - an object none of whose owners is in the graph: each owner is looked up live (the graph may lag) and, if all
//!   are really gone (absent or another uid), the object is deleted in the background; dangling references among
//!   live ones are removed.
//!
//! Resources added later (CRDs) are not watched until the next start: discovery runs once.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::select_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::watcher;
use serde_json::json;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span};

use crate::{Context, ControllerFuture, Error};

const NAME: &str = "garbagecollector";
pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(run(ctx))
}

/// One object as the collector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Index into the discovered resources.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

/// Every watched object by uid.
#[derive(Debug, Default)]
pub struct Graph {
    pub nodes: HashMap<String, Node>,
}

impl Graph {
    fn dependents_of<'a>(&'a self, uid: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .values()
            .filter(move |n| n.owners.iter().any(|o| o.uid == uid))
    }
}

/// What the collector does next to one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Drop the reference to `owner` from `dependent` (orphaning).
    RemoveOwnerRef { dependent: String, owner: String },
    /// Remove a finalizer the collector runs.
    RemoveFinalizer { uid: String, finalizer: &'static str },
    /// Delete a dependent of an owner deleted in the foreground.
    Delete { uid: String, foreground: bool },
    /// None of the owners is in the graph: look them up live, then delete or drop dangling references.
    CheckOwners { uid: String },
}

/// The steps the graph calls for, without I/O.
pub fn decide(graph: &Graph) -> Vec<Step> {
    let mut steps = Vec::new();
    for node in graph.nodes.values() {
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            let mut any = false;
            for dep in graph.dependents_of(&node.uid) {
                any = true;
                steps.push(Step::RemoveOwnerRef {
                    dependent: dep.uid.clone(),
                    owner: node.uid.clone(),
                });
            }
            if !any {
                steps.push(Step::RemoveFinalizer {
                    uid: node.uid.clone(),
                    finalizer: ORPHAN,
                });
            }
            continue;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            let mut blocking = false;
            for dep in graph.dependents_of(&node.uid) {
                let blocks = dep
                    .owners
                    .iter()
                    .any(|o| o.uid == node.uid && o.block_owner_deletion == Some(true));
                blocking |= blocks;
                if !dep.deleting {
                    steps.push(Step::Delete {
                        uid: dep.uid.clone(),
                        foreground: blocks,
                    });
                }
            }
            if !blocking {
                steps.push(Step::RemoveFinalizer {
                    uid: node.uid.clone(),
                    finalizer: FOREGROUND,
                });
            }
            continue;
        }
        if !node.owners.is_empty()
            && !node.deleting
            && node.owners.iter().any(|o| !graph.nodes.contains_key(&o.uid))
        {
            steps.push(Step::CheckOwners {
                uid: node.uid.clone(),
            });
        }
    }
    steps
}

struct Collector {
    ctx: Context,
    resources: Vec<ApiResource>,
    /// Whether each resource is namespaced.
    namespaced: Vec<bool>,
    /// (group, kind) to the resource index, for owner lookups.
    by_kind: HashMap<(String, String), usize>,
    graph: Graph,
    /// Steps taken recently are not repeated until the watch had time to show their effect.
    recent: HashMap<String, Instant>,
}

async fn run(ctx: Context) -> Result<(), Error> {
    let discovery = tokio::select! {
        () = ctx.shutdown.cancelled() => return Ok(()),
        d = Discovery::new(ctx.client.clone()).run() => d.map_err(|source| Error::Api { controller: NAME, source })?,
    };
    let mut resources = Vec::new();
    let mut namespaced = Vec::new();
    let mut by_kind = HashMap::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            // The same objects served by two groups (events) are watched once.
            if !usable || by_kind.keys().any(|(_, k): &(String, String)| *k == ar.kind) {
                continue;
            }
            by_kind.insert((ar.group.clone(), ar.kind.clone()), resources.len());
            namespaced.push(caps.scope == Scope::Namespaced);
            resources.push(ar);
        }
    }
    info!(
        controller = NAME,
        resources = resources.len(),
        "watching resources for owner references"
    );
    let streams = resources.iter().enumerate().map(|(i, ar)| {
        let api = Api::<DynamicObject>::all_with(ctx.client.clone(), ar);
        watcher::watcher(api, watcher::Config::default())
            .map(move |e| (i, e))
            .boxed()
    });
    let mut events = select_all(streams);
    let mut c = Collector {
        ctx: ctx.clone(),
        resources,
        namespaced,
        by_kind,
        graph: Graph::default(),
        recent: HashMap::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = false;
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return Ok(()),
            ev = events.next() => match ev {
                Some((i, Ok(event))) => { c.apply(i, event); dirty = true; }
                Some((i, Err(e))) => debug!(controller = NAME, resource = %c.resources[i].plural, error = %e, "watch failed; it restarts"),
                None => return Ok(()),
            },
            // Quiet for a moment after events, or the periodic pass that retries what failed.
            () = tokio::time::sleep(Duration::from_millis(50)), if dirty => { dirty = false; c.pass().await; }
            _ = tick.tick() => c.pass().await,
        }
    }
}

impl Collector {
    fn apply(&mut self, resource: usize, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                let node = Node {
                    resource,
                    namespace: o.namespace(),
                    name: o.name_any(),
                    uid: o.metadata.uid.clone().unwrap_or_default(),
                    resource_version: o.resource_version(),
                    owners: o.metadata.owner_references.clone().unwrap_or_default(),
                    finalizers: o.finalizers().to_vec(),
                    deleting: o.metadata.deletion_timestamp.is_some(),
                };
                self.graph.nodes.insert(node.uid.clone(), node);
            }
            watcher::Event::Delete(o) => {
                if let Some(uid) = &o.metadata.uid {
                    self.graph.nodes.remove(uid);
                }
            }
            // A relist: what it does not list again is gone. The InitApply events that follow re-add the rest.
            watcher::Event::Init => self.graph.nodes.retain(|_, n| n.resource != resource),
            watcher::Event::InitDone => {}
        }
    }

    async fn pass(&mut self) {
        let now = Instant::now();
        self.recent
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(2));
        for step in decide(&self.graph) {
            let key = format!("{step:?}");
            if self.recent.contains_key(&key) {
                continue;
            }
            let span = info_span!("reconcile", controller = NAME, step = %key);
            match self.act(&step).instrument(span).await {
                Ok(()) => {
                    self.recent.insert(key, now);
                }
                Err(e) if e_is(&e, 404) || e_is(&e, 409) => {
                    self.recent.insert(key, now);
                }
                Err(e) => debug!(controller = NAME, error = %e, "garbage collection step failed; retrying"),
            }
        }
    }

    fn api_for(&self, node: &Node) -> Api<DynamicObject> {
        let ar = &self.resources[node.resource];
        match &node.namespace {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, ar),
            None => Api::all_with(self.ctx.client.clone(), ar),
        }
    }

    async fn act(&self, step: &Step) -> Result<(), kube::Error> {
        match step {
            Step::RemoveOwnerRef { dependent, owner } => {
                let Some(dep) = self.graph.nodes.get(dependent) else {
                    return Ok(());
                };
                let left: Vec<&OwnerReference> = dep.owners.iter().filter(|o| o.uid != *owner).collect();
                info!(dependent = %dep.name, "orphaning dependent");
                let patch =
                    json!({"metadata": {"ownerReferences": left, "resourceVersion": dep.resource_version}});
                self.api_for(dep)
                    .patch(&dep.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            Step::RemoveFinalizer { uid, finalizer } => {
                let Some(node) = self.graph.nodes.get(uid) else {
                    return Ok(());
                };
                let left: Vec<&String> = node
                    .finalizers
                    .iter()
                    .filter(|f| f.as_str() != *finalizer)
                    .collect();
                info!(object = %node.name, finalizer, "removing finalizer");
                let patch =
                    json!({"metadata": {"finalizers": left, "resourceVersion": node.resource_version}});
                self.api_for(node)
                    .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            Step::Delete { uid, foreground } => {
                let Some(node) = self.graph.nodes.get(uid) else {
                    return Ok(());
                };
                let policy = if *foreground {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                info!(object = %node.name, ?policy, "deleting dependent of an owner deleted in the foreground");
                self.delete(node, policy).await?;
            }
            Step::CheckOwners { uid } => {
                let Some(node) = self.graph.nodes.get(uid) else {
                    return Ok(());
                };
                let mut gone = Vec::new();
                for owner in &node.owners {
                    if !self.owner_exists(node, owner).await? {
                        gone.push(owner.uid.clone());
                    }
                }
                if gone.is_empty() {
                    return Ok(());
                }
                if gone.len() == node.owners.len() {
                    info!(object = %node.name, "owners are gone; deleting");
                    self.delete(node, PropagationPolicy::Background).await?;
                } else {
                    let left: Vec<&OwnerReference> =
                        node.owners.iter().filter(|o| !gone.contains(&o.uid)).collect();
                    let patch = json!({"metadata": {"ownerReferences": left, "resourceVersion": node.resource_version}});
                    self.api_for(node)
                        .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn delete(&self, node: &Node, policy: PropagationPolicy) -> Result<(), kube::Error> {
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(node.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.api_for(node).delete(&node.name, &params).await.map(|_| ())
    }

    /// A live lookup: the owner exists with the referenced uid. Unknown kinds count as existing (never delete on
    /// doubt).
    async fn owner_exists(&self, dependent: &Node, owner: &OwnerReference) -> Result<bool, kube::Error> {
        if self.graph.nodes.contains_key(&owner.uid) {
            return Ok(true);
        }
        let group = owner
            .api_version
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default();
        let Some(&i) = self.by_kind.get(&(group, owner.kind.clone())) else {
            return Ok(true);
        };
        let ar = &self.resources[i];
        let api: Api<DynamicObject> = match (&dependent.namespace, self.namespaced[i]) {
            (Some(ns), true) => Api::namespaced_with(self.ctx.client.clone(), ns, ar),
            (None, true) => return Ok(true),
            (_, false) => Api::all_with(self.ctx.client.clone(), ar),
        };
        Ok(api
            .get_opt(&owner.name)
            .await?
            .is_some_and(|o| o.metadata.uid.as_deref() == Some(owner.uid.as_str())))
    }
}

fn e_is(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[(&str, bool)], finalizers: &[&str], deleting: bool) -> Node {
        Node {
            resource: 0,
            namespace: Some("ns".into()),
            name: uid.into(),
            uid: uid.into(),
            resource_version: None,
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    uid: (*o).into(),
                    block_owner_deletion: Some(*block),
                    ..OwnerReference::default()
                })
                .collect(),
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    fn graph(nodes: Vec<Node>) -> Graph {
        Graph {
            nodes: nodes.into_iter().map(|n| (n.uid.clone(), n)).collect(),
        }
    }

    #[test]
    fn an_object_whose_owner_is_missing_gets_its_owners_checked() {
        let g = graph(vec![node("pod", &[("rs", true)], &[], false)]);
        assert_eq!(decide(&g), vec![Step::CheckOwners { uid: "pod".into() }]);
        let g = graph(vec![
            node("pod", &[("rs", true)], &[], false),
            node("rs", &[], &[], false),
        ]);
        assert!(decide(&g).is_empty());
    }

    #[test]
    fn orphaning_drops_references_before_the_finalizer() {
        let g = graph(vec![
            node("pod", &[("rs", true)], &[], false),
            node("rs", &[], &[ORPHAN], true),
        ]);
        assert_eq!(
            decide(&g),
            vec![Step::RemoveOwnerRef {
                dependent: "pod".into(),
                owner: "rs".into()
            }]
        );
        let g = graph(vec![node("rs", &[], &[ORPHAN], true)]);
        assert_eq!(
            decide(&g),
            vec![Step::RemoveFinalizer {
                uid: "rs".into(),
                finalizer: ORPHAN
            }]
        );
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents_only() {
        let g = graph(vec![
            node("pod", &[("rs", true)], &[], false),
            node("rs", &[], &[FOREGROUND], true),
        ]);
        assert_eq!(
            decide(&g),
            vec![Step::Delete {
                uid: "pod".into(),
                foreground: true
            }]
        );
        let g = graph(vec![
            node("pod", &[("rs", false)], &[], false),
            node("rs", &[], &[FOREGROUND], true),
        ]);
        let steps = decide(&g);
        assert!(steps.contains(&Step::Delete {
            uid: "pod".into(),
            foreground: false
        }));
        assert!(steps.contains(&Step::RemoveFinalizer {
            uid: "rs".into(),
            finalizer: FOREGROUND
        }));
    }
}
