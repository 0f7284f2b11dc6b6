//! `kubeadm init phase control-plane`: the static pod manifests of `kube-apiserver`, `kube-controller-manager` and
//! `kube-scheduler`, with kubeadm's flags (overridden by each component's `extraArgs`), probes and hostPath volumes.
//!
//! The commands name the components as kubeadm does (`kube-apiserver`, ...); the kubelet finds them on PATH, where
//! `bulwark install` put symlinks to bulwark. Paths in the flags are the logical paths (`/etc/kubernetes/pki/...`):
//! the kubelet maps them through the hostPath volumes below its `--rootfs`.

use crate::config::{Etcd, InitConfig, join_host_port};
use crate::etcd::{CLIENT_PORT, MANIFESTS_DIR};
use crate::{Error, Layout, say};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;

pub const APISERVER: &str = "kube-apiserver";
pub const CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const SCHEDULER: &str = "kube-scheduler";
pub const COMPONENTS: &[&str] = &[APISERVER, CONTROLLER_MANAGER, SCHEDULER];
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const SCHEDULER_PORT: u16 = 10259;

fn command(program: &str, defaults: Vec<(&str, String)>, extra: &[(String, String)]) -> Vec<String> {
    let mut args: BTreeMap<String, String> = defaults.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for (name, value) in extra {
        args.insert(name.clone(), value.clone());
    }
    std::iter::once(program.to_string())
        .chain(args.into_iter().map(|(k, v)| format!("--{k}={v}")))
        .collect()
}

/// Where the API server keeps the embedded store in single-node mode ([`Etcd::Embedded`]).
pub const EMBEDDED_STORE_DIR: &str = "/var/lib/bulwark/apiserver";

/// kube-apiserver's command line as kubeadm writes it.
pub fn apiserver_command(cfg: &InitConfig) -> Vec<String> {
    let pki = cfg.cluster.certificates_dir.trim_end_matches('/');
    let mut defaults = vec![
        ("advertise-address", cfg.node.advertise_address.to_string()),
        ("allow-privileged", "true".into()),
        ("authorization-mode", "Node,RBAC".into()),
        ("client-ca-file", format!("{pki}/ca.crt")),
        ("enable-admission-plugins", "NodeRestriction".into()),
        ("enable-bootstrap-token-auth", "true".into()),
        (
            "kubelet-client-certificate",
            format!("{pki}/apiserver-kubelet-client.crt"),
        ),
        (
            "kubelet-client-key",
            format!("{pki}/apiserver-kubelet-client.key"),
        ),
        (
            "kubelet-preferred-address-types",
            "InternalIP,ExternalIP,Hostname".into(),
        ),
        ("proxy-client-cert-file", format!("{pki}/front-proxy-client.crt")),
        ("proxy-client-key-file", format!("{pki}/front-proxy-client.key")),
        ("requestheader-allowed-names", "front-proxy-client".into()),
        (
            "requestheader-client-ca-file",
            format!("{pki}/front-proxy-ca.crt"),
        ),
        ("requestheader-extra-headers-prefix", "X-Remote-Extra-".into()),
        ("requestheader-group-headers", "X-Remote-Group".into()),
        ("requestheader-username-headers", "X-Remote-User".into()),
        ("secure-port", cfg.node.bind_port.to_string()),
        (
            "service-account-issuer",
            format!("https://kubernetes.default.svc.{}", cfg.cluster.dns_domain),
        ),
        ("service-account-key-file", format!("{pki}/sa.pub")),
        ("service-account-signing-key-file", format!("{pki}/sa.key")),
        ("service-cluster-ip-range", cfg.cluster.service_subnet.clone()),
        ("tls-cert-file", format!("{pki}/apiserver.crt")),
        ("tls-private-key-file", format!("{pki}/apiserver.key")),
    ];
    match &cfg.cluster.etcd {
        Etcd::Local(_) => {
            defaults.push(("etcd-cafile", format!("{pki}/etcd/ca.crt")));
            defaults.push(("etcd-certfile", format!("{pki}/apiserver-etcd-client.crt")));
            defaults.push(("etcd-keyfile", format!("{pki}/apiserver-etcd-client.key")));
            defaults.push(("etcd-servers", format!("https://127.0.0.1:{CLIENT_PORT}")));
        }
        Etcd::Embedded => defaults.push(("storage-dir", EMBEDDED_STORE_DIR.into())),
        Etcd::External(external) => {
            defaults.push(("etcd-servers", external.endpoints.join(",")));
            for (flag, file) in [
                ("etcd-cafile", &external.ca_file),
                ("etcd-certfile", &external.cert_file),
                ("etcd-keyfile", &external.key_file),
            ] {
                if !file.is_empty() {
                    defaults.push((flag, file.clone()));
                }
            }
        }
    }
    command(APISERVER, defaults, &cfg.cluster.api_server_extra_args)
}

