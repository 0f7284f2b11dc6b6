//! `bulwark up` to 3 control-plane nodes + 3 workers all Ready, against the 30 s target: runs the real
//! command (`bulwark up --workers 3`) on loopback addresses, checks with the lab's kubeconfig that six nodes are
//! Ready, prints the time and the ratio, then `bulwark down`; then the same for `bulwark up --single` (one node on
//! the embedded store), as a ratio to the HA lab. Needs no root.
//! Run: `cargo bench -p bulwark --bench up` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const TARGET_SECS: f64 = 30.0;

fn bulwark() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bulwark"))
}

/// Runs `bulwark up ARGS` in a fresh lab, checks that `nodes` nodes are Ready, tears it down; returns the seconds
/// `up` took and its `[lab]` lines.
fn up(args: &[&str], nodes: usize) -> (f64, Vec<String>) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lab");
    let prefix = format!("127.2.{}", 1 + std::process::id() % 250);
    let start = Instant::now();
    let up = Command::new(bulwark())
        .arg("up")
        .args(args)
        .args(["--prefix", &prefix, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    let listed = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("admin.conf"))
        .args(["get", "nodes", "--no-headers"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let down = Command::new(bulwark())
        .arg("down")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "bulwark up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(stdout.contains(&format!("[lab] {nodes} nodes Ready")), "{stdout}");
    if !listed.is_empty() {
        let ready = listed
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        assert_eq!(ready, nodes, "{listed}");
    }
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let lines = stdout
        .lines()
        .filter(|l| l.starts_with("[lab]"))
        .map(String::from)
        .collect();
    (took, lines)
}

fn main() {
    let (took, lines) = up(&["--workers", "3"], 6);
    for line in lines {
        println!("{line}");
    }
    println!(
        "bulwark up to 3 control planes + 3 workers Ready {took:>7.2} s  ({:.2} of the {TARGET_SECS} s target)",
        took / TARGET_SECS
    );
    let (single, _) = up(&["--single"], 1);
    println!(
        "bulwark up --single to its node Ready          {single:>7.2} s  ({:.2} of the HA lab's time)",
        single / took
    );
}
