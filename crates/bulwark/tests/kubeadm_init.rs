//! `kubeadm init` end to end, as guide A's first step runs it: one host in a network namespace, bulwark as kubeadm,
//! kubelet and the control-plane components, Debian's etcd as the stacked etcd, and real kubectl (1.20 and the
//! newest present) against the result. Then what an operator does next: untaint and run a workload, read a
//! control-plane pod's logs, survive a crashed API server and a restarted kubelet, `kubeadm token`, `kubeadm
//! reset`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::node::{Node, install_personalities};
use common::{Network, eventually, fails, kubectls, ok, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const READY: Duration = Duration::from_secs(90);

fn pods_line(node: &Node, kubectl: &Path) -> Option<String> {
    let out = node.kubectl(
        kubectl,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].ready}/{.status.containerStatuses[0].restartCount} {end}",
        ],
    );
    out.status.success().then(|| text(&out.stdout))
}

/// Names of the control-plane pods, once all four run and are ready.
fn control_plane_ready(node: &Node, kubectl: &Path) -> Option<String> {
    let line = pods_line(node, kubectl)?;
    let names = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ];
    names
        .iter()
        .all(|n| line.contains(&format!("{n}-{}=true/", node.name)))
        .then_some(line)
}

fn restarts_of(line: &str, pod: &str) -> Option<u32> {
    line.split_whitespace()
        .find_map(|entry| entry.strip_prefix(&format!("{pod}=true/")))
        .and_then(|n| n.parse().ok())
}

