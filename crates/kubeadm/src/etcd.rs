//! `kubeadm init phase etcd local`: the static pod manifest that runs a local etcd member, with kubeadm's flags
//! (TLS on client and peer ports with the `etcd/*` certificates) overridden by `etcd.local.extraArgs`.

use crate::config::{Etcd, InitConfig, join_host_port};
use crate::controlplane::ProbeKind;
use crate::{Error, Layout};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;

pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;
pub const METRICS_PORT: u16 = 2381;

/// The etcd command line kubeadm would run: defaults, then extraArgs, sorted by flag name as kubeadm does.
pub fn command(cfg: &InitConfig) -> Result<Vec<String>, Error> {
    let Etcd::Local(local) = &cfg.cluster.etcd else {
        return Err(Error::Usage(
            "etcd is not local in this configuration; there is no local member to run".into(),
        ));
    };
    let address = cfg.node.advertise_address.to_string();
    let client_url = format!("https://{}", join_host_port(&address, CLIENT_PORT));
    let peer_url = format!("https://{}", join_host_port(&address, PEER_PORT));
    let pki = cfg.cluster.certificates_dir.trim_end_matches('/');
    let mut args: BTreeMap<String, String> = [
        ("name", cfg.node.name.clone()),
        (
            "listen-client-urls",
            format!("https://127.0.0.1:{CLIENT_PORT},{client_url}"),
        ),
        ("advertise-client-urls", client_url),
        ("listen-peer-urls", peer_url.clone()),
        ("initial-advertise-peer-urls", peer_url.clone()),
        ("initial-cluster", format!("{}={peer_url}", cfg.node.name)),
        ("initial-cluster-state", "new".into()),
        ("data-dir", local.data_dir.clone()),
        ("cert-file", format!("{pki}/etcd/server.crt")),
        ("key-file", format!("{pki}/etcd/server.key")),
        ("trusted-ca-file", format!("{pki}/etcd/ca.crt")),
        ("client-cert-auth", "true".into()),
        ("peer-cert-file", format!("{pki}/etcd/peer.crt")),
        ("peer-key-file", format!("{pki}/etcd/peer.key")),
        ("peer-trusted-ca-file", format!("{pki}/etcd/ca.crt")),
        ("peer-client-cert-auth", "true".into()),
        ("snapshot-count", "10000".into()),
        ("listen-metrics-urls", format!("http://127.0.0.1:{METRICS_PORT}")),
        ("experimental-initial-corrupt-check", "true".into()),
        ("experimental-watch-progress-notify-interval", "5s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (name, value) in &local.extra_args {
        args.insert(name.clone(), value.clone());
    }
    let mut command = vec!["etcd".to_string()];
    command.extend(args.into_iter().map(|(k, v)| format!("--{k}={v}")));
    Ok(command)
}

/// Where the probes reach etcd, from the first of its `--listen-metrics-urls` as upstream derives it (a wildcard
/// host is probed on loopback).
fn metrics_endpoint(command: &[String]) -> (String, u16, &'static str) {
    let url = command
        .iter()
        .find_map(|a| a.strip_prefix("--listen-metrics-urls="))
        .and_then(|urls| urls.split(',').next())
        .unwrap_or_default();
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => ("HTTPS", rest),
        Some((_, rest)) => ("HTTP", rest),
        None => ("HTTP", url),
    };
    match crate::config::split_host_port(rest.trim_end_matches('/')) {
        Ok((host, port)) => {
            let host = match host.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
                _ => host,
            };
            (host, port.unwrap_or(METRICS_PORT), scheme)
        }
        Err(_) => ("127.0.0.1".to_string(), METRICS_PORT, "HTTP"),
    }
}

