//! The kubelet personality with static pods only (no API server): real host processes under shims, CRI logs,
//! restarts with back-off, adoption across kubelet restarts, and bad manifests skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{Containers, Proc, eventually, find_files as find, text};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A node root with a manifest directory, and a kubelet on it.
struct Node {
    // Dropped first: the containers go before their root directory.
    _containers: Containers,
    root: tempfile::TempDir,
    name: String,
}

impl Node {
    fn new() -> Node {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/kubernetes/manifests")).unwrap();
        Node {
            _containers: Containers(root.path().to_path_buf()),
            root,
            name: format!("node-{}", NEXT.fetch_add(1, Ordering::SeqCst)),
        }
    }

    fn manifests(&self) -> PathBuf {
        self.root.path().join("etc/kubernetes/manifests")
    }

    fn kubelet(&self) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("kubelet.log"))
            .unwrap();
        Proc(
            Command::new(common::bulwark())
                .args([
                    "kubelet",
                    "--pod-manifest-path=/etc/kubernetes/manifests",
                    "--address=127.0.0.1",
                ])
                .args([
                    "--rootfs",
                    self.root.path().to_str().unwrap(),
                    "--hostname-override",
                    &self.name,
                ])
                .env("BULWARK_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn state_root(&self) -> PathBuf {
        self.root.path().join("var/lib/kubelet/bulwark/containers")
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

fn sleeper(name: &str, marker: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: kube-system}}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    command: [sh, -c, 'echo started $(WHO); exec sleep {marker}']\n    env: [{{name: WHO, value: {name}}}]\n"
    )
}

fn unique_marker() -> String {
    format!(
        "3{}{:03}.5",
        std::process::id() % 10000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn one_pid(marker: &str) -> i32 {
    eventually(
        Duration::from_secs(20),
        &format!("one process running {marker}"),
        || {
            let p = pids(marker);
            (p.len() == 1).then(|| p[0])
        },
    )
}

#[test]
fn a_static_pod_runs_logs_in_cri_format_and_is_restarted_when_killed() {
    let node = Node::new();
    let marker = unique_marker();
    std::fs::write(node.manifests().join("sleeper.yaml"), sleeper("sleeper", &marker)).unwrap();
    let _kubelet = node.kubelet();
    let first = one_pid(&marker);
    let log_dir = node.root.path().join("var/log/pods");
    let log = eventually(Duration::from_secs(10), "the container's log", || {
        find(&log_dir, &["0.log"])
            .into_iter()
            .next()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .filter(|t| !t.is_empty())
    });
    let line = log.lines().next().unwrap();
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert!(fields[0].ends_with('Z') && fields[0].contains('T'), "{line}");
    assert_eq!(&fields[1..], ["stdout", "F", "started sleeper"], "{line}");
    assert!(
        find(&log_dir, &["0.log"])[0]
            .display()
            .to_string()
            .contains(&format!("kube-system_sleeper-{}_", node.name))
    );

    Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    let second = eventually(Duration::from_secs(20), "a new process after the kill", || {
        let p = pids(&marker);
        (p.len() == 1 && p[0] != first).then(|| p[0])
    });
    assert_ne!(first, second);
    assert!(
        !find(&log_dir, &["1.log"]).is_empty(),
        "the restart logs to 1.log"
    );
}

#[test]
fn a_restarted_kubelet_adopts_its_pods_and_runs_each_once() {
    let node = Node::new();
    let marker = unique_marker();
    std::fs::write(node.manifests().join("sleeper.yaml"), sleeper("adopted", &marker)).unwrap();
    let kubelet = node.kubelet();
    let pid = one_pid(&marker);
    // SIGKILL: no chance to clean up.
    drop(kubelet);
    assert_eq!(pids(&marker), [pid], "the pod outlives its kubelet");
    let _kubelet = node.kubelet();
    // Several sync periods later, still the same single process.
    eventually(Duration::from_secs(10), "the new kubelet's lock", || {
        let log = std::fs::read_to_string(node.root.path().join("kubelet.log")).unwrap_or_default();
        (log.matches("kubelet").count() > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(2500)); // let the new kubelet run a few passes: nothing may change
    assert_eq!(pids(&marker), [pid]);
}

#[test]
fn an_invalid_manifest_is_reported_and_skipped_while_the_others_run() {
    let node = Node::new();
    let marker = unique_marker();
    std::fs::write(node.manifests().join("good.yaml"), sleeper("good", &marker)).unwrap();
    std::fs::write(
        node.manifests().join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [}\n",
    )
    .unwrap();
    let _kubelet = node.kubelet();
    one_pid(&marker);
    let log = eventually(Duration::from_secs(10), "the bad manifest to be reported", || {
        let log = std::fs::read_to_string(node.root.path().join("kubelet.log")).unwrap_or_default();
        log.contains("bad.yaml").then_some(log)
    });
    assert!(log.contains("skipping static pod manifest"), "{log}");
}

#[test]
fn removing_a_manifest_stops_its_pod_and_cleans_its_state() {
    let node = Node::new();
    let marker = unique_marker();
    let manifest = node.manifests().join("sleeper.yaml");
    std::fs::write(&manifest, sleeper("removed", &marker)).unwrap();
    let _kubelet = node.kubelet();
    one_pid(&marker);
    std::fs::remove_file(&manifest).unwrap();
    eventually(Duration::from_secs(20), "the pod to stop", || {
        pids(&marker).is_empty().then_some(())
    });
    eventually(Duration::from_secs(10), "the runtime state to go", || {
        find(&node.state_root(), &["spec.json"]).is_empty().then_some(())
    });
}

#[test]
fn a_second_kubelet_on_the_same_root_is_refused() {
    let node = Node::new();
    let mut first = node.kubelet();
    eventually(Duration::from_secs(10), "the first kubelet's lock", || {
        node.root
            .path()
            .join("var/lib/kubelet/kubelet.lock")
            .exists()
            .then_some(())
    });
    let second = Command::new(common::bulwark())
        .args(["kubelet", "--pod-manifest-path=/etc/kubernetes/manifests"])
        .args(["--rootfs", node.root.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains("another kubelet is already running"),
        "{}",
        text(&second.stderr)
    );
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first kubelet keeps running"
    );
}
