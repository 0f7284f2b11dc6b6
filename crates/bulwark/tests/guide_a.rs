//! Guide A ("Creating Highly Available Clusters with kubeadm"), stacked etcd, command by command with bulwark as
//! kubeadm: HAProxy in front of three control-plane nodes (the guide's suggested load balancer, TCP check on 6443),
//! `kubeadm init --control-plane-endpoint LB:6443 --upload-certs` on the first, `kubeadm join ... --control-plane
//! --certificate-key` on the other two, `kubeadm join` on three workers. Every host is a network namespace.
//! Then the loss of a whole control-plane host: the API through the load balancer keeps answering and a new
//! Deployment still rolls out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::node::{Node, install_personalities};
use common::{Network, eventually, kubectls, ok, text};
use std::path::Path;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(180);

fn haproxy_cfg(backends: &[(String, String)]) -> String {
    let mut cfg = String::from(
        "global\n  maxconn 4000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\n\
         frontend apiserver\n  bind *:6443\n  default_backend apiserver\n\n\
         backend apiserver\n  option tcp-check\n  option redispatch\n  retries 3\n  balance roundrobin\n  default-server inter 1s fall 2 rise 1\n",
    );
    for (name, ip) in backends {
        cfg.push_str(&format!("  server {name} {ip}:6443 check\n"));
    }
    cfg
}

/// The value after `flag ` in kubeadm's printed join command.
fn after<'a>(output: &'a str, flag: &str) -> &'a str {
    let start = output
        .find(flag)
        .unwrap_or_else(|| panic!("no {flag} in:\n{output}"))
        + flag.len();
    output[start..].split_whitespace().next().unwrap()
}

fn count_ready(line: &str, prefix: &str) -> usize {
    line.split_whitespace()
        .filter(|e| e.starts_with(prefix) && e.ends_with("=true"))
        .count()
}