#[test]
fn kubeadm_init_brings_up_a_ready_control_plane_that_real_clients_use_and_reset_removes_it() {
    let net = Network::new(1);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    install_personalities(&bin);
    let node = Node::new(&net, 0, "cp0", work.path().join("root"), &bin);
    let endpoint = format!("{}:6443", node.ip());

    let init = node.kubeadm(&[
        "init",
        "--control-plane-endpoint",
        &endpoint,
        "--upload-certs",
        "--apiserver-advertise-address",
        node.ip(),
        "--node-name",
        &node.name,
        "--pod-network-cidr",
        "10.244.0.0/16",
    ]);
    let out = ok(init);
    for line in [
        "[init] Using Kubernetes version:",
        "[preflight] Running pre-flight checks",
        "[certs] Generating \"apiserver\" certificate and key",
        "[kubeconfig] Writing \"admin.conf\" kubeconfig file",
        "[etcd] Creating static Pod manifest for local etcd",
        "[kubelet-start] Starting the kubelet",
        "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace",
        "[mark-control-plane] Marking the node cp0 as control-plane",
        "Your Kubernetes control-plane has initialized successfully!",
        "  mkdir -p $HOME/.kube",
        "--control-plane --certificate-key ",
        &format!("kubeadm join {endpoint} --token "),
        "--discovery-token-ca-cert-hash sha256:",
    ] {
        assert!(out.contains(line), "init output lacks {line:?}:\n{out}");
    }
    for secret in [
        "etc/kubernetes/admin.conf",
        "etc/kubernetes/pki/ca.key",
        "etc/kubernetes/pki/sa.key",
    ] {
        let mode = std::fs::metadata(node.path(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret} is {mode:o}");
    }
    let manifests: Vec<String> = common::files_under(&node.path("/etc/kubernetes/manifests"));
    assert_eq!(
        manifests,
        [
            "etcd.yaml",
            "kube-apiserver.yaml",
            "kube-controller-manager.yaml",
            "kube-scheduler.yaml"
        ]
    );

    for kubectl in kubectls() {
        let kubectl = kubectl.as_path();
        eventually(READY, "the four control-plane pods ready", || {
            control_plane_ready(&node, kubectl)
        });
        let nodes = ok(node.kubectl(kubectl, &["get", "nodes"]));
        assert!(
            nodes
                .lines()
                .any(|l| l.starts_with("cp0 ") && l.contains(" Ready ") && l.contains("control-plane")),
            "{nodes}"
        );
        let taints = ok(node.kubectl(kubectl, &["get", "node", "cp0", "-o", "jsonpath={.spec.taints}"]));
        assert!(
            taints.contains("node-role.kubernetes.io/control-plane"),
            "{taints}"
        );
        // kube-root-ca.crt comes from the controller-manager's publisher, which may start after the pods are ready.
        eventually(READY, "kubeadm's ConfigMaps and kube-root-ca.crt", || {
            let maps = ok(node.kubectl(kubectl, &["get", "configmaps", "-A"]));
            [
                "kubeadm-config",
                "kubelet-config",
                "cluster-info",
                "kube-root-ca.crt",
            ]
            .iter()
            .all(|name| maps.contains(name))
            .then_some(())
        });
    }
    let kubectl = kubectls().pop().unwrap();
    let kubectl = kubectl.as_path();

    // What a joining node reads anonymously, signed by the bootstrap signer for the init token.
    let info = eventually(
        Duration::from_secs(30),
        "cluster-info signed for the token",
        || {
            let out = net
                .command(0, "curl")
                .args([
                    "-sk",
                    &format!("https://{endpoint}/api/v1/namespaces/kube-public/configmaps/cluster-info"),
                ])
                .output()
                .unwrap();
            let body = text(&out.stdout);
            body.contains("jws-kubeconfig-").then_some(body)
        },
    );
    assert!(info.contains("certificate-authority-data"), "{info}");
    let certs = ok(node.kubectl(
        kubectl,
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            "kubeadm-certs",
            "-o",
            "json",
        ],
    ));
    assert!(
        certs.contains("\"ownerReferences\"") && certs.contains("ca.key"),
        "{certs}"
    );

    // A workload on the control-plane node once it is untainted.
    ok(node.kubectl(
        kubectl,
        &[
            "taint",
            "nodes",
            "--all",
            "node-role.kubernetes.io/control-plane-",
        ],
    ));
    ok(node.kubectl(
        kubectl,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox",
            "--replicas=2",
            "--",
            "sleep",
            "3600",
        ],
    ));
    node.wait_available(kubectl, "web", 2, READY);

    // Control-plane logs through the API server and the kubelet.
    let logs = ok(node.kubectl(kubectl, &["logs", "-n", "kube-system", "etcd-cp0", "--tail=5"]));
    assert!(!logs.trim().is_empty(), "no etcd logs");

    // A crashed API server is started again by the kubelet.
    let first_attempt = common::find_files(
        &node.path("/var/lib/kubelet/bulwark/containers"),
        &["container.pid"],
    )
    .into_iter()
    .find(|p| p.to_string_lossy().contains("/kube-apiserver/0/"))
    .unwrap();
    let container_pid = std::fs::read_to_string(first_attempt).unwrap();
    ok(std::process::Command::new("kill")
        .args(["-9", container_pid.trim()])
        .output()
        .unwrap());
    eventually(READY, "kube-apiserver restarted and ready", || {
        let line = control_plane_ready(&node, kubectl)?;
        (restarts_of(&line, "kube-apiserver-cp0")? >= 1).then_some(())
    });

    // A restarted kubelet adopts the running containers instead of starting them twice.
    let supervisor: i32 = std::fs::read_to_string(node.path("/var/run/bulwark/kubelet.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let children = ok(std::process::Command::new("pgrep")
        .args(["-P", &supervisor.to_string()])
        .output()
        .unwrap());
    ok(std::process::Command::new("kill")
        .args(["-9", children.trim()])
        .output()
        .unwrap());
    eventually(READY, "control plane ready after the kubelet restarted", || {
        control_plane_ready(&node, kubectl)
    });
    let apiservers = node
        .processes()
        .iter()
        .filter(|p| p.contains("kube-apiserver --advertise-address"))
        .count();
    assert_eq!(apiservers, 1, "{:#?}", node.processes());

    // Tokens.
    let list = ok(node.kubeadm(&["token", "list"]));
    assert!(
        list.starts_with("TOKEN") && list.contains("authentication,signing"),
        "{list}"
    );
    let join = ok(node.kubeadm(&["token", "create", "--print-join-command"]));
    assert!(
        join.starts_with(&format!("kubeadm join {endpoint} --token ")),
        "{join}"
    );

    // reset leaves no process and none of init's files.
    let reset = ok(node.kubeadm(&["reset", "-f"]));
    assert!(
        reset.contains("[reset] Deleting contents of directories"),
        "{reset}"
    );
    eventually(Duration::from_secs(20), "no process of the node left", || {
        node.processes().is_empty().then_some(())
    });
    let left = common::files_under(&node.path("/etc/kubernetes"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn kubeadm_init_preflight_names_a_busy_port_and_bad_flags_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    install_personalities(&bin);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let kubeadm = |args: &[&str]| {
        std::process::Command::new(bin.join("kubeadm"))
            .args(args)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let root = work.path().join("root");
    let root = root.to_str().unwrap();
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "preflight",
        "--rootfs",
        root,
        "--apiserver-advertise-address",
        "127.0.0.1",
        "--apiserver-bind-port",
        &port,
    ]));
    assert!(
        err.contains(&format!("[ERROR Port-{port}]: Port {port} is in use")),
        "{err}"
    );
    assert!(err.contains("--ignore-preflight-errors"), "{err}");

    let config = work.path().join("kubeadm.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n",
    )
    .unwrap();
    let err = fails(kubeadm(&[
        "init",
        "--config",
        config.to_str().unwrap(),
        "--pod-network-cidr",
        "10.244.0.0/16",
        "--rootfs",
        root,
    ]));
    assert!(
        err.contains("can not mix '--config' with arguments [pod-network-cidr]"),
        "{err}"
    );

    std::fs::write(&config, "kind: ClusterConfiguration\n").unwrap();
    let err = fails(kubeadm(&[
        "init",
        "--config",
        config.to_str().unwrap(),
        "--rootfs",
        root,
    ]));
    assert!(
        err.contains(config.to_str().unwrap()) && err.contains("apiVersion"),
        "{err}"
    );
    // Nothing was written for any of them.
    assert!(common::files_under(Path::new(root)).is_empty());
    drop(busy);
}
