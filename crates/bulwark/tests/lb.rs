#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Guide A's load balancer in front of two real API servers on one etcd, driven by real kubectl (1.20 and the
//! newest) through it: the real `bulwark lb` binary, and the real HAProxy with the configuration of
//! `docs/haproxy.md`. Killing one API server keeps kubectl working through the balancer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{Proc, eventually, kubectls, text};
use serde_json::Value;
use testkit::cluster::{ApiServer, Kubectl, Pki, free_port};

const DEADLINE: Duration = Duration::from_secs(60);

/// Two API servers on one etcd, with kubeadm's PKI and an admin kubeconfig that points at the balancer's port.
/// Fields drop in order: servers, then etcd, then the directories.
struct TwoServers {
    a: Option<ApiServer>,
    b: ApiServer,
    _etcd: testkit::EtcdCluster,
    _rt: tokio::runtime::Runtime,
    pki: Pki,
    lb_port: u16,
}

impl TwoServers {
    fn start() -> Result<Self> {
        let rt = tokio::runtime::Runtime::new()?;
        let etcd = rt.block_on(testkit::EtcdCluster::start_single())?;
        let storage = [format!("--etcd-servers={}", etcd.endpoints().join(","))];
        let lb_port = free_port()?;
        // The API servers' certificates name 127.0.0.1, so kubectl verifies them through the balancer too.
        let pki = Pki::new(lb_port)?;
        let a = ApiServer::start(&pki, free_port()?, &storage)?;
        let b = ApiServer::start(&pki, free_port()?, &storage)?;
        Ok(Self {
            a: Some(a),
            b,
            _etcd: etcd,
            _rt: rt,
            pki,
            lb_port,
        })
    }

    fn a_port(&self) -> u16 {
        self.a.as_ref().map(|a| a.port).unwrap_or_default()
    }

    fn kill_a(&mut self) {
        // Dropping kills the process and reaps it, so its port refuses from here on.
        self.a = None;
    }

    fn kubectls(&self) -> Vec<Kubectl> {
        kubectls()
            .into_iter()
            .map(|bin| Kubectl {
                bin,
                kubeconfig: self.pki.kubeconfig(),
            })
            .collect()
    }

    fn dir(&self) -> &Path {
        self.pki.dir.path()
    }
}

/// Lists, creates and reads back a ConfigMap through the balancer with every kubectl.
fn drive_kubectl(servers: &TwoServers, tag: &str) -> Result<()> {
    for (i, kubectl) in servers.kubectls().iter().enumerate() {
        let name = format!("{tag}-{i}");
        let namespaces = kubectl.ok(&["get", "namespaces", "-o", "name", "--request-timeout=20s"])?;
        ensure!(namespaces.contains("namespace/default"), "{namespaces}");
        kubectl.ok(&["create", "configmap", &name, "--from-literal=via=lb"])?;
        let got = kubectl.ok(&["get", "configmap", &name, "-o", "jsonpath={.data.via}"])?;
        ensure!(got == "lb", "{name}: {got}");
    }
    Ok(())
}

fn http(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .ok()?;
    out.status.success().then(|| text(&out.stdout))
}

fn log_tail(path: &Path) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let file = std::fs::File::create(log)?;
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()?)
}

/// The backend named `port` in `bulwark lb`'s `/status`.
fn backend(status: &Value, port: u16) -> Option<&Value> {
    status["backends"].as_array()?.iter().find(|b| {
        b["address"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!(":{port}")))
    })
}

#[test]
fn bulwark_lb_keeps_kubectl_working_when_one_api_server_is_killed() -> Result<()> {
    let mut servers = TwoServers::start()?;
    let (a, b) = (servers.a_port(), servers.b.port);
    let status_port = free_port()?;
    let log = servers.dir().join("lb.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulwark"));
    cmd.args(["lb", "--bind"])
        .arg(format!("127.0.0.1:{}", servers.lb_port))
        .arg(format!("--backend=127.0.0.1:{a},127.0.0.1:{b}"))
        .args([
            "--check",
            "https",
            "--interval",
            "200ms",
            "--fall",
            "2",
            "--rise",
            "2",
        ])
        .arg(format!("--status-bind=127.0.0.1:{status_port}"))
        .env("BULWARK_LOG", "info,lb=debug");
    let mut lb = Proc(spawn_logged(cmd, &log)?);
    let status_url = format!("http://127.0.0.1:{status_port}/status");
    let status = || -> Option<Value> { serde_json::from_str(&http(&status_url)?).ok() };

    // Both API servers pass the HTTPS /readyz check (anonymous, self-signed as far as the balancer cares).
    eventually(DEADLINE, "both API servers checked and healthy", || {
        let s = status()?;
        [a, b]
            .iter()
            .all(|p| {
                backend(&s, *p).is_some_and(|b| {
                    b["healthy"] == true && b["checks"].as_u64() >= Some(2) && b["last_check_error"].is_null()
                })
            })
            .then_some(())
    });
    drive_kubectl(&servers, "before").with_context(|| log_tail(&log))?;
    let s = status().context("status")?;
    for port in [a, b] {
        let total = backend(&s, port).and_then(|b| b["total_connections"].as_u64());
        ensure!(total > Some(0), "no connection went to :{port}: {s:#}");
    }
    assert_eq!(
        http(&format!("http://127.0.0.1:{status_port}/healthz")).as_deref(),
        Some("ok")
    );

    servers.kill_a();
    // Before the checks notice, a refused connect already moves kubectl on to the other server.
    drive_kubectl(&servers, "just-killed").with_context(|| log_tail(&log))?;
    let down = eventually(DEADLINE, "the killed API server marked down", || {
        let s = status()?;
        let b = backend(&s, a)?;
        (b["healthy"] == false).then(|| b.clone())
    });
    ensure!(
        down["last_check_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{down:#}"
    );
    let before = backend(&status().context("status")?, b)
        .and_then(|s| s["total_connections"].as_u64())
        .unwrap_or_default();
    drive_kubectl(&servers, "after").with_context(|| log_tail(&log))?;
    let s = status().context("status")?;
    let after = backend(&s, b)
        .and_then(|s| s["total_connections"].as_u64())
        .unwrap_or_default();
    ensure!(after > before, "the surviving server got no connections: {s:#}");
    assert_eq!(s["healthy_backends"], 1, "{s:#}");

    // SIGTERM is a clean shutdown.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(lb.0.id())?),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let exit = eventually(DEADLINE, "bulwark lb to exit on SIGTERM", || {
        lb.0.try_wait().ok().flatten()
    });
    ensure!(exit.success(), "{exit}: {}", log_tail(&log));
    Ok(())
}

