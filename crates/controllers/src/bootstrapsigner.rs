//! `bootstrapsigner`: keeps `kube-public/cluster-info` signed for every bootstrap token that may sign
//! (`usage-bootstrap-signing: "true"`, not expired): one `jws-kubeconfig-<token-id>` key each, a detached HS256 JWS
//! of the `kubeconfig` key keyed by the token; keys of tokens that are gone or expired are removed. A joining node
//! verifies cluster-info with its token this way.
//!
//! Layout: [`start`] runs a kube-runtime `Controller` over ConfigMaps in `kube-public` that bootstrap token Secrets in
//! `kube-system` wake too; [`signatures`] computes the wanted keys; [`apply`] merges them into the ConfigMap data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};

use crate::tokencleaner::{self, Expiry, expiration, is_bootstrap_token, secret_field};
use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "bootstrapsigner";
pub const CONFIG_MAP: &str = "cluster-info";
pub const NAMESPACE: &str = "kube-public";
pub const JWS_PREFIX: &str = "jws-kubeconfig-";

/// The token a Secret holds, if it may sign at `now`; with its expiry, to look again then.
pub fn signing_token(secret: &Secret, now: Timestamp) -> Option<(pki::BootstrapToken, Option<Timestamp>)> {
    if !is_bootstrap_token(secret) || secret.metadata.deletion_timestamp.is_some() {
        return None;
    }
    if secret_field(secret, "usage-bootstrap-signing").as_deref() != Some("true") {
        return None;
    }
    let expires = match expiration(secret) {
        Expiry::Invalid => return None,
        Expiry::At(at) if at <= now => return None,
        Expiry::At(at) => Some(at),
        Expiry::Never => None,
    };
    let id = secret_field(secret, "token-id")?;
    // Upstream ignores a Secret whose name does not match its token id.
    if secret.metadata.name.as_deref() != Some(&format!("bootstrap-token-{id}")) {
        return None;
    }
    let token =
        pki::BootstrapToken::parse(&format!("{id}.{}", secret_field(secret, "token-secret")?)).ok()?;
    Some((token, expires))
}

/// The `jws-kubeconfig-<id>` entries for `kubeconfig`, and the earliest expiry among the signing tokens.
pub fn signatures(
    kubeconfig: &str,
    secrets: &[Secret],
    now: Timestamp,
) -> (BTreeMap<String, String>, Option<Timestamp>) {
    let mut out = BTreeMap::new();
    let mut next: Option<Timestamp> = None;
    for s in secrets {
        let Some((token, expires)) = signing_token(s, now) else {
            continue;
        };
        if let Ok(jws) = pki::jws::sign_detached(kubeconfig.as_bytes(), &token) {
            out.insert(format!("{JWS_PREFIX}{}", token.id), jws);
        }
        if let Some(at) = expires {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    (out, next)
}

/// Replaces the JWS keys of `data` with `wanted`; whether anything changed.
pub fn apply(data: &mut BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    let before = data.clone();
    data.retain(|k, _| !k.starts_with(JWS_PREFIX));
    data.extend(wanted.iter().map(|(k, v)| (k.clone(), v.clone())));
    *data != before
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, configmap = %cm.name_any()))]
async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Context>) -> Result<Action, Error> {
    if cm.name_any() != CONFIG_MAP {
        return Ok(Action::await_change());
    }
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let Some(kubeconfig) = cm.data.as_ref().and_then(|d| d.get("kubeconfig")).cloned() else {
        return Ok(Action::await_change());
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), tokencleaner::NAMESPACE);
    let list = secrets.list(&ListParams::default()).await.map_err(err)?;
    let now = Timestamp::now();
    let (wanted, next) = signatures(&kubeconfig, &list.items, now);
    let mut updated = (*cm).clone();
    if apply(updated.data.get_or_insert_default(), &wanted) {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), NAMESPACE);
        match api.replace(CONFIG_MAP, &PostParams::default(), &updated).await {
            Ok(_) => tracing::info!(tokens = wanted.len(), "signed cluster-info"),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(match next {
        Some(at) => Action::requeue(now.duration_until(at).unsigned_abs() + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), NAMESPACE);
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), tokencleaner::NAMESPACE);
        let shutdown = ctx.shutdown.clone();
        Controller::new(maps, watcher::Config::default())
            .watches(secrets, watcher::Config::default(), |s| {
                is_bootstrap_token(&s).then(|| ObjectRef::new(CONFIG_MAP).within(NAMESPACE))
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
    use k8s_openapi::ByteString;

    fn token(id: &str, signing: bool, expiration: Option<&str>) -> Secret {
        let mut data = BTreeMap::from([
            ("token-id".to_string(), ByteString(id.as_bytes().to_vec())),
            (
                "token-secret".to_string(),
                ByteString(b"0123456789abcdef".to_vec()),
            ),
        ]);
        if signing {
            data.insert("usage-bootstrap-signing".into(), ByteString(b"true".to_vec()));
        }
        if let Some(e) = expiration {
            data.insert("expiration".into(), ByteString(e.as_bytes().to_vec()));
        }
        let mut s = Secret {
            type_: Some(tokencleaner::TOKEN_TYPE.into()),
            data: Some(data),
            ..Secret::default()
        };
        s.metadata.name = Some(format!("bootstrap-token-{id}"));
        s
    }

    #[test]
    fn only_valid_signing_tokens_sign_and_stale_signatures_go() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let secrets = [
            token("aaaaaa", true, Some("2030-01-02T00:00:00Z")),
            token("bbbbbb", false, None),
            token("cccccc", true, Some("2029-01-01T00:00:00Z")),
            token("dddddd", true, None),
        ];
        let (wanted, next) = signatures("kc", &secrets, now);
        assert_eq!(
            wanted.keys().collect::<Vec<_>>(),
            ["jws-kubeconfig-aaaaaa", "jws-kubeconfig-dddddd"]
        );
        assert_eq!(next, Some("2030-01-02T00:00:00Z".parse().unwrap()));
        let t = pki::BootstrapToken::parse("aaaaaa.0123456789abcdef").unwrap();
        pki::jws::verify_detached(&wanted["jws-kubeconfig-aaaaaa"], b"kc", &t).unwrap();

        let mut data = BTreeMap::from([
            ("kubeconfig".to_string(), "kc".to_string()),
            ("jws-kubeconfig-cccccc".to_string(), "old".to_string()),
        ]);
        assert!(apply(&mut data, &wanted));
        assert!(!data.contains_key("jws-kubeconfig-cccccc") && data.contains_key("kubeconfig"));
        assert!(!apply(&mut data, &wanted));
    }
}
