//! Static pods: reading the manifest directory, the UID a static pod gets, and turning a container of a pod into
//! what the process runtime starts (command resolved on PATH, environment, working directory, user and group,
//! hostPath volumes mapped below the node's root directory, projected service-account volumes to the kubelet's
//! directory of them, and the API server's address for API pods).

use k8s_openapi::api::core::v1::{Container, Pod};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A pod the kubelet should run, with what it needs to know about where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    pub pod: Pod,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The manifest file, for messages (empty for pods from the API).
    pub source: PathBuf,
    /// A static pod (from the manifest directory) rather than a pod bound through the API.
    pub static_pod: bool,
}

impl DesiredPod {
    /// A pod bound to the node through the API; `None` without the name, namespace and UID the API always sets.
    pub fn from_api(pod: &Pod) -> Option<DesiredPod> {
        let uid = pod.metadata.uid.clone().filter(|u| !u.is_empty())?;
        let name = pod.metadata.name.clone()?;
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        pod.spec.as_ref()?;
        Some(DesiredPod {
            pod: pod.clone(),
            uid,
            namespace,
            name,
            source: PathBuf::new(),
            static_pod: false,
        })
    }

    /// `<namespace>_<name>_<uid>`, the directory name upstream uses under `/var/log/pods`.
    pub fn log_dir_name(&self) -> String {
        format!("{}_{}_{}", self.namespace, self.name, self.uid)
    }

    pub fn containers(&self) -> &[Container] {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
    }

    pub fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    /// Whether the pod shares the node's network (and so its address) rather than having one of its own.
    pub fn host_network(&self) -> bool {
        self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
    }

    pub fn grace_period_secs(&self) -> u64 {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(30)
    }
}

/// A manifest that could not be used, reported and skipped while the others run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file of the manifest directory (hidden files are ignored, as
/// upstream does), as static pods of `node_name`.
pub fn read_manifests(dir: &Path, node_name: &str) -> (Vec<DesiredPod>, Vec<ManifestError>) {
    let mut pods = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (pods, errors),
        Err(e) => {
            errors.push(ManifestError {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            });
            return (pods, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_manifest = [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext));
        if name.starts_with('.') || !is_manifest || !path.is_file() {
            continue;
        }
        match read_manifest(&path, node_name) {
            Ok(pod) => pods.push(pod),
            Err(reason) => errors.push(ManifestError { path, reason }),
        }
    }
    // Two manifests naming the same pod: the first (by file name) wins, as a duplicate name would in the API.
    let mut seen = std::collections::BTreeSet::new();
    pods.retain(|p| {
        let fresh = seen.insert((p.namespace.clone(), p.name.clone()));
        if !fresh {
            errors.push(ManifestError {
                path: p.source.clone(),
                reason: format!(
                    "duplicate pod {}/{} (already defined by another manifest)",
                    p.namespace, p.name
                ),
            });
        }
        fresh
    });
    (pods, errors)
}

fn read_manifest(path: &Path, node_name: &str) -> Result<DesiredPod, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    // The kind first: a Deployment in the directory deserves "not a Pod", not a parse error about fields.
    if !pod_kind_is_pod(&text)? {
        return Err("not a Pod (apiVersion: v1, kind: Pod)".into());
    }
    let mut pod: Pod = serde_yaml::from_slice(&text).map_err(|e| format!("invalid pod manifest: {e}"))?;
    let base = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?;
    let spec = pod.spec.as_ref().ok_or("spec is required")?;
    if spec.containers.is_empty() {
        return Err("spec.containers: at least one container is required".into());
    }
    for (i, c) in spec.containers.iter().enumerate() {
        if c.name.is_empty() {
            return Err(format!("spec.containers[{i}].name is required"));
        }
    }
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    // Upstream names static pods `<name>-<node>` and derives the UID from the manifest's content, so an edit
    // replaces the pod and an unchanged file keeps it.
    let name = format!("{base}-{node_name}");
    let mut hasher = Sha256::new();
    hasher.update(&text);
    hasher.update(node_name.as_bytes());
    let uid = hex::encode(&hasher.finalize()[..16]);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = Some(namespace.clone());
    pod.metadata.uid = Some(uid.clone());
    Ok(DesiredPod {
        pod,
        uid,
        namespace,
        name,
        source: path.to_path_buf(),
        static_pod: true,
    })
}

