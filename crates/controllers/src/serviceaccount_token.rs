//! `serviceaccount-token`: fills legacy token Secrets (type `kubernetes.io/service-account-token`, annotation
//! `kubernetes.io/service-account.name`) with `token` (an RS256 JWT with upstream's legacy claims, signed with
//! `--service-account-private-key-file`), `ca.crt` (`--root-ca-file`) and `namespace`, and records the account's uid in
//! `kubernetes.io/service-account.uid`. A Secret whose ServiceAccount is gone (or was recreated with another uid) is
//! deleted, which also invalidates its token.
//!
//! As upstream before 1.24 (guide C reads these Secrets with `kubectl get secret | grep <account>`), every
//! ServiceAccount also gets such a Secret created, named `<account>-token-xxxxx` and listed in its `secrets`.
//!
//! Layout: [`LegacySigner`] makes the JWT; [`plan`] decides per Secret; [`start`] runs a kube-runtime `Controller`
//! over Secrets that ServiceAccount changes wake through its own cache, and one over ServiceAccounts that creates
//! the missing Secrets.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use ring::signature::RsaKeyPair;
use sha2::Digest;

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "serviceaccount-token";
pub const SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// Signs legacy service-account tokens.
pub struct LegacySigner {
    key: RsaKeyPair,
    key_id: String,
}

impl std::fmt::Debug for LegacySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LegacySigner({})", self.key_id)
    }
}

impl LegacySigner {
    /// From kubeadm's `sa.key` (PKCS#1 `RSA PRIVATE KEY`, or PKCS#8).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let block = pem::parse(text).map_err(|e| format!("not PEM: {e}"))?;
        let key = match block.tag() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
            other => return Err(format!("unsupported PEM block {other:?}")),
        }
        .map_err(|e| format!("not an RSA key: {e}"))?;
        // Upstream's key id: base64url(SHA-256(PKIX DER of the public key)).
        let spki = pki::KeyPair::from_pem(text)
            .map_err(|e| e.to_string())?
            .public_key_der();
        let key_id = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(spki));
        Ok(Self { key, key_id })
    }

    /// The legacy token for `secret_name` of `namespace/sa_name` (uid `sa_uid`): no expiry, valid while the Secret is.
    pub fn sign(
        &self,
        namespace: &str,
        sa_name: &str,
        sa_uid: &str,
        secret_name: &str,
    ) -> Result<String, String> {
        let header = serde_json::json!({"alg": "RS256", "kid": self.key_id});
        let claims = serde_json::json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": sa_name,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
            "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|e| e.to_string())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// What to do with a Secret.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Ignore,
    /// Its account is gone (or replaced by one with another uid).
    Delete,
    /// Fill in the missing pieces (a new token only if there is none).
    Fill {
        new_token: bool,
    },
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()?
        .get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// The decision for `secret`, given its ServiceAccount (if it exists) and the CA to publish.
pub fn plan(secret: &Secret, account: Option<&ServiceAccount>, ca: &str) -> Plan {
    if secret.type_.as_deref() != Some(SECRET_TYPE) || secret.metadata.deletion_timestamp.is_some() {
        return Plan::Ignore;
    }
    let annotations = secret.annotations();
    if annotations.get(NAME_ANNOTATION).is_none_or(String::is_empty) {
        return Plan::Ignore;
    }
    let Some(sa) = account else { return Plan::Delete };
    let sa_uid = sa.metadata.uid.clone().unwrap_or_default();
    if annotations
        .get(UID_ANNOTATION)
        .is_some_and(|u| !u.is_empty() && *u != sa_uid)
    {
        return Plan::Delete;
    }
    let new_token = text(secret, "token").is_none_or(|t| t.is_empty());
    let complete = !new_token
        && annotations.get(UID_ANNOTATION).is_some()
        && text(secret, "ca.crt").as_deref() == Some(ca)
        && text(secret, "namespace").as_deref() == secret.metadata.namespace.as_deref();
    if complete {
        Plan::Ignore
    } else {
        Plan::Fill { new_token }
    }
}

struct State {
    ctx: Context,
    signer: LegacySigner,
    ca: String,
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, namespace = %secret.namespace().unwrap_or_default(), secret = %secret.name_any()))]
async fn reconcile(secret: Arc<Secret>, st: Arc<State>) -> Result<Action, Error> {
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return Ok(Action::await_change());
    }
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let ns = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let sa_name = secret
        .annotations()
        .get(NAME_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let accounts: Api<ServiceAccount> = Api::namespaced(st.ctx.client.clone(), &ns);
    let account = if sa_name.is_empty() {
        None
    } else {
        accounts.get_opt(&sa_name).await.map_err(err)?
    };
    let secrets: Api<Secret> = Api::namespaced(st.ctx.client.clone(), &ns);
    match plan(&secret, account.as_ref(), &st.ca) {
        Plan::Ignore => {}
        Plan::Delete => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match secrets.delete(&name, &dp).await {
                Ok(_) => {
                    tracing::info!(account = %sa_name, "deleted token secret of a missing service account")
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(err(e)),
            }
        }
        Plan::Fill { new_token } => {
            let sa_uid = account.and_then(|a| a.metadata.uid).unwrap_or_default();
            let mut updated = (*secret).clone();
            let data = updated.data.get_or_insert_with(BTreeMap::new);
            if new_token {
                let token =
                    st.signer
                        .sign(&ns, &sa_name, &sa_uid, &name)
                        .map_err(|message| Error::Other {
                            controller: NAME,
                            message,
                        })?;
                data.insert("token".into(), ByteString(token.into_bytes()));
            }
            data.insert("ca.crt".into(), ByteString(st.ca.clone().into_bytes()));
            data.insert("namespace".into(), ByteString(ns.clone().into_bytes()));
            updated.annotations_mut().insert(UID_ANNOTATION.into(), sa_uid);
            match secrets.replace(&name, &PostParams::default(), &updated).await {
                Ok(_) => {
                    tracing::info!(account = %sa_name, new_token, "populated service account token secret")
                }
                // A stale copy: the watch brings the current one.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(e) => return Err(err(e)),
            }
        }
    }
    Ok(Action::await_change())
}

