//! The kubelet with an API server: a real `bulwark kube-apiserver` (testkit) and a `bulwark kubelet` process on a
//! temporary root, authenticated as `system:node:<name>` in `system:nodes`. Registration and Ready in both kubectls,
//! the node Lease, a bound pod run as a real process with a readiness probe and its service-account token volume, logs through the kubelet's own URL and
//! through `kubectl logs`, graceful deletion, mirror pods, crash loops, and a kubelet restart adopting what runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{eventually, text};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use testkit::cluster::{Kubectl, SingleServer, free_port};
use testkit::components::{KubeletNode, NodeOptions};

static NEXT: AtomicU32 = AtomicU32::new(1);

/// An API server that can reach kubelets (`--kubelet-client-certificate`), as kubeadm configures it.
struct Cluster(SingleServer);

impl Cluster {
    fn start() -> Cluster {
        Cluster(SingleServer::start_for_kubelets().unwrap())
    }

    fn kubectl(&self) -> Kubectl {
        self.0
            .kubectl(testkit::cluster::kubectl_newest().expect("a newest kubectl"))
    }

    fn kubectl_1_20(&self) -> Kubectl {
        self.0
            .kubectl(testkit::cluster::kubectl_1_20().expect("kubectl 1.20"))
    }

    /// What the controller-manager would make in `default`: its ServiceAccount and the `kube-root-ca.crt` ConfigMap.
    fn stand_in_for_the_controller_manager(&self, kubectl: &Kubectl) {
        kubectl.ok(&["create", "serviceaccount", "default"]).unwrap();
        let ca = self.0.pki.pki_dir().join("ca.crt");
        kubectl
            .ok(&[
                "create",
                "configmap",
                "kube-root-ca.crt",
                &format!("--from-file=ca.crt={}", ca.display()),
            ])
            .unwrap();
    }

    fn client_pair(&self, dir: &Path, base: &str, user: &str, group: &str) {
        self.0.pki.client_pair(dir, base, user, group).unwrap();
    }

