//! `bulwark up` / `bulwark down`: the local HA lab on loopback addresses, seen through real kubectl with the
//! kubeconfig `up` prints, and gone without a trace after `down`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::faults::{is_alive, processes_under};
use common::{bulwark, eventually, kubectls, ok, text};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(90);

/// Runs `bulwark down` if the test stops before it did.
struct Lab(PathBuf);

impl Drop for Lab {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = Command::new(bulwark())
                .arg("down")
                .arg("--dir")
                .arg(&self.0)
                .output();
        }
    }
}

/// A prefix of 127/8 no other test run uses at the same time.
fn unique_prefix() -> String {
    format!("127.1.{}", 1 + std::process::id() % 250)
}

fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

/// Creates a 2-replica Deployment of `sleep` named `name` and waits until both replicas are available.
fn roll_out(kubectl_bin: &Path, kubeconfig: &Path, name: &str) {
    let k = |args: &[&str]| kubectl(kubectl_bin, kubeconfig, args);
    ok(k(&[
        "create",
        "deployment",
        name,
        "--image=busybox",
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]));
    eventually(SETTLE, &format!("Deployment {name} rolled out"), || {
        let jsonpath = "jsonpath={.status.availableReplicas}";
        let available = text(&k(&["get", "deployment", name, "-o", jsonpath]).stdout);
        (available.trim() == "2").then_some(())
    });
}

#[test]
fn up_as_an_unprivileged_user_brings_three_control_planes_and_a_worker_to_ready_for_real_kubectl_and_down_leaves_no_process_or_dir()
 {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = work.path().join("lab");
    let _lab = Lab(dir.clone());
    let start = Instant::now();
    let out = ok(unprivileged(work.path())
        .args(["up", "--workers", "1", "--prefix", &unique_prefix(), "--dir"])
        .arg(&dir)
        .output()
        .unwrap());
    eprintln!("bulwark up took {:.1}s:\n{out}", start.elapsed().as_secs_f64());
    let kubeconfig = dir.join("admin.conf");
    assert!(
        out.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{out}"
    );
    assert!(out.contains("[lab] 4 nodes Ready"), "{out}");

    for kubectl_bin in kubectls() {
        let k = |args: &[&str]| kubectl(&kubectl_bin, &kubeconfig, args);
        eventually(SETTLE, "four Ready nodes", || {
            let nodes = text(&k(&["get", "nodes", "--no-headers"]).stdout);
            let ready: BTreeSet<&str> = nodes
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            (ready == BTreeSet::from(["cp-1", "cp-2", "cp-3", "worker-1"])).then_some(())
        });
        eventually(SETTLE, "three kube-apiserver pods Running", || {
            let pods = text(&k(&["get", "pods", "-n", "kube-system", "--no-headers"]).stdout);
            let running = pods
                .lines()
                .filter(|l| {
                    l.starts_with("kube-apiserver-cp-") && l.split_whitespace().nth(2) == Some("Running")
                })
                .count();
            (running == 3).then_some(())
        });
    }

    let kubectl_bin = kubectls().pop().unwrap();
    roll_out(&kubectl_bin, &kubeconfig, "lab-web");

    let processes = processes_under(&dir);
    // Per node a supervisor and its kubelet, per control plane four containers with their shims, two pods on the
    // worker, and the load balancer with its supervisor.
    assert!(processes.len() >= 2 * 4 + 3 * 8 + 2 * 2 + 2, "{processes:?}");
    let out = ok(unprivileged(work.path())
        .arg("down")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap());
    assert!(out.contains("Stopped 4 kubelets"), "{out}");
    let left: Vec<u32> = processes.into_iter().filter(|p| is_alive(*p)).collect();
    assert!(left.is_empty(), "still running after down: {left:?}");
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn up_refuses_a_directory_that_is_not_a_lab_and_down_leaves_it_alone() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("notes.txt"), "mine").unwrap();
    let up = Command::new(bulwark())
        .args(["up", "--prefix", &unique_prefix(), "--dir"])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(!up.status.success());
    assert!(
        text(&up.stderr).contains("is not a lab directory"),
        "{}",
        text(&up.stderr)
    );
    let down = Command::new(bulwark())
        .arg("down")
        .arg("--dir")
        .arg(work.path())
        .output()
        .unwrap();
    assert!(!down.status.success());
    assert!(work.path().join("notes.txt").exists());
}

