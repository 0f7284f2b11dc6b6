#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Workloads on real nodes: an API server (embedded store), a kube-controller-manager, a kube-scheduler, and
//! kubelet processes on loopback addresses (one tainted control-plane node, workers), all `bulwark`. Each kubelet has
//! a loopback pod CIDR, so every pod has an address of its own and replicas on one node serve the same port.
//!
//! The scenario: a Deployment of real HTTP servers with a readiness probe scales, rolls out a new version losing no
//! more than maxUnavailable, rolls back, survives the death of a worker (its pods come back on the other one after
//! the toleration the API server's `--default-unreachable-toleration-seconds` gives them), and deleting it stops every process. The ignored test measures 100 pods Running.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::cluster::{Kubectl, SingleServer, eventually, kubectl_1_20, kubectl_newest, name_of, pod_ready};
use testkit::components::{KubeletNode, NodeOptions, Process, controller_manager, scheduler};

static NEXT: AtomicU32 = AtomicU32::new(0);

const CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
/// How long the node lifecycle controller waits for a silent kubelet before its node turns Unknown.
const GRACE: Duration = Duration::from_secs(4);
/// How long pods tolerate a node that turned unreachable or not ready, set through the API server's flags.
const TOLERATION: u32 = 2;

/// A whole cluster on one machine. Fields drop in declaration order: nodes (kubelets and containers) first.
struct Cluster {
    nodes: Vec<KubeletNode>,
    cm: Process,
    sched: Process,
    server: SingleServer,
    k: Kubectl,
}

impl Cluster {
    /// Starts the control plane and `workers` worker nodes, plus a control-plane node tainted NoSchedule if
    /// `control_plane_node`. Node `i` is on `127.<net>.0.<i+1>` with pod CIDR `127.<net>.<i+1>.0/24`.
    fn start(control_plane_node: bool, workers: usize) -> Cluster {
        // Pods tolerate an unreachable or not-ready node for 2 s (DefaultTolerationSeconds admission) instead of 300.
        let server = SingleServer::start_with(|_| {
            vec![
                format!("--default-not-ready-toleration-seconds={TOLERATION}"),
                format!("--default-unreachable-toleration-seconds={TOLERATION}"),
            ]
        })
        .unwrap();
        let grace = format!("--node-monitor-grace-period={}s", GRACE.as_secs());
        let cm = controller_manager(
            &server,
            "cm",
            &["--leader-elect=false", &grace, "--node-monitor-period=1s"],
        )
        .unwrap();
        let sched = scheduler(&server, "sched", &["--leader-elect=false", "--secure-port=0"]).unwrap();
        // A /16 of loopback per run, away from the lab's 127.0.x addresses, so concurrent runs do not collide.
        let net = 150 + (std::process::id() * 7 + NEXT.fetch_add(1, Ordering::SeqCst)) % 100;
        let mut options = Vec::new();
        if control_plane_node {
            // NodeRestriction keeps kubelets from setting node-role labels: kubeadm adds them as admin; the taint is
            // the kubelet's to register.
            let mut o = NodeOptions::named("cp");
            o.taints = Some(format!("{CONTROL_PLANE}:NoSchedule"));
            options.push(o);
        }
        options.extend((1..=workers).map(|i| NodeOptions::named(&format!("worker-{i}"))));
        let nodes: Vec<KubeletNode> = options
            .into_iter()
            .enumerate()
            .map(|(i, mut o)| {
                o.ip = format!("127.{net}.0.{}", i + 1);
                o.pod_cidr = Some(format!("127.{net}.{}.0/24", i + 1));
                KubeletNode::start(&server.pki, server.server.port, o).unwrap()
            })
            .collect();
        let k = server.kubectl(kubectl_newest().expect("a kubectl"));
        let cluster = Cluster {
            nodes,
            cm,
            sched,
            server,
            k,
        };
        let want = cluster.nodes.len();
        eventually(Duration::from_secs(30), "every node Ready", || {
            (cluster.ready_nodes().len() == want).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
        // The controller-manager makes the namespace's service account, which admission wants of pods.
        eventually(Duration::from_secs(30), "the default service account", || {
            cluster.k.json(&["get", "serviceaccount", "default"]).map(|_| ())
        })
        .unwrap();
        cluster
    }

    fn ready_nodes(&self) -> BTreeSet<String> {
        self.k
            .items(&["get", "nodes"])
            .iter()
            .filter(|n| condition(n, "Ready") == "True")
            .map(name_of)
            .collect()
    }

    fn node(&self, name: &str) -> Value {
        self.k.json(&["get", "node", name]).unwrap_or(Value::Null)
    }

    fn logs(&self) -> String {
        format!(
            "controller-manager:\n{}\nscheduler:\n{}",
            self.cm.log_tail(20),
            self.sched.log_tail(20)
        )
    }

    fn apply(&self, manifest: &Value) {
        self.k
            .ok_stdin(&["apply", "-f", "-"], &manifest.to_string())
            .unwrap();
    }
}

/// The status of condition `kind` of an object as JSON, or "".
fn condition(obj: &Value, kind: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"].as_str().unwrap_or_default().to_string()
}

fn pod_ip(pod: &Value) -> String {
    pod["status"]["podIP"].as_str().unwrap_or_default().to_string()
}

/// PIDs of live processes whose command line contains `marker`.
fn pids(marker: &str) -> Vec<i32> {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The body of `GET http://<ip>:<port>/`, if it answers.
fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&format!("{ip}:{port}").parse().ok()?, Duration::from_secs(2))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.trim().to_string())
}

