//! Propagation latency of the federation control plane: a host and 10 member API servers on this machine, the
//! `kubefed-controller-manager`, then FederatedConfigMaps created one after another; for each, the time from the
//! create on the host until every member serves the ConfigMap. Prints p50/p99 and the p99 against the 1 s target
//! (Karmada reports 1.3 s p99 at large scale). Members here have no kubelets, so "Running" is "stored in every
//! member"; pods add the member's own scheduling and start-up, which is not federation's.
//! Run: `cargo bench -p bulwark --bench federation`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use testkit::federation::{Cluster, Manager, NAMESPACE, ready, register};

const MEMBERS: usize = 10;
const OBJECTS: usize = 40;
const TARGET: Duration = Duration::from_secs(1);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let host = Cluster::start().unwrap();
    let members: Vec<Cluster> = (0..MEMBERS).map(|_| Cluster::start().unwrap()).collect();
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
        (0..MEMBERS)
            .all(|i| ready(&k, &format!("member{i}")).as_deref() == Some("True"))
            .then_some(())
    })
    .unwrap();
    k.ok(&["create", "namespace", "bench"]).unwrap();
    let host_client = client::from_kubeconfig(&host.pki.kubeconfig()).await.unwrap();
    let mut clients = Vec::new();
    for m in &members {
        clients.push(Api::<ConfigMap>::namespaced(
            client::from_kubeconfig(&m.pki.kubeconfig()).await.unwrap(),
            "bench",
        ));
    }
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("types.kubefed.io", "v1beta1", "FederatedConfigMap"),
        "federatedconfigmaps",
    );
    let feds: Api<kube::core::DynamicObject> = Api::namespaced_with(host_client, "bench", &ar);
    let mut latencies = Vec::new();
    for n in 0..OBJECTS {
        let name = format!("cm-{n}");
        let obj: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedConfigMap",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"template": {"data": {"n": n.to_string()}}, "placement": {"clusterSelector": {}}}
        }))
        .unwrap();
        let start = Instant::now();
        feds.create(&Default::default(), &obj).await.unwrap();
        let mut pending: Vec<&Api<ConfigMap>> = clients.iter().collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for api in pending {
                if api.get_opt(&name).await.ok().flatten().is_none() {
                    still.push(api);
                }
            }
            pending = still;
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{name} not propagated in 60 s"
            );
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "federation propagation, {OBJECTS} FederatedConfigMaps to {MEMBERS} members: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
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
