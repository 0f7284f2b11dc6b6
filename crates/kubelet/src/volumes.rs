//! Projected volumes with a service-account token: the `kube-api-access-*` volume ServiceAccount admission adds to
//! every pod that automounts its token (a bound token from TokenRequest, `ca.crt` from the `kube-root-ca.crt`
//! ConfigMap, `namespace` from the downward API), and any other projected volume made of those sources and Secrets.
//!
//! The kubelet writes them below its root directory, `<root>/pods/<uid>/volumes/kubernetes.io~projected/<volume>`,
//! as upstream lays them out; the token is 0600 (owned by the pod's `runAsUser` when it has one), the rest 0644.
//! [`Tokens::sync`] runs after each pass with the API client: it asks
//! `POST /api/v1/namespaces/<ns>/serviceaccounts/<sa>/token` for a token bound to the pod (the Node authorizer and
//! NodeRestriction let a kubelet do that for pods bound to its node only) and asks again once 80 % of the token's
//! life has passed, as upstream's token manager. Containers of a pod wait (`ContainerCreating`) until its volumes
//! are written ([`ready`]).
//!
//! The process runtime has no mount namespaces: [`crate::pod::path_mapping`] maps the mount path to that directory,
//! and the container gets `$BULWARK_SERVICEACCOUNT_DIR` ([`client::SERVICEACCOUNT_DIR_ENV`]) pointing at it.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, ProjectedVolumeSource, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where upstream keeps projected volumes below a pod's directory.
pub const PROJECTED_DIR: &str = "volumes/kubernetes.io~projected";
/// The lifetime asked for when a source does not say (upstream's default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Upstream refreshes a token older than this even when it is far from expiring.
const MAX_TOKEN_AGE: Duration = Duration::from_secs(24 * 3600);

/// The host directory of projected volume `volume` of pod `uid`.
pub fn projected_dir(root_dir: &Path, uid: &str, volume: &str) -> PathBuf {
    root_dir.join("pods").join(uid).join(PROJECTED_DIR).join(volume)
}

/// The pod's projected volumes that carry a service-account token, by name.
pub fn token_volumes(pod: &Pod) -> Vec<(&str, &ProjectedVolumeSource)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.projected.as_ref().map(|p| (v.name.as_str(), p)))
                .filter(|(_, p)| {
                    p.sources
                        .iter()
                        .flatten()
                        .any(|s| s.service_account_token.is_some())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The token's file name in the volume (`token` for the admission-made volume).
fn token_path(source: &ProjectedVolumeSource) -> Option<&str> {
    source
        .sources
        .iter()
        .flatten()
        .find_map(|s| s.service_account_token.as_ref().map(|t| t.path.as_str()))
}

/// Whether every token volume of the pod is written: the token is written last, so its file tells.
pub fn ready(root_dir: &Path, pod: &Pod) -> Result<(), String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    for (name, source) in token_volumes(pod) {
        let Some(path) = token_path(source) else { continue };
        if !projected_dir(root_dir, uid, name).join(path).is_file() {
            return Err(format!(
                "waiting for the service account token of volume {name:?}"
            ));
        }
    }
    Ok(())
}

/// Upstream's rule: refresh once 80 % of the lifetime has passed, or after 24 hours.
pub fn refresh_due(issued: SystemTime, expires: SystemTime, now: SystemTime) -> bool {
    let life = expires.duration_since(issued).unwrap_or_default();
    let age = now.duration_since(issued).unwrap_or_default();
    age >= life.mul_f64(0.8) || age >= MAX_TOKEN_AGE
}

/// Why a volume could not be written this time.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Missing(String),
}

