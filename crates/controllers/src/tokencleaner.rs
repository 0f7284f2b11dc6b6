//! `tokencleaner`: deletes bootstrap token Secrets (`kube-system`, type `bootstrap.kubernetes.io/token`) once their
//! `expiration` has passed, as upstream's token cleaner does. Also home of the bootstrap-token Secret readers the
//! bootstrap signer shares.
//!
//! Layout: [`start`] runs a kube-runtime `Controller` over Secrets in `kube-system` that requeues each token for the
//! moment it expires; [`decide`] is the decision, given the time.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "tokencleaner";
pub const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const NAMESPACE: &str = "kube-system";

/// A text field of a Secret, from `data` (or `stringData` if a writer left it there).
pub fn secret_field(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    secret.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

pub fn is_bootstrap_token(secret: &Secret) -> bool {
    secret.type_.as_deref() == Some(TOKEN_TYPE)
}

/// A token's `expiration` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    At(Timestamp),
    /// Present but unparseable: upstream treats the token as expired.
    Invalid,
}

pub fn expiration(secret: &Secret) -> Expiry {
    match secret_field(secret, "expiration") {
        None => Expiry::Never,
        Some(s) if s.is_empty() => Expiry::Never,
        Some(s) => s.parse::<Timestamp>().map_or(Expiry::Invalid, Expiry::At),
    }
}

/// What to do with a Secret at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Ignore,
    Delete,
    /// Look again when it expires.
    WaitFor(Duration),
}

pub fn decide(secret: &Secret, now: Timestamp) -> Decision {
    if !is_bootstrap_token(secret) || secret.metadata.deletion_timestamp.is_some() {
        return Decision::Ignore;
    }
    match expiration(secret) {
        Expiry::Invalid => Decision::Delete,
        Expiry::Never => Decision::Ignore,
        Expiry::At(at) if at <= now => Decision::Delete,
        Expiry::At(at) => Decision::WaitFor(now.duration_until(at).unsigned_abs()),
    }
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, secret = %secret.name_any()))]
async fn reconcile(secret: Arc<Secret>, ctx: Arc<Context>) -> Result<Action, Error> {
    match decide(&secret, Timestamp::now()) {
        Decision::Ignore => Ok(Action::await_change()),
        Decision::WaitFor(d) => Ok(Action::requeue(d + Duration::from_millis(100))),
        Decision::Delete => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), NAMESPACE);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&secret.name_any(), &dp).await {
                Ok(_) => tracing::info!(secret = %secret.name_any(), "deleted expired bootstrap token"),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(source) => {
                    return Err(Error::Api {
                        controller: NAME,
                        source,
                    });
                }
            }
            Ok(Action::await_change())
        }
    }
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), NAMESPACE);
        let shutdown = ctx.shutdown.clone();
        Controller::new(secrets, watcher::Config::default())
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

    pub(crate) fn token(expiration: Option<&str>) -> Secret {
        let mut data = std::collections::BTreeMap::from([
            ("token-id".to_string(), ByteString(b"abcdef".to_vec())),
            (
                "token-secret".to_string(),
                ByteString(b"0123456789abcdef".to_vec()),
            ),
        ]);
        if let Some(e) = expiration {
            data.insert("expiration".into(), ByteString(e.as_bytes().to_vec()));
        }
        Secret {
            type_: Some(TOKEN_TYPE.into()),
            data: Some(data),
            ..Secret::default()
        }
    }

    #[test]
    fn expired_tokens_go_and_others_wait_for_their_expiry() {
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            decide(&token(Some("2029-12-31T23:59:59Z")), now),
            Decision::Delete
        );
        assert_eq!(
            decide(&token(Some("2030-01-01T00:01:00Z")), now),
            Decision::WaitFor(Duration::from_secs(60))
        );
        assert_eq!(decide(&token(None), now), Decision::Ignore);
        assert_eq!(decide(&token(Some("tomorrow")), now), Decision::Delete);
        let mut opaque = token(Some("2000-01-01T00:00:00Z"));
        opaque.type_ = Some("Opaque".into());
        assert_eq!(decide(&opaque, now), Decision::Ignore);
    }
}
