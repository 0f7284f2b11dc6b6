//! Guide C end to end, its commands as written: three single-node clusters made with `kubeadm init` in network
//! namespaces (`fedhost`, `member1`, `member2`), the member RBAC file, the token read with `kubectl get secret |
//! grep` and `kubectl describe secret`, the kubeconfig built with `kubectl config`, the federation control plane
//! installed with `kubefedctl install` (two leader-elected controller-manager pods on the host's kubelet, reaching
//! the API with their service-account tokens), `kubefedctl join` of all three, READY True. Then what the guide is for: a FederatedDeployment of a real process
//! with a ReplicaSchedulingPreference of 9 replicas weighted 2:1 runs 6 and 3 pods, an override changes member2's
//! args, every process of member1 stopped moves all 9 to member2, and member1 back brings the split back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::node::{Node, install_personalities};
use common::{Network, eventually, kubectl_newest, ok, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const READY: Duration = Duration::from_secs(120);

/// The member RBAC file of guide C.
fn member_rbac(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: {name}
  namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {name}
rules:
- apiGroups: ['*']
  resources: ['*']
  verbs: ['*']
- nonResourceURLs: ['*']
  verbs: ['*']
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {name}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {name}
subjects:
- kind: ServiceAccount
  name: {name}
  namespace: default
"#
    )
}

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: types.kubefed.io/v1beta1
kind: FederatedDeployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      replicas: 1
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - {name: web, image: python:3, command: [python3, -m, http.server], args: ["0"]}
  placement:
    clusterSelector: {}
  overrides:
  - clusterName: member2
    clusterOverrides:
    - {path: /spec/template/spec/containers/0/args, value: ["0", "--directory", "/tmp"]}
---
apiVersion: scheduling.kubefed.io/v1alpha1
kind: ReplicaSchedulingPreference
metadata: {name: web, namespace: shop}
spec:
  targetKind: FederatedDeployment
  totalReplicas: 9
  rebalance: true
  clusters:
    member1: {weight: 2}
    member2: {weight: 1}
"#;

/// kubectl on the federation host with the kubeconfig guide C builds.
struct Fed<'a> {
    net: &'a Network,
    kubectl: PathBuf,
    config: PathBuf,
}

