//! Propagation latency of the federation control plane: a host and member API servers on this machine, the
//! `kubefed-controller-manager`, then federated objects created one after another. Prints p50/p99 and the p99
//! against the 1 s target (Karmada reports 1.3 s p99 at large scale).
//!
//! Two modes:
//! - default: 10 members without kubelets, 40 FederatedConfigMaps; the time from the create on the host until every
//!   member serves the ConfigMap.
//! - `pods [MEMBERS]` (10 unless given): every member also runs its kube-controller-manager and a kubelet
//!   ([`testkit::federation::Worker`]); 20 FederatedDeployments of one replica (a `sleep` process whose pod names the
//!   node, as there is no scheduler); the time from the create on the host until the pod is Running in every member,
//!   i.e. federation plus each member's deployment and replica-set controllers, service-account token volume and
//!   kubelet start. A first, unmeasured deployment warms each member up (namespace, ServiceAccount, root CA).
//!
//! Run: `cargo bench -p bulwark --bench federation` or `cargo bench -p bulwark --bench federation -- pods 10`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::ListParams;
use testkit::federation::{Cluster, Manager, NAMESPACE, Worker, ready, register};

const MEMBERS: usize = 10;
const OBJECTS: usize = 40;
const DEPLOYMENTS: usize = 20;
const TARGET: Duration = Duration::from_secs(1);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "{what}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    println!(
        "p99 / target ({} ms): {:.2} (below 1 is better than the target)",
        TARGET.as_millis(),
        p99.as_secs_f64() / TARGET.as_secs_f64()
    );
}

fn federated(kind: &str, plural: &str) -> kube::core::ApiResource {
    kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("types.kubefed.io", "v1beta1", kind),
        plural,
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let pods = args.first().is_some_and(|a| a == "pods");
    let members_n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(MEMBERS);
    let host = Cluster::start().unwrap();
    let members: Vec<Cluster> = (0..members_n).map(|_| Cluster::start().unwrap()).collect();
    let _workers: Vec<Worker> = if pods {
        members.iter().map(|m| Worker::start(m).unwrap()).collect()
    } else {
        Vec::new()
    };
    let k = host.kubectl().unwrap();
    let _manager = Manager::start(&host, 2).unwrap();
    testkit::cluster::eventually(Duration::from_secs(60), "the KubeFed API", || {
        k.ok(&["get", "federatedtypeconfigs", "-n", NAMESPACE, "configmaps"])
            .ok()
    })
    .unwrap();
    for (i, m) in members.iter().enumerate() {
        register(&k, m, &format!("member{i}")).unwrap();
    }
    testkit::cluster::eventually(Duration::from_secs(60), "every member READY", || {
        (0..members_n)
            .all(|i| ready(&k, &format!("member{i}")).as_deref() == Some("True"))
            .then_some(())
    })
    .unwrap();
    k.ok(&["create", "namespace", "bench"]).unwrap();
    let host_client = client::from_kubeconfig(&host.pki.kubeconfig()).await.unwrap();
    let mut member_clients = Vec::new();
    for m in &members {
        member_clients.push(client::from_kubeconfig(&m.pki.kubeconfig()).await.unwrap());
    }
    if pods {
        bench_pods(host_client, &member_clients).await;
    } else {
        bench_configmaps(host_client, &member_clients).await;
    }
}

async fn bench_configmaps(host: kube::Client, members: &[kube::Client]) {
    let clients: Vec<Api<ConfigMap>> = members
        .iter()
        .map(|c| Api::namespaced(c.clone(), "bench"))
        .collect();
    let feds: Api<kube::core::DynamicObject> = Api::namespaced_with(
        host,
        "bench",
        &federated("FederatedConfigMap", "federatedconfigmaps"),
    );
    let mut latencies = Vec::new();
    for n in 0..OBJECTS {
        let name = format!("cm-{n}");
        let obj: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedConfigMap",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"template": {"data": {"n": n.to_string()}}, "placement": {"clusterSelector": {}}}
        }))
        .unwrap();
        let took = create_and_wait(
            &feds,
            &obj,
            &clients,
            Duration::from_millis(5),
            |api, name| async move { api.get_opt(&name).await.ok().flatten().is_some() },
        )
        .await;
        latencies.push(took);
    }
    report(
        &format!(
            "federation propagation, {OBJECTS} FederatedConfigMaps to {} members",
            members.len()
        ),
        latencies,
    );
}

/// Creates the federated object `obj` and polls every `poll` until `done(member, name)` holds in every member;
/// returns the time from the create. Gives up after two minutes.
async fn create_and_wait<T, F, Fut>(
    feds: &Api<kube::core::DynamicObject>,
    obj: &kube::core::DynamicObject,
    members: &[Api<T>],
    poll: Duration,
    done: F,
) -> Duration
where
    T: Clone,
    F: Fn(Api<T>, String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let name = obj.metadata.name.clone().unwrap_or_default();
    let start = Instant::now();
    feds.create(&Default::default(), obj).await.unwrap();
    let mut pending: Vec<&Api<T>> = members.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for api in pending {
            if !done(api.clone(), name.clone()).await {
                still.push(api);
            }
        }
        pending = still;
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{name}: not done in {} members within 120 s",
            pending.len()
        );
        if !pending.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
    start.elapsed()
}

async fn running(api: &Api<Pod>, app: &str) -> bool {
    let list = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await;
    list.is_ok_and(|l| {
        l.items.iter().any(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
    })
}

async fn bench_pods(host: kube::Client, members: &[kube::Client]) {
    let clients: Vec<Api<Pod>> = members
        .iter()
        .map(|c| Api::namespaced(c.clone(), "bench"))
        .collect();
    let feds: Api<kube::core::DynamicObject> = Api::namespaced_with(
        host,
        "bench",
        &federated("FederatedDeployment", "federateddeployments"),
    );
    let mut latencies = Vec::new();
    let mut first = Duration::ZERO;
    for n in 0..=DEPLOYMENTS {
        let name = format!("app-{n}");
        let obj: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedDeployment",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "template": {"spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "nodeName": Worker::NODE,
                            "terminationGracePeriodSeconds": 1,
                            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]
                        }
                    }
                }},
                "placement": {"clusterSelector": {}}
            }
        }))
        .unwrap();
        let took = create_and_wait(
            &feds,
            &obj,
            &clients,
            Duration::from_millis(20),
            |api, name| async move { running(&api, &name).await },
        )
        .await;
        if n == 0 {
            first = took;
        } else {
            latencies.push(took);
        }
        // The pods go again so that the members do not accumulate processes over the run.
        feds.delete(&name, &Default::default()).await.unwrap();
    }
    println!(
        "first (cold) FederatedDeployment to Running in every member: {:.0} ms",
        first.as_secs_f64() * 1e3
    );
    report(
        &format!(
            "federation create to pods Running, {DEPLOYMENTS} FederatedDeployments to {} members with kubelets",
            members.len()
        ),
        latencies,
    );
}
