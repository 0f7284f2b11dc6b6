//! Guide A with an external etcd cluster, and with the certificates distributed by hand: guide B builds a three-member
//! TLS etcd on its own hosts (kubelets with only `--pod-manifest-path`, `kubeadm init phase certs etcd-*`,
//! `init phase etcd local`); its CA and the apiserver-etcd-client pair are copied to the first control-plane node,
//! which runs `kubeadm init --config` with `etcd.external` and `--upload-certs`. The second control-plane node joins
//! with `--certificate-key`; the third gets the shared certificates copied by hand (guide A's manual distribution)
//! and joins without a key; a worker joins. No etcd runs on the control-plane nodes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::node::{Node, install_personalities};
use common::{Containers, Network, Proc, eventually, files_under, kubectls, ok, text};
use std::path::Path;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(180);

fn etcd_host_config(hosts: &[String], i: usize) -> String {
    let h = &hosts[i];
    format!(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\netcd:\n  local:\n    serverCertSANs: [\"{h}\"]\n    \
         peerCertSANs: [\"{h}\"]\n    extraArgs:\n    - {{name: initial-cluster, value: \"e0=https://{}:2380,e1=https://{}:2380,e2=https://{}:2380\"}}\n    \
         - {{name: initial-cluster-state, value: new}}\n    - {{name: name, value: e{i}}}\n    \
         - {{name: listen-peer-urls, value: \"https://{h}:2380\"}}\n    - {{name: listen-client-urls, value: \"https://{h}:2379\"}}\n    \
         - {{name: advertise-client-urls, value: \"https://{h}:2379\"}}\n    - {{name: initial-advertise-peer-urls, value: \"https://{h}:2380\"}}\n",
        hosts[0], hosts[1], hosts[2]
    )
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

fn after<'a>(output: &'a str, flag: &str) -> &'a str {
    let start = output
        .find(flag)
        .unwrap_or_else(|| panic!("no {flag} in:\n{output}"))
        + flag.len();
    output[start..].split_whitespace().next().unwrap()
}

