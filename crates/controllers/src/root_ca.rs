//! `root-ca-cert-publisher`: a ConfigMap `kube-root-ca.crt` with key `ca.crt` (the `--root-ca-file` contents) in every
//! active namespace, put back whenever it is changed or deleted, as upstream's publisher does.
//!
//! Layout: [`start`] reads the CA once and runs a kube-runtime `Controller` over Namespaces, woken also by changes to
//! any `kube-root-ca.crt`; [`desired`] and [`up_to_date`] are the decision.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "root-ca-cert-publisher";
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The ConfigMap upstream publishes.
pub fn desired(namespace: &str, ca: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            namespace: Some(namespace.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/description".to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("ca.crt".to_string(), ca.to_string())])),
        ..ConfigMap::default()
    }
}

/// Whether an existing ConfigMap already holds exactly the CA (upstream also overwrites extra keys).
pub fn up_to_date(cm: &ConfigMap, ca: &str) -> bool {
    cm.data
        .as_ref()
        .is_some_and(|d| d.len() == 1 && d.get("ca.crt").map(String::as_str) == Some(ca))
}

struct State {
    ctx: Context,
    ca: String,
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, namespace = %ns.name_any()))]
async fn reconcile(ns: Arc<Namespace>, st: Arc<State>) -> Result<Action, Error> {
    let name = ns.name_any();
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let api: Api<ConfigMap> = Api::namespaced(st.ctx.client.clone(), &name);
    let result = match crate::lookup(&api, CONFIG_MAP).await.map_err(err)? {
        None => api
            .create(&PostParams::default(), &desired(&name, &st.ca))
            .await
            .map(|_| ()),
        Some(cm) if up_to_date(&cm, &st.ca) => Ok(()),
        Some(mut cm) => {
            cm.data = desired(&name, &st.ca).data;
            api.replace(CONFIG_MAP, &PostParams::default(), &cm)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        // Lost a race (the watch brings us back) or the namespace is terminating.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(e) => Err(err(e)),
    }
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let path = ctx.settings.root_ca_file.clone().ok_or(Error::Other {
            controller: NAME,
            message: "no --root-ca-file given".into(),
        })?;
        let ca = std::fs::read_to_string(&path).map_err(|e| Error::Other {
            controller: NAME,
            message: format!("{}: {e}", path.display()),
        })?;
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let maps: Api<ConfigMap> = Api::all(ctx.client.clone());
        let shutdown = ctx.shutdown.clone();
        Controller::new(namespaces, watcher::Config::default())
            .watches(maps, watcher::Config::default(), |cm| {
                (cm.name_any() == CONFIG_MAP).then(|| ObjectRef::new(&cm.namespace().unwrap_or_default()))
            })
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                Arc::new(State { ctx, ca }),
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
    fn a_config_map_is_current_only_with_exactly_the_ca() {
        let ca = "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n";
        let mut cm = desired("ns", ca);
        assert!(up_to_date(&cm, ca));
        assert!(!up_to_date(&cm, "other"));
        cm.data.get_or_insert_default().insert("extra".into(), "x".into());
        assert!(!up_to_date(&cm, ca));
        assert!(!up_to_date(&ConfigMap::default(), ca));
    }
}