/// Writes `contents` to `path` through a temporary file and a rename, so a reader never sees half a token.
fn write_file(path: &Path, contents: &[u8], mode: u32, owner: Option<u32>) -> Result<(), VolumeError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| VolumeError::Io { path: p, source }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = path.with_extension("tmp~");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(contents).map_err(io(&tmp))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(io(&tmp))?;
    if let Some(uid) = owner {
        nix::unistd::chown(&tmp, Some(nix::unistd::Uid::from_raw(uid)), None)
            .map_err(|e| io(&tmp)(std::io::Error::from(e)))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Selected keys (`items`) or every key, as `(file, bytes)`.
fn pick(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
) -> Vec<(String, Vec<u8>)> {
    match items {
        Some(items) => items
            .iter()
            .filter_map(|i| data.get(&i.key).map(|v| (i.path.clone(), v.clone())))
            .collect(),
        None => data.into_iter().collect(),
    }
}

/// What the kubelet remembers of the tokens it wrote: when each was issued and when it expires.
#[derive(Default)]
pub struct Tokens {
    issued: BTreeMap<(String, String), (SystemTime, SystemTime)>,
    warned: BTreeSet<String>,
}

impl Tokens {
    /// Writes or refreshes the token volumes of the pods bound to this node; returns whether a pod's volumes
    /// became ready (its containers can start now).
    pub async fn sync(
        &mut self,
        client: &kube::Client,
        root_dir: &Path,
        bound: &[Pod],
        now: SystemTime,
    ) -> bool {
        let mut became_ready = false;
        let mut live = BTreeSet::new();
        for pod in bound {
            let running = pod.metadata.deletion_timestamp.is_none()
                && !matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                );
            if !running || crate::api::is_mirror(pod) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            for (name, source) in token_volumes(pod) {
                let key = (uid.clone(), name.to_string());
                live.insert(key.clone());
                let fresh = self
                    .issued
                    .get(&key)
                    .is_some_and(|(issued, expires)| !refresh_due(*issued, *expires, now));
                if fresh {
                    continue;
                }
                let was_ready = self.issued.contains_key(&key);
                let dir = projected_dir(root_dir, &uid, name);
                match write_volume(client, pod, source, &dir, now).await {
                    Ok(expires) => {
                        tracing::info!(pod = ?pod.metadata.name, volume = name, "wrote service account token");
                        self.issued.insert(key, (now, expires));
                        self.warned.remove(&format!("{uid}/{name}"));
                        became_ready |= !was_ready;
                    }
                    Err(e) => {
                        if self.warned.insert(format!("{uid}/{name}")) {
                            tracing::warn!(pod = ?pod.metadata.name, volume = name, error = %e,
                                "cannot write projected volume; retrying");
                        }
                    }
                }
            }
        }
        self.issued.retain(|k, _| live.contains(k));
        became_ready
    }
}