/// kube-controller-manager's command line as kubeadm writes it.
pub fn controller_manager_command(cfg: &InitConfig) -> Vec<String> {
    let pki = cfg.cluster.certificates_dir.trim_end_matches('/');
    let conf = "/etc/kubernetes/controller-manager.conf".to_string();
    let mut defaults = vec![
        ("authentication-kubeconfig", conf.clone()),
        ("authorization-kubeconfig", conf.clone()),
        ("bind-address", "127.0.0.1".into()),
        ("client-ca-file", format!("{pki}/ca.crt")),
        ("cluster-name", cfg.cluster.cluster_name.clone()),
        ("cluster-signing-cert-file", format!("{pki}/ca.crt")),
        ("cluster-signing-key-file", format!("{pki}/ca.key")),
        ("controllers", "*,bootstrapsigner,tokencleaner".into()),
        ("kubeconfig", conf),
        ("leader-elect", "true".into()),
        (
            "requestheader-client-ca-file",
            format!("{pki}/front-proxy-ca.crt"),
        ),
        ("root-ca-file", format!("{pki}/ca.crt")),
        ("service-account-private-key-file", format!("{pki}/sa.key")),
        ("service-cluster-ip-range", cfg.cluster.service_subnet.clone()),
        ("use-service-account-credentials", "true".into()),
    ];
    if let Some(pods) = &cfg.cluster.pod_subnet {
        defaults.push(("allocate-node-cidrs", "true".into()));
        defaults.push(("cluster-cidr", pods.clone()));
    }
    command(
        CONTROLLER_MANAGER,
        defaults,
        &cfg.cluster.controller_manager_extra_args,
    )
}

/// kube-scheduler's command line as kubeadm writes it.
pub fn scheduler_command(cfg: &InitConfig) -> Vec<String> {
    let conf = "/etc/kubernetes/scheduler.conf".to_string();
    let defaults = vec![
        ("authentication-kubeconfig", conf.clone()),
        ("authorization-kubeconfig", conf.clone()),
        ("bind-address", "127.0.0.1".into()),
        ("kubeconfig", conf),
        ("leader-elect", "true".into()),
    ];
    command(SCHEDULER, defaults, &cfg.cluster.scheduler_extra_args)
}

/// What a probe is for; each gets upstream's shape except the startup probe (see [`probe`]).
#[derive(Clone, Copy)]
pub(crate) enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// kubeadm's probes. Liveness and readiness are upstream's (10 s delay, every 10 s, 8 failures; no delay, every
/// second, 3 failures). The startup probe is not: upstream waits 10 s and then probes every 10 s, so a component
/// that is up after 2 s is reported Ready only 10-20 s later (readiness and liveness wait for the startup probe).
/// Here it probes at once and every second, with 240 failures allowed: the same 4 minutes of tolerance as
/// upstream's wait for the control plane, and Ready within a second of the component answering.
pub(crate) fn probe_spec(kind: ProbeKind, get: Value) -> Value {
    let (initial, period, failure) = match kind {
        ProbeKind::Liveness => (10, 10, 8),
        ProbeKind::Readiness => (0, 1, 3),
        ProbeKind::Startup => (0, 1, 240),
    };
    json!({
        "failureThreshold": failure,
        "httpGet": get,
        "initialDelaySeconds": initial, "periodSeconds": period, "timeoutSeconds": 15
    })
}

fn probe(kind: ProbeKind, host: &str, path: &str, port: u16) -> Value {
    probe_spec(
        kind,
        json!({"host": host, "path": path, "port": port, "scheme": "HTTPS"}),
    )
}

