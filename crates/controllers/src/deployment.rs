//! `deployment`: rolls Deployments out through ReplicaSets, as upstream's Deployment controller.
//!
//! Layout: [`start`] runs a kube-rs `Controller` on Deployments that also watches the ReplicaSets they own;
//! [`reconcile`] lists the Deployment's ReplicaSets fresh from the API, finds the one whose template is the
//! Deployment's (creating `<deployment>-<pod-template-hash>` if none), scales new and old ones by the strategy
//! (RollingUpdate with maxSurge/maxUnavailable, or Recreate), keeps `deployment.kubernetes.io/revision` on both,
//! deletes old ReplicaSets beyond `revisionHistoryLimit` and writes the status with upstream's conditions, so that
//! `kubectl rollout status/history/undo` work as against upstream.
//!
//! The arithmetic is pure and unit-tested: [`fenceposts`], [`new_rs_replicas`], [`old_rs_targets`], [`status_of`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tracing::{Instrument, debug, info, info_span};

use crate::util;
use crate::{Context, ControllerFuture, Error};

const NAME: &str = "deployment";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Why one reconcile failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(run(ctx))
}

async fn run(ctx: Context) -> Result<(), Error> {
    let client = ctx.client.clone();
    let shutdown = ctx.shutdown.clone();
    let workers = u16::try_from(ctx.settings.workers).unwrap_or(5);
    Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .watches(
            Api::<ReplicaSet>::all(client),
            watcher::Config::default(),
            util::owner_request::<Deployment, ReplicaSet>("Deployment"),
        )
        .with_config(Config::default().concurrency(workers))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| async {})
        .await;
    Ok(())
}

fn error_policy(_: Arc<Deployment>, err: &ReconcileError, _: Arc<Context>) -> Action {
    debug!(controller = NAME, error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = d.namespace().unwrap_or_default();
    let span = info_span!("reconcile", controller = NAME, namespace = %ns, name = %d.name_any());
    reconcile_one(d, ctx).instrument(span).await
}

/// Upstream's `ResolveFenceposts`: (maxSurge, maxUnavailable) for `replicas`, surge rounded up, unavailability
/// down, never both zero. Recreate has neither.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), String> {
    let spec = Some(&d.spec);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let strategy = spec.and_then(|s| s.strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        return Ok((0, 0));
    }
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let surge = util::scaled_value(rolling.and_then(|r| r.max_surge.as_ref()), replicas, true, "25%")?;
    let mut unavailable = util::scaled_value(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        replicas,
        false,
        "25%",
    )?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// Upstream's `MaxUnavailable`: capped at `replicas`, zero for Recreate or no replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = d.spec.replicas.unwrap_or(1);
    match fenceposts(d) {
        Ok((_, u)) if replicas > 0 => u.min(replicas),
        _ => 0,
    }
}

/// Upstream's `NewRSNewReplicas` for rolling updates: grow the new ReplicaSet as far as the surge allows.
pub fn new_rs_replicas(replicas: i32, max_surge: i32, all_spec_total: i32, new_spec: i32) -> i32 {
    if new_spec > replicas {
        return replicas;
    }
    let max_total = replicas + max_surge;
    if all_spec_total >= max_total {
        return new_spec;
    }
    let up = (max_total - all_spec_total).min(replicas - new_spec).max(0);
    new_spec + up
}