/// Writes every source of one projected volume, the token last; returns the token's expiry.
async fn write_volume(
    client: &kube::Client,
    pod: &Pod,
    source: &ProjectedVolumeSource,
    dir: &Path,
    now: SystemTime,
) -> Result<SystemTime, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let owner = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.run_as_user)
        .and_then(|u| u32::try_from(u).ok())
        .filter(|_| nix::unistd::geteuid().is_root());
    let api_err = |what: String| move |source| VolumeError::Api { what, source };
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut token: Option<(String, serde_json::Value)> = None;
    for s in source.sources.iter().flatten() {
        if let Some(cm) = &s.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            match api
                .get_opt(&cm.name)
                .await
                .map_err(api_err(format!("reading ConfigMap {ns}/{}", cm.name)))?
            {
                Some(found) => {
                    let data = found
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    files.extend(pick(data, cm.items.as_ref()));
                }
                None if cm.optional == Some(true) => {}
                None => {
                    return Err(VolumeError::Missing(format!(
                        "ConfigMap {ns}/{} not found",
                        cm.name
                    )));
                }
            }
        }
        if let Some(secret) = &s.secret {
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            match api
                .get_opt(&secret.name)
                .await
                .map_err(api_err(format!("reading Secret {ns}/{}", secret.name)))?
            {
                Some(found) => {
                    let data = found
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    files.extend(pick(data, secret.items.as_ref()));
                }
                None if secret.optional == Some(true) => {}
                None => {
                    return Err(VolumeError::Missing(format!(
                        "Secret {ns}/{} not found",
                        secret.name
                    )));
                }
            }
        }
        if let Some(downward) = &s.downward_api {
            for item in downward.items.iter().flatten() {
                if let Some(value) = item
                    .field_ref
                    .as_ref()
                    .and_then(|f| crate::pod::object_field(pod, &f.field_path))
                {
                    files.push((item.path.clone(), value.into_bytes()));
                }
            }
        }
        if let Some(t) = &s.service_account_token {
            let mut spec = serde_json::json!({
                "expirationSeconds": t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                   "uid": pod.metadata.uid.clone().unwrap_or_default()},
            });
            if let Some(audience) = t.audience.as_ref().filter(|a| !a.is_empty()) {
                spec["audiences"] = serde_json::json!([audience]);
            }
            token = Some((t.path.clone(), spec));
        }
    }
    let mode = source
        .default_mode
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0o644);
    for (file, bytes) in &files {
        write_file(&dir.join(file), bytes, mode, None)?;
    }
    let Some((path, spec)) = token else {
        return Ok(now + MAX_TOKEN_AGE);
    };
    let sa = spec_service_account(pod);
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request =
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    let answer: serde_json::Value = api
        .create_subresource("token", &sa, &PostParams::default(), &request)
        .await
        .map_err(api_err(format!("requesting a token of ServiceAccount {ns}/{sa}")))?;
    let token = answer["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| VolumeError::Missing("the TokenRequest came back without a token".into()))?;
    write_file(&dir.join(&path), token.as_bytes(), 0o600, owner)?;
    let expires = answer["status"]["expirationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(SystemTime::from)
        .unwrap_or(now + Duration::from_secs(600));
    Ok(expires)
}

fn spec_service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    const ADMITTED: &str = r#"
metadata: {name: web, namespace: shop, uid: u-1}
spec:
  serviceAccountName: builder
  containers:
  - name: web
    command: [sleep, "1"]
    volumeMounts: [{name: kube-api-access-x7k2p, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
  volumes:
  - name: kube-api-access-x7k2p
    projected:
      defaultMode: 420
      sources:
      - serviceAccountToken: {expirationSeconds: 3607, path: token}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {apiVersion: v1, fieldPath: metadata.namespace}}]}
  - name: data
    hostPath: {path: /srv}
"#;

    #[test]
    fn only_projected_volumes_with_a_token_are_the_kubelets_to_write() {
        let p = pod(ADMITTED);
        let names: Vec<&str> = token_volumes(&p).iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["kube-api-access-x7k2p"]);
        assert_eq!(
            crate::pod::object_field(&p, "metadata.namespace").as_deref(),
            Some("shop")
        );
        assert_eq!(spec_service_account(&p), "builder");
    }

    #[test]
    fn a_pod_waits_until_its_token_file_is_written() {
        let root = std::env::temp_dir().join(format!("kubelet-volumes-{}", std::process::id()));
        let p = pod(ADMITTED);
        let err = ready(&root, &p).unwrap_err();
        assert!(err.contains("kube-api-access-x7k2p"), "{err}");
        let token = projected_dir(&root, "u-1", "kube-api-access-x7k2p").join("token");
        write_file(&token, b"t", 0o600, None).unwrap();
        assert!(ready(&root, &p).is_ok());
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert!(token.starts_with(root.join("pods/u-1/volumes/kubernetes.io~projected")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn tokens_are_refreshed_after_eighty_percent_of_their_life_or_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        assert!(!refresh_due(t0, t0 + hour, t0 + Duration::from_secs(2879)));
        assert!(refresh_due(t0, t0 + hour, t0 + Duration::from_secs(2880)));
        let week = Duration::from_secs(7 * 24 * 3600);
        assert!(!refresh_due(t0, t0 + week, t0 + Duration::from_secs(23 * 3600)));
        assert!(refresh_due(t0, t0 + week, t0 + Duration::from_secs(24 * 3600)));
    }
}