#[test]
fn guide_a_stacked_gives_three_control_planes_and_three_workers_that_survive_losing_a_control_plane_host() {
    let Some(haproxy) = common::which("haproxy").or_else(|| {
        let p = Path::new("/usr/sbin/haproxy");
        p.exists().then(|| p.to_path_buf())
    }) else {
        eprintln!("skipping: haproxy is not installed (scripts/install-deps installs it)");
        return;
    };
    let net = Network::new(7);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    install_personalities(&bin);

    let names = ["lb", "cp0", "cp1", "cp2", "w0", "w1", "w2"];
    let nodes: Vec<Node> = (1..names.len())
        .map(|i| Node::new(&net, i, names[i], work.path().join(names[i]), &bin))
        .collect();
    let (control_planes, workers) = nodes.split_at(3);

    let cfg = work.path().join("haproxy.cfg");
    let backends: Vec<(String, String)> = control_planes
        .iter()
        .map(|n| (n.name.clone(), n.ip().to_string()))
        .collect();
    std::fs::write(&cfg, haproxy_cfg(&backends)).unwrap();
    let _lb = net.spawn(
        0,
        haproxy.to_str().unwrap(),
        &["-f".into(), cfg.display().to_string(), "-db".into()],
        &work.path().join("haproxy.log"),
    );
    let endpoint = format!("{}:6443", net.hosts[0].ip);

    // Steps 1-2 of the guide: the first control-plane node.
    let first = &control_planes[0];
    let init = ok(first.kubeadm(&[
        "init",
        "--control-plane-endpoint",
        &endpoint,
        "--upload-certs",
        "--apiserver-advertise-address",
        first.ip(),
        "--node-name",
        &first.name,
    ]));
    let token = after(&init, "--token ").to_string();
    let hash = after(&init, "--discovery-token-ca-cert-hash ").to_string();
    let key = after(&init, "--certificate-key ").to_string();
    assert!(
        init.contains(&format!("kubeadm join {endpoint} --token {token}")),
        "{init}"
    );

    // Step 3: the other control-plane nodes, one after the other as the guide says.
    for node in &control_planes[1..] {
        let out = ok(node.join_control_plane(&endpoint, &token, &hash, Some(&key)));
        assert!(
            out.contains("This node has joined the cluster and a new control plane instance was created"),
            "{out}"
        );
    }
    // A wrong CA pin is refused before any credential is sent; a wrong certificate key decrypts nothing.
    let stranger = &workers[2];
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    let err = common::fails(stranger.kubeadm(&[
        "join",
        &endpoint,
        "--token",
        &token,
        "--discovery-token-ca-cert-hash",
        &wrong_pin,
    ]));
    assert!(
        err.contains("none of the public keys") && err.contains(&hash),
        "{err}"
    );
    let wrong_key = "1".repeat(64);
    let err = common::fails(stranger.join_control_plane(&endpoint, &token, &hash, Some(&wrong_key)));
    assert!(err.contains("the certificate key does not decrypt"), "{err}");
    assert!(common::files_under(&stranger.path("/etc/kubernetes")).is_empty());

    // A control-plane node reset leaves the etcd cluster, and the same machine joins again.
    let last = &control_planes[2];
    let reset = ok(last.kubeadm(&["reset", "-f"]));
    assert!(reset.contains("from the etcd cluster"), "{reset}");
    let rejoin = ok(last.join_control_plane(&endpoint, &token, &hash, Some(&key)));
    assert!(
        rejoin.contains("a new control plane instance was created"),
        "{rejoin}"
    );

    // Workers.
    for node in workers {
        let out = ok(node.join(&endpoint, &token, &hash, &[]));
        assert!(out.contains("This node has joined the cluster:"), "{out}");
    }

    // admin.conf points at the load balancer.
    for kubectl in kubectls() {
        let kubectl = kubectl.as_path();
        eventually(SETTLE, "six Ready nodes", || {
            let out = first.kubectl(kubectl, &["get", "nodes", "--no-headers"]);
            let text = text(&out.stdout);
            (text
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count()
                == 6)
                .then_some(())
        });
        eventually(
            SETTLE,
            "3 etcd, 3 apiserver, 3 controller-manager, 3 scheduler pods ready",
            || {
                let out = first.kubectl(
                kubectl,
                &[
                    "get",
                    "pods",
                    "-n",
                    "kube-system",
                    "-o",
                    "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].ready} {end}",
                ],
            );
                let line = text(&out.stdout);
                [
                    "etcd-",
                    "kube-apiserver-",
                    "kube-controller-manager-",
                    "kube-scheduler-",
                ]
                .iter()
                .all(|p| count_ready(&line, p) == 3)
                .then_some(())
            },
        );
    }
    let kubectl = kubectls().pop().unwrap();
    let kubectl = kubectl.as_path();

    // Three voting etcd members (the joined ones were learners, promoted once in sync).
    let pki = first.path("/etc/kubernetes/pki/etcd");
    let members = ok(net
        .command(1, "etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &format!("https://{}:2379", first.ip()),
            "--cacert",
            pki.join("ca.crt").to_str().unwrap(),
            "--cert",
            pki.join("healthcheck-client.crt").to_str().unwrap(),
            "--key",
            pki.join("healthcheck-client.key").to_str().unwrap(),
            "member",
            "list",
        ])
        .output()
        .unwrap());
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(
        members
            .lines()
            .all(|l| l.contains(", started, ") && l.ends_with(", false")),
        "{members}"
    );

    // A partition: the third control-plane host loses its link. The load balancer routes away and writes through it
    // keep succeeding; with the link back, that host's API server and etcd member serve again without any action.
    let cut = &control_planes[2];
    let link = |state: &str| {
        ok(std::process::Command::new("ip")
            .args(["-n", &net.hosts[cut.index].netns, "link", "set", "eth0", state])
            .output()
            .unwrap());
    };
    link("down");
    for i in 0..5 {
        eventually(
            SETTLE,
            "a write through the load balancer during the partition",
            || {
                let name = format!("during-partition-{i}");
                first
                    .kubectl(kubectl, &["create", "configmap", &name])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }
    link("up");
    eventually(SETTLE, "the partitioned API server serving again", || {
        let out = net
            .command(cut.index, kubectl)
            .args(["--kubeconfig", cut.admin_conf().to_str().unwrap()])
            .args([
                "--server",
                &format!("https://{}:6443", cut.ip()),
                "get",
                "configmap",
                "during-partition-4",
            ])
            .output()
            .unwrap();
        out.status.success().then_some(())
    });

    // The first control-plane host dies.
    first.kill_host();
    let survivor = &control_planes[1];
    eventually(SETTLE, "the API answering through the load balancer", || {
        survivor
            .kubectl(kubectl, &["get", "--raw", "/readyz"])
            .status
            .success()
            .then_some(())
    });
    ok(survivor.kubectl(
        kubectl,
        &[
            "create",
            "deployment",
            "after-loss",
            "--image=busybox",
            "--replicas=3",
            "--",
            "sleep",
            "3600",
        ],
    ));
    survivor.wait_available(kubectl, "after-loss", 3, SETTLE);
}
