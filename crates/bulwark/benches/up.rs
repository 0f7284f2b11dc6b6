//! `bulwark up` to 3 control-plane nodes + 3 workers all Ready, against the 30 s target: runs the real
//! command (`bulwark up --workers 3`) on loopback addresses, checks with the lab's kubeconfig that six nodes are
//! Ready, prints the time and the ratio, then `bulwark down`. Needs no root.
//! Run: `cargo bench -p bulwark --bench up` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const TARGET_SECS: f64 = 30.0;

fn bulwark() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bulwark"))
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lab");
    let prefix = format!("127.2.{}", 1 + std::process::id() % 250);
    let start = Instant::now();
    let up = Command::new(bulwark())
        .args(["up", "--workers", "3", "--prefix", &prefix, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let took = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    let nodes = Command::new("kubectl")
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
    assert!(stdout.contains("[lab] 6 nodes Ready"), "{stdout}");
    if !nodes.is_empty() {
        let ready = nodes
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        assert_eq!(ready, 6, "{nodes}");
    }
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    for line in stdout.lines().filter(|l| l.starts_with("[lab]")) {
        println!("{line}");
    }
    println!(
        "bulwark up to 3 control planes + 3 workers Ready {took:>7.2} s  ({:.2} of the {TARGET_SECS} s target)",
        took / TARGET_SECS
    );
}
