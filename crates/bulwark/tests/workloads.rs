#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The controller-manager's workload controllers against a real API server: Deployments, ReplicaSets, garbage
//! collection with every propagation policy, namespace deletion, and leader election between two
//! controller-managers. No kubelet runs: tests mark pods ready through `pods/<name>/status` themselves.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use testkit::cluster::{Kubectl, SingleServer, bulwark, eventually, kubectl_1_20, kubectl_newest};

/// A `bulwark kube-controller-manager` process, killed on drop.
struct ControllerManager {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControllerManager {
    fn start(server: &SingleServer, name: &str, extra: &[&str]) -> Result<Self> {
        let log = server.pki.dir.path().join(format!("{name}.log"));
        let pki = server.pki.pki_dir();
        // The flags kubeadm's manifest passes: the certificate and token controllers refuse to start without them.
        let file = |flag: &str, f: &str| format!("--{flag}={}", pki.join(f).display());
        let child = Command::new(bulwark()?)
            .arg("kube-controller-manager")
            .arg(format!("--kubeconfig={}", server.kubeconfig().display()))
            .args(["--secure-port=0", "--controllers=*"])
            .args([
                file("root-ca-file", "ca.crt"),
                file("service-account-private-key-file", "sa.key"),
                file("cluster-signing-cert-file", "ca.crt"),
                file("cluster-signing-key-file", "ca.key"),
            ])
            .args(extra)
            .env("BULWARK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Self { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

fn kubectl(server: &SingleServer) -> Kubectl {
    server.kubectl(kubectl_newest().expect("a kubectl"))
}

fn get_json(k: &Kubectl, args: &[&str]) -> Option<Value> {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = k.run(&a).ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn items(k: &Kubectl, args: &[&str]) -> Vec<Value> {
    get_json(k, args)
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

/// Pods that are not being deleted.
fn live_pods(k: &Kubectl, ns: &str, selector: &str) -> Vec<Value> {
    items(k, &["get", "pods", "-n", ns, "-l", selector])
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn mark_ready(k: &Kubectl, ns: &str, name: &str) {
    let patch = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
    ]}});
    let _ = k.run(&[
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
}

fn name_of(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1", command: ["sleep", "3600"]}]
"#;

fn create_ns(k: &Kubectl, ns: &str) {
    k.ok(&["create", "namespace", ns]).unwrap();
}

fn apply_deployment(k: &Kubectl, ns: &str) {
    k.ok_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("NS", ns))
        .unwrap();
}

fn wait_pods(k: &Kubectl, ns: &str, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(30), &format!("{n} pods in {ns}"), || {
        let pods = live_pods(k, ns, "app=web");
        (pods.len() == n).then_some(pods)
    })
    .unwrap()
}

fn ready_all(k: &Kubectl, ns: &str) {
    for p in live_pods(k, ns, "app=web").iter().filter(|p| !is_ready(p)) {
        mark_ready(k, ns, &name_of(p));
    }
}

fn rollout_status(k: &Kubectl, ns: &str) -> String {
    k.ok(&["rollout", "status", "deployment/web", "-n", ns, "--timeout=60s"])
        .unwrap()
}

#[test]
fn a_deployment_creates_scales_rolls_out_within_max_unavailable_and_rolls_back() {
    let server = SingleServer::start().unwrap();
    let _cm = ControllerManager::start(&server, "cm", &["--leader-elect=false"]).unwrap();
    let k = kubectl(&server);
    let ns = "roll";
    create_ns(&k, ns);
    apply_deployment(&k, ns);

    // One ReplicaSet named <deployment>-<hash> with the hash label, owning four pods named <rs>-<5 chars>.
    let pods = wait_pods(&k, ns, 4);
    let rs = items(&k, &["get", "rs", "-n", ns]);
    assert_eq!(rs.len(), 1);
    let rs_name = name_of(&rs[0]);
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(
        rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    for p in &pods {
        let name = name_of(p);
        assert!(
            name.starts_with(&format!("{rs_name}-")) && name.len() == rs_name.len() + 6,
            "{name}"
        );
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["controller"].as_bool(),
                owner["blockOwnerDeletion"].as_bool()
            ),
            (Some("ReplicaSet"), Some(true), Some(true))
        );
    }
    ready_all(&k, ns);
    // Both kubectls follow the rollout to its end with upstream's message.
    for bin in [kubectl_1_20(), kubectl_newest()].into_iter().flatten() {
        let out = rollout_status(&server.kubectl(bin), ns);
        assert!(
            out.contains("deployment \"web\" successfully rolled out"),
            "{out}"
        );
    }
    let d = get_json(&k, &["get", "deploy", "web", "-n", ns]).unwrap();
    assert_eq!(d["status"]["availableReplicas"], 4);
    let reasons: Vec<&str> = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        vec!["MinimumReplicasAvailable", "NewReplicaSetAvailable"]
    );

    // Scaling up and down.
    k.ok(&["scale", "deploy/web", "-n", ns, "--replicas=6"]).unwrap();
    wait_pods(&k, ns, 6);
    ready_all(&k, ns);
    k.ok(&["scale", "deploy/web", "-n", ns, "--replicas=4"]).unwrap();
    wait_pods(&k, ns, 4);
    rollout_status(&k, ns);

    // A template change rolls out; with maxUnavailable 1 at least 3 pods stay available throughout.
    k.ok(&["set", "image", "deploy/web", "-n", ns, "web=web:2"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut min_available = usize::MAX;
    loop {
        let pods = live_pods(&k, ns, "app=web");
        let available = pods.iter().filter(|p| is_ready(p)).count();
        min_available = min_available.min(available);
        assert!(
            available >= 3,
            "only {available} pods available during the rollout"
        );
        let d = get_json(&k, &["get", "deploy", "web", "-n", ns]).unwrap();
        let s = &d["status"];
        if s["observedGeneration"] == d["metadata"]["generation"]
            && s["updatedReplicas"] == 4
            && s["availableReplicas"] == 4
            && s["replicas"] == 4
        {
            break;
        }
        // Ready one new pod at a time, as a slow kubelet would.
        if let Some(p) = pods
            .iter()
            .find(|p| !is_ready(p) && p["spec"]["containers"][0]["image"] == "web:2")
        {
            mark_ready(&k, ns, &name_of(p));
        }
        assert!(Instant::now() < deadline, "rollout did not finish: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(min_available >= 3);
    let out = rollout_status(&k, ns);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = get_json(&k, &["get", "deploy", "web", "-n", ns]).unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // `kubectl rollout undo` brings the first template back, as revision 3.
    k.ok(&["rollout", "undo", "deploy/web", "-n", ns]).unwrap();
    eventually(Duration::from_secs(60), "the rollback to finish", || {
        ready_all(&k, ns);
        let d = get_json(&k, &["get", "deploy", "web", "-n", ns])?;
        let s = &d["status"];
        (d["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"
            && s["observedGeneration"] == d["metadata"]["generation"]
            && s["updatedReplicas"] == 4
            && s["availableReplicas"] == 4
            && s["replicas"] == 4)
            .then_some(())
    })
    .unwrap();
    let rs = get_json(&k, &["get", "rs", &rs_name, "-n", ns]).unwrap();
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(rs["spec"]["replicas"], 4);
    let history = k.ok(&["rollout", "history", "deploy/web", "-n", ns]).unwrap();
    assert!(history.contains('2') && history.contains('3'), "{history}");
}

fn deploy_ready(k: &Kubectl, ns: &str) {
    create_ns(k, ns);
    apply_deployment(k, ns);
    wait_pods(k, ns, 4);
}

#[test]
fn deleting_a_deployment_cascades_in_the_background_in_the_foreground_or_not_at_all() {
    let server = SingleServer::start().unwrap();
    let cm = ControllerManager::start(&server, "cm", &["--leader-elect=false"]).unwrap();
    let k = kubectl(&server);

    // Background (the default): the Deployment goes at once, its ReplicaSet and pods after it.
    deploy_ready(&k, "bg");
    k.ok(&["delete", "deploy", "web", "-n", "bg"]).unwrap();
    eventually(Duration::from_secs(30), "replica sets and pods to go", || {
        (items(&k, &["get", "rs", "-n", "bg"]).is_empty()
            && items(&k, &["get", "pods", "-n", "bg"]).is_empty())
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", cm.log()));

    // Orphan: the ReplicaSet and pods stay, without a reference to the deleted owner.
    deploy_ready(&k, "orphan");
    let kubectl_flag = "--cascade=orphan";
    k.ok(&["delete", "deploy", "web", "-n", "orphan", kubectl_flag])
        .unwrap();
    let rs = eventually(
        Duration::from_secs(30),
        "the deployment to go and its replica set to be orphaned",
        || {
            if get_json(&k, &["get", "deploy", "web", "-n", "orphan"]).is_some() {
                return None;
            }
            let rs = items(&k, &["get", "rs", "-n", "orphan"]);
            (rs.len() == 1
                && rs[0]["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty))
            .then_some(rs)
        },
    )
    .unwrap();
    assert_eq!(live_pods(&k, "orphan", "app=web").len(), 4);
    assert_eq!(rs[0]["spec"]["replicas"], 4);

    // Foreground: the Deployment stays, marked, until its ReplicaSet and pods are gone.
    deploy_ready(&k, "fg");
    k.ok(&[
        "delete",
        "deploy",
        "web",
        "-n",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ])
    .unwrap();
    let d = get_json(&k, &["get", "deploy", "web", "-n", "fg"]);
    if let Some(d) = d {
        assert!(
            d["metadata"]["finalizers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "foregroundDeletion")
        );
        assert!(!d["metadata"]["deletionTimestamp"].is_null());
    }
    eventually(
        Duration::from_secs(30),
        "the foreground deletion to finish",
        || {
            (get_json(&k, &["get", "deploy", "web", "-n", "fg"]).is_none()
                && items(&k, &["get", "rs", "-n", "fg"]).is_empty()
                && items(&k, &["get", "pods", "-n", "fg"]).is_empty())
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cm.log()));
}

#[test]
fn deleting_a_namespace_removes_its_content_and_then_the_namespace() {
    let server = SingleServer::start().unwrap();
    let _cm = ControllerManager::start(&server, "cm", &["--leader-elect=false"]).unwrap();
    let k = kubectl(&server);
    deploy_ready(&k, "doomed");
    k.ok(&["create", "configmap", "c", "-n", "doomed", "--from-literal=a=b"])
        .unwrap();
    k.ok(&["delete", "namespace", "doomed", "--wait=false"]).unwrap();
    eventually(Duration::from_secs(60), "the namespace to go", || {
        let out = k.run(&["get", "namespace", "doomed"]).ok()?;
        (!out.status.success()).then_some(())
    })
    .unwrap();
    let out = k
        .run(&["get", "pods,rs,deploy,configmaps", "-n", "doomed", "-o", "name"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

fn holder(k: &Kubectl) -> Option<String> {
    let lease = get_json(
        k,
        &["get", "lease", "kube-controller-manager", "-n", "kube-system"],
    )?;
    lease["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
        .filter(|h| !h.is_empty())
}

/// Which of two controller-managers logged that it became leader last.
fn leader_of<'a>(
    a: &'a ControllerManager,
    b: &'a ControllerManager,
) -> Option<(&'a ControllerManager, &'a ControllerManager)> {
    match (
        a.log().contains("became leader"),
        b.log().contains("became leader"),
    ) {
        (true, false) => Some((a, b)),
        (false, true) => Some((b, a)),
        _ => None,
    }
}

fn wait_pods_count(k: &Kubectl, ns: &str, n: usize, within: Duration) -> Result<()> {
    eventually(within, &format!("{n} pods in {ns}"), || {
        (live_pods(k, ns, "app=web").len() == n).then_some(())
    })
    .map(|_| ())
}

#[test]
fn a_standby_controller_manager_takes_over_when_the_leader_dies_or_hands_over_on_sigterm() {
    let server = SingleServer::start().unwrap();
    let k = kubectl(&server);
    let lease = [
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms",
    ];
    let a = ControllerManager::start(&server, "cm-a", &lease).unwrap();
    let b = ControllerManager::start(&server, "cm-b", &lease).unwrap();
    eventually(Duration::from_secs(20), "a leader", || {
        leader_of(&a, &b).map(|_| ())
    })
    .unwrap();
    let (leader, standby) = leader_of(&a, &b).unwrap();
    let first = holder(&k).unwrap();

    // kill -9: no release, so the standby waits out the lease (3 s) and then works.
    leader.signal("-KILL");
    let killed = Instant::now();
    eventually(Duration::from_secs(10), "the standby to lead", || {
        standby.log().contains("became leader").then_some(())
    })
    .unwrap();
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(3 + 2), "took {took:?}");
    assert_ne!(holder(&k).unwrap(), first);
    deploy_ready(&k, "after-kill");

    // A third one stands by; SIGTERM on the leader releases the lease and the standby leads within 2 s.
    let c = ControllerManager::start(&server, "cm-c", &lease).unwrap();
    eventually(Duration::from_secs(10), "the third to stand by", || {
        c.log().contains("attempting to acquire").then_some(())
    })
    .unwrap();
    standby.signal("-TERM");
    let termed = Instant::now();
    eventually(Duration::from_secs(5), "the third to lead", || {
        c.log().contains("became leader").then_some(())
    })
    .unwrap();
    let took = termed.elapsed();
    assert!(took < Duration::from_secs(2), "hand-over took {took:?}");
    assert!(standby.log().contains("released the lease"), "{}", standby.log());
    k.ok(&["scale", "deploy/web", "-n", "after-kill", "--replicas=2"])
        .unwrap();
    wait_pods_count(&k, "after-kill", 2, Duration::from_secs(20)).unwrap();
}

/// Measures the time from creating a 100-replica Deployment to 100 pods existing and to all of them available
/// (the test marks them ready). `cargo test -p bulwark --test workloads -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_a_100_replica_deployment_comes_up() {
    let server = SingleServer::start().unwrap();
    let _cm = ControllerManager::start(&server, "cm", &["--leader-elect=false"]).unwrap();
    let k = kubectl(&server);
    create_ns(&k, "bench");
    let start = Instant::now();
    k.ok_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT
            .replace("NS", "bench")
            .replace("replicas: 4", "replicas: 100"),
    )
    .unwrap();
    wait_pods_count(&k, "bench", 100, Duration::from_secs(120)).unwrap();
    let created = start.elapsed();
    let pods = live_pods(&k, "bench", "app=web");
    for p in &pods {
        mark_ready(&k, "bench", &name_of(p));
    }
    eventually(Duration::from_secs(120), "100 available", || {
        let d = get_json(&k, &["get", "deploy", "web", "-n", "bench"])?;
        (d["status"]["availableReplicas"] == 100).then_some(())
    })
    .unwrap();
    println!(
        "100 pods created in {created:?}; deployment available after marking them ready in {:?}",
        start.elapsed()
    );
}