/// Upstream's `reconcileOldReplicaSets`: the new sizes of the old ReplicaSets (oldest first), given each one's
/// `(spec.replicas, available)` and the new one's. Unhealthy old pods go first, then available ones as far as
/// `replicas - maxUnavailable` stay available. Availability never counts above a ReplicaSet's size, so a status
/// that lags a scale-down cannot make the controller scale down twice.
pub fn old_rs_targets(replicas: i32, max_unavailable: i32, new: (i32, i32), olds: &[(i32, i32)]) -> Vec<i32> {
    let mut targets: Vec<i32> = olds.iter().map(|o| o.0).collect();
    let old_total: i32 = targets.iter().sum();
    if old_total == 0 {
        return targets;
    }
    let new_available = new.1.min(new.0);
    let min_available = replicas - max_unavailable;
    let new_unavailable = (new.0 - new_available).max(0);
    let max_scaled_down = old_total + new.0 - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return targets;
    }
    let mut cleaned = 0;
    for (t, o) in targets.iter_mut().zip(olds) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = *t - o.1.min(*t);
        if unhealthy <= 0 {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(unhealthy);
        *t -= n;
        cleaned += n;
    }
    let available: i32 = new_available + targets.iter().zip(olds).map(|(t, o)| o.1.min(*t)).sum::<i32>();
    if available <= min_available {
        return targets;
    }
    let mut budget = available - min_available;
    for t in targets.iter_mut() {
        if budget <= 0 {
            break;
        }
        let n = (*t).min(budget);
        *t -= n;
        budget -= n;
    }
    targets
}

fn rs_spec(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The template without the `pod-template-hash` label, as JSON, for upstream's `EqualIgnoreHash`.
fn template_sans_hash(t: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(t.cloned().unwrap_or_default()).unwrap_or(Value::Null);
    if let Some(labels) = v.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(HASH_LABEL);
        if labels.is_empty()
            && let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            m.remove("labels");
        }
    }
    if let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut)
        && m.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.remove("metadata");
    }
    v
}

/// The ReplicaSet that runs the Deployment's current template: equal ignoring the hash label, or carrying the
/// hash of the template (the API server may default the copy a little further). Oldest wins, as upstream.
pub fn find_new_rs<'a>(d: &Deployment, owned: &'a [ReplicaSet], hash: &str) -> Option<&'a ReplicaSet> {
    let want = template_sans_hash(Some(&d.spec.template));
    owned.iter().find(|rs| {
        template_sans_hash(rs.spec.template.as_ref()) == want
            || (rs.labels().get(HASH_LABEL).map(String::as_str) == Some(hash)
                && rs.name_any().ends_with(&format!("-{hash}")))
    })
}

/// Annotations a Deployment passes on to its ReplicaSets (upstream's `skipCopyAnnotation` list stays behind).
fn copied_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, _)| {
            ![
                LAST_APPLIED,
                REVISION,
                REVISION_HISTORY,
                DESIRED_REPLICAS,
                MAX_REPLICAS,
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn new_replica_set(d: &Deployment, hash: &str, replicas: i32, revision: i64, max_surge: i32) -> ReplicaSet {
    let spec = d.spec.clone();
    let mut template = spec.template.clone();
    let mut tmeta = template.metadata.take().unwrap_or_default();
    tmeta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.into());
    let labels = tmeta.labels.clone();
    template.metadata = Some(tmeta);
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.into());
    let d_replicas = spec.replicas.unwrap_or(1);
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), d_replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (d_replicas + max_surge).to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.namespace(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![util::controller_ref("apps/v1", "Deployment", &d.metadata)]),
            ..ObjectMeta::default()
        },
        spec: ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        },
        status: None,
    }
}

