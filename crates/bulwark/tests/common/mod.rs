//! Fixtures for the binary's scenario tests: running `bulwark`, finding real tools, hosts in network namespaces,
//! polling with a deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod faults;
pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub fn bulwark() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bulwark"))
}

/// Runs `bulwark kubeadm <args>`.
pub fn kubeadm(args: &[&str]) -> Output {
    Command::new(bulwark())
        .arg("kubeadm")
        .args(args)
        .output()
        .expect("run bulwark")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Asserts failure and returns stderr.
#[track_caller]
pub fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "command unexpectedly succeeded:\n{}",
        text(&output.stdout)
    );
    text(&output.stderr)
}

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub fn eventually<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// kubectl 1.20 extracted from Debian's package by scripts/install-deps, if present.
pub fn kubectl_1_20() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BULWARK_KUBECTL_1_20").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/bulwark/kubectl-1.20/usr/bin/kubectl")),
    ];
    candidates.into_iter().flatten().find(|p| p.exists())
}

/// The newest kubectl beside the preinstalled one (`kubectl.1.33`, ...), or the preinstalled one itself.
pub fn kubectl_newest() -> Option<PathBuf> {
    let installed = which("kubectl")?;
    let real = installed.canonicalize().ok()?;
    let dir = real.parent()?;
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let minor = name.strip_prefix("kubectl.1.")?.parse().ok()?;
            Some((minor, e.path()))
        })
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, p)| p).or(Some(real))
}

/// Every kubectl the tests should drive: 1.20 and the newest, when present.
pub fn kubectls() -> Vec<PathBuf> {
    let all: Vec<PathBuf> = [kubectl_1_20(), kubectl_newest()].into_iter().flatten().collect();
    assert!(!all.is_empty(), "no kubectl found: run scripts/install-deps");
    all
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Files below `dir` (relative paths, sorted); empty if `dir` does not exist.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = find_files(dir, &[])
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect();
    out.sort();
    out
}

/// Files below `dir` named one of `names` (every file when `names` is empty).
pub fn find_files(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(find_files(&path, names));
        } else if names.is_empty() || names.iter().any(|n| path.file_name().is_some_and(|f| f == *n)) {
            out.push(path);
        }
    }
    out
}

/// Kills every container (and its shim) a kubelet started below its root directory, when dropped.
pub use testkit::components::Containers;

static NEXT_NET: AtomicUsize = AtomicUsize::new(0);

/// Hosts in network namespaces, wired to one bridge that lives in a namespace of its own, so nothing touches the
/// machine's own network. Host `i` has address `10.<n>.0.<10+i>/24` and a default route on that link.
pub struct Network {
    prefix: String,
    pub subnet: u8,
    pub hosts: Vec<Host>,
}

pub struct Host {
    pub netns: String,
    pub ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        text(&out.stderr)
    );
}

impl Network {
    pub fn new(hosts: usize) -> Network {
        let seq = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("bw{}x{seq}", pid % 100_000);
        // A distinct /24 per network so concurrent tests never share addresses.
        let subnet = u8::try_from(100 + (pid as usize * 7 + seq * 13) % 150).unwrap_or(200);
        let switch = format!("{prefix}-sw");
        ip(&["netns", "add", &switch]);
        let mut net = Network {
            prefix: prefix.clone(),
            subnet,
            hosts: Vec::new(),
        };
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let netns = format!("{prefix}-h{i}");
            ip(&["netns", "add", &netns]);
            let host_ip = format!("10.{subnet}.0.{}", 10 + i);
            net.hosts.push(Host {
                netns: netns.clone(),
                ip: host_ip.clone(),
            });
            let (a, b) = (format!("{prefix}a{i}"), format!("{prefix}b{i}"));
            ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
            ip(&["link", "set", &a, "netns", &netns]);
            ip(&["link", "set", &b, "netns", &switch]);
            ip(&["-n", &netns, "link", "set", &a, "name", "eth0"]);
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &netns, "link", "set", "eth0", "up"]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
            ip(&["-n", &netns, "route", "add", "default", "dev", "eth0"]);
            ip(&["-n", &switch, "link", "set", &b, "master", "br0"]);
            ip(&["-n", &switch, "link", "set", &b, "up"]);
        }
        net
    }

    /// A command run inside host `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.hosts[i].netns]).arg(program);
        cmd
    }

    pub fn spawn(&self, i: usize, program: &str, args: &[String], log: &Path) -> Proc {
        let log = std::fs::File::create(log).expect("log file");
        let child = self
            .command(i, program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn in namespace");
        Proc(child)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of every veth pair, and with it the other end.
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.netns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("{}-sw", self.prefix)])
            .status();
    }
}