/// `bulwark` run as an unprivileged user: `nobody` when the test runs as root (the README promises the lab needs
/// no privilege), the test's own user otherwise. `home` becomes that user's HOME and is handed over to it.
fn unprivileged(home: &Path) -> Command {
    if !running_as_root() {
        return Command::new(bulwark());
    }
    const NOBODY: u32 = 65534;
    std::os::unix::fs::chown(home, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut command = Command::new("setpriv");
    command
        .args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "--".into(),
        ])
        .arg(bulwark())
        .env("HOME", home);
    command
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn up_single_as_an_unprivileged_user_runs_workloads_on_the_embedded_store_and_down_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = work.path().join("lab");
    let _lab = Lab(dir.clone());
    let start = Instant::now();
    let out = ok(unprivileged(work.path())
        .args(["up", "--single", "--prefix", &unique_prefix(), "--dir"])
        .arg(&dir)
        .output()
        .unwrap());
    eprintln!(
        "bulwark up --single took {:.1}s:\n{out}",
        start.elapsed().as_secs_f64()
    );
    assert!(out.contains("[lab] 1 nodes Ready"), "{out}");
    let root = dir.join("cp-1");
    assert!(root.join("var/lib/bulwark/apiserver/state.db").exists());
    assert!(!root.join("etc/kubernetes/manifests/etcd.yaml").exists());
    assert!(!root.join("etc/kubernetes/pki/etcd").exists());
    let kubeconfig = dir.join("admin.conf");

    for kubectl_bin in kubectls() {
        let k = |args: &[&str]| kubectl(&kubectl_bin, &kubeconfig, args);
        eventually(SETTLE, "three control-plane pods Running", || {
            let pods = text(&k(&["get", "pods", "-n", "kube-system", "--no-headers"]).stdout);
            let running: BTreeSet<&str> = pods
                .lines()
                .filter(|l| l.split_whitespace().nth(2) == Some("Running"))
                .filter_map(|l| l.split_whitespace().next())
                .collect();
            (running
                == BTreeSet::from([
                    "kube-apiserver-cp-1",
                    "kube-controller-manager-cp-1",
                    "kube-scheduler-cp-1",
                ]))
            .then_some(())
        });
        // No control-plane taint: the single node takes workloads.
        let taints = text(&k(&["get", "node", "cp-1", "-o", "jsonpath={.spec.taints}"]).stdout);
        assert_eq!(taints.trim(), "", "{taints}");
    }

    let kubectl_bin = kubectls().pop().unwrap();
    let k = |args: &[&str]| kubectl(&kubectl_bin, &kubeconfig, args);
    roll_out(&kubectl_bin, &kubeconfig, "single-web");

    // One control plane is all the embedded store has: another is refused, naming why, before it writes anything.
    let config = std::fs::read_to_string(root.join("kubeadm.yaml")).unwrap();
    let token = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("- token: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let endpoint = text(&k(&["config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"]).stdout);
    let other = tempfile::tempdir().unwrap();
    let refused = common::fails(
        Command::new(bulwark())
            .arg("kubeadm")
            .arg("join")
            .arg(endpoint.trim().trim_start_matches("https://"))
            .args(["--token", &token, "--discovery-token-unsafe-skip-ca-verification"])
            .args(["--control-plane", "--ignore-preflight-errors=all", "--rootfs"])
            .arg(other.path())
            .output()
            .unwrap(),
    );
    assert!(refused.contains("embedded store"), "{refused}");
    assert!(!other.path().join("etc/kubernetes/pki").exists());

    let processes = processes_under(&dir);
    // A supervisor and the kubelet, three control-plane containers and two pods, each behind its shim; no etcd.
    assert!(processes.len() >= 2 + 5 * 2, "{processes:?}");
    let out = ok(unprivileged(work.path())
        .arg("down")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap());
    assert!(out.contains("Stopped 1 kubelets,"), "{out}");
    let left: Vec<u32> = processes.into_iter().filter(|p| is_alive(*p)).collect();
    assert!(left.is_empty(), "still running after down: {left:?}");
    assert!(!dir.exists(), "{} is still there", dir.display());
}