impl Fed<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.net
            .command(0, &self.kubectl)
            .env("KUBECONFIG", &self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn apply(&self, yaml: &str) -> String {
        use std::io::Write;
        let mut child = self
            .net
            .command(0, &self.kubectl)
            .env("KUBECONFIG", &self.config)
            .args(["--context", "fedhost", "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        ok(child.wait_with_output().unwrap())
    }

    /// Running pods of the app in a member, and their args.
    fn running(&self, context: &str) -> Vec<String> {
        let out = self.run(&[
            "--context",
            context,
            "get",
            "pods",
            "-n",
            "shop",
            "-o",
            "jsonpath={range .items[*]}{.status.phase}:{.spec.containers[0].args}{\"\\n\"}{end}",
        ]);
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("Running:"))
            .map(|l| l.trim_start_matches("Running:").to_string())
            .collect()
    }
}

fn kubefedctl(net: &Network, bin: &Path, config: &Path, args: &[&str]) -> Output {
    net.command(0, bin.join("kubefedctl"))
        .env("KUBECONFIG", config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn init(node: &Node) {
    ok(node.kubeadm(&[
        "init",
        "--apiserver-advertise-address",
        node.ip(),
        "--node-name",
        &node.name,
    ]));
}

#[test]
fn guide_c_federates_three_clusters_and_replicas_follow_member_health() {
    let Some(kubectl) = kubectl_newest() else {
        eprintln!("skipping: no kubectl");
        return;
    };
    let net = Network::new(3);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    install_personalities(&bin);
    let names = ["fedhost", "member1", "member2"];
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::new(&net, i, names[i], work.path().join(names[i]), &bin))
        .collect();
    std::thread::scope(|s| {
        for node in &nodes {
            s.spawn(|| init(node));
        }
    });
    for node in &nodes {
        eventually(READY, &format!("{} Ready", node.name), || {
            let out = node.kubectl(&kubectl, &["get", "nodes", "--no-headers"]);
            text(&out.stdout).contains(" Ready ").then_some(())
        });
        // Single-node clusters run workloads on their control plane.
        ok(node.kubectl(
            &kubectl,
            &[
                "taint",
                "nodes",
                "--all",
                "node-role.kubernetes.io/control-plane-",
            ],
        ));
    }

    // On each member: the RBAC file, then the token of its legacy Secret.
    let config = work.path().join("fed.conf");
    std::fs::copy(nodes[0].admin_conf(), &config).unwrap();
    let fed = Fed {
        net: &net,
        kubectl: kubectl.clone(),
        config: config.clone(),
    };
    let cfg = |args: &[&str]| {
        let mut full = vec!["config"];
        full.extend_from_slice(args);
        ok(fed.run(&full))
    };
    for node in &nodes[1..] {
        let name = node.name.as_str();
        let rbac = work.path().join(format!("{name}.yaml"));
        std::fs::write(&rbac, member_rbac(name)).unwrap();
        ok(node.kubectl(&kubectl, &["apply", "-f", rbac.to_str().unwrap()]));
        let secret = eventually(Duration::from_secs(60), "the member's token secret", || {
            let out = node.kubectl(&kubectl, &["get", "secret"]);
            text(&out.stdout)
                .lines()
                .find(|l| l.starts_with(&format!("{name}-token-")))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        });
        let described = ok(node.kubectl(&kubectl, &["describe", "secret", &secret]));
        let token = described
            .lines()
            .find_map(|l| l.strip_prefix("token:"))
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| panic!("no token in:\n{described}"));
        let ca = Command::new("base64")
            .arg("-w0")
            .arg(node.path("/etc/kubernetes/pki/ca.crt"))
            .output()
            .unwrap();
        assert!(!ca.stdout.is_empty());
        let remote = format!("kubefed-remote-{name}");
        let user = format!("kubefed-{name}");
        cfg(&["set-credentials", &user, &format!("--token={token}")]);
        cfg(&[
            "set-cluster",
            &remote,
            &format!("--server=https://{}:6443", node.ip()),
        ]);
        cfg(&[
            "set",
            &format!("clusters.{remote}.certificate-authority-data"),
            text(&ca.stdout).trim(),
        ]);
        cfg(&[
            "set-context",
            name,
            &format!("--cluster={remote}"),
            &format!("--user={user}"),
            "--namespace=default",
        ]);
        let nodes_seen = ok(fed.run(&["--context", name, "get", "nodes"]));
        assert!(nodes_seen.contains(name), "{nodes_seen}");
    }
    cfg(&["rename-context", "kubernetes-admin@kubernetes", "fedhost"]);
    ok(fed.run(&["--context", "fedhost", "get", "nodes"]));

    // The federation control plane on the host, as pods of the host's kubelet, then the joins.
    ok(kubefedctl(
        &net,
        &bin,
        &config,
        &[
            "install",
            "--host-cluster-context",
            "fedhost",
            "--cluster-health-check-period=2s",
            "--v=2",
        ],
    ));
    let holder = eventually(
        READY,
        "two controller-manager pods Running, one holding the Lease",
        || {
            let pods = fed.run(&[
                "--context",
                "fedhost",
                "-n",
                "kube-federation-system",
                "get",
                "pods",
                "-l",
                "kubefed-control-plane=controller-manager",
                "-o",
                "jsonpath={range .items[*]}{.status.phase}{\"\\n\"}{end}",
            ]);
            let running = text(&pods.stdout).lines().filter(|l| *l == "Running").count();
            let lease = fed.run(&[
                "--context",
                "fedhost",
                "-n",
                "kube-federation-system",
                "get",
                "lease",
                "kubefed-controller-manager",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]);
            let holder = text(&lease.stdout);
            (running == 2 && holder.starts_with("kubefed-controller-manager-")).then_some(holder)
        },
    );
    eprintln!("the Lease is held by {holder}");
    eventually(Duration::from_secs(60), "the KubeFed API", || {
        fed.run(&[
            "--context",
            "fedhost",
            "get",
            "crd",
            "kubefedclusters.core.kubefed.io",
        ])
        .status
        .success()
        .then_some(())
    });
    for name in names {
        ok(kubefedctl(
            &net,
            &bin,
            &config,
            &[
                "join",
                name,
                "--host-cluster-context",
                "fedhost",
                "--kubefed-namespace=kube-federation-system",
                "--v=2",
            ],
        ));
    }
    let table = eventually(Duration::from_secs(60), "every cluster READY True", || {
        let out = fed.run(&[
            "--context",
            "fedhost",
            "-n",
            "kube-federation-system",
            "get",
            "kubefedclusters",
        ]);
        let t = text(&out.stdout);
        names
            .iter()
            .all(|n| {
                t.lines()
                    .any(|l| l.starts_with(n) && l.trim_end().ends_with("True"))
            })
            .then_some(t)
    });
    assert!(table.starts_with("NAME"), "{table}");

    // The application: 9 replicas weighted 2:1, member2 with its own args.
    fed.apply(APP);
    eventually(READY, "6 pods on member1 and 3 on member2", || {
        let (m1, m2) = (fed.running("member1"), fed.running("member2"));
        (m1.len() == 6 && m2.len() == 3).then_some(())
    });
    assert!(fed.running("member2").iter().all(|a| a.contains("/tmp")));
    assert!(fed.running("member1").iter().all(|a| !a.contains("/tmp")));

    // Every process of member1 stops: its replicas move to member2; back, the split returns.
    nodes[1].kill_host();
    eventually(READY, "all 9 pods on member2", || {
        (fed.running("member2").len() == 9).then_some(())
    });
    ok(nodes[1].kubeadm(&[
        "init",
        "phase",
        "kubelet-start",
        "--apiserver-advertise-address",
        nodes[1].ip(),
        "--node-name",
        "member1",
    ]));
    eventually(READY, "6 and 3 again", || {
        (fed.running("member1").len() == 6 && fed.running("member2").len() == 3).then_some(())
    });
}