    /// A node on 127.0.0.1 with a kubelet, labelled as a worker.
    fn node(&self) -> KubeletNode {
        let mut options = NodeOptions::named(&format!(
            "node-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        options.labels = Some("bulwark.test/role=worker".into());
        KubeletNode::start(&self.0.pki, self.0.server.port, options).unwrap()
    }
}

/// PIDs of live processes whose command line contains `marker`.
fn pids(marker: &str) -> Vec<i32> {
    let out = Command::new("pgrep").args(["-f", marker]).output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn json(kubectl: &Kubectl, args: &[&str]) -> Option<serde_json::Value> {
    let out = kubectl.run(args).ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn container_status(pod: &serde_json::Value) -> serde_json::Value {
    pod["status"]["containerStatuses"][0].clone()
}

#[test]
fn a_node_registers_renews_its_lease_and_runs_a_bound_pod_with_probes_logs_and_graceful_deletion() {
    let cluster = Cluster::start();
    let node = cluster.node();
    let kubectl = cluster.kubectl();
    // No controller-manager here to make the namespace's service account, which admission wants, nor the root CA
    // ConfigMap the pod's token volume carries.
    cluster.stand_in_for_the_controller_manager(&kubectl);

    // Registered and Ready, for both kubectls.
    for k in [cluster.kubectl_1_20(), cluster.kubectl()] {
        eventually(Duration::from_secs(30), "the node to be Ready", || {
            let out = k.run(&["get", "nodes", node.name(), "--no-headers"]).ok()?;
            let line = text(&out.stdout);
            (line.contains(" Ready ") && line.contains("v1.33.0")).then_some(())
        });
    }
    let node_obj = json(&kubectl, &["get", "node", node.name(), "-o", "json"]).unwrap();
    assert_eq!(
        node_obj["metadata"]["labels"]["kubernetes.io/hostname"],
        node.name()
    );
    assert_eq!(node_obj["metadata"]["labels"]["bulwark.test/role"], "worker");
    let ready = node_obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    assert_eq!(node_obj["status"]["capacity"]["pods"], "110");
    assert!(
        node_obj["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1")
    );

    // The Lease exists, is owned by the Node and renews (every second with a 4 s lease).
    let lease = |k: &Kubectl| {
        json(
            k,
            &["get", "lease", "-n", "kube-node-lease", node.name(), "-o", "json"],
        )
    };
    let first = eventually(Duration::from_secs(20), "the node lease", || lease(&kubectl));
    assert_eq!(first["spec"]["holderIdentity"], node.name());
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Node");
    eventually(Duration::from_secs(20), "the lease to renew", || {
        let now = lease(&kubectl)?;
        (now["spec"]["renewTime"] != first["spec"]["renewTime"]).then_some(())
    });

    // A pod bound to the node runs a real server; the readiness probe makes it ready.
    let port = free_port().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "hello").unwrap();
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "nodeName": node.name(),
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "web", "image": "python:3",
                "command": ["python3", "-u", "-m", "http.server", port.to_string(), "--bind", "127.0.0.1",
                            "--directory", web.path().display().to_string()],
                "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "initialDelaySeconds": 2},
            }]
        }
    });
    kubectl
        .ok_stdin(&["apply", "-f", "-"], &manifest.to_string())
        .unwrap();
    let pod = eventually(Duration::from_secs(30), "the pod to be Running and ready", || {
        let pod = json(&kubectl, &["get", "pod", "web", "-o", "json"])?;
        let ready = container_status(&pod)["ready"] == true && pod["status"]["phase"] == "Running";
        ready.then_some(pod)
    });
    assert_eq!(pod["status"]["hostIP"], "127.0.0.1");

    // Its service-account volume, with a token the kubelet requested as the node, is where its process is told.
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let volume = pod["spec"]["volumes"][0]["name"].as_str().unwrap();
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    let dir = node
        .root
        .path()
        .join("var/lib/kubelet/pods")
        .join(uid)
        .join("volumes/kubernetes.io~projected")
        .join(volume);
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("token")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(dir.join("namespace")).unwrap(), "default");
    assert!(
        std::fs::read_to_string(dir.join("ca.crt"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let pid_file = common::find_files(
        &node.root.path().join("var/lib/kubelet/bulwark/containers"),
        &["container.pid"],
    )
    .into_iter()
    .find(|f| f.to_string_lossy().contains(uid))
    .unwrap();
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(
        vars.contains(&format!("BULWARK_SERVICEACCOUNT_DIR={}", dir.display()).as_str()),
        "{vars:?}"
    );
    assert!(vars.contains(&"KUBERNETES_SERVICE_HOST=127.0.0.1"), "{vars:?}");
    assert!(
        vars.contains(&format!("KUBERNETES_SERVICE_PORT={}", cluster.0.server.port).as_str()),
        "{vars:?}"
    );
    assert_eq!(pod["status"]["podIP"], "127.0.0.1");
    assert!(pod["status"]["startTime"].is_string());
    let conditions = pod["status"]["conditions"].as_array().unwrap();
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True"),
            "{kind} in {conditions:?}"
        );
    }
    assert!(container_status(&pod)["state"]["running"]["startedAt"].is_string());
    let marker = format!("http.server {port}");
    assert_eq!(pids(&marker).len(), 1, "one server process");
    assert!(
        kubectl.ok(&["get", "pod", "web"]).unwrap().contains("1/1"),
        "kubectl shows the pod ready"
    );

    // The server's request log reaches the container log, read through the kubelet's own HTTPS URL with a client
    // certificate signed by the cluster CA...
    let certs = tempfile::tempdir().unwrap();
    cluster.client_pair(
        certs.path(),
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        "kubeadm:cluster-admins",
    );
    let kubelet_url = format!(
        "https://127.0.0.1:{}/containerLogs/default/web/web?tailLines=5",
        node.port
    );
    let curl = |with_cert: bool| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-k", "--max-time", "10", "-w", "\n%{http_code}"]);
        if with_cert {
            cmd.arg("--cert")
                .arg(certs.path().join("apiserver-kubelet-client.crt"))
                .arg("--key")
                .arg(certs.path().join("apiserver-kubelet-client.key"));
        }
        text(&cmd.arg(&kubelet_url).output().unwrap().stdout)
    };
    let logs = eventually(Duration::from_secs(20), "the probe's requests in the log", || {
        let out = curl(true);
        let lines = out.rsplit_once('\n')?.0.lines().count();
        (out.ends_with("200") && out.contains("GET / HTTP/1.1") && lines == 5).then_some(out)
    });
    let body = logs.rsplit_once('\n').unwrap().0;
    assert_eq!(body.lines().count(), 5, "tailLines=5 keeps five lines: {body}");
    assert!(curl(false).ends_with("401"), "no client certificate, no logs");
    // ... and through the API server's pods/log proxy, as kubectl reads it.
    let via_api = eventually(Duration::from_secs(20), "kubectl logs", || {
        let out = kubectl.run(&["logs", "web", "--tail=2"]).ok()?;
        out.status.success().then(|| text(&out.stdout))
    });
    assert!(via_api.contains("GET / HTTP/1.1"), "{via_api}");

    // Deleting the pod stops its process, and the kubelet finishes the deletion.
    let pid = pids(&marker)[0];
    kubectl.ok(&["delete", "pod", "web", "--wait=false"]).unwrap();
    eventually(Duration::from_secs(30), "the pod to be gone", || {
        let out = kubectl.run(&["get", "pod", "web"]).ok()?;
        (!out.status.success() && text(&out.stderr).contains("NotFound")).then_some(())
    });
    assert!(pids(&marker).is_empty(), "process {pid} stopped");
    assert!(node.log().contains("pod terminated; deleted"), "{}", node.log());
}