/// The static pod, shaped like kubeadm's `etcd.yaml`.
pub fn manifest(cfg: &InitConfig) -> Result<String, Error> {
    let Etcd::Local(local) = &cfg.cluster.etcd else {
        return Err(Error::Usage(
            "etcd is not local in this configuration; there is no local member to run".into(),
        ));
    };
    let command = command(cfg)?;
    let advertise = command
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .unwrap_or_default()
        .to_string();
    let etcd_certs = format!("{}/etcd", cfg.cluster.certificates_dir.trim_end_matches('/'));
    let (host, port, scheme) = metrics_endpoint(&command);
    let probe = |kind, path: &str| {
        crate::controlplane::probe_spec(
            kind,
            json!({"host": host, "path": path, "port": port, "scheme": scheme}),
        )
    };
    let image = format!(
        "{}/etcd:{}",
        local
            .image_repository
            .clone()
            .unwrap_or_else(|| cfg.cluster.image_repository.clone()),
        local.image_tag.clone().unwrap_or_else(|| "3.5.21-0".into())
    );
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": advertise},
            "labels": {"component": "etcd", "tier": "control-plane"},
            "name": "etcd",
            "namespace": "kube-system"
        },
        "spec": {
            "containers": [{
                "command": command,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                // Upstream probes /livez and /readyz, which etcd has only since 3.5.11; Debian's etcd is 3.4, so
                // these are the /health forms kubeadm used before, answered by every etcd since 3.4.
                "livenessProbe": probe(ProbeKind::Liveness, "/health?exclude=NOSPACE&serializable=true"),
                "readinessProbe": probe(ProbeKind::Readiness, "/health?serializable=false"),
                "startupProbe": probe(ProbeKind::Startup, "/health?exclude=NOSPACE&serializable=true"),
                "name": "etcd",
                "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
                "volumeMounts": [
                    {"mountPath": local.data_dir, "name": "etcd-data"},
                    {"mountPath": etcd_certs, "name": "etcd-certs"}
                ]
            }],
            "hostNetwork": true,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                {"hostPath": {"path": etcd_certs, "type": "DirectoryOrCreate"}, "name": "etcd-certs"},
                {"hostPath": {"path": local.data_dir, "type": "DirectoryOrCreate"}, "name": "etcd-data"}
            ]
        },
        "status": {}
    });
    serde_yaml::to_string(&pod).map_err(|e| Error::Usage(format!("cannot render the etcd manifest: {e}")))
}

/// Writes `/etc/kubernetes/manifests/etcd.yaml` below the root.
pub fn run_local(cfg: &InitConfig, layout: &Layout, out: &mut dyn Write) -> Result<(), Error> {
    let skipping = match cfg.cluster.etcd {
        Etcd::Local(_) => None,
        Etcd::External(_) => Some("External etcd mode"),
        Etcd::Embedded => {
            Some("The API server keeps the cluster in its embedded store (storage-backend=sqlite)")
        }
    };
    if let Some(mode) = skipping {
        writeln!(
            out,
            "[etcd] {mode}: Skipping the creation of a manifest for local etcd"
        )
        .map_err(|source| Error::Io {
            path: "<stdout>".into(),
            source,
        })?;
        return Ok(());
    }
    let text = crate::patches::apply(
        cfg.node.patches_dir.as_deref(),
        crate::patches::ETCD,
        &manifest(cfg)?,
        out,
    )?;
    let path = layout.host(format!("{MANIFESTS_DIR}/etcd.yaml"));
    // The data directory must exist and be private before etcd starts, as kubeadm's preflight ensures.
    if let Etcd::Local(local) = &cfg.cluster.etcd {
        let data = layout.host(&local.data_dir);
        std::fs::create_dir_all(&data).map_err(|source| Error::Io {
            path: data.clone(),
            source,
        })?;
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(
            |source| Error::Io {
                path: data.clone(),
                source,
            },
        )?;
    }
    pki::write_private(&path, text.as_bytes())?;
    writeln!(
        out,
        "[etcd] Creating static Pod manifest for local etcd in {MANIFESTS_DIR:?}"
    )
    .map_err(|source| Error::Io {
        path: "<stdout>".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostFacts, InitFlags, load_init};

    #[test]
    fn extra_args_override_kubeadms_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubeadm.k8s.io/v1beta1\nkind: ClusterConfiguration\netcd:\n  local:\n    extraArgs:\n      name: infra0\n      initial-cluster-state: new\n      listen-client-urls: https://10.0.0.6:2379\n",
        )
        .unwrap();
        let host = HostFacts {
            hostname: "h0".into(),
            default_address: Some("10.0.0.6".parse().unwrap()),
        };
        let cfg = load_init(Some(&path), &InitFlags::default(), &host).unwrap();
        let command = command(&cfg).unwrap();
        assert_eq!(command[0], "etcd");
        assert!(command.contains(&"--name=infra0".to_string()));
        assert!(command.contains(&"--listen-client-urls=https://10.0.0.6:2379".to_string()));
        assert!(command.contains(&"--cert-file=/etc/kubernetes/pki/etcd/server.crt".to_string()));
        assert!(command.contains(&"--initial-cluster=h0=https://10.0.0.6:2380".to_string()));
        let names: Vec<&str> = command[1..]
            .iter()
            .map(|a| a.split('=').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        let yaml = manifest(&cfg).unwrap();
        assert!(
            yaml.contains("kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.6:2379"),
            "{yaml}"
        );
    }
}