const PORT: u16 = 8080;

/// A Deployment of Python HTTP servers, each bound to its pod's own address (downward API) on the same port and
/// serving `<www>/$(VERSION)`; ready when it answers.
fn web_deployment(www: &Path, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "web", "image": "python:3",
                        "command": ["python3", "-u", "-m", "http.server", PORT.to_string(), "--bind", "$(POD_IP)",
                                    "--directory", format!("{}/$(VERSION)", www.display())],
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "VERSION", "value": "v1"},
                        ],
                        "ports": [{"containerPort": PORT}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": PORT}, "periodSeconds": 1},
                    }]
                }
            }
        }
    })
}

/// The Deployment's rollout is complete: every replica updated and available, as the controller sees it.
fn rolled_out(k: &Kubectl, replicas: u64) -> bool {
    let Some(d) = k.json(&["get", "deploy", "web"]) else {
        return false;
    };
    let s = &d["status"];
    s["observedGeneration"] == d["metadata"]["generation"]
        && s["updatedReplicas"] == replicas
        && s["availableReplicas"] == replicas
        && s["replicas"] == replicas
}

/// `kubectl rollout status` with every kubectl at hand; each must print upstream's message.
fn rollout_status(k: &Kubectl) {
    for bin in [kubectl_1_20(), kubectl_newest()].into_iter().flatten() {
        let out = Kubectl {
            bin,
            kubeconfig: k.kubeconfig.clone(),
        }
        .ok(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .unwrap();
        assert!(
            out.contains("deployment \"web\" successfully rolled out"),
            "{out}"
        );
    }
}

/// Waits until `n` live pods are ready and each serves `version` on its own address; returns them.
fn serving(k: &Kubectl, n: usize, version: &str) -> Vec<Value> {
    eventually(
        Duration::from_secs(30),
        &format!("{n} ready pods serving {version}"),
        || {
            let pods = k.live_pods("default", "app=web");
            (pods.len() == n
                && pods.iter().all(pod_ready)
                && pods
                    .iter()
                    .all(|p| http_get(&pod_ip(p), PORT).as_deref() == Some(version)))
            .then_some(pods)
        },
    )
    .unwrap()
}

/// Drives the rollout until it completes, asserting at each look that at least `min_available` pods are available.
fn watch_rollout(k: &Kubectl, replicas: u64, min_available: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lowest = usize::MAX;
    while !rolled_out(k, replicas) {
        let available = k
            .live_pods("default", "app=web")
            .iter()
            .filter(|p| pod_ready(p))
            .count();
        lowest = lowest.min(available);
        assert!(
            available >= min_available,
            "only {available} pods available during the rollout"
        );
        assert!(Instant::now() < deadline, "the rollout did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("rollout done; fewest available pods seen: {lowest}");
}

fn assert_own_addresses(cluster: &Cluster, pods: &[Value]) {
    let ips: BTreeSet<String> = pods.iter().map(pod_ip).collect();
    assert_eq!(ips.len(), pods.len(), "every pod has its own address: {ips:?}");
    for p in pods {
        let node = cluster.nodes.iter().find(|n| n.name() == node_of(p)).unwrap();
        let cidr = node.options.pod_cidr.as_deref().unwrap();
        let prefix = cidr.trim_end_matches("0/24");
        assert!(pod_ip(p).starts_with(prefix), "{} not in {cidr}", pod_ip(p));
        assert_eq!(p["status"]["hostIP"], node.options.ip.as_str());
        assert_ne!(node_of(p), "cp", "a pod landed on the tainted control-plane node");
    }
}

#[test]
fn a_deployment_of_real_servers_scales_rolls_out_rolls_back_fails_over_and_goes_away() {
    let mut cluster = Cluster::start(true, 2);
    // A kubectl of its own, so the cluster can be changed (a node killed) while it is in use.
    let k = &cluster.server.kubectl(kubectl_newest().unwrap());
    let www = tempfile::tempdir().unwrap();
    for v in ["v1", "v2"] {
        std::fs::create_dir_all(www.path().join(v)).unwrap();
        std::fs::write(www.path().join(v).join("index.html"), v).unwrap();
    }
    let marker = www.path().display().to_string();
    let started = Instant::now();

    // Two replicas: each an HTTP server on its own pod address, on the workers only.
    cluster.apply(&web_deployment(www.path(), 2));
    rollout_status(k);
    let pods = serving(k, 2, "v1");
    assert_own_addresses(&cluster, &pods);
    assert_eq!(pids(&marker).len(), 2, "one server process per pod");
    let tolerations = &pods[0]["spec"]["tolerations"];
    assert!(
        tolerations
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == TOLERATION),
        "{tolerations}"
    );

    // Up to four (two per worker at most, on the same port) and down to three: the extra process stops.
    k.ok(&["scale", "deploy/web", "--replicas=4"]).unwrap();
    rollout_status(k);
    let pods = serving(k, 4, "v1");
    assert_own_addresses(&cluster, &pods);
    k.ok(&["scale", "deploy/web", "--replicas=3"]).unwrap();
    serving(k, 3, "v1");
    eventually(Duration::from_secs(20), "three server processes", || {
        (pids(&marker).len() == 3).then_some(())
    })
    .unwrap();

    // A new version rolls out with at most one pod unavailable (maxUnavailable 1 of 3), then rolls back.
    k.ok(&["set", "env", "deploy/web", "VERSION=v2"]).unwrap();
    watch_rollout(k, 3, 2);
    rollout_status(k);
    serving(k, 3, "v2");
    k.ok(&["rollout", "undo", "deploy/web"]).unwrap();
    watch_rollout(k, 3, 2);
    rollout_status(k);
    let pods = serving(k, 3, "v1");
    let d = k.json(&["get", "deploy", "web"]).unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    eventually(Duration::from_secs(20), "old servers to stop", || {
        (pids(&marker).len() == 3).then_some(())
    })
    .unwrap();
    println!("created, scaled, rolled out and back in {:?}", started.elapsed());

    // The worker with the most pods dies: kubelet and containers SIGKILLed, as on a dead host.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        *per_node.entry(node_of(p)).or_default() += 1;
    }
    let (victim_name, lost) = per_node.iter().max_by_key(|(_, n)| **n).unwrap();
    let (victim_name, lost) = (victim_name.clone(), *lost);
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.name() == victim_name)
        .unwrap();
    let killed = Instant::now();
    cluster.nodes[victim].kill_host();
    let node = eventually(
        GRACE + Duration::from_secs(10),
        "the dead node to turn Unknown",
        || {
            let n = cluster.node(&victim_name);
            (condition(&n, "Ready") == "Unknown").then_some(n)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let unknown_after = killed.elapsed();
    // The last heartbeat came up to a status period (1 s) before the kill.
    assert!(
        unknown_after + Duration::from_secs(1) >= GRACE,
        "Unknown after {unknown_after:?}"
    );
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    // The pods come back on the surviving worker once their toleration of the unreachable taint is over.
    let survivors = eventually(
        Duration::from_secs(30),
        "the lost pods to be replaced on the other worker",
        || {
            let pods = k.live_pods("default", "app=web");
            (pods.len() == 3
                && pods.iter().all(|p| node_of(p) != victim_name && pod_ready(p))
                && pods
                    .iter()
                    .all(|p| http_get(&pod_ip(p), PORT).as_deref() == Some("v1")))
            .then_some(pods)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let replaced_after = killed.elapsed();
    assert!(survivors.iter().all(|p| node_of(p) != "cp"));
    let taints = cluster.node(&victim_name)["spec"]["taints"].clone();
    assert!(
        taints
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"),
        "{taints}"
    );
    println!(
        "worker killed: node Unknown after {unknown_after:?} (grace {GRACE:?}), {lost} pod(s) replaced and ready after {replaced_after:?}"
    );

    // The worker comes back: Ready again, untainted, and it finishes the deletion of the pods it lost.
    cluster.nodes[victim].start_kubelet().unwrap();
    eventually(
        Duration::from_secs(30),
        "the node back and its evicted pods gone",
        || {
            let n = cluster.node(&victim_name);
            let tainted = n["spec"]["taints"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable"));
            let left = k.items(&["get", "pods", "-l", "app=web"]).len();
            (condition(&n, "Ready") == "True" && !tainted && left == 3).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));

    // Deleting the Deployment removes its ReplicaSets and pods, and every server process stops.
    k.ok(&["delete", "deploy", "web"]).unwrap();
    eventually(
        Duration::from_secs(30),
        "replica sets, pods and processes to go",
        || {
            (k.items(&["get", "rs"]).is_empty()
                && k.items(&["get", "pods"]).is_empty()
                && pids(&marker).is_empty())
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    println!("whole scenario took {:?}", started.elapsed());
}

/// Time from creating a 100-replica Deployment of real processes (`sleep`) on a 3-node cluster to 100 pods
/// Running and the Deployment available. `cargo test -p bulwark --test workloads_on_nodes -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_a_100_replica_deployment_runs_on_three_nodes() {
    let cluster = Cluster::start(false, 3);
    let k = &cluster.k;
    let marker = format!(
        "7{}{:03}.5",
        std::process::id() % 10000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "many", "namespace": "default"},
        "spec": {
            "replicas": 100,
            "selector": {"matchLabels": {"app": "many"}},
            "template": {
                "metadata": {"labels": {"app": "many"}},
                "spec": {"terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "busybox", "command": ["sleep", marker]}]}
            }
        }
    });
    let start = Instant::now();
    cluster.apply(&manifest);
    let (mut created, mut bound) = (None, None);
    let running = eventually(Duration::from_secs(300), "100 pods Running", || {
        let pods = k.items(&["get", "pods", "-l", "app=many"]);
        if created.is_none() && pods.len() == 100 {
            created = Some(start.elapsed());
        }
        if bound.is_none() && pods.len() == 100 && pods.iter().all(|p| !node_of(p).is_empty()) {
            bound = Some(start.elapsed());
        }
        let running = pods.iter().filter(|p| p["status"]["phase"] == "Running").count();
        (running == 100).then(|| start.elapsed())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.logs()));
    let available = eventually(Duration::from_secs(120), "the Deployment available", || {
        let d = k.json(&["get", "deploy", "many"])?;
        (d["status"]["availableReplicas"] == 100).then(|| start.elapsed())
    })
    .unwrap();
    assert_eq!(pids(&marker).len(), 100, "one process per pod");
    let pods = k.items(&["get", "pods", "-l", "app=many"]);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        *per_node.entry(node_of(p)).or_default() += 1;
    }
    println!(
        "100 pods on 3 nodes: all created {:?}, all bound {:?}, all Running {running:?}, Deployment available {available:?}; per node {per_node:?}",
        created.unwrap_or_default(),
        bound.unwrap_or_default()
    );
}