#[test]
fn static_pods_get_mirror_pods_crash_loops_show_and_a_restarted_kubelet_adopts_its_containers() {
    let cluster = Cluster::start();
    let mut node = cluster.node();
    let kubectl = cluster.kubectl();
    cluster.stand_in_for_the_controller_manager(&kubectl);
    let marker = format!(
        "4{}{:03}.5",
        std::process::id() % 10000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    std::fs::write(
        node.manifests().join("sleeper.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: sleeper, namespace: kube-system}}\nspec:\n  \
             terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: busybox\n    command: [sleep, '{marker}']\n"
        ),
    )
    .unwrap();
    let mirror_name = format!("sleeper-{}", node.name());

    // The mirror pod: annotated, owned by the Node, Running.
    let mirror = eventually(Duration::from_secs(30), "the mirror pod to run", || {
        let pod = json(
            &kubectl,
            &["get", "pod", "-n", "kube-system", &mirror_name, "-o", "json"],
        )?;
        (pod["status"]["phase"] == "Running").then_some(pod)
    });
    let annotations = &mirror["metadata"]["annotations"];
    assert_eq!(annotations["kubernetes.io/config.source"], "file");
    assert_eq!(
        annotations["kubernetes.io/config.mirror"],
        annotations["kubernetes.io/config.hash"]
    );
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["name"], node.name());
    assert_eq!(pids(&marker).len(), 1);

    // Deleting the mirror pod brings a new one; the static pod itself keeps running.
    let uid = mirror["metadata"]["uid"].as_str().unwrap().to_string();
    kubectl
        .ok(&["delete", "pod", "-n", "kube-system", &mirror_name, "--wait=false"])
        .unwrap();
    eventually(Duration::from_secs(30), "a new mirror pod", || {
        let pod = json(
            &kubectl,
            &["get", "pod", "-n", "kube-system", &mirror_name, "-o", "json"],
        )?;
        (pod["metadata"]["uid"] != uid.as_str() && pod["metadata"]["deletionTimestamp"].is_null())
            .then_some(())
    });
    assert_eq!(pids(&marker).len(), 1, "the static pod was not restarted");

    // A crashing container: restart count climbs, the waiting reason is CrashLoopBackOff with the last exit.
    let crash = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "crash", "namespace": "default"},
        "spec": {"nodeName": node.name(), "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "echo bye; exit 3"]}]}
    });
    kubectl
        .ok_stdin(&["apply", "-f", "-"], &crash.to_string())
        .unwrap();
    let status = eventually(Duration::from_secs(30), "CrashLoopBackOff", || {
        let pod = json(&kubectl, &["get", "pod", "crash", "-o", "json"])?;
        let c = container_status(&pod);
        (c["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(c)
    });
    assert!(status["restartCount"].as_i64().unwrap() >= 1, "{status}");
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error");
    assert!(
        kubectl
            .ok(&["get", "pod", "crash"])
            .unwrap()
            .contains("CrashLoopBackOff")
    );

    // A container without a command waits with a clear reason.
    let nocmd = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "nocmd", "namespace": "default"},
        "spec": {"nodeName": node.name(), "containers": [{"name": "c", "image": "nginx"}]}
    });
    kubectl
        .ok_stdin(&["apply", "-f", "-"], &nocmd.to_string())
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "a waiting reason for a container without a command",
        || {
            let pod = json(&kubectl, &["get", "pod", "nocmd", "-o", "json"])?;
            let w = container_status(&pod)["state"]["waiting"].clone();
            (w["reason"] == "CreateContainerConfigError" && w["message"].as_str()?.contains("has no command"))
                .then_some(())
        },
    );

    // A bound pod with a long-running process, then a kubelet restart: each process stays, once.
    let bound_marker = format!(
        "5{}{:03}.5",
        std::process::id() % 10000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let bound = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bound", "namespace": "default"},
        "spec": {"nodeName": node.name(), "terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "c", "image": "busybox", "command": ["sleep", bound_marker]}]}
    });
    kubectl
        .ok_stdin(&["apply", "-f", "-"], &bound.to_string())
        .unwrap();
    let bound_pid = eventually(Duration::from_secs(20), "the bound pod's process", || {
        let p = pids(&bound_marker);
        (p.len() == 1).then(|| p[0])
    });
    let static_pid = pids(&marker)[0];
    node.stop_kubelet();
    node.start_kubelet().unwrap();
    eventually(
        Duration::from_secs(20),
        "the restarted kubelet to post status",
        || {
            let pod = json(&kubectl, &["get", "pod", "bound", "-o", "json"])?;
            (pod["status"]["phase"] == "Running").then_some(())
        },
    );
    // Give the new kubelet several passes to do something wrong, then check nothing was duplicated or stopped.
    eventually(Duration::from_secs(20), "the new kubelet's node status", || {
        node.log().matches("node registered").nth(1).map(|_| ())
    });
    assert_eq!(
        pids(&bound_marker),
        vec![bound_pid],
        "the bound pod's process was adopted"
    );
    assert_eq!(
        pids(&marker),
        vec![static_pid],
        "the static pod's process was adopted"
    );

    // A pod removed from the API for good (force delete) is stopped.
    kubectl
        .ok(&["delete", "pod", "bound", "--grace-period=0", "--force"])
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the force-deleted pod's process to stop",
        || pids(&bound_marker).is_empty().then_some(()),
    );
}

