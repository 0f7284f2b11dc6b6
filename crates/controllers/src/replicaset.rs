//! `replicaset`: keeps as many pods as a ReplicaSet asks for, as upstream's ReplicaSet controller.
//!
//! Layout: [`start`] runs a kube-rs `Controller` on ReplicaSets that also watches the pods they own; [`reconcile`]
//! lists the ReplicaSet's pods fresh from the API (so a reconcile always sees its own earlier writes and never
//! creates twice), creates or deletes the difference and writes the status. The decisions are pure functions:
//! [`pods_to_delete`] (upstream's ranking: unscheduled, pending, not ready, newest go first) and [`status_of`].

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use tracing::{Instrument, debug, info_span};

use crate::util;
use crate::{Context, ControllerFuture, Error};

const NAME: &str = "replicaset";

/// Why one reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let shutdown = ctx.shutdown.clone();
    let workers = u16::try_from(ctx.settings.workers).unwrap_or(5);
    Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            util::owner_request::<ReplicaSet, Pod>("ReplicaSet"),
        )
        .with_config(Config::default().concurrency(workers))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<ReplicaSet>, err: &ReconcileError, _: Arc<Context>) -> Action {
    debug!(controller = NAME, error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = rs.namespace().unwrap_or_default();
    let span = info_span!("reconcile", controller = NAME, namespace = %ns, name = %rs.name_any());
    reconcile_one(rs, ctx).instrument(span).await
}

async fn reconcile_one(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if util::is_terminating(&rs.metadata) {
        return Ok(Action::await_change());
    }
    let ns = rs.namespace().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let spec = rs.spec.clone();
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let selector = util::selector_string(&spec.selector);
    let listed = pods_api.list(&ListParams::default().labels(&selector)).await?;
    let active: Vec<Pod> = listed
        .items
        .into_iter()
        .filter(|p| {
            util::is_controlled_by(&p.metadata, &uid) && !util::is_terminating(&p.metadata) && !finished(p)
        })
        .collect();
    let want = spec.replicas.unwrap_or(1).max(0);
    let have = i32::try_from(active.len()).unwrap_or(i32::MAX);
    let mut created = Vec::new();
    let mut active = active;
    if have < want {
        created = create_pods(&ctx, &rs, want - have).await?;
    } else if have > want {
        let doomed = pods_to_delete(&active, usize::try_from(have - want).unwrap_or(0));
        for name in &doomed {
            match pods_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        active.retain(|p| !doomed.contains(&p.name_any()));
    }
    // Status counts what exists now: the listed pods minus those just deleted plus those just created.
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut counted = active;
    counted.extend(created);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = status_of(&rs, &counted, &template_labels, now);
    if rs.status.as_ref() != Some(&status) {
        // A full update, not a patch: upstream's replicaset-controller role may only `update` replicasets/status.
        let mut next = (*rs).clone();
        next.status = Some(status);
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&rs.name_any(), &PostParams::default(), &next)
            .await?;
    }
    // Pods ready but not yet available for minReadySeconds turn available without any event: look again then.
    let soonest = counted
        .iter()
        .filter_map(|p| util::becomes_available_in(p, min_ready, now))
        .min();
    Ok(match soonest {
        Some(d) => Action::requeue(d + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

/// Pods that ran to completion no longer count, as upstream's `FilterActivePods`.
fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Creates `count` pods from the template in upstream's slow-start batches (1, 2, 4, ...), so a template the API
/// server refuses fails after one attempt rather than hundreds.
async fn create_pods(ctx: &Context, rs: &ReplicaSet, count: i32) -> Result<Vec<Pod>, ReconcileError> {
    let ns = rs.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let pod = pod_from_template(rs);
    let mut left = usize::try_from(count).unwrap_or(0);
    let mut batch = 1usize;
    let mut created = Vec::new();
    while left > 0 {
        let n = batch.min(left);
        let pp = PostParams::default();
        let results = futures_util::future::join_all((0..n).map(|_| api.create(&pp, &pod))).await;
        for r in results {
            created.push(r?);
        }
        left -= n;
        batch *= 2;
    }
    Ok(created)
}

/// The pod a ReplicaSet's template describes: `generateName: <rs>-`, owned by the ReplicaSet.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.template.clone().unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![util::controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Upstream's `ActivePods` order: the pods to delete first come first.
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(util::is_pod_ready(a).cmp(&util::is_pod_ready(b)))
        .then(restarts(b).cmp(&restarts(a)))
        .then(
            b.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        )
}

/// The names of the `count` pods to delete when scaling down.
pub fn pods_to_delete(pods: &[Pod], count: usize) -> Vec<String> {
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| deletion_order(a, b));
    sorted.into_iter().take(count).map(|p| p.name_any()).collect()
}

/// The status upstream's `calculateStatus` writes for these active pods.
pub fn status_of(
    rs: &ReplicaSet,
    pods: &[Pod],
    template_labels: &std::collections::BTreeMap<String, String>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let min_ready = rs.spec.min_ready_seconds.unwrap_or(0);
    let count =
        |f: &dyn Fn(&Pod) -> bool| i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        })),
        ready_replicas: Some(count(&util::is_pod_ready)),
        available_replicas: Some(count(&|p| util::is_pod_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_string),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn scaling_down_removes_unscheduled_then_not_ready_then_newest_pods_first() {
        let pods = vec![
            pod("old-ready", Some("n1"), "Running", true, 1),
            pod("new-ready", Some("n1"), "Running", true, 5),
            pod("not-ready", Some("n1"), "Running", false, 2),
            pod("unscheduled", None, "Pending", false, 0),
        ];
        assert_eq!(
            pods_to_delete(&pods, 3),
            vec!["unscheduled", "not-ready", "new-ready"]
        );
    }

    #[test]
    fn status_counts_ready_and_fully_labeled_pods() {
        let mut a = pod("a", None, "Running", true, 1);
        a.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
        let b = pod("b", None, "Running", false, 1);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(3),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        };
        let labels = [("app".to_string(), "x".to_string())].into();
        let s = status_of(&rs, &[a, b], &labels, Timestamp::now());
        assert_eq!(
            (
                s.replicas,
                s.fully_labeled_replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (2, Some(1), Some(1), Some(1))
        );
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn pods_carry_the_template_and_a_controller_reference() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        };
        let p = pod_from_template(&rs);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
        let owner = util::controller_of(&p.metadata).unwrap();
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.uid.as_str(),
                owner.block_owner_deletion
            ),
            ("ReplicaSet", "u1", Some(true))
        );
    }
}
