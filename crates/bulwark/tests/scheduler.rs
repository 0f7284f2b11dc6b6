#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `bulwark kube-scheduler` against a real API server: binding to fitting nodes, taints, FailedScheduling events,
//! retry when the cluster changes, health over HTTPS, and leader election hand-over between two schedulers.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use testkit::cluster::{SingleServer, curl, eventually, free_port};
use testkit::components::{Process, scheduler};

fn api(server: &SingleServer, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let mut args: Vec<String> = vec![path.to_string(), "-X".into(), method.into()];
    if let Some(body) = body {
        let ct = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        args.extend([
            "-H".into(),
            format!("Content-Type: {ct}"),
            "-d".into(),
            body.to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, body) = curl(&server.pki, server.server.port, &args)?;
    Ok((code, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn ok(server: &SingleServer, method: &str, path: &str, body: Option<Value>) -> Value {
    let (code, v) = api(server, method, path, body).unwrap();
    assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
    v
}

/// A node as a kubelet would register it: labels, taints, then a Ready status with capacity through nodes/status.
fn create_node(server: &SingleServer, name: &str, cpu: &str, labels: Value, taints: Value) {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    ok(
        server,
        "POST",
        "/api/v1/nodes",
        Some(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        ),
    );
    let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
    ok(
        server,
        "PATCH",
        &format!("/api/v1/nodes/{name}/status"),
        Some(
            json!({"status": {"capacity": resources, "allocatable": resources, "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
            ]}}),
        ),
    );
}

fn create_pod(server: &SingleServer, name: &str, cpu: &str, extra_spec: Value) {
    let mut spec =
        json!({"containers": [{"name": "app", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    ok(
        server,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})),
    );
}

fn node_of(server: &SingleServer, pod: &str) -> Option<String> {
    let (_, v) = api(
        server,
        "GET",
        &format!("/api/v1/namespaces/default/pods/{pod}"),
        None,
    )
    .ok()?;
    v.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn wait_bound(server: &SingleServer, pod: &str, deadline: Duration) -> String {
    eventually(deadline, &format!("pod {pod} bound"), || node_of(server, pod)).unwrap()
}

fn lease_holder(server: &SingleServer) -> Option<String> {
    let (code, v) = api(
        server,
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler",
        None,
    )
    .ok()?;
    if code != 200 {
        return None;
    }
    v.pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

/// A server with the `default` ServiceAccount the ServiceAccount admission plugin requires of pods (the
/// controller-manager would create it; it does not run here).
fn start_server() -> SingleServer {
    let server = SingleServer::start().unwrap();
    ok(
        &server,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        Some(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})),
    );
    server
}

const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

#[test]
fn pods_are_bound_to_fitting_nodes_and_taints_are_respected() {
    let server = start_server();
    let port = free_port().unwrap();
    let sched = scheduler(
        &server,
        "a",
        &[&format!("--secure-port={port}"), "--leader-elect=false"],
    )
    .unwrap();
    create_node(
        &server,
        "cp",
        "8",
        json!({CONTROL_PLANE_TAINT: ""}),
        json!([{"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]),
    );
    create_node(&server, "small", "1", json!({}), json!([]));
    create_node(&server, "big", "4", json!({"disk": "ssd"}), json!([]));

    create_pod(&server, "needs-two-cpus", "2", json!({}));
    create_pod(
        &server,
        "wants-ssd",
        "100m",
        json!({"nodeSelector": {"disk": "ssd"}}),
    );
    create_pod(
        &server,
        "runs-on-control-plane",
        "100m",
        json!({
            "tolerations": [{"key": CONTROL_PLANE_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": CONTROL_PLANE_TAINT, "operator": "Exists"}]}
            ]}}}
        }),
    );
    for i in 0..6 {
        create_pod(&server, &format!("any-{i}"), "100m", json!({}));
    }
    let deadline = Duration::from_secs(30);
    assert_eq!(
        wait_bound(&server, "needs-two-cpus", deadline),
        "big",
        "{}",
        sched.log()
    );
    assert_eq!(wait_bound(&server, "wants-ssd", deadline), "big");
    assert_eq!(wait_bound(&server, "runs-on-control-plane", deadline), "cp");
    for i in 0..6 {
        let node = wait_bound(&server, &format!("any-{i}"), deadline);
        assert_ne!(
            node, "cp",
            "an untolerating pod landed on the tainted control-plane node"
        );
    }

    // Health checks answer over HTTPS with a self-signed certificate.
    let out = Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{port}/healthz")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}

#[test]
fn an_unschedulable_pod_gets_a_failed_scheduling_event_and_is_bound_once_a_node_fits() {
    let server = start_server();
    let sched = scheduler(&server, "a", &["--secure-port=0", "--leader-elect=false"]).unwrap();
    create_node(
        &server,
        "cp",
        "8",
        json!({}),
        json!([{"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"}]),
    );
    create_node(&server, "w1", "1", json!({}), json!([]));
    create_node(&server, "w2", "1", json!({}), json!([]));
    create_pod(&server, "too-big", "2", json!({}));

    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
                    2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let event = eventually(Duration::from_secs(30), "a FailedScheduling event", || {
        let (_, list) = api(
            &server,
            "GET",
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dtoo-big",
            None,
        )
        .ok()?;
        list["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "FailedScheduling")
            .cloned()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", sched.log()));
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["message"], expected);
    assert_eq!(event["involvedObject"]["kind"], "Pod");
    assert_eq!(event["source"]["component"], "default-scheduler");

    let condition = eventually(Duration::from_secs(10), "PodScheduled=False", || {
        let (_, pod) = api(&server, "GET", "/api/v1/namespaces/default/pods/too-big", None).ok()?;
        pod.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")
            .cloned()
    })
    .unwrap();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(condition["message"], expected);

    // A node that fits appears: the pod is retried (after its backoff) and bound there.
    create_node(&server, "roomy", "4", json!({}), json!([]));
    assert_eq!(wait_bound(&server, "too-big", Duration::from_secs(30)), "roomy");
}

fn leader_flags(lease: &str, renew: &str, retry: &str) -> Vec<String> {
    vec![
        "--secure-port=0".into(),
        "--leader-elect=true".into(),
        format!("--leader-elect-lease-duration={lease}"),
        format!("--leader-elect-renew-deadline={renew}"),
        format!("--leader-elect-retry-period={retry}"),
    ]
}

/// Starts scheduler A, waits for it to lead, then starts standby B; returns both and A's identity.
fn leader_and_standby(server: &SingleServer, flags: &[String]) -> (Process, Process, String) {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = scheduler(server, "a", &flags).unwrap();
    let holder = eventually(Duration::from_secs(20), "scheduler a to lead", || {
        lease_holder(server)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.log()));
    let b = scheduler(server, "b", &flags).unwrap();
    // B is a candidate once it has read the lease; give it a pod to prove A is the one scheduling meanwhile.
    create_node(server, "w1", "4", json!({}), json!([]));
    create_pod(server, "before", "100m", json!({}));
    wait_bound(server, "before", Duration::from_secs(20));
    eventually(
        Duration::from_secs(20),
        "scheduler b to wait for the lease",
        || {
            b.log()
                .contains("attempting to acquire leader lease")
                .then_some(())
        },
    )
    .unwrap();
    (a, b, holder)
}

#[test]
fn killing_the_leader_lets_the_standby_take_over_within_the_lease_duration() {
    let server = start_server();
    let lease = Duration::from_secs(3);
    let retry = Duration::from_millis(500);
    let (mut a, b, first) = leader_and_standby(&server, &leader_flags("3s", "2s", "500ms"));
    let killed = Instant::now();
    a.kill().unwrap();
    // A pod that arrives while nobody leads waits for the standby.
    create_pod(&server, "while-leaderless", "100m", json!({}));
    let next = eventually(Duration::from_secs(20), "the standby to take the lease", || {
        lease_holder(&server).filter(|h| *h != first)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", b.log()));
    let took = killed.elapsed();
    println!("standby {next} took over {took:?} after SIGKILL (lease {lease:?}, retry {retry:?})");
    // The standby waits one lease duration from the last renewal it saw; polling adds up to a retry period.
    assert!(took <= lease + retry + Duration::from_secs(1), "took {took:?}");
    wait_bound(&server, "while-leaderless", Duration::from_secs(20));
    create_pod(&server, "after", "100m", json!({}));
    wait_bound(&server, "after", Duration::from_secs(20));
}

#[test]
fn sigterm_releases_the_lease_so_the_standby_takes_over_in_under_two_seconds() {
    let server = start_server();
    // A long lease: only the release on shutdown can make the hand-over fast.
    let (a, b, first) = leader_and_standby(&server, &leader_flags("15s", "10s", "500ms"));
    let stopped = Instant::now();
    a.signal("TERM").unwrap();
    let next = eventually(Duration::from_secs(20), "the standby to take the lease", || {
        lease_holder(&server).filter(|h| *h != first)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", a.log(), b.log()));
    let took = stopped.elapsed();
    println!("standby {next} took over {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(2), "took {took:?}\n{}", a.log());
    assert!(a.log().contains("released the lease"), "{}", a.log());
    create_pod(&server, "after", "100m", json!({}));
    wait_bound(&server, "after", Duration::from_secs(20));
}
