//! `namespace`: empties a terminating namespace and then lets it go, as upstream's namespace controller.
//!
//! Layout: [`start`] runs a kube-rs `Controller` on Namespaces; for one with a `deletionTimestamp`, [`reconcile`]
//! deletes every object of every namespaced resource discovery lists (background propagation, so the garbage
//! collector takes dependents), writes upstream's `NamespaceContentRemaining`/`NamespaceDeletionContentFailure`
//! style conditions, and once nothing is left removes the `kubernetes` finalizer through `namespaces/<n>/finalize`,
//! after which the API server deletes the namespace.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::{Instrument, debug, info, info_span};

use crate::{Context, ControllerFuture, Error};

const NAME: &str = "namespace";
pub const FINALIZER: &str = "kubernetes";

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
    let shutdown = ctx.shutdown.clone();
    Controller::new(
        Api::<Namespace>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .graceful_shutdown_on(async move { shutdown.cancelled().await })
    .run(reconcile, error_policy, Arc::new(ctx))
    .for_each(|_| async {})
    .await;
    Ok(())
}

fn error_policy(_: Arc<Namespace>, err: &ReconcileError, _: Arc<Context>) -> Action {
    debug!(controller = NAME, error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let span = info_span!("reconcile", controller = NAME, name = %ns.name_any());
    reconcile_one(ns, ctx).instrument(span).await
}

/// The finalizers left once this controller's is removed.
pub fn without_our_finalizer(ns: &Namespace) -> Vec<String> {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect()
}

/// Upstream's content conditions for what is left: `(type, status, reason, message)`.
pub fn content_conditions(
    remaining: &[(String, usize)],
    failures: &[String],
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let mut out = Vec::new();
    if remaining.is_empty() {
        out.push((
            "NamespaceContentRemaining",
            "False",
            "ContentDeleted",
            "All content successfully removed".to_string(),
        ));
    } else {
        let list = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push((
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {list}"),
        ));
    }
    if failures.is_empty() {
        out.push((
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_string(),
        ));
    } else {
        out.push((
            "NamespaceDeletionContentFailure",
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                failures.len(),
                failures.join(", ")
            ),
        ));
    }
    out
}

async fn reconcile_one(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let has_ours = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if !has_ours {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut remaining = Vec::new();
    let mut failures = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
            {
                continue;
            }
            let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &name, &ar);
            let items = match api.list(&ListParams::default()).await {
                Ok(l) => l.items,
                Err(e) => {
                    failures.push(format!("{}: {e}", ar.plural));
                    continue;
                }
            };
            if items.is_empty() {
                continue;
            }
            remaining.push((
                format!(
                    "{}{}",
                    ar.plural,
                    if ar.group.is_empty() {
                        String::new()
                    } else {
                        format!(".{}", ar.group)
                    }
                ),
                items.len(),
            ));
            for item in items.iter().filter(|i| i.metadata.deletion_timestamp.is_none()) {
                match api.delete(&item.name_any(), &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => failures.push(format!("{}/{}: {e}", ar.plural, item.name_any())),
                }
            }
        }
    }
    let api = Api::<Namespace>::all(ctx.client.clone());
    if remaining.is_empty() && failures.is_empty() {
        info!(namespace = %name, "namespace is empty; removing the kubernetes finalizer");
        let mut finalized = (*ns).clone();
        finalized.spec.get_or_insert_with(Default::default).finalizers = Some(without_our_finalizer(&ns));
        api.replace_subresource("finalize", &name, &PostParams::default(), &finalized)
            .await?;
        return Ok(Action::await_change());
    }
    let now = Time(Timestamp::now());
    let conditions: Vec<NamespaceCondition> = content_conditions(&remaining, &failures)
        .into_iter()
        .map(|(t, s, r, m)| NamespaceCondition {
            type_: t.into(),
            status: s.into(),
            reason: Some(r.into()),
            message: Some(m),
            last_transition_time: Some(now.clone()),
        })
        .collect();
    let same = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|old| {
            old.len() == conditions.len()
                && old
                    .iter()
                    .zip(&conditions)
                    .all(|(a, b)| a.type_ == b.type_ && a.status == b.status && a.message == b.message)
        });
    if !same {
        // A full update: upstream's namespace-controller role may only `update` namespaces/status.
        let mut next = (*ns).clone();
        let status = next.status.get_or_insert_default();
        status.phase = Some("Terminating".into());
        status.conditions = Some(conditions);
        if let Err(e) = api.replace_status(&name, &PostParams::default(), &next).await {
            debug!(error = %e, "writing namespace conditions failed");
        }
    }
    // Content with finalizers or grace periods goes on its own time: look again soon.
    Ok(Action::requeue(Duration::from_millis(500)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;

    #[test]
    fn only_the_kubernetes_finalizer_is_removed() {
        let ns = Namespace {
            spec: Some(NamespaceSpec {
                finalizers: Some(vec!["kubernetes".into(), "example.com/x".into()]),
            }),
            ..Namespace::default()
        };
        assert_eq!(without_our_finalizer(&ns), vec!["example.com/x".to_string()]);
    }

    #[test]
    fn remaining_content_is_reported_as_upstream() {
        let c = content_conditions(&[("pods".into(), 2)], &[]);
        assert_eq!(c[0].2, "SomeResourcesRemain");
        assert_eq!(
            c[0].3,
            "Some resources are remaining: pods has 2 resource instances"
        );
        assert_eq!(content_conditions(&[], &[])[0].2, "ContentDeleted");
    }
}
