//! The node's side of the API: registering the Node object, posting its status (conditions, addresses, capacity,
//! system info) every `nodeStatusUpdateFrequency`, and renewing its Lease in `kube-node-lease`, as upstream's
//! kubelet does. What the host looks like ([`HostFacts`]) is read once at start.
//!
//! Entry points: [`HostFacts::detect`], [`node_object`], [`register`], [`run_status`], [`run_lease`].

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub const KUBELET_VERSION: &str = "v1.33.0";
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What registration says about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub cpus: usize,
    pub memory_kib: u64,
    pub os_image: String,
    pub kernel: String,
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        HostFacts {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_kib,
            os_image,
            kernel: read("/proc/sys/kernel/osrelease"),
            architecture: go_arch(std::env::consts::ARCH).into(),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// Go's GOARCH spelling, which `kubernetes.io/arch` and `nodeInfo.architecture` use.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Who this node is and how it registers.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    pub ip: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub kubelet_port: u16,
    pub max_pods: i64,
    pub status_update_frequency: Duration,
    pub lease_duration_seconds: i32,
}

/// Parses `--node-labels` (`k=v,k2=v2`).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("invalid label {kv:?}: expected key=value"))
        })
        .collect()
}

/// Parses `--register-with-taints` (`key=value:Effect,key:Effect`).
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|t| {
            let (kv, effect) = t
                .rsplit_once(':')
                .ok_or_else(|| format!("invalid taint {t:?}: expected key[=value]:Effect"))?;
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                return Err(format!("invalid taint effect {effect:?} in {t:?}"));
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            Ok(Taint {
                key: key.to_string(),
                value,
                effect: effect.to_string(),
                time_added: None,
            })
        })
        .collect()
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The node's status as this kubelet reports it. Transition times are carried over from `previous` where a
/// condition's status did not change.
pub fn node_status(
    config: &NodeConfig,
    facts: &HostFacts,
    previous: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            now,
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            now,
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            now,
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
            now,
        ),
    ];
    for c in &mut conditions {
        if let Some(old) = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|o| o.type_ == c.type_))
            .filter(|o| o.status == c.status)
            && old.last_transition_time.is_some()
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity(facts.cpus.to_string()));
    capacity.insert("memory".to_string(), Quantity(format!("{}Ki", facts.memory_kib)));
    capacity.insert("pods".to_string(), Quantity(config.max_pods.to_string()));
    capacity.insert("ephemeral-storage".to_string(), Quantity("0".into()));
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.name.clone(),
            },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: format!("bulwark://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: facts.kernel.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.machine_id.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Node object as first registered.
pub fn node_object(config: &NodeConfig, facts: &HostFacts, now: Timestamp) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), facts.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), facts.architecture.clone()),
    ]);
    labels.extend(config.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: Some(node_status(config, facts, None, now)),
    }
}

/// Creates the Node, or adopts an existing one (a restarted kubelet, or a node registered before): its labels
/// are brought up to date, as upstream's reconcile of an existing node does. Returns the Node's UID.
pub async fn register(
    client: &kube::Client,
    config: &NodeConfig,
    facts: &HostFacts,
) -> Result<String, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_object(config, facts, Timestamp::now());
    let created = match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => created,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = serde_json::json!({"metadata": {"labels": node.metadata.labels}});
            nodes
                .patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Err(e) => return Err(e),
    };
    // The create may drop the status (it is a subresource); post it right away so the node is Ready at once.
    let status = node_status(config, facts, created.status.as_ref(), Timestamp::now());
    nodes
        .patch_status(
            &config.name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "status": status })),
        )
        .await?;
    Ok(created.metadata.uid.unwrap_or_default())
}

/// Posts the node's status every `status_update_frequency` until `shutdown`.
pub async fn run_status(
    client: kube::Client,
    config: NodeConfig,
    facts: HostFacts,
    shutdown: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut previous: Option<NodeStatus> = None;
    loop {
        let span = tracing::debug_span!("node_status", node = %config.name);
        let status = node_status(&config, &facts, previous.as_ref(), Timestamp::now());
        let patch = serde_json::json!({ "status": status });
        match nodes
            .patch_status(&config.name, &PatchParams::default(), &Patch::Merge(&patch))
            .instrument(span)
            .await
        {
            Ok(node) => previous = node.status,
            Err(e) => tracing::warn!(node = %config.name, error = %e, "cannot update node status"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.status_update_frequency) => {}
        }
    }
}

fn lease_object(config: &NodeConfig, node_uid: &str, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            owner_references: (!node_uid.is_empty()).then(|| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: config.name.clone(),
                    uid: node_uid.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.name.clone()),
            lease_duration_seconds: Some(config.lease_duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// One renewal: creates the Lease or moves its renewTime.
pub async fn renew_lease(
    leases: &Api<Lease>,
    config: &NodeConfig,
    node_uid: &str,
) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    match leases.get_opt(&config.name).await? {
        None => {
            leases
                .create(&PostParams::default(), &lease_object(config, node_uid, now))
                .await?;
        }
        Some(mut lease) => {
            let fresh = lease_object(config, node_uid, now);
            lease.spec = fresh.spec;
            if lease.metadata.owner_references.is_none() {
                lease.metadata.owner_references = fresh.metadata.owner_references;
            }
            leases
                .replace(&config.name, &PostParams::default(), &lease)
                .await?;
        }
    }
    Ok(())
}

/// Renews the node Lease every quarter of its duration (upstream's renew interval: 10 s for 40 s) until `shutdown`;
/// failures retry sooner.
pub async fn run_lease(
    client: kube::Client,
    config: NodeConfig,
    node_uid: String,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let interval = Duration::from_millis(u64::try_from(config.lease_duration_seconds).unwrap_or(40) * 250);
    loop {
        let span = tracing::debug_span!("node_lease", node = %config.name);
        let result = renew_lease(&leases, &config, &node_uid).instrument(span).await;
        let pause = match result {
            Ok(()) => interval,
            Err(e) => {
                tracing::warn!(node = %config.name, error = %e, "cannot renew the node lease");
                interval.min(Duration::from_millis(200 * 7))
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            name: "n1".into(),
            ip: "10.0.0.5".into(),
            labels: parse_labels("role=edge, tier=a").unwrap(),
            taints: parse_taints("dedicated=infra:NoSchedule,gpu:NoExecute").unwrap(),
            kubelet_port: 10250,
            max_pods: 110,
            status_update_frequency: Duration::from_secs(10),
            lease_duration_seconds: 40,
        }
    }

    #[test]
    fn a_registered_node_carries_upstream_labels_taints_conditions_and_capacity() {
        let facts = HostFacts::detect();
        let node = node_object(&config(), &facts, Timestamp::now());
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["role"], "edge");
        let taints = node.spec.unwrap().taints.unwrap();
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].value.as_deref(), Some("infra"));
        assert_eq!(taints[1].effect, "NoExecute");
        let status = node.status.unwrap();
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(status.capacity.unwrap()["pods"].0, "110");
        assert_eq!(status.node_info.unwrap().kubelet_version, "v1.33.0");
        assert!(parse_taints("x:Sometimes").is_err());
        assert!(parse_labels("novalue").is_err());
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let facts = HostFacts::detect();
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let first = node_status(&config(), &facts, None, t0);
        let later = node_status(&config(), &facts, Some(&first), Timestamp::now());
        let ready = |s: &NodeStatus| {
            s.conditions
                .clone()
                .unwrap()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
        };
        assert_eq!(ready(&later).last_transition_time, Some(Time(t0)));
        assert_ne!(ready(&later).last_heartbeat_time, Some(Time(t0)));
    }
}