/// The certificate (and its notAfter) of a node's `kubelet-client-current.pem`, with the file the link names.
fn current_client_cert(node: &KubeletNode) -> Option<(String, std::time::SystemTime, std::path::PathBuf)> {
    let link = node
        .root
        .path()
        .join("var/lib/kubelet/pki/kubelet-client-current.pem");
    let target = link.parent()?.join(std::fs::read_link(&link).ok()?);
    let text = std::fs::read_to_string(&target).ok()?;
    let cert = pki::Certificate::from_pem(&text).ok()?;
    let info = cert.info().ok()?;
    assert_eq!(info.common_name, format!("system:node:{}", node.name()));
    Some((cert.pem().to_string(), info.not_after, target))
}

fn parse_time(value: &serde_json::Value) -> Option<std::time::SystemTime> {
    let text = value.as_str()?;
    let at: time::OffsetDateTime =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(at.into())
}

#[test]
fn a_bootstrapped_kubelet_rotates_its_client_certificate_before_expiry_keeps_working_past_the_first_and_bootstraps_again_when_all_expired()
 {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start();
    let kubectl = cluster.kubectl();
    // What `kubeadm init` sets up for joining nodes: the token's RBAC (CSR creation, auto-approval, and nodes
    // renewing their own certificates) and the token itself.
    let policy = serde_json::json!({"apiVersion": "v1", "kind": "List",
        "items": apiserver::auth::policy::kubeadm_bootstrap_token_policy()});
    kubectl
        .ok_stdin(&["apply", "-f", "-"], &policy.to_string())
        .unwrap();
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system",
            "--type=bootstrap.kubernetes.io/token",
            "--from-literal=token-id=abcdef",
            "--from-literal=token-secret=0123456789abcdef",
            "--from-literal=usage-bootstrap-authentication=true",
            "--from-literal=auth-extra-groups=system:bootstrappers:kubeadm:default-node-token",
        ])
        .unwrap();
    // Certificates that live 30 s: rotation is due 21-27 s after each is issued.
    let _kcm = testkit::components::controller_manager(
        &cluster.0,
        "kcm-rotation",
        &["--cluster-signing-duration=30s"],
    )
    .unwrap();
    let mut options = NodeOptions::named(&format!(
        "rot-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    options.bootstrap_token = Some("abcdef.0123456789abcdef".into());
    options.rotate_certificates = true;
    let node = KubeletNode::start(&cluster.0.pki, cluster.0.server.port, options).unwrap();

    let (first, first_expiry, first_file) =
        eventually(Duration::from_secs(30), "the bootstrap certificate", || {
            current_client_cert(&node)
        });
    eventually(Duration::from_secs(30), "the node to be Ready", || {
        let line = text(
            &kubectl
                .run(&["get", "nodes", node.name(), "--no-headers"])
                .ok()?
                .stdout,
        );
        line.contains(" Ready ").then_some(())
    });

    // A new certificate, with a new key, comes before the first expires.
    let (second, second_expiry, second_file) =
        eventually(Duration::from_secs(40), "a rotated certificate", || {
            current_client_cert(&node).filter(|(pem, ..)| *pem != first)
        });
    assert!(second_expiry > first_expiry);
    assert_ne!(first_file, second_file, "each certificate has its own file");
    assert!(first_file.exists(), "the previous certificate stays on disk");
    let mode = std::fs::metadata(&second_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The kubeconfig follows (written just after the link), so a restarted kubelet starts from the new one.
    let kubeconfig = node.root.path().join("etc/kubernetes/kubelet.conf");
    eventually(
        Duration::from_secs(10),
        "the kubeconfig to carry the new certificate",
        || {
            let file = pki::Kubeconfig::read(&kubeconfig).ok()?;
            (file.client_certificate().ok()?.pem() == second).then_some(())
        },
    );

    // The renewal went through a CSR of the node itself, approved as a self-renewal.
    let csrs = kubectl.items(&["get", "csr", "-o", "json"]);
    let by_node: Vec<_> = csrs
        .iter()
        .filter(|c| c["spec"]["username"] == format!("system:node:{}", node.name()))
        .collect();
    assert!(!by_node.is_empty(), "no CSR made by the node: {csrs:?}");
    assert!(
        by_node
            .iter()
            .all(|c| c["status"]["conditions"].as_array().is_some_and(|cs| cs
                .iter()
                .any(|x| x["type"] == "Approved" && x["reason"] == "AutoApproved")))
    );
    // Asked for before the first certificate ended (the CSR's time, not when this test happened to look).
    let asked = by_node
        .iter()
        .filter_map(|c| parse_time(&c["metadata"]["creationTimestamp"]))
        .min()
        .unwrap();
    assert!(
        asked < first_expiry,
        "the renewal was asked for only after the first certificate expired"
    );

    // Past the first certificate's end the node still reports: the Lease renews and the Ready heartbeat moves on.
    eventually(
        Duration::from_secs(40),
        "the lease and node status to be renewed after the first certificate expired",
        || {
            let lease = json(
                &kubectl,
                &["get", "lease", "-n", "kube-node-lease", node.name(), "-o", "json"],
            )?;
            let renewed = parse_time(&lease["spec"]["renewTime"])?;
            let node_obj = json(&kubectl, &["get", "node", node.name(), "-o", "json"])?;
            let ready = node_obj["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            let heartbeat = parse_time(&ready["lastHeartbeatTime"])?;
            let after = first_expiry + Duration::from_secs(2);
            (ready["status"] == "True" && renewed > after && heartbeat > after).then_some(())
        },
    );
    // A kubelet that was down for longer than its certificate lives bootstraps again with the token on restart.
    let mut node = node;
    node.stop_kubelet();
    let (last, last_expiry, _) = current_client_cert(&node).unwrap();
    eventually(Duration::from_secs(40), "the last certificate to expire", || {
        (std::time::SystemTime::now() > last_expiry).then_some(())
    });
    node.start_kubelet().unwrap();
    eventually(
        Duration::from_secs(30),
        "a new certificate and a renewed lease after the restart",
        || {
            let (pem, ..) = current_client_cert(&node).filter(|(pem, ..)| *pem != last)?;
            let lease = json(
                &kubectl,
                &["get", "lease", "-n", "kube-node-lease", node.name(), "-o", "json"],
            )?;
            let renewed = parse_time(&lease["spec"]["renewTime"])?;
            (renewed > last_expiry && !pem.is_empty()).then_some(())
        },
    );
    assert!(
        !node.log().contains("certificate has expired")
            && !node.log().contains("client certificate rotation failed"),
        "{}",
        node.log()
    );
}
