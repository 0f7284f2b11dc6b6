//! ServiceAccount admission for pods, as upstream's plugin:
//! - a pod without `spec.serviceAccountName` runs as `default`; the ServiceAccount must exist (403 "error looking
//!   up service account ..." otherwise);
//! - unless `automountServiceAccountToken` is false (pod first, then ServiceAccount), every container and init
//!   container mounts a projected `kube-api-access-<5 random>` volume (bound token, `kube-root-ca.crt`, namespace) at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`, unless it already mounts something there;
//! - the ServiceAccount's `imagePullSecrets` are copied to pods that have none;
//! - mirror pods (static pods of a kubelet) may not reference service accounts, secrets or configmaps.

// Rejections are `ApiError`s, the one error type requests end in; they are cold paths, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::{AdmissionPlugin, AdmissionRequest, Operation, SharedRng};
use crate::auth::ObjectReader;
use crate::auth::node::{Reference, referenced_names};
use crate::auth::objects::{self, str_at};
use api::ApiError;
use async_trait::async_trait;
use serde_json::{Value, json};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const VOLUME_NAME_PREFIX: &str = "kube-api-access-";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// One hour plus seven seconds: upstream's marker that lets it recognise (and extend) default projected tokens.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// Upstream's `generateName` alphabet (no vowels, no confusable characters).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub struct ServiceAccountAdmission {
    rng: SharedRng,
}

impl std::fmt::Debug for ServiceAccountAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceAccountAdmission")
    }
}

/// The projected volume source upstream mounts for the API token.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]
    })
}

impl ServiceAccountAdmission {
    pub fn new(rng: SharedRng) -> Self {
        Self { rng }
    }

    fn suffix(&self) -> Result<String, ApiError> {
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| ApiError::internal("admission randomness is poisoned"))?;
        Ok((0..5)
            .map(|_| char::from(NAME_ALPHABET[(rng.next_u32() as usize) % NAME_ALPHABET.len()]))
            .collect())
    }

    fn mount_token(&self, pod: &mut Value) -> Result<(), ApiError> {
        let existing = objects::array_at(pod, &["spec", "volumes"])
            .iter()
            .map(|v| str_at(v, &["name"]).to_string())
            .find(|n| n.starts_with(VOLUME_NAME_PREFIX));
        let has_volume = existing.is_some();
        let volume_name = match existing {
            Some(name) => name,
            None => format!("{VOLUME_NAME_PREFIX}{}", self.suffix()?),
        };
        let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        let mut needs_volume = false;
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        for key in ["initContainers", "containers"] {
            let Some(containers) = spec.get_mut(key).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in containers.iter_mut() {
                let mounted = objects::array_at(container, &["volumeMounts"])
                    .iter()
                    .any(|m| str_at(m, &["mountPath"]) == TOKEN_MOUNT_PATH);
                if mounted {
                    continue;
                }
                if let Some(c) = container.as_object_mut() {
                    let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
                    if let Some(list) = mounts.as_array_mut() {
                        list.push(mount.clone());
                        needs_volume = true;
                    }
                }
            }
        }
        if needs_volume && !has_volume {
            let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
            if let Some(list) = volumes.as_array_mut() {
                list.push(json!({"name": volume_name, "projected": token_volume_source()}));
            }
        }
        Ok(())
    }
}

fn forbidden(req: &AdmissionRequest<'_>, pod: &Value, message: String) -> ApiError {
    let name = if req.name.is_empty() {
        objects::name(pod)
    } else {
        req.name
    };
    ApiError::ForbiddenMessage {
        resource: req.resource.group_resource(),
        name: name.into(),
        message,
    }
}

#[async_trait]
impl AdmissionPlugin for ServiceAccountAdmission {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    async fn admit(
        &self,
        req: &AdmissionRequest<'_>,
        pod: &mut Value,
        reader: &dyn ObjectReader,
    ) -> Result<(), ApiError> {
        let is_pod = req.resource.group.is_empty() && req.resource.kind == "Pod";
        if !is_pod || !req.subresource.is_empty() || req.operation != Operation::Create {
            return Ok(());
        }
        if pod
            .pointer(&format!(
                "/metadata/annotations/{}",
                MIRROR_POD_ANNOTATION.replace('/', "~1")
            ))
            .is_some()
        {
            return check_mirror_pod(req, pod);
        }
        let sa_name = match str_at(pod, &["spec", "serviceAccountName"]) {
            "" => DEFAULT_SERVICE_ACCOUNT.to_string(),
            name => name.to_string(),
        };
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("serviceAccountName".into(), json!(sa_name));
        }
        let sa = reader
            .get(&objects::service_accounts(), Some(req.namespace), &sa_name)
            .await?;
        let Some(sa) = sa else {
            let not_found = ApiError::not_found(&api::GroupResource::new("", "serviceaccount"), &sa_name);
            let message = format!(
                "error looking up service account {}/{sa_name}: {}",
                req.namespace,
                not_found.message()
            );
            return Err(forbidden(req, pod, message));
        };
        let automount = pod
            .pointer("/spec/automountServiceAccountToken")
            .and_then(Value::as_bool)
            .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
            .unwrap_or(true);
        if automount {
            self.mount_token(pod)?;
        }
        let pull_secrets = objects::array_at(&sa, &["imagePullSecrets"]);
        if objects::array_at(pod, &["spec", "imagePullSecrets"]).is_empty()
            && !pull_secrets.is_empty()
            && let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("imagePullSecrets".into(), Value::Array(pull_secrets.to_vec()));
        }
        Ok(())
    }
}