fn condition(kind: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(kind.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `SetDeploymentCondition`: same status and reason changes nothing; same status keeps the transition time.
fn set_condition(conds: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if let Some(cur) = conds.iter().find(|c| c.type_ == new.type_) {
        if cur.status == new.status && cur.reason == new.reason {
            return;
        }
        if cur.status == new.status {
            new.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != new.type_);
    conds.push(new);
}

/// What a reconcile saw after acting, for the status.
pub struct Observed<'a> {
    pub new_rs: Option<&'a ReplicaSet>,
    pub all: &'a [ReplicaSet],
    /// A new ReplicaSet was created in this pass.
    pub created: bool,
    pub now: Timestamp,
}

/// Upstream's `calculateStatus` plus `syncRolloutStatus`: counts from the ReplicaSets and the Available and
/// Progressing conditions with upstream's reasons and messages.
pub fn status_of(d: &Deployment, seen: &Observed<'_>) -> DeploymentStatus {
    let replicas = d.spec.replicas.unwrap_or(1);
    let sum = |f: &dyn Fn(&ReplicaSet) -> i32| seen.all.iter().map(f).sum::<i32>();
    let available = sum(&rs_available);
    let total_spec = sum(&rs_spec);
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(&|rs| rs.status.as_ref().map_or(0, |s| s.replicas))),
        updated_replicas: Some(
            seen.new_rs
                .and_then(|rs| rs.status.as_ref())
                .map_or(0, |s| s.replicas),
        ),
        ready_replicas: Some(sum(&|rs| {
            rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
        })),
        available_replicas: Some(available),
        unavailable_replicas: Some((total_spec - available).max(0)),
        collision_count: old.collision_count,
        conditions: None,
        terminating_replicas: None,
    };
    let mut conds = old.conditions.clone().unwrap_or_default();
    let now = seen.now;
    if available >= replicas - max_unavailable(d) {
        set_condition(
            &mut conds,
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut conds,
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    let complete = status.updated_replicas == Some(replicas)
        && status.replicas == Some(replicas)
        && available == replicas
        && status.observed_generation >= d.metadata.generation;
    let rs_name = seen.new_rs.map(ResourceExt::name_any);
    let progressed = status.updated_replicas > old.updated_replicas
        || status.ready_replicas > old.ready_replicas
        || status.available_replicas > old.available_replicas
        || status.replicas < old.replicas;
    let paused = d.spec.paused == Some(true);
    if paused {
        set_condition(
            &mut conds,
            condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if complete && let Some(name) = &rs_name {
        set_condition(
            &mut conds,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{name}\" has successfully progressed."),
                now,
            ),
        );
    } else if seen.created
        && let Some(name) = &rs_name
    {
        set_condition(
            &mut conds,
            condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{name}\""),
                now,
            ),
        );
    } else if progressed || !conds.iter().any(|c| c.type_.as_deref() == Some("Progressing")) {
        let message = match &rs_name {
            Some(name) => format!("ReplicaSet \"{name}\" is progressing."),
            None => "Deployment is progressing.".into(),
        };
        // Progress moves the update time even when status and reason stay, as upstream's condition refresh.
        let mut c = condition("Progressing", "True", "ReplicaSetUpdated", message, now);
        if let Some(cur) = conds.iter().find(|c| c.type_.as_deref() == Some("Progressing"))
            && cur.status.as_deref() == Some("True")
        {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        conds.retain(|c| c.type_.as_deref() != Some("Progressing"));
        conds.push(c);
    } else if let Some(deadline) = d.spec.progress_deadline_seconds
        && let Some(cur) = conds.iter().find(|c| c.type_.as_deref() == Some("Progressing"))
        && cur.reason.as_deref() != Some("NewReplicaSetAvailable")
        && cur
            .last_update_time
            .as_ref()
            .and_then(|t| {
                t.0.checked_add(SignedDuration::from_secs(i64::from(deadline)))
                    .ok()
            })
            .is_some_and(|at| at < now)
    {
        let message = match &rs_name {
            Some(name) => format!("ReplicaSet \"{name}\" has timed out progressing."),
            None => format!("Deployment \"{}\" has timed out progressing.", d.name_any()),
        };
        set_condition(
            &mut conds,
            condition("Progressing", "False", "ProgressDeadlineExceeded", message, now),
        );
    }
    // Upstream lists Available before Progressing once both exist.
    conds.sort_by_key(|c| c.type_.as_deref() != Some("Available"));
    status.conditions = Some(conds);
    status
}

/// Conditions carry times; compare statuses without the update times so an unchanged status is not rewritten.
fn same_status(a: Option<&DeploymentStatus>, b: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_update_time = None;
        }
        s
    };
    a.map(strip) == Some(strip(b))
}