/// The status of server `name` in HAProxy's CSV statistics (`UP`, `DOWN`, `UP 1/2`, ...).
fn haproxy_state(csv: &str, name: &str) -> Option<String> {
    let header = csv.lines().next()?;
    let column = header
        .trim_start_matches("# ")
        .split(',')
        .position(|c| c == "status")?;
    csv.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"kube-apiserver") && f.get(1) == Some(&name))
        .and_then(|f| f.get(column).map(|s| s.to_string()))
}

/// `docs/haproxy.md`'s configuration for two local API servers: the documented block with only the addresses
/// changed (and shorter check intervals), so the test fails if the documentation stops working.
fn haproxy_config(lb_port: u16, stats_port: u16, a: u16, b: u16) -> Result<String> {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/haproxy.md");
    let doc = std::fs::read_to_string(&doc).with_context(|| doc.display().to_string())?;
    let block = doc
        .split("```haproxy\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("no ```haproxy block in docs/haproxy.md")?;
    let mut cfg = block.to_string();
    for (from, to) in [
        ("bind *:6443", format!("bind 127.0.0.1:{lb_port}")),
        ("bind 127.0.0.1:8404", format!("bind 127.0.0.1:{stats_port}")),
        ("10.0.0.10:6443", format!("127.0.0.1:{a}")),
        ("10.0.0.11:6443", format!("127.0.0.1:{b}")),
        ("inter 2s", "inter 300ms".to_string()),
    ] {
        if !cfg.contains(from) {
            bail!("docs/haproxy.md no longer has {from:?}");
        }
        cfg = cfg.replace(from, &to);
    }
    let cfg: Vec<&str> = cfg.lines().filter(|l| !l.contains("10.0.0.12:6443")).collect();
    Ok(cfg.join("\n") + "\n")
}

#[test]
fn haproxy_keeps_kubectl_working_when_one_api_server_is_killed() -> Result<()> {
    let haproxy = Path::new("/usr/sbin/haproxy");
    if !haproxy.exists() {
        eprintln!("skipped: /usr/sbin/haproxy is not installed (Debian package haproxy)");
        return Ok(());
    }
    let mut servers = TwoServers::start()?;
    let (a, b) = (servers.a_port(), servers.b.port);
    let stats_port = free_port()?;
    let cfg_path = servers.dir().join("haproxy.cfg");
    std::fs::write(&cfg_path, haproxy_config(servers.lb_port, stats_port, a, b)?)?;
    let check = Command::new(haproxy)
        .arg("-c")
        .arg("-f")
        .arg(&cfg_path)
        .output()?;
    ensure!(
        check.status.success(),
        "haproxy -c: {}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let log = servers.dir().join("haproxy.log");
    let mut cmd = Command::new(haproxy);
    cmd.arg("-f").arg(&cfg_path).arg("-db");
    let _haproxy = Proc(spawn_logged(cmd, &log)?);
    let stats_url = format!("http://127.0.0.1:{stats_port}/stats;csv");

    eventually(DEADLINE, "HAProxy reports both API servers UP", || {
        let csv = http(&stats_url)?;
        ["cp1", "cp2"]
            .iter()
            .all(|s| haproxy_state(&csv, s).as_deref() == Some("UP"))
            .then_some(())
    });
    drive_kubectl(&servers, "haproxy-before").with_context(|| log_tail(&log))?;

    servers.kill_a();
    eventually(DEADLINE, "HAProxy marks the killed API server DOWN", || {
        let csv = http(&stats_url)?;
        haproxy_state(&csv, "cp1")
            .is_some_and(|s| s.starts_with("DOWN"))
            .then_some(())
    });
    drive_kubectl(&servers, "haproxy-after").with_context(|| log_tail(&log))?;
    let csv = http(&stats_url).context("stats")?;
    assert_eq!(haproxy_state(&csv, "cp2").as_deref(), Some("UP"), "{csv}");
    Ok(())
}
