//! `serviceaccount`: every active namespace has a ServiceAccount named `default` (recreated if deleted), as
//! upstream's service-account controller ensures.
//!
//! Layout: [`start`] runs a kube-runtime `Controller` over Namespaces that also wakes a namespace when one of its
//! ServiceAccounts changes; [`needs_default`] is the decision.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "serviceaccount";
const DEFAULT: &str = "default";

/// Whether `ns` should get a `default` ServiceAccount (it is active and has none).
pub fn needs_default(ns: &Namespace, has_default: bool) -> bool {
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    !terminating && !has_default
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, namespace = %ns.name_any()))]
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = ns.name_any();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let has = crate::lookup(&api, DEFAULT).await.map_err(err)?.is_some();
    if needs_default(&ns, has) {
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => tracing::info!(namespace = %name, "created default service account"),
            // Already there (a race with another writer), or the namespace started terminating meanwhile.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(Action::await_change())
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
        let shutdown = ctx.shutdown.clone();
        Controller::new(namespaces, watcher::Config::default())
            .watches(accounts, watcher::Config::default(), |sa| {
                (sa.name_any() == DEFAULT).then(|| ObjectRef::new(&sa.namespace().unwrap_or_default()))
            })
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                Arc::new(ctx),
            )
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::warn!(controller = NAME, error = %e, "reconcile failed");
                }
            })
            .await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_namespaces_without_one_get_a_default_account() {
        let active = Namespace::default();
        assert!(needs_default(&active, false));
        assert!(!needs_default(&active, true));
        let terminating = Namespace {
            status: Some(k8s_openapi::api::core::v1::NamespaceStatus {
                phase: Some("Terminating".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!needs_default(&terminating, false));
    }
}