/// Upstream before 1.24 (what guide C's `kubectl get secret | grep <account>` relies on): every ServiceAccount gets a
/// `<account>-token-xxxxx` Secret, listed in its `secrets`; [`reconcile`] then fills it.
#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, namespace = %sa.namespace().unwrap_or_default(), account = %sa.name_any()))]
async fn ensure_token_secret(sa: Arc<ServiceAccount>, st: Arc<State>) -> Result<Action, Error> {
    if sa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let ns = sa.namespace().unwrap_or_default();
    let name = sa.name_any();
    let uid = sa.metadata.uid.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(st.ctx.client.clone(), &ns);
    let listed = secrets.list(&Default::default()).await.map_err(err)?;
    // Looked up by annotation rather than through `secrets`, so a lost write of the account never makes a second one.
    let existing = listed.items.iter().find(|s| {
        s.type_.as_deref() == Some(SECRET_TYPE)
            && s.metadata.deletion_timestamp.is_none()
            && s.annotations().get(NAME_ANNOTATION) == Some(&name)
            && s.annotations().get(UID_ANNOTATION).is_none_or(|u| *u == uid)
    });
    let secret_name = match existing {
        Some(s) => s.name_any(),
        None => {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    generate_name: Some(format!("{name}-token-")),
                    namespace: Some(ns.clone()),
                    annotations: Some(BTreeMap::from([
                        (NAME_ANNOTATION.to_string(), name.clone()),
                        (UID_ANNOTATION.to_string(), uid.clone()),
                    ])),
                    ..Default::default()
                },
                type_: Some(SECRET_TYPE.into()),
                ..Default::default()
            };
            let created = secrets
                .create(&PostParams::default(), &secret)
                .await
                .map_err(err)?;
            tracing::info!(secret = %created.name_any(), "created token secret");
            created.name_any()
        }
    };
    let mut refs = sa.secrets.clone().unwrap_or_default();
    if !refs
        .iter()
        .any(|r| r.name.as_deref() == Some(secret_name.as_str()))
    {
        refs.push(k8s_openapi::api::core::v1::ObjectReference {
            name: Some(secret_name),
            ..Default::default()
        });
        let accounts: Api<ServiceAccount> = Api::namespaced(st.ctx.client.clone(), &ns);
        let patch = serde_json::json!({"secrets": refs});
        match accounts
            .patch(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(Action::await_change())
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let read = |path: &Option<std::path::PathBuf>, flag: &str| -> Result<String, Error> {
            let path = path.as_ref().ok_or_else(|| Error::Other {
                controller: NAME,
                message: format!("no {flag} given"),
            })?;
            std::fs::read_to_string(path).map_err(|e| Error::Other {
                controller: NAME,
                message: format!("{}: {e}", path.display()),
            })
        };
        let key = read(
            &ctx.settings.service_account_private_key_file,
            "--service-account-private-key-file",
        )?;
        let signer = LegacySigner::from_pem(&key).map_err(|message| Error::Other {
            controller: NAME,
            message,
        })?;
        // Upstream publishes an empty ca.crt when no --root-ca-file is given.
        let ca = match &ctx.settings.root_ca_file {
            Some(_) => read(&ctx.settings.root_ca_file, "--root-ca-file")?,
            None => String::new(),
        };
        let secrets: Api<Secret> = Api::all(ctx.client.clone());
        let accounts: Api<ServiceAccount> = Api::all(ctx.client.clone());
        let shutdown = ctx.shutdown.clone();
        let state = Arc::new(State { ctx, signer, ca });
        let generator = Controller::new(accounts.clone(), watcher::Config::default())
            .graceful_shutdown_on(shutdown.clone().cancelled_owned())
            .run(
                ensure_token_secret,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                state.clone(),
            )
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::warn!(controller = NAME, error = %e, "creating a token secret failed");
                }
            });
        let controller = Controller::new(secrets, watcher::Config::default());
        let cache = controller.store();
        let filler = controller
            .watches(accounts, watcher::Config::default(), move |sa| {
                let (ns, name) = (sa.namespace(), sa.name_any());
                cache
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == ns && s.annotations().get(NAME_ANNOTATION) == Some(&name))
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            })
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                state,
            )
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::warn!(controller = NAME, error = %e, "reconcile failed");
                }
            });
        tokio::join!(generator, filler);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(data: &[(&str, &str)], uid: Option<&str>) -> Secret {
        let mut annotations = BTreeMap::from([(NAME_ANNOTATION.to_string(), "builder".to_string())]);
        if let Some(u) = uid {
            annotations.insert(UID_ANNOTATION.into(), u.into());
        }
        Secret {
            metadata: ObjectMeta {
                name: Some("builder-token".into()),
                namespace: Some("ns".into()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.into()),
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    fn account(uid: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn token_secrets_are_filled_kept_or_deleted_with_their_account() {
        let sa = account("u1");
        assert_eq!(
            plan(&secret(&[], None), Some(&sa), "CA"),
            Plan::Fill { new_token: true }
        );
        let full = secret(
            &[("token", "t"), ("ca.crt", "CA"), ("namespace", "ns")],
            Some("u1"),
        );
        assert_eq!(plan(&full, Some(&sa), "CA"), Plan::Ignore);
        assert_eq!(plan(&full, Some(&sa), "NEW CA"), Plan::Fill { new_token: false });
        assert_eq!(plan(&full, None, "CA"), Plan::Delete);
        assert_eq!(plan(&full, Some(&account("u2")), "CA"), Plan::Delete);
        let mut opaque = full.clone();
        opaque.type_ = Some("Opaque".into());
        assert_eq!(plan(&opaque, None, "CA"), Plan::Ignore);
    }
}