async fn scale(
    api: &Api<ReplicaSet>,
    rs: &mut ReplicaSet,
    replicas: i32,
    d: &Deployment,
    max_surge: i32,
) -> Result<(), ReconcileError> {
    if rs_spec(rs) == replicas {
        return Ok(());
    }
    let d_replicas = d.spec.replicas.unwrap_or(1);
    info!(replica_set = %rs.name_any(), from = rs_spec(rs), to = replicas, "scaling replica set");
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: d_replicas.to_string(),
            MAX_REPLICAS: (d_replicas + max_surge).to_string(),
        }},
        "spec": {"replicas": replicas},
    });
    *rs = api
        .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

async fn reconcile_one(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if util::is_terminating(&d.metadata) {
        return Ok(Action::await_change());
    }
    let ns = d.namespace().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = d.spec.clone();
    let replicas = spec.replicas.unwrap_or(1);
    let rs_api = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns);
    // The Deployment as last written by this pass (its resourceVersion moves when the revision annotation does).
    let mut current = d.clone();
    let selector = util::selector_string(&spec.selector);
    if selector.is_empty() {
        return Err(ReconcileError::Invalid("empty selector".into()));
    }
    let mut owned: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|rs| util::is_controlled_by(&rs.metadata, &uid) && !util::is_terminating(&rs.metadata))
        .collect();
    owned.sort_by(|a, b| {
        let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b)).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let (max_surge, max_unav) = fenceposts(&d).map_err(ReconcileError::Invalid)?;
    let max_unav = max_unav.min(replicas);
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = util::compute_hash(&spec.template, collision);
    let mut new_idx = find_new_rs(&d, &owned, &hash)
        .and_then(|n| owned.iter().position(|rs| rs.metadata.uid == n.metadata.uid));
    let max_old_revision = owned
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new_idx)
        .map(|(_, rs)| revision_of(rs))
        .max()
        .unwrap_or(0);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let paused = spec.paused == Some(true);
    let mut created = false;

    if !paused {
        // Old ReplicaSets first for Recreate: the new one starts only when no old pod is left.
        if recreate {
            for (i, rs) in owned.iter_mut().enumerate() {
                if Some(i) != new_idx {
                    scale(&rs_api, rs, 0, &d, max_surge).await?;
                }
            }
        }
        let old_pods_left = owned
            .iter()
            .enumerate()
            .any(|(i, rs)| Some(i) != new_idx && rs.status.as_ref().is_some_and(|s| s.replicas > 0));
        let may_create = !recreate || !old_pods_left;
        if new_idx.is_none() && may_create {
            let all_spec: i32 = owned.iter().map(rs_spec).sum();
            let size = if recreate {
                replicas
            } else {
                new_rs_replicas(replicas, max_surge, all_spec, 0)
            };
            let rs = new_replica_set(&d, &hash, size, max_old_revision + 1, max_surge);
            match rs_api.create(&PostParams::default(), &rs).await {
                Ok(rs) => {
                    info!(replica_set = %rs.name_any(), replicas = size, "created new replica set");
                    owned.push(rs);
                    new_idx = Some(owned.len() - 1);
                    created = true;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // A ReplicaSet of that name runs another template: upstream bumps the collision count so the
                    // next hash differs.
                    let existing = rs_api.get(&format!("{}-{hash}", d.name_any())).await?;
                    if !util::is_controlled_by(&existing.metadata, &uid)
                        || find_new_rs(&d, std::slice::from_ref(&existing), &hash).is_none()
                    {
                        let mut next = (*d).clone();
                        next.status.get_or_insert_default().collision_count =
                            Some(collision.unwrap_or(0) + 1);
                        Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                            .replace_status(&d.name_any(), &PostParams::default(), &next)
                            .await?;
                    }
                    return Ok(Action::requeue(Duration::from_millis(100)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(ni) = new_idx {
            // Revision: the new ReplicaSet's is one above every old one's (a rollback brings an old one back on top).
            let rev = revision_of(&owned[ni]);
            if rev <= max_old_revision || rev == 0 {
                let patch =
                    json!({"metadata": {"annotations": {REVISION: (max_old_revision + 1).to_string()}}});
                owned[ni] = rs_api
                    .patch(
                        &owned[ni].name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await?;
            }
            let all_spec: i32 = owned.iter().map(rs_spec).sum();
            let target = if recreate {
                if old_pods_left {
                    rs_spec(&owned[ni])
                } else {
                    replicas
                }
            } else {
                new_rs_replicas(replicas, max_surge, all_spec, rs_spec(&owned[ni]))
            };
            scale(&rs_api, &mut owned[ni], target, &d, max_surge).await?;
            if !recreate {
                let olds: Vec<(i32, i32)> = owned
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != ni)
                    .map(|(_, rs)| (rs_spec(rs), rs_available(rs)))
                    .collect();
                let targets = old_rs_targets(
                    replicas,
                    max_unav,
                    (rs_spec(&owned[ni]), rs_available(&owned[ni])),
                    &olds,
                );
                let old_indices: Vec<usize> = (0..owned.len()).filter(|i| *i != ni).collect();
                for (i, t) in old_indices.into_iter().zip(targets) {
                    scale(&rs_api, &mut owned[i], t, &d, max_surge).await?;
                }
            }
            // The Deployment's own revision annotation follows its new ReplicaSet.
            let rev = revision_of(&owned[ni]).to_string();
            if d.annotations().get(REVISION) != Some(&rev) {
                let mut next = (*current).clone();
                next.annotations_mut().insert(REVISION.to_string(), rev);
                current = Arc::new(
                    Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                        .replace(&d.name_any(), &PostParams::default(), &next)
                        .await?,
                );
            }
        }
        cleanup_history(&rs_api, &d, &owned, new_idx).await?;
    }

    let seen = Observed {
        new_rs: new_idx.map(|i| &owned[i]),
        all: &owned,
        created,
        now: Timestamp::now(),
    };
    let status = status_of(&d, &seen);
    if !same_status(d.status.as_ref(), &status) {
        // Full updates, not patches: upstream's deployment-controller role may only `update` deployments.
        let mut next = (*current).clone();
        next.status = Some(status.clone());
        Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&d.name_any(), &PostParams::default(), &next)
            .await?;
    }
    // The progress deadline passes without any event: look again then.
    Ok(match spec.progress_deadline_seconds {
        Some(s)
            if status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.reason.as_deref() == Some("ReplicaSetUpdated")) =>
        {
            Action::requeue(Duration::from_secs(u64::try_from(s).unwrap_or(600)))
        }
        _ => Action::await_change(),
    })
}

/// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit` (default 10), lowest revisions first.
async fn cleanup_history(
    api: &Api<ReplicaSet>,
    d: &Deployment,
    owned: &[ReplicaSet],
    new_idx: Option<usize>,
) -> Result<(), ReconcileError> {
    let limit = usize::try_from(d.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
    let mut empty: Vec<&ReplicaSet> = owned
        .iter()
        .enumerate()
        .filter(|(i, rs)| {
            Some(*i) != new_idx && rs_spec(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0)
        })
        .map(|(_, rs)| rs)
        .collect();
    if empty.len() <= limit {
        return Ok(());
    }
    empty.sort_by_key(|rs| revision_of(rs));
    let excess = empty.len() - limit;
    for rs in empty.into_iter().take(excess) {
        info!(replica_set = %rs.name_any(), "deleting old replica set beyond the revision history limit");
        match api.delete(&rs.name_any(), &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn deployment(replicas: i32, surge: Option<IntOrString>, unavailable: Option<IntOrString>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: surge,
                        max_unavailable: unavailable,
                    }),
                }),
                ..DeploymentSpec::default()
            },
            status: None,
        }
    }

    #[test]
    fn default_fenceposts_round_surge_up_and_unavailability_down() {
        assert_eq!(fenceposts(&deployment(10, None, None)), Ok((3, 2)));
        assert_eq!(fenceposts(&deployment(1, None, None)), Ok((1, 0)));
        assert_eq!(
            fenceposts(&deployment(
                3,
                Some(IntOrString::Int(0)),
                Some(IntOrString::Int(0))
            )),
            Ok((0, 1))
        );
        assert_eq!(
            max_unavailable(&deployment(
                1,
                Some(IntOrString::Int(0)),
                Some(IntOrString::Int(5))
            )),
            1
        );
    }

    #[test]
    fn the_new_replica_set_grows_only_as_far_as_the_surge_allows() {
        assert_eq!(new_rs_replicas(4, 1, 4, 0), 1);
        assert_eq!(new_rs_replicas(4, 1, 5, 1), 1);
        assert_eq!(new_rs_replicas(4, 1, 4, 1), 2);
        assert_eq!(new_rs_replicas(4, 1, 1, 0), 4);
        assert_eq!(new_rs_replicas(4, 1, 6, 6), 4);
    }

    #[test]
    fn old_replica_sets_shrink_only_as_far_as_availability_allows() {
        // 4 replicas, maxUnavailable 1: new RS of 1 not yet available, old RS of 4 all available.
        assert_eq!(old_rs_targets(4, 1, (1, 0), &[(4, 4)]), vec![3]);
        // The new pod became available: one more old pod may go.
        assert_eq!(old_rs_targets(4, 1, (2, 1), &[(3, 3)]), vec![2]);
        // Unhealthy old pods go first, within the room maxUnavailable leaves; without room nothing moves.
        assert_eq!(old_rs_targets(4, 1, (1, 0), &[(4, 2)]), vec![3]);
        assert_eq!(old_rs_targets(4, 0, (1, 0), &[(4, 2)]), vec![4]);
        // A status that still counts pods above the size does not scale down twice.
        assert_eq!(old_rs_targets(4, 1, (1, 0), &[(3, 4)]), vec![3]);
        assert_eq!(old_rs_targets(4, 1, (4, 4), &[(0, 0)]), vec![0]);
    }

    fn rs(name: &str, spec: i32, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(spec),
                ..ReplicaSetSpec::default()
            },
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn a_finished_rollout_reports_upstream_reasons() {
        let d = deployment(2, None, None);
        let all = [rs("web-new", 2, 2, 2)];
        let s = status_of(
            &d,
            &Observed {
                new_rs: Some(&all[0]),
                all: &all,
                created: false,
                now: Timestamp::now(),
            },
        );
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(2), Some(2), Some(2), Some(0))
        );
        let conds = s.conditions.unwrap();
        assert_eq!(conds[0].reason.as_deref(), Some("MinimumReplicasAvailable"));
        assert_eq!(conds[1].reason.as_deref(), Some("NewReplicaSetAvailable"));
        assert_eq!(
            conds[1].message.as_deref(),
            Some("ReplicaSet \"web-new\" has successfully progressed.")
        );
    }

    #[test]
    fn a_rollout_in_flight_is_progressing_and_may_lack_availability() {
        let d = deployment(4, None, Some(IntOrString::Int(0)));
        let all = [rs("web-old", 3, 4, 3), rs("web-new", 2, 2, 0)];
        let s = status_of(
            &d,
            &Observed {
                new_rs: Some(&all[1]),
                all: &all,
                created: false,
                now: Timestamp::now(),
            },
        );
        let conds = s.conditions.unwrap();
        assert_eq!(conds[0].reason.as_deref(), Some("MinimumReplicasUnavailable"));
        assert_eq!(conds[1].reason.as_deref(), Some("ReplicaSetUpdated"));
        assert_eq!(s.unavailable_replicas, Some(2));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let d = deployment(1, None, None);
        let mut r = new_replica_set(&d, "abc", 1, 1, 0);
        assert!(find_new_rs(&d, std::slice::from_ref(&r), "zzz").is_some());
        r.spec.template.as_mut().unwrap().spec = Some(Default::default());
        assert!(find_new_rs(&d, std::slice::from_ref(&r), "zzz").is_none());
        assert_eq!(r.metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(r.annotations().get(REVISION).map(String::as_str), Some("1"));
    }
}