fn pod_kind_is_pod(text: &[u8]) -> Result<bool, String> {
    #[derive(serde::Deserialize)]
    struct TypeMeta {
        #[serde(rename = "apiVersion", default)]
        api_version: String,
        #[serde(default)]
        kind: String,
    }
    serde_yaml::from_slice::<TypeMeta>(text)
        .map(|t| t.api_version == "v1" && t.kind == "Pod")
        .map_err(|e| format!("invalid pod manifest: {e}"))
}

/// Why a container cannot be started by the process runtime; reported as the container's waiting reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub reason: &'static str,
    pub message: String,
}

/// What the process runtime starts for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// What the node adds to every container's process besides the pod's own spec.
#[derive(Debug, Clone, Copy)]
pub struct NodeContext<'a> {
    /// The node's root directory: hostPath volumes are below it.
    pub rootfs: &'a Path,
    /// The kubelet's root directory: projected volumes are below `<root_dir>/pods/<uid>`.
    pub root_dir: &'a Path,
    /// PATH used to find containers' programs.
    pub path_env: &'a str,
    /// The API server the kubelet talks to, as `KUBERNETES_SERVICE_HOST`/`_PORT` of API pods.
    pub api_server: Option<(&'a str, u16)>,
}

/// Maps container paths to host paths: a hostPath volume mounted at `mountPath` is the host's `<rootfs>/<path>`, a
/// projected volume the kubelet's directory of it ([`crate::volumes::projected_dir`]). Without mount namespaces
/// the process sees the host's filesystem, so paths in its arguments are rewritten.
pub fn path_mapping(pod: &Pod, container: &Container, node: &NodeContext<'_>) -> Vec<(String, String)> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let volumes: BTreeMap<&str, PathBuf> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|vs| {
            vs.iter()
                .filter_map(|v| {
                    if let Some(h) = &v.host_path {
                        return Some((v.name.as_str(), node.rootfs.join(h.path.trim_start_matches('/'))));
                    }
                    v.projected.as_ref().map(|_| {
                        (
                            v.name.as_str(),
                            crate::volumes::projected_dir(node.root_dir, uid, &v.name),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut mapping: Vec<(String, String)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let host = volumes.get(m.name.as_str())?.display().to_string();
            (host != m.mount_path).then(|| (m.mount_path.trim_end_matches('/').to_string(), host))
        })
        .collect();
    // Longest mount path first, so nested mounts win over their parents.
    mapping.sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
    mapping
}

/// Rewrites every occurrence of a mapped container path (at a path boundary) in `value`.
pub fn map_paths(value: &str, mapping: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    'outer: while !rest.is_empty() {
        for (mount, host) in mapping {
            if let Some(after) = rest.strip_prefix(mount.as_str()) {
                let boundary_before = out.is_empty() || out.ends_with(['=', ',', ':', ' ', '"', '\'']);
                let boundary_after = after.is_empty() || after.starts_with(['/', ',', ':', ' ', '"', '\'']);
                if boundary_before && boundary_after {
                    out.push_str(host);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// Resolves a program name against `path` (a PATH value), as a shell would.
pub fn resolve_program(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}

/// What the downward API reads that the pod object from the API or a manifest does not hold yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
}

fn unsupported_env(name: &str, what: &str) -> ConfigError {
    ConfigError {
        reason: "CreateContainerConfigError",
        message: format!("env {name:?}: {what} is not supported by bulwark's process runtime"),
    }
}

/// A downward API field of the pod object itself (metadata, `spec.nodeName`, `spec.serviceAccountName`, one label
/// or annotation as `metadata.labels['key']`), as env vars and projected volumes read them.
pub fn object_field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_suffix("']")?
            .strip_prefix("['")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        _ => keyed("metadata.labels", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations", meta.annotations.as_ref())),
    }
}

/// The value of a downward API `fieldRef` for an environment variable, with upstream's set of supported fields:
/// the pod's own fields as this node runs it (a static pod's mirror name), and its addresses from `facts`.
pub fn field_value(pod: &DesiredPod, facts: &PodFacts, path: &str) -> Option<String> {
    match path {
        "metadata.name" => Some(pod.name.clone()),
        "metadata.namespace" => Some(pod.namespace.clone()),
        "metadata.uid" => Some(pod.uid.clone()),
        "spec.nodeName" => Some(object_field(&pod.pod, path).unwrap_or_else(|| facts.node_name.clone())),
        "spec.serviceAccountName" => Some(object_field(&pod.pod, path).unwrap_or_default()),
        "status.hostIP" | "status.hostIPs" => Some(facts.host_ip.clone()),
        "status.podIP" | "status.podIPs" => Some(facts.pod_ip.clone()),
        _ => object_field(&pod.pod, path),
    }
}

/// The process for `container` of `pod`, or why there can't be one. `facts` feeds the downward API.
pub fn process_spec(
    pod: &DesiredPod,
    container: &Container,
    node: &NodeContext<'_>,
    facts: &PodFacts,
) -> Result<ProcessSpec, ConfigError> {
    let path_env = node.path_env;
    let mapping = path_mapping(&pod.pod, container, node);
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    let Some(program) = argv.first().cloned() else {
        return Err(ConfigError {
            reason: "CreateContainerConfigError",
            message: format!(
                "container {:?} has no command: bulwark's process runtime runs a container's command on the host and cannot run an image's entrypoint",
                container.name
            ),
        });
    };
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path_env.into()),
        ("HOSTNAME".into(), pod.name.clone()),
    ];
    // Upstream points these at the `kubernetes` Service; without kube-proxy its IP would not route, so API pods
    // get the endpoint the kubelet itself uses. Container env below may still override them.
    if let (false, Some((host, port))) = (pod.static_pod, node.api_server) {
        env.push(("KUBERNETES_SERVICE_HOST".into(), host.into()));
        env.push(("KUBERNETES_SERVICE_PORT".into(), port.to_string()));
        env.push(("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()));
    }
    if let Some((_, dir)) = mapping
        .iter()
        .find(|(mount, _)| mount == client::SERVICEACCOUNT_MOUNT_PATH)
    {
        env.push((client::SERVICEACCOUNT_DIR_ENV.into(), dir.clone()));
    }
    for var in container.env.iter().flatten() {
        match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                let Some(field) = &from.field_ref else {
                    let what = if from.resource_field_ref.is_some() {
                        "valueFrom.resourceFieldRef"
                    } else if from.secret_key_ref.is_some() {
                        "valueFrom.secretKeyRef"
                    } else if from.config_map_key_ref.is_some() {
                        "valueFrom.configMapKeyRef"
                    } else {
                        "this valueFrom"
                    };
                    return Err(unsupported_env(&var.name, what));
                };
                let value = field_value(pod, facts, &field.field_path).ok_or_else(|| {
                    unsupported_env(&var.name, &format!("valueFrom.fieldRef {:?}", field.field_path))
                })?;
                env.retain(|(k, _)| k != &var.name);
                env.push((var.name.clone(), value));
            }
            (value, None) => {
                let value = expand_env(value.as_deref().unwrap_or_default(), &env);
                env.retain(|(k, _)| k != &var.name);
                env.push((var.name.clone(), map_paths(&value, &mapping)));
            }
        }
    }
    // $(VAR) references in command and args expand from the container's environment, as upstream does.
    let argv: Vec<String> = argv
        .iter()
        .map(|a| map_paths(&expand_env(a, &env), &mapping))
        .collect();
    let resolved = resolve_program(&argv[0], path_env).ok_or_else(|| ConfigError {
        reason: "CreateContainerError",
        message: format!("executable {program:?} not found in $PATH ({path_env})"),
    })?;
    let mut argv = argv;
    argv[0] = resolved.display().to_string();
    let security = container.security_context.as_ref();
    let pod_security = pod.pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let uid = security
        .and_then(|s| s.run_as_user)
        .or(pod_security.and_then(|s| s.run_as_user));
    let gid = security
        .and_then(|s| s.run_as_group)
        .or(pod_security.and_then(|s| s.run_as_group));
    Ok(ProcessSpec {
        argv,
        env,
        working_dir: container
            .working_dir
            .as_ref()
            .map(|d| PathBuf::from(map_paths(d, &mapping))),
        uid: uid.and_then(|u| u32::try_from(u).ok()),
        gid: gid.and_then(|g| u32::try_from(g).ok()),
    })
}

/// `$(NAME)` expands to the variable's value, `$$` escapes; unknown references stay as written (upstream's rule).
fn expand_env(value: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        let after = &rest[idx + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETCD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - name: etcd
    command: [sh, --cert-file=/etc/kubernetes/pki/etcd/server.crt, --data-dir=/var/lib/etcd]
    env:
    - {name: A, value: one}
    - {name: B, value: "$(A)-two"}
    args: ["$(B)", "$$(A)"]
    volumeMounts:
    - {name: etcd-certs, mountPath: /etc/kubernetes/pki/etcd}
    - {name: etcd-data, mountPath: /var/lib/etcd}
  volumes:
  - {name: etcd-certs, hostPath: {path: /etc/kubernetes/pki/etcd}}
  - {name: etcd-data, hostPath: {path: /var/lib/etcd}}
"#;

    fn node<'a>(rootfs: &'a str, path_env: &'a str) -> NodeContext<'a> {
        NodeContext {
            rootfs: Path::new(rootfs),
            root_dir: Path::new("/var/lib/kubelet"),
            path_env,
            api_server: None,
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn manifests_become_static_pods_named_after_the_node_and_bad_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "etcd.yaml", ETCD);
        write(
            dir.path(),
            "broken.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: [\n",
        );
        write(
            dir.path(),
            "deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        );
        write(dir.path(), ".hidden.yaml", ETCD);
        write(dir.path(), "notes.txt", "ignored");
        let (pods, errors) = read_manifests(dir.path(), "node-a");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].name, "etcd-node-a");
        assert_eq!(pods[0].namespace, "kube-system");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.path.ends_with("broken.yaml") && e.reason.contains("invalid pod manifest"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.path.ends_with("deployment.yaml") && e.reason.contains("not a Pod"))
        );
    }

    #[test]
    fn a_changed_manifest_gets_a_new_uid_and_an_unchanged_one_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "etcd.yaml", ETCD);
        let first = read_manifests(dir.path(), "n").0[0].uid.clone();
        assert_eq!(read_manifests(dir.path(), "n").0[0].uid, first);
        write(dir.path(), "etcd.yaml", &ETCD.replace("one", "uno"));
        assert_ne!(read_manifests(dir.path(), "n").0[0].uid, first);
    }

    #[test]
    fn host_paths_map_below_the_root_and_env_references_expand() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "etcd.yaml", ETCD);
        let pod = read_manifests(dir.path(), "n").0.remove(0);
        let spec = process_spec(
            &pod,
            &pod.containers()[0],
            &node("/node1", "/usr/bin:/bin"),
            &PodFacts::default(),
        )
        .unwrap();
        assert!(spec.argv[0].ends_with("/sh"), "{:?}", spec.argv);
        assert_eq!(
            spec.argv[1],
            "--cert-file=/node1/etc/kubernetes/pki/etcd/server.crt"
        );
        assert_eq!(spec.argv[2], "--data-dir=/node1/var/lib/etcd");
        assert_eq!(spec.argv[3], "one-two");
        assert_eq!(spec.argv[4], "$(A)");
        let same = process_spec(
            &pod,
            &pod.containers()[0],
            &node("/", "/usr/bin:/bin"),
            &PodFacts::default(),
        )
        .unwrap();
        assert_eq!(same.argv[1], "--cert-file=/etc/kubernetes/pki/etcd/server.crt");
    }

    #[test]
    fn a_container_without_a_command_or_with_an_unknown_program_gets_a_clear_reason() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: nginx}\n  - {name: d, command: [no-such-program-xyz]}\n",
        );
        let pod = read_manifests(dir.path(), "n").0.remove(0);
        let err = process_spec(
            &pod,
            &pod.containers()[0],
            &node("/", "/usr/bin"),
            &PodFacts::default(),
        )
        .unwrap_err();
        assert_eq!(err.reason, "CreateContainerConfigError");
        assert!(err.message.contains("has no command"), "{}", err.message);
        let err = process_spec(
            &pod,
            &pod.containers()[1],
            &node("/", "/usr/bin"),
            &PodFacts::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("not found in $PATH"), "{}", err.message);
    }

    #[test]
    fn an_api_pod_finds_the_api_server_and_its_service_account_files_on_the_host() {
        let pod: Pod = serde_yaml::from_str(
            r#"
metadata: {name: ctl, namespace: kube-federation-system, uid: u-9}
spec:
  containers:
  - name: ctl
    command: [sh, -c, "cat /var/run/secrets/kubernetes.io/serviceaccount/token"]
    env: [{name: KUBERNETES_SERVICE_PORT, value: "7443"}]
    volumeMounts: [{name: kube-api-access-abcde, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}]
  volumes:
  - name: kube-api-access-abcde
    projected: {sources: [{serviceAccountToken: {path: token}}]}
"#,
        )
        .unwrap();
        let desired = DesiredPod::from_api(&pod).unwrap();
        let ctx = NodeContext {
            api_server: Some(("10.1.0.1", 6443)),
            ..node("/", "/usr/bin:/bin")
        };
        let spec = process_spec(&desired, &desired.containers()[0], &ctx, &PodFacts::default()).unwrap();
        let dir = "/var/lib/kubelet/pods/u-9/volumes/kubernetes.io~projected/kube-api-access-abcde";
        assert_eq!(spec.argv[2], format!("cat {dir}/token"));
        let env = |k: &str| {
            spec.env
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(env("KUBERNETES_SERVICE_HOST"), Some("10.1.0.1"));
        assert_eq!(
            env("KUBERNETES_SERVICE_PORT"),
            Some("7443"),
            "the container's own env wins"
        );
        assert_eq!(env(client::SERVICEACCOUNT_DIR_ENV), Some(dir));
    }

    #[test]
    fn the_downward_api_gives_env_the_pod_ip_names_and_labels_and_refuses_other_sources() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {tier: front}}\nspec:\n  containers:\n  - name: c\n    command: [sh, -c, 'serve $(POD_IP)']\n    env:\n    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}\n    - {name: NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n    - {name: TIER, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['tier']\"}}}\n    - {name: HOST, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}\n  - name: d\n    command: [sh]\n    env: [{name: S, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n",
        );
        let pod = read_manifests(dir.path(), "n1").0.remove(0);
        let facts = PodFacts {
            node_name: "n1".into(),
            host_ip: "127.0.0.2".into(),
            pod_ip: "127.9.0.7".into(),
        };
        let spec = process_spec(&pod, &pod.containers()[0], &node("/", "/usr/bin:/bin"), &facts).unwrap();
        let env = |k: &str| spec.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env("POD_IP"), Some("127.9.0.7"));
        assert_eq!(env("NODE"), Some("n1"));
        assert_eq!(env("NAME"), Some("web-n1"));
        assert_eq!(env("TIER"), Some("front"));
        assert_eq!(env("HOST"), Some("127.0.0.2"));
        assert_eq!(spec.argv[2], "serve 127.9.0.7");
        let err = process_spec(&pod, &pod.containers()[1], &node("/", "/usr/bin:/bin"), &facts).unwrap_err();
        assert_eq!(err.reason, "CreateContainerConfigError");
        assert!(err.message.contains("secretKeyRef"), "{}", err.message);
    }
}
