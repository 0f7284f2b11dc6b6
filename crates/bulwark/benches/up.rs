//! `bulwark up` to 3 control-plane nodes + 3 workers all Ready, against the 30 s target: runs the real
//! command (`bulwark up --workers 3`) on loopback addresses, checks with the lab's kubeconfig that six nodes are
//! Ready, prints the time and the ratio, then `bulwark down`; then the same for `bulwark up --single` (one node on
//! the embedded store), as a ratio to the HA lab. In the HA lab it also kills every process of one control-plane
//! node while a client writes through the load balancer, and prints the longest time without an acknowledged write
//! (target under 2 s) and how many acknowledged writes were lost (must be 0). Needs no root.
//! Run: `cargo bench -p bulwark --bench up` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/faults.rs"]
mod faults;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

const TARGET_SECS: f64 = 30.0;
const UNAVAILABLE_SECS: f64 = 2.0;

fn bulwark() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bulwark"))
}

/// Runs `bulwark up ARGS` in a fresh lab, checks that `nodes` nodes are Ready, runs `then` on the lab's directory,
/// tears it down; returns the seconds `up` took and its `[lab]` lines.
fn up(args: &[&str], nodes: usize, then: impl FnOnce(&Path)) -> (f64, Vec<String>) {
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
    if up.status.success() {
        then(&dir);
    }
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

/// Kills every process of control-plane node cp-1 while a client writes through the load balancer; returns the
/// longest time the client went without an acknowledged write, and how many acknowledged writes were lost.
fn unavailability_on_loss(dir: &Path) -> (Duration, usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt
        .block_on(client::from_kubeconfig(&dir.join("admin.conf")))
        .unwrap();
    let stop = CancellationToken::new();
    let writer = rt.spawn(faults::write_until(client.clone(), "default", "w", stop.clone()));
    std::thread::sleep(Duration::from_secs(3));
    let killed = Instant::now();
    faults::signal(&faults::processes_under(&dir.join("cp-1")), Signal::SIGKILL);
    std::thread::sleep(Duration::from_secs(8));
    stop.cancel();
    let writes = rt.block_on(writer).unwrap();
    let stored = rt
        .block_on(faults::configmap_names(client, "default"))
        .unwrap_or_default();
    let lost = writes.acked.iter().filter(|(n, _)| !stored.contains(n)).count();
    (writes.longest_gap_after(killed), lost)
}

fn main() {
    let mut loss = None;
    let (took, lines) = up(&["--workers", "3"], 6, |dir| {
        loss = Some(unavailability_on_loss(dir))
    });
    for line in lines {
        println!("{line}");
    }
    println!(
        "bulwark up to 3 control planes + 3 workers Ready {took:>7.2} s  ({:.2} of the {TARGET_SECS} s target)",
        took / TARGET_SECS
    );
    if let Some((gap, lost)) = loss {
        println!(
            "writes unavailable on losing cp-1     {:>7.2} s  ({:.2} of the {UNAVAILABLE_SECS} s target; {lost} acknowledged writes lost)",
            gap.as_secs_f64(),
            gap.as_secs_f64() / UNAVAILABLE_SECS
        );
    }
    let (single, _) = up(&["--single"], 1, |_| {});
    println!(
        "bulwark up --single to its node Ready          {single:>7.2} s  ({:.2} of the HA lab's time)",
        single / took
    );
}
