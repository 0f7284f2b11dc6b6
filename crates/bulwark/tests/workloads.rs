#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The controller-manager's workload controllers against a real API server: Deployments, ReplicaSets, garbage
//! collection with every propagation policy, namespace deletion, and leader election between two
//! controller-managers. No kubelet runs: tests mark pods ready through `pods/<name>/status` themselves.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use testkit::cluster::{Kubectl, SingleServer, eventually, kubectl_1_20, kubectl_newest, name_of, pod_ready};
use testkit::components::{Process, controller_manager};

fn kubectl(server: &SingleServer) -> Kubectl {
    server.kubectl(kubectl_newest().expect("a kubectl"))
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
        let pods = k.live_pods(ns, "app=web");
        (pods.len() == n).then_some(pods)
    })
    .unwrap()
}

fn ready_all(k: &Kubectl, ns: &str) {
    for p in k.live_pods(ns, "app=web").iter().filter(|p| !pod_ready(p)) {
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
    let _cm = controller_manager(&server, "cm", &["--leader-elect=false"]).unwrap();
    let k = kubectl(&server);
    let ns = "roll";
    create_ns(&k, ns);
    apply_deployment(&k, ns);

    // One ReplicaSet named <deployment>-<hash> with the hash label, owning four pods named <rs>-<5 chars>.
    let pods = wait_pods(&k, ns, 4);
    let rs = k.items(&["get", "rs", "-n", ns]);
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
    let d = k.json(&["get", "deploy", "web", "-n", ns]).unwrap();
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
        let pods = k.live_pods(ns, "app=web");
        let available = pods.iter().filter(|p| pod_ready(p)).count();
        min_available = min_available.min(available);
        assert!(
            available >= 3,
            "only {available} pods available during the rollout"
        );
        let d = k.json(&["get", "deploy", "web", "-n", ns]).unwrap();
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
            .find(|p| !pod_ready(p) && p["spec"]["containers"][0]["image"] == "web:2")
        {
            mark_ready(&k, ns, &name_of(p));
        }
        assert!(Instant::now() < deadline, "rollout did not finish: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(min_available >= 3);
    let out = rollout_status(&k, ns);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = k.json(&["get", "deploy", "web", "-n", ns]).unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // `kubectl rollout undo` brings the first template back, as revision 3.
    k.ok(&["rollout", "undo", "deploy/web", "-n", ns]).unwrap();
    eventually(Duration::from_secs(60), "the rollback to finish", || {
        ready_all(&k, ns);
        let d = k.json(&["get", "deploy", "web", "-n", ns])?;
        let s = &d["status"];
        (d["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"
            && s["observedGeneration"] == d["metadata"]["generation"]
            && s["updatedReplicas"] == 4
            && s["availableReplicas"] == 4
            && s["replicas"] == 4)
            .then_some(())
    })
    .unwrap();
    let rs = k.json(&["get", "rs", &rs_name, "-n", ns]).unwrap();
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
    let cm = controller_manager(&server, "cm", &["--leader-elect=false"]).unwrap();
    let k = kubectl(&server);

    // Background (the default): the Deployment goes at once, its ReplicaSet and pods after it.
    deploy_ready(&k, "bg");
    k.ok(&["delete", "deploy", "web", "-n", "bg"]).unwrap();
    eventually(Duration::from_secs(30), "replica sets and pods to go", || {
        (k.items(&["get", "rs", "-n", "bg"]).is_empty() && k.items(&["get", "pods", "-n", "bg"]).is_empty())
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
            if k.json(&["get", "deploy", "web", "-n", "orphan"]).is_some() {
                return None;
            }
            let rs = k.items(&["get", "rs", "-n", "orphan"]);
            (rs.len() == 1
                && rs[0]["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty))
            .then_some(rs)
        },
    )
    .unwrap();
    assert_eq!(k.live_pods("orphan", "app=web").len(), 4);
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
    let d = k.json(&["get", "deploy", "web", "-n", "fg"]);
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
            (k.json(&["get", "deploy", "web", "-n", "fg"]).is_none()
                && k.items(&["get", "rs", "-n", "fg"]).is_empty()
                && k.items(&["get", "pods", "-n", "fg"]).is_empty())
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", cm.log()));
}

#[test]
fn deleting_a_namespace_removes_its_content_and_then_the_namespace() {
    let server = SingleServer::start().unwrap();
    let _cm = controller_manager(&server, "cm", &["--leader-elect=false"]).unwrap();
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
    let lease = k.json(&["get", "lease", "kube-controller-manager", "-n", "kube-system"])?;
    lease["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
        .filter(|h| !h.is_empty())
}

/// Which of two controller-managers logged that it became leader last.
fn leader_of<'a>(a: &'a Process, b: &'a Process) -> Option<(&'a Process, &'a Process)> {
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
        (k.live_pods(ns, "app=web").len() == n).then_some(())
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
    let a = controller_manager(&server, "cm-a", &lease).unwrap();
    let b = controller_manager(&server, "cm-b", &lease).unwrap();
    eventually(Duration::from_secs(20), "a leader", || {
        leader_of(&a, &b).map(|_| ())
    })
    .unwrap();
    let (leader, standby) = leader_of(&a, &b).unwrap();
    let first = holder(&k).unwrap();

    // kill -9: no release, so the standby waits out the lease (3 s) and then works.
    leader.signal("KILL").unwrap();
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
    let c = controller_manager(&server, "cm-c", &lease).unwrap();
    eventually(Duration::from_secs(10), "the third to stand by", || {
        c.log().contains("attempting to acquire").then_some(())
    })
    .unwrap();
    standby.signal("TERM").unwrap();
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
