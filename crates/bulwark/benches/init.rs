//! `kubeadm init` to a ready control plane, and the control plane's memory at idle: one host in a network
//! namespace, bulwark as every component, Debian's etcd. Prints the time from the start of `kubeadm init` until the
//! node is Ready and all four control-plane pods are ready, and the resident memory of kubelet + kube-apiserver +
//! kube-controller-manager + kube-scheduler (etcd excluded), each against the target in the same run.
//! Run as root: `cargo bench -p bulwark --bench init`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::node::{Node, install_personalities};
use common::{Network, eventually, kubectls, ok, text};
use std::time::{Duration, Instant};

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let net = Network::new(1);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    install_personalities(&bin);
    let node = Node::new(&net, 0, "bench0", work.path().join("root"), &bin);
    let kubectl = kubectls().pop().unwrap();

    let start = Instant::now();
    ok(node.kubeadm(&[
        "init",
        "--apiserver-advertise-address",
        node.ip(),
        "--node-name",
        &node.name,
    ]));
    let init_done = start.elapsed();
    eventually(
        Duration::from_secs(120),
        "node Ready and four control-plane pods ready",
        || {
            let nodes = text(&node.kubectl(&kubectl, &["get", "nodes", "--no-headers"]).stdout);
            let pods = text(
                &node
                    .kubectl(
                        &kubectl,
                        &[
                            "get",
                            "pods",
                            "-n",
                            "kube-system",
                            "-o",
                            "jsonpath={range .items[*]}{.status.containerStatuses[0].ready} {end}",
                        ],
                    )
                    .stdout,
            );
            (nodes.contains(" Ready ") && pods.split_whitespace().filter(|r| *r == "true").count() == 4)
                .then_some(())
        },
    );
    let ready = start.elapsed();
    // Idle: let start-up work settle before reading memory.
    std::thread::sleep(Duration::from_secs(10));
    let mut total = 0;
    for p in node.processes() {
        let (pid, cmd) = p.split_once(": ").unwrap();
        let counted = [
            "kubelet",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ]
        .iter()
        .any(|c| cmd.split_whitespace().take(2).any(|w| w.ends_with(c)));
        if counted {
            total += rss_kib(pid);
        }
    }
    let mib = total as f64 / 1024.0;
    println!(
        "kubeadm init returned after      {:>8.2} s",
        init_done.as_secs_f64()
    );
    println!(
        "node and control plane ready     {:>8.2} s  ({:.2} of the 10 s target)",
        ready.as_secs_f64(),
        ready.as_secs_f64() / 10.0
    );
    println!(
        "control plane RSS at idle        {mib:>8.1} MiB ({:.2} of the 150 MiB target; etcd excluded)",
        mib / 150.0
    );
}
