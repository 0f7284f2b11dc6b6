//! `--patches DIR` (`patches.directory` in `InitConfiguration` / `JoinConfiguration`): upstream's per-node
//! overrides of what kubeadm writes. The `ClusterConfiguration` (and so every `extraArgs`) is shared by all
//! control-plane nodes, so anything that differs per node (the address a component binds, the etcd client URL
//! the local API server uses) is patched per node, as upstream documents.
//!
//! Files are named `target[suffix][+patchtype].extension`: `target` is one of [`TARGETS`], `patchtype` is
//! `strategic` (the default), `merge` or `json`, `extension` is `json` or `yaml` (a YAML file may hold several
//! documents, applied in order). Files apply in the lexical order of their names. A KubeletConfiguration has no
//! merge keys on its lists, so a strategic patch of it is a merge patch. The directory is a path on the real
//! filesystem, like `--config`.
//!
//! Entry point: [`apply`].

use crate::{Error, say};
use api::patch::{PatchType, apply_patch};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const ETCD: &str = "etcd";
pub const KUBELET_CONFIGURATION: &str = "kubeletconfiguration";
/// What a patch file can target, as upstream names them.
pub const TARGETS: &[&str] = &[
    ETCD,
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    KUBELET_CONFIGURATION,
];

/// One patch file found for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PatchFile {
    path: PathBuf,
    kind: PatchType,
}

fn usage(message: String) -> Error {
    Error::Usage(message)
}

/// The files in `dir` that patch `target`, in the order they apply. Files whose names do not follow the pattern
/// are reported by upstream and skipped; so are they here (with a line on `out`).
fn files_for(dir: &Path, target: &str, out: &mut dyn Write) -> Result<Vec<PatchFile>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let Some((stem, extension)) = name.rsplit_once('.') else {
            continue;
        };
        if !matches!(extension, "json" | "yaml" | "yml") {
            continue;
        }
        let (head, kind) = match stem.rsplit_once('+') {
            Some((head, "strategic")) => (head, PatchType::StrategicMerge),
            Some((head, "merge")) => (head, PatchType::Merge),
            Some((head, "json")) => (head, PatchType::Json),
            Some((_, other)) => {
                say(
                    out,
                    format_args!(
                        "[patches] Ignoring file {name:?}: unknown patch type {other:?} (strategic, merge or json)"
                    ),
                )?;
                continue;
            }
            None => (stem, PatchType::StrategicMerge),
        };
        // The longest target that prefixes the name wins, so `kube-apiserver0` is not read as `kube-apiserver`
        // plus a suffix of another target.
        let Some(found) = TARGETS
            .iter()
            .filter(|t| head.starts_with(**t))
            .max_by_key(|t| t.len())
        else {
            say(
                out,
                format_args!("[patches] Ignoring file {name:?}: its name starts with none of {TARGETS:?}"),
            )?;
            continue;
        };
        if *found == target {
            files.push(PatchFile {
                path: dir.join(&name),
                kind,
            });
        }
    }
    Ok(files)
}

/// The patch documents of one file, as JSON.
fn documents(file: &PatchFile) -> Result<Vec<serde_json::Value>, Error> {
    let text = std::fs::read_to_string(&file.path).map_err(|source| Error::Io {
        path: file.path.clone(),
        source,
    })?;
    let bad = |e: String| usage(format!("patch file {}: {e}", file.path.display()));
    if file.path.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(&text)
            .map(|v| vec![v])
            .map_err(|e| bad(e.to_string()));
    }
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(doc).map_err(|e: serde_yaml::Error| bad(e.to_string()))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Applies the patches in `dir` for `target` to `yaml` (the document kubeadm is about to write) and returns the
/// result as YAML; without a directory, or without patches for the target, `yaml` comes back unchanged.
pub fn apply(dir: Option<&Path>, target: &str, yaml: &str, out: &mut dyn Write) -> Result<String, Error> {
    let Some(dir) = dir else {
        return Ok(yaml.to_string());
    };
    let files = files_for(dir, target, out)?;
    if files.is_empty() {
        return Ok(yaml.to_string());
    }
    let mut doc: serde_json::Value = serde_yaml::from_str(yaml)
        .map_err(|e| usage(format!("cannot read the {target} document to patch: {e}")))?;
    let (group, kind) = if target == KUBELET_CONFIGURATION {
        ("kubelet.config.k8s.io", "KubeletConfiguration")
    } else {
        ("", "Pod")
    };
    for file in files {
        // Without merge keys (a KubeletConfiguration) strategic merge is a merge patch.
        let kind_used = match file.kind {
            PatchType::StrategicMerge if api::patch::root_type(group, kind).is_none() => PatchType::Merge,
            other => other,
        };
        for patch in documents(&file)? {
            doc = apply_patch(kind_used, group, kind, &doc, &patch)
                .map_err(|e| usage(format!("patch file {}: {e}", file.path.display())))?;
        }
        say(
            out,
            format_args!(
                "[patches] Applied patch of type {:?} to target {target:?}",
                file.kind.content_type()
            ),
        )?;
    }
    serde_yaml::to_string(&doc).map_err(|e| usage(format!("cannot render the patched {target}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-scheduler\nspec:\n  containers:\n  - name: kube-scheduler\n    command: [kube-scheduler, --bind-address=127.0.0.1]\n    livenessProbe:\n      httpGet: {host: 127.0.0.1, port: 10259}\n";

    #[test]
    fn patches_apply_in_name_order_with_their_own_types() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kube-scheduler0+json.json"),
            r#"[{"op":"replace","path":"/spec/containers/0/command/1","value":"--bind-address=127.0.9.1"}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("kube-scheduler1.yaml"),
            "spec:\n  containers:\n  - name: kube-scheduler\n    livenessProbe:\n      httpGet: {host: 127.0.9.1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etcd+merge.yaml"), "metadata: {name: other}\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a patch").unwrap();
        let mut out = Vec::new();
        let patched = apply(Some(dir.path()), "kube-scheduler", POD, &mut out).unwrap();
        let pod: serde_json::Value = serde_yaml::from_str(&patched).unwrap();
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["command"][1], "--bind-address=127.0.9.1");
        assert_eq!(c["livenessProbe"]["httpGet"]["host"], "127.0.9.1");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], 10259);
        assert_eq!(pod["metadata"]["name"], "kube-scheduler");
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("application/json-patch+json"), "{out}");
        assert!(out.contains("application/strategic-merge-patch+json"), "{out}");
    }

    #[test]
    fn a_kubelet_configuration_patch_merges_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kubeletconfiguration.yaml"),
            "address: 127.0.9.1\nhealthzBindAddress: 127.0.9.1\n",
        )
        .unwrap();
        let config = "kind: KubeletConfiguration\nhealthzBindAddress: 127.0.0.1\nhealthzPort: 10248\n";
        let patched = apply(Some(dir.path()), KUBELET_CONFIGURATION, config, &mut Vec::new()).unwrap();
        let v: serde_json::Value = serde_yaml::from_str(&patched).unwrap();
        assert_eq!(v["healthzBindAddress"], "127.0.9.1");
        assert_eq!(v["address"], "127.0.9.1");
        assert_eq!(v["healthzPort"], 10248);
    }

    #[test]
    fn a_failing_json_patch_test_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kube-scheduler+json.json"),
            r#"[{"op":"test","path":"/spec/containers/0/command/1","value":"--bind-address=0.0.0.0"}]"#,
        )
        .unwrap();
        let err = apply(Some(dir.path()), "kube-scheduler", POD, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("kube-scheduler+json.json"), "{err}");
    }
}