/// Where a component's health endpoint is, from its `extraArgs` as upstream derives its probe address: the
/// `bind-address` (loopback when unset or a wildcard) and the `secure-port` (the component's default when unset).
pub fn health_endpoint(extra: &[(String, String)], default_port: u16) -> (String, u16) {
    let arg = |name: &str| {
        extra
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let host = match arg("bind-address").map(str::parse::<std::net::IpAddr>) {
        Some(Ok(ip)) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let port = arg("secure-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_port);
    (host, port)
}

fn host_path(name: &str, path: &str, kind: &str, read_only: bool) -> (Value, Value) {
    let mut mount = json!({"mountPath": path, "name": name});
    if read_only {
        mount["readOnly"] = json!(true);
    }
    (
        json!({"hostPath": {"path": path, "type": kind}, "name": name}),
        mount,
    )
}

/// [`health_endpoint`] of `component` from its manifest on disk (after patches), from the flags of its command.
pub fn health_endpoint_on_disk(layout: &Layout, component: &str, default_port: u16) -> (String, u16) {
    let path = layout.host(format!("{MANIFESTS_DIR}/{component}.yaml"));
    let args: Vec<(String, String)> = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_yaml::from_str::<Value>(&text).ok())
        .and_then(|pod| pod["spec"]["containers"][0]["command"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.as_str()?.strip_prefix("--")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    health_endpoint(&args, default_port)
}

/// The static pod of one control-plane component, shaped like kubeadm's.
pub fn manifest(cfg: &InitConfig, component: &str) -> Result<String, Error> {
    let pki = cfg.cluster.certificates_dir.trim_end_matches('/').to_string();
    let mut volumes = vec![
        host_path("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", true),
        host_path("k8s-certs", &pki, "DirectoryOrCreate", true),
    ];
    let (command, cpu, probes, annotations) = match component {
        APISERVER => {
            if let Etcd::Embedded = cfg.cluster.etcd {
                volumes.push(host_path(
                    "bulwark-store",
                    EMBEDDED_STORE_DIR,
                    "DirectoryOrCreate",
                    false,
                ));
            }
            let host = cfg.node.advertise_address.to_string();
            let port = cfg.node.bind_port;
            (
                apiserver_command(cfg),
                "250m",
                [
                    ("livenessProbe", probe(ProbeKind::Liveness, &host, "/livez", port)),
                    (
                        "readinessProbe",
                        probe(ProbeKind::Readiness, &host, "/readyz", port),
                    ),
                    ("startupProbe", probe(ProbeKind::Startup, &host, "/livez", port)),
                ],
                json!({"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint":
                    join_host_port(&host, port)}),
            )
        }
        CONTROLLER_MANAGER => {
            volumes.push(host_path(
                "kubeconfig",
                "/etc/kubernetes/controller-manager.conf",
                "FileOrCreate",
                true,
            ));
            let (host, port) = health_endpoint(
                &cfg.cluster.controller_manager_extra_args,
                CONTROLLER_MANAGER_PORT,
            );
            (
                controller_manager_command(cfg),
                "200m",
                [
                    (
                        "livenessProbe",
                        probe(ProbeKind::Liveness, &host, "/healthz", port),
                    ),
                    ("readinessProbe", Value::Null),
                    ("startupProbe", probe(ProbeKind::Startup, &host, "/healthz", port)),
                ],
                Value::Null,
            )
        }
        SCHEDULER => {
            volumes = vec![host_path(
                "kubeconfig",
                "/etc/kubernetes/scheduler.conf",
                "FileOrCreate",
                true,
            )];
            let (host, port) = health_endpoint(&cfg.cluster.scheduler_extra_args, SCHEDULER_PORT);
            (
                scheduler_command(cfg),
                "100m",
                [
                    ("livenessProbe", probe(ProbeKind::Liveness, &host, "/livez", port)),
                    (
                        "readinessProbe",
                        probe(ProbeKind::Readiness, &host, "/readyz", port),
                    ),
                    ("startupProbe", probe(ProbeKind::Startup, &host, "/livez", port)),
                ],
                Value::Null,
            )
        }
        other => return Err(Error::Usage(format!("unknown control-plane component {other:?}"))),
    };
    let mut container = json!({
        "command": command,
        "image": format!("{}/{component}:{}", cfg.cluster.image_repository, cfg.cluster.kubernetes_version),
        "imagePullPolicy": "IfNotPresent",
        "name": component,
        "resources": {"requests": {"cpu": cpu}},
        "volumeMounts": volumes.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
    });
    for (name, value) in probes {
        if !value.is_null() {
            container[name] = value;
        }
    }
    let mut metadata = json!({
        "labels": {"component": component, "tier": "control-plane"},
        "name": component,
        "namespace": "kube-system"
    });
    if !annotations.is_null() {
        metadata["annotations"] = annotations;
    }
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "containers": [container],
            "hostNetwork": true,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": volumes.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
        },
        "status": {}
    });
    serde_yaml::to_string(&pod)
        .map_err(|e| Error::Usage(format!("cannot render the {component} manifest: {e}")))
}

/// Writes the manifests of `components` (`all` or one name) below the root.
pub fn run(cfg: &InitConfig, layout: &Layout, which: &str, out: &mut dyn Write) -> Result<(), Error> {
    let components: Vec<&str> = match which {
        "all" => COMPONENTS.to_vec(),
        "apiserver" => vec![APISERVER],
        "controller-manager" => vec![CONTROLLER_MANAGER],
        "scheduler" => vec![SCHEDULER],
        other => return Err(Error::Usage(format!("unknown control-plane phase {other:?}"))),
    };
    say(
        out,
        format_args!("[control-plane] Using manifest folder {MANIFESTS_DIR:?}"),
    )?;
    for component in components {
        say(
            out,
            format_args!("[control-plane] Creating static Pod manifest for {component:?}"),
        )?;
        let text = crate::patches::apply(
            cfg.node.patches_dir.as_deref(),
            component,
            &manifest(cfg, component)?,
            out,
        )?;
        pki::write_private(
            &layout.host(format!("{MANIFESTS_DIR}/{component}.yaml")),
            text.as_bytes(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostFacts, InitFlags, load_init};

    fn cfg(flags: InitFlags) -> InitConfig {
        let host = HostFacts {
            hostname: "cp-1".into(),
            default_address: Some("10.0.0.6".parse().unwrap()),
        };
        load_init(None, &flags, &host).unwrap()
    }

    #[test]
    fn the_apiserver_talks_to_the_local_etcd_member_with_kubeadms_client_certificate() {
        let command = apiserver_command(&cfg(InitFlags::default()));
        assert_eq!(command[0], "kube-apiserver");
        for flag in [
            "--advertise-address=10.0.0.6",
            "--etcd-servers=https://127.0.0.1:2379",
            "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "--secure-port=6443",
            "--service-cluster-ip-range=10.96.0.0/12",
            "--authorization-mode=Node,RBAC",
        ] {
            assert!(
                command.contains(&flag.to_string()),
                "{flag} missing from {command:?}"
            );
        }
    }

    #[test]
    fn extra_args_override_defaults_and_flags_stay_sorted() {
        let mut c = cfg(InitFlags {
            pod_network_cidr: Some("10.244.0.0/16".into()),
            ..InitFlags::default()
        });
        c.cluster.controller_manager_extra_args = vec![("leader-elect".into(), "false".into())];
        let command = controller_manager_command(&c);
        assert!(command.contains(&"--leader-elect=false".to_string()));
        assert!(command.contains(&"--cluster-cidr=10.244.0.0/16".to_string()));
        let names: Vec<&str> = command[1..]
            .iter()
            .map(|a| a.split('=').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn every_manifest_mounts_the_files_its_flags_name() {
        let c = cfg(InitFlags::default());
        for component in COMPONENTS {
            let yaml = manifest(&c, component).unwrap();
            let pod: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(&yaml).unwrap();
            let spec = pod.spec.unwrap();
            let mounts: Vec<String> = spec.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| m.mount_path.clone())
                .collect();
            for arg in spec.containers[0].command.iter().flatten() {
                if let Some((_, value)) = arg.split_once('=')
                    && value.starts_with("/etc/kubernetes")
                {
                    assert!(
                        mounts.iter().any(|m| value.starts_with(m.as_str())),
                        "{component}: {value} is not below a mount ({mounts:?})"
                    );
                }
            }
        }
    }
}
