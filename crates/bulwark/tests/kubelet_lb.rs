//! The kubelet's client-side load balancer: three API servers on one etcd, each on its own loopback address, and a
//! kubelet whose kubeconfig names only the first. It learns the others from the `kubernetes` Endpoints, so losing
//! the first costs the node nothing: its Lease keeps being renewed and a newly bound pod runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::eventually;
use std::time::Duration;
use testkit::cluster::{ApiServer, Pki, connect_to, curl, free_port};
use testkit::components::{KubeletNode, NodeOptions};

/// GET `path` as the admin from the API server on `ip`, as JSON.
fn get(pki: &Pki, ip: &str, path: &str) -> Option<serde_json::Value> {
    let (code, body) = curl(pki, pki.port, &[path, "--connect-to", &connect_to(pki.port, ip)]).ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// POSTs `body` to `path` as the admin through the API server on `ip`.
fn create(pki: &Pki, ip: &str, path: &str, body: &serde_json::Value) {
    let body = body.to_string();
    let (code, out) = curl(
        pki,
        pki.port,
        &[
            path,
            "--connect-to",
            &connect_to(pki.port, ip),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ],
    )
    .unwrap();
    assert!(code == 201 || code == 409, "POST {path}: {code} {out}");
}

fn kubernetes_endpoints(pki: &Pki, ip: &str) -> Option<Vec<String>> {
    let v = get(pki, ip, "/api/v1/namespaces/default/endpoints/kubernetes")?;
    let mut ips: Vec<String> = v["subsets"][0]["addresses"]
        .as_array()?
        .iter()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    Some(ips)
}

fn node_ready(pki: &Pki, ip: &str, node: &str) -> bool {
    get(pki, ip, &format!("/api/v1/nodes/{node}")).is_some_and(|n| {
        n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn lease_renewed_at(pki: &Pki, ip: &str, node: &str) -> Option<String> {
    let lease = get(
        pki,
        ip,
        &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}"),
    )?;
    lease["spec"]["renewTime"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubelet_whose_kubeconfig_names_one_api_server_keeps_its_node_after_that_server_dies() {
    let etcd = testkit::etcd::EtcdCluster::start_single().await.unwrap();
    let port = free_port().unwrap();
    let pki = Pki::new(port).unwrap();
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let mut servers: Vec<Option<ApiServer>> = ips
        .iter()
        .map(|ip| {
            let flags = [
                format!("--etcd-servers={}", etcd.endpoints().join(",")),
                format!("--advertise-address={ip}"),
                format!("--bind-address={ip}"),
            ];
            Some(ApiServer::start(&pki, port, &flags).unwrap())
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        "every API server in the Endpoints",
        || (kubernetes_endpoints(&pki, ips[1])? == ips).then_some(()),
    );

    // The testkit kubeconfig names https://127.0.0.1:<port>: the first server only.
    let node = KubeletNode::start(
        &pki,
        port,
        NodeOptions::named(&format!("lb-node-{}", std::process::id())),
    )
    .unwrap();
    let name = node.name().to_string();
    eventually(Duration::from_secs(30), "the node Ready", || {
        node_ready(&pki, ips[1], &name).then_some(())
    });
    eventually(
        Duration::from_secs(30),
        "the kubelet learned every API server",
        || {
            let log = node.log();
            let learned = log
                .lines()
                .rev()
                .find(|l| l.contains("API servers learned from the kubernetes Endpoints"))?;
            ips.iter()
                .all(|ip| learned.contains(&format!("{ip}:{port}")))
                .then_some(())
        },
    );

    eventually(Duration::from_secs(30), "the node Lease", || {
        lease_renewed_at(&pki, ips[1], &name)
    });

    servers[0] = None; // SIGKILL: no clean shutdown, the Endpoints keep listing it for its lease's 15 s.
    let killed = std::time::Instant::now();
    let before = lease_renewed_at(&pki, ips[1], &name).expect("the node Lease");
    let renewed = eventually(
        Duration::from_secs(15),
        "the node Lease renewed after the kill",
        || lease_renewed_at(&pki, ips[1], &name).filter(|t| *t != before),
    );
    eprintln!("first node Lease renewal {:?} after the kill", killed.elapsed());
    // And again: the renewals go on, not just one that was already under way.
    eventually(Duration::from_secs(15), "the node Lease renewed again", || {
        lease_renewed_at(&pki, ips[2], &name).filter(|t| *t != renewed)
    });
    assert!(node_ready(&pki, ips[2], &name), "the node is no longer Ready");

    create(
        &pki,
        ips[1],
        "/api/v1/namespaces/default/serviceaccounts",
        &serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    );
    create(
        &pki,
        ips[1],
        "/api/v1/namespaces/default/pods",
        &serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "after-failover"},
            "spec": {
                "nodeName": name,
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "sleep", "image": "busybox", "command": ["sleep", "300"]}],
            },
        }),
    );
    eventually(Duration::from_secs(30), "the bound pod Running", || {
        let pod = get(&pki, ips[2], "/api/v1/namespaces/default/pods/after-failover")?;
        (pod["status"]["phase"] == "Running").then_some(())
    });
    eprintln!("bound pod Running {:?} after the kill", killed.elapsed());
    drop(servers);
}