#[test]
fn guide_a_on_guide_b_external_etcd_with_key_and_hand_copied_certificates_gives_a_working_cluster() {
    let haproxy = Path::new("/usr/sbin/haproxy");
    if !haproxy.exists() {
        eprintln!("skipping: haproxy is not installed (scripts/install-deps installs it)");
        return;
    }
    // Hosts: 0-2 etcd, 3 the load balancer, 4-6 control planes, 7 a worker.
    let net = Network::new(8);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    install_personalities(&bin);
    let etcd_hosts: Vec<String> = (0..3).map(|i| net.hosts[i].ip.clone()).collect();
    let etcd_roots: Vec<_> = (0..3).map(|i| work.path().join(format!("e{i}"))).collect();
    let _etcd_containers: Vec<Containers> = etcd_roots.iter().map(|r| Containers(r.clone())).collect();

    // Guide B: kubelets as service managers, certificates made on the first etcd host, etcd static pods.
    let _kubelets: Vec<Proc> = (0..3)
        .map(|i| {
            std::fs::create_dir_all(&etcd_roots[i]).unwrap();
            let args = [
                "--address=127.0.0.1".to_string(),
                "--pod-manifest-path=/etc/kubernetes/manifests".into(),
                "--rootfs".into(),
                etcd_roots[i].display().to_string(),
            ];
            net.spawn(
                i,
                bin.join("kubelet").to_str().unwrap(),
                &args,
                &work.path().join(format!("etcd-kubelet{i}.log")),
            )
        })
        .collect();
    let kubeadm_at = |i: usize, root: &Path, args: &[&str]| {
        ok(net
            .command(i, bin.join("kubeadm"))
            .args(args)
            .arg("--rootfs")
            .arg(root)
            .output()
            .unwrap())
    };
    let pki0 = etcd_roots[0].join("etc/kubernetes/pki");
    kubeadm_at(0, &etcd_roots[0], &["init", "phase", "certs", "etcd-ca"]);
    for i in [2, 1, 0] {
        let cfg = work.path().join(format!("etcd{i}.yaml"));
        std::fs::write(&cfg, etcd_host_config(&etcd_hosts, i)).unwrap();
        let cfg_flag = format!("--config={}", cfg.display());
        for phase in [
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client",
            "apiserver-etcd-client",
        ] {
            kubeadm_at(0, &etcd_roots[0], &["init", "phase", "certs", phase, &cfg_flag]);
        }
        let pki = etcd_roots[i].join("etc/kubernetes/pki");
        if i != 0 {
            for file in files_under(&pki0) {
                if file != "etcd/ca.key" {
                    copy(&pki0.join(&file), &pki.join(&file));
                }
                if file != "etcd/ca.crt" && file != "etcd/ca.key" {
                    std::fs::remove_file(pki0.join(&file)).unwrap();
                }
            }
        }
    }
    for (i, root) in etcd_roots.iter().enumerate() {
        let cfg = format!("--config={}", work.path().join(format!("etcd{i}.yaml")).display());
        kubeadm_at(i, root, &["init", "phase", "etcd", "local", &cfg]);
    }

    // The load balancer and the Kubernetes nodes.
    let names = ["cp0", "cp1", "cp2", "w0"];
    let nodes: Vec<Node> = names
        .iter()
        .enumerate()
        .map(|(k, name)| Node::new(&net, 4 + k, name, work.path().join(name), &bin))
        .collect();
    let lb_ip = net.hosts[3].ip.clone();
    let mut cfg = String::from(
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
         frontend apiserver\n  bind *:6443\n  default_backend apiserver\n\
         backend apiserver\n  option tcp-check\n  option redispatch\n  retries 3\n  balance roundrobin\n  default-server inter 1s fall 2 rise 1\n",
    );
    for node in &nodes[..3] {
        cfg.push_str(&format!("  server {} {}:6443 check\n", node.name, node.ip()));
    }
    let cfg_path = work.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _lb = net.spawn(
        3,
        haproxy.to_str().unwrap(),
        &["-f".into(), cfg_path.display().to_string(), "-db".into()],
        &work.path().join("haproxy.log"),
    );
    let endpoint = format!("{lb_ip}:6443");

    // Guide A, external etcd: copy the etcd CA and the API server's client pair to the first control-plane node.
    let first = &nodes[0];
    let etcd_pki = etcd_roots[0].join("etc/kubernetes/pki");
    for file in [
        "etcd/ca.crt",
        "apiserver-etcd-client.crt",
        "apiserver-etcd-client.key",
    ] {
        copy(
            &etcd_pki.join(file),
            &first.path("/etc/kubernetes/pki").join(file),
        );
    }
    let endpoints: Vec<String> = etcd_hosts
        .iter()
        .map(|h| format!("      - https://{h}:2379\n"))
        .collect();
    let config = work.path().join("kubeadm-config.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: stable\n\
             controlPlaneEndpoint: \"{endpoint}\"\netcd:\n  external:\n    endpoints:\n{}    \
             caFile: /etc/kubernetes/pki/etcd/ca.crt\n    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt\n    \
             keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key\n---\n\
             apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: {}\n\
             nodeRegistration:\n  name: cp0\n",
            endpoints.concat(),
            first.ip()
        ),
    )
    .unwrap();
    let init = ok(first.kubeadm(&["init", "--config", config.to_str().unwrap(), "--upload-certs"]));
    assert!(init.contains("[etcd] External etcd mode"), "{init}");
    let token = after(&init, "--token ").to_string();
    let hash = after(&init, "--discovery-token-ca-cert-hash ").to_string();
    let key = after(&init, "--certificate-key ").to_string();

    // The second control-plane node: uploaded certificates.
    let second = &nodes[1];
    ok(second.join_control_plane(&endpoint, &token, &hash, Some(&key)));

    // The third: guide A's manual distribution. Missing files are named first.
    let third = &nodes[2];
    let join_third = || third.join_control_plane(&endpoint, &token, &hash, None);
    let err = common::fails(join_third());
    assert!(
        err.contains("missing") && err.contains("/etc/kubernetes/pki/ca.key"),
        "{err}"
    );
    let shared = [
        "ca.crt",
        "ca.key",
        "sa.key",
        "sa.pub",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "etcd/ca.crt",
        "apiserver-etcd-client.crt",
        "apiserver-etcd-client.key",
    ];
    for file in shared {
        copy(
            &first.path("/etc/kubernetes/pki").join(file),
            &third.path("/etc/kubernetes/pki").join(file),
        );
    }
    ok(join_third());

    let worker = &nodes[3];
    ok(worker.join(&endpoint, &token, &hash, &[]));

    let kubectl = kubectls().pop().unwrap();
    eventually(
        SETTLE,
        "four Ready nodes and three of each control-plane component, no etcd pod",
        || {
            let nodes_out = text(&first.kubectl(&kubectl, &["get", "nodes", "--no-headers"]).stdout);
            let ready = nodes_out
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count();
            let pods = text(
            &first
                .kubectl(
                    &kubectl,
                    &[
                        "get",
                        "pods",
                        "-n",
                        "kube-system",
                        "-o",
                        "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].ready} {end}",
                    ],
                )
                .stdout,
        );
            let count = |p: &str| {
                pods.split_whitespace()
                    .filter(|e| e.starts_with(p) && e.ends_with("=true"))
                    .count()
            };
            (ready == 4
                && count("kube-apiserver-") == 3
                && count("kube-controller-manager-") == 3
                && count("kube-scheduler-") == 3
                && count("etcd-") == 0)
                .then_some(())
        },
    );
    ok(first.kubectl(
        &kubectl,
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
    first.wait_available(&kubectl, "web", 2, SETTLE);
}