/// Mirror pods are created by kubelets from files; they cannot use API credentials or API-held data.
fn check_mirror_pod(req: &AdmissionRequest<'_>, pod: &Value) -> Result<(), ApiError> {
    if !str_at(pod, &["spec", "serviceAccountName"]).is_empty() {
        return Err(forbidden(
            req,
            pod,
            "a mirror pod may not reference service accounts".into(),
        ));
    }
    if !referenced_names(pod, Reference::Secret).is_empty() {
        return Err(forbidden(
            req,
            pod,
            "a mirror pod may not reference secrets".into(),
        ));
    }
    if !referenced_names(pod, Reference::ConfigMap).is_empty() {
        return Err(forbidden(
            req,
            pod,
            "a mirror pod may not reference configmaps".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::{request, resource, seeded};
    use crate::auth::testutil::{MemoryReader, pod, user};

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        r.put(
            "",
            "serviceaccounts",
            json!({"metadata": {"namespace": "default", "name": "default"}}),
        );
        r.put(
            "",
            "serviceaccounts",
            json!({"metadata": {"namespace": "default", "name": "quiet"},
            "automountServiceAccountToken": false, "imagePullSecrets": [{"name": "registry"}]}),
        );
        r
    }

    async fn admit(p: &mut Value) -> Result<(), ApiError> {
        let (info, u) = (resource("Pod"), user("alice", &[]));
        let req = request(Operation::Create, &u, &info, "default", "web");
        ServiceAccountAdmission::new(seeded())
            .admit(&req, p, &reader())
            .await
    }

    #[tokio::test]
    async fn a_pod_gets_the_default_service_account_and_a_projected_token_volume_in_every_container() {
        let mut p = pod("default", "web", "");
        p["spec"].as_object_mut().unwrap().remove("serviceAccountName");
        p["spec"]["initContainers"] = json!([{"name": "init", "image": "i"}]);
        admit(&mut p).await.unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let name = volumes[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
            "{name}"
        );
        assert!(
            name["kube-api-access-".len()..]
                .bytes()
                .all(|b| NAME_ALPHABET.contains(&b))
        );
        assert_eq!(volumes[0]["projected"], token_volume_source());
        for key in ["containers", "initContainers"] {
            assert_eq!(
                p["spec"][key][0]["volumeMounts"],
                json!([{"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}])
            );
        }
    }

    #[tokio::test]
    async fn a_container_that_already_mounts_the_token_path_is_left_alone() {
        let mut p = pod("default", "web", "");
        p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]);
        admit(&mut p).await.unwrap();
        assert!(p["spec"].get("volumes").is_none());
    }

    #[tokio::test]
    async fn automount_false_on_the_service_account_skips_the_token_and_copies_pull_secrets() {
        let mut p = pod("default", "web", "");
        p["spec"]["serviceAccountName"] = json!("quiet");
        admit(&mut p).await.unwrap();
        assert!(p["spec"].get("volumes").is_none());
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));
    }

    #[tokio::test]
    async fn automount_on_the_pod_overrides_the_service_account() {
        let mut p = pod("default", "web", "");
        p["spec"]["serviceAccountName"] = json!("quiet");
        p["spec"]["automountServiceAccountToken"] = json!(true);
        admit(&mut p).await.unwrap();
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_pod_referencing_a_missing_service_account_is_forbidden() {
        let mut p = pod("default", "web", "");
        p["spec"]["serviceAccountName"] = json!("ghost");
        let err = admit(&mut p).await.unwrap_err();
        assert_eq!(err.code(), 403);
        assert_eq!(
            err.message(),
            r#"pods "web" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found"#
        );
    }

    #[tokio::test]
    async fn mirror_pods_may_not_reference_service_accounts_or_secrets() {
        let mut p = pod("kube-system", "etcd-node-1", "node-1");
        p["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "hash"});
        assert!(
            admit(&mut p)
                .await
                .unwrap_err()
                .message()
                .contains("a mirror pod may not reference service accounts")
        );
        p["spec"].as_object_mut().unwrap().remove("serviceAccountName");
        assert_eq!(admit(&mut p).await, Ok(()));
        assert!(p["spec"].get("volumes").is_none());
        p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "x"}}]);
        assert!(
            admit(&mut p)
                .await
                .unwrap_err()
                .message()
                .contains("a mirror pod may not reference secrets")
        );
    }
}
