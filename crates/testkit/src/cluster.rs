//! A real API server for tests: the `bulwark` binary run as `kube-apiserver` on a free loopback port, kubeadm's
//! certificates and admin kubeconfig ([`Pki`], [`ApiServer`]), real kubectl binaries ([`Kubectl`],
//! [`kubectl_1_20`], [`kubectl_newest`]), curl for raw requests, streaming child output.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;

/// The `bulwark` binary of this build, built once if the test run did not build it.
pub fn bulwark() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/<profile>/deps/<test> -> target/<profile>/bulwark
            let profile_dir = exe
                .parent()
                .and_then(Path::parent)
                .ok_or("no target directory")?
                .to_path_buf();
            let mut build = Command::new(env!("CARGO"));
            build.arg("build");
            // What cargo sets for the test itself must not reach the nested build: build scripts (ring's) track
            // CARGO_MANIFEST_DIR, and a value that differs from a plain `cargo test` rebuilds half the workspace
            // on every run, in both directions.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key == "OUT_DIR"
                    || key == "CARGO_MANIFEST_DIR"
                    || key == "CARGO_MANIFEST_PATH"
                    || key == "CARGO_CRATE_NAME"
                    || key == "CARGO_BIN_NAME"
                    || key == "CARGO_PRIMARY_PACKAGE"
                    || key == "CARGO_TARGET_TMPDIR"
                    || key.starts_with("CARGO_PKG_")
                    || key.starts_with("CARGO_BIN_EXE_")
                {
                    build.env_remove(key.as_ref());
                }
            }
            // Benchmarks run from target/release and want the optimised server.
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            let status = build
                .args(["-q", "-p", "bulwark"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env(
                    "CARGO_TARGET_DIR",
                    profile_dir.parent().ok_or("no target directory")?,
                )
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cargo build -p bulwark failed".into());
            }
            let bin = profile_dir.join("bulwark");
            if bin.exists() {
                Ok(bin)
            } else {
                Err(format!("{} not found", bin.display()))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
pub fn eventually<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(300));
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// kubeadm's PKI and an admin kubeconfig for `127.0.0.1:<port>`, plus the admin client pair as files for curl.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Pki {
    pub fn new(port: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new(bulwark()?).arg("kubeadm").args(args).output()?;
            if !out.status.success() {
                bail!("bulwark kubeadm {args:?}: {}", text(&out.stderr));
            }
            Ok(())
        };
        let root_s = root.to_string_lossy().into_owned();
        run(&[
            "init",
            "phase",
            "certs",
            "all",
            "--rootfs",
            &root_s,
            "--apiserver-advertise-address",
            "127.0.0.1",
        ])?;
        let endpoint = format!("127.0.0.1:{port}");
        run(&[
            "init",
            "phase",
            "kubeconfig",
            "admin",
            "--rootfs",
            &root_s,
            "--apiserver-advertise-address",
            "127.0.0.1",
            "--control-plane-endpoint",
            &endpoint,
        ])?;
        let pki = Self { dir, port };
        let conf: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(pki.kubeconfig())?)?;
        let user = &conf["users"][0]["user"];
        for (field, file) in [
            ("client-certificate-data", "admin.crt"),
            ("client-key-data", "admin.key"),
        ] {
            let data = user[field]
                .as_str()
                .context("admin.conf without embedded client certificate")?;
            let der = base64::engine::general_purpose::STANDARD.decode(data)?;
            std::fs::write(pki.dir.path().join(file), der)?;
        }
        Ok(pki)
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("root/etc/kubernetes/pki")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("root/etc/kubernetes/admin.conf")
    }
}

/// The quickest real cluster API: fresh PKI and one API server on the embedded store, on a free loopback port.
/// Fields drop in declaration order: the server stops before its directory goes.
pub struct SingleServer {
    pub server: ApiServer,
    pub pki: Pki,
}

impl SingleServer {
    pub fn start() -> Result<Self> {
        Self::start_with(|_| Vec::new())
    }

    /// [`SingleServer::start`] with more flags, made from the PKI (its directory, certificates).
    pub fn start_with(extra: impl FnOnce(&Pki) -> Vec<String>) -> Result<Self> {
        let port = free_port()?;
        let pki = Pki::new(port)?;
        let mut flags = vec![format!(
            "--storage-dir={}",
            pki.dir.path().join("store").display()
        )];
        flags.extend(extra(&pki));
        let server = ApiServer::start(&pki, port, &flags)?;
        Ok(Self { server, pki })
    }

    /// With `--kubelet-client-certificate` and `--kubelet-client-key`, as kubeadm configures the server, so that
    /// `kubectl logs` reaches kubelets.
    pub fn start_for_kubelets() -> Result<Self> {
        Self::start_with(|pki| {
            let dir = pki.pki_dir();
            vec![
                format!(
                    "--kubelet-client-certificate={}",
                    dir.join("apiserver-kubelet-client.crt").display()
                ),
                format!(
                    "--kubelet-client-key={}",
                    dir.join("apiserver-kubelet-client.key").display()
                ),
            ]
        })
    }

    /// The admin kubeconfig (user `kubernetes-admin`, group `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.pki.kubeconfig()
    }

    pub fn kubectl(&self, bin: PathBuf) -> Kubectl {
        Kubectl {
            bin,
            kubeconfig: self.kubeconfig(),
        }
    }
}

/// A running `bulwark kube-apiserver`, killed on drop.
pub struct ApiServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiServer {
    /// Starts a server with `pki`'s certificates on `port`, with `storage` flags (`--etcd-servers=...` or
    /// `--storage-dir=...`), and waits until `/readyz` passes.
    pub fn start(pki: &Pki, port: u16, storage: &[String]) -> Result<Self> {
        let p = pki.pki_dir();
        let f = |name: &str| p.join(name).to_string_lossy().into_owned();
        let log = pki.dir.path().join(format!("apiserver-{port}.log"));
        // `storage` may name another advertised address (several servers of one cluster on one host).
        let advertise = storage
            .iter()
            .find(|a| a.starts_with("--advertise-address="))
            .cloned()
            .unwrap_or_else(|| "--advertise-address=127.0.0.1".to_string());
        // And bind its own address, so that the advertised addresses are where clients reach the servers.
        let bind = storage
            .iter()
            .find(|a| a.starts_with("--bind-address="))
            .cloned()
            .unwrap_or_else(|| "--bind-address=127.0.0.1".to_string());
        let bind_ip = bind.trim_start_matches("--bind-address=").to_string();
        let storage: Vec<&String> = storage
            .iter()
            .filter(|a| **a != advertise && **a != bind)
            .collect();
        let child = Command::new(bulwark()?)
            .arg("kube-apiserver")
            .args([
                bind,
                advertise,
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", f("apiserver.crt")),
                format!("--tls-private-key-file={}", f("apiserver.key")),
                format!("--client-ca-file={}", f("ca.crt")),
                "--service-cluster-ip-range=10.96.0.0/12".to_string(),
                "--allow-privileged=true".to_string(),
                "--enable-admission-plugins=NodeRestriction".to_string(),
                "--authorization-mode=Node,RBAC".to_string(),
                "--enable-bootstrap-token-auth=true".to_string(),
                format!("--service-account-key-file={}", f("sa.pub")),
                format!("--service-account-signing-key-file={}", f("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            ])
            .args(storage)
            .env("BULWARK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let mut server = Self { child, port, log };
        let ready = eventually(Duration::from_secs(30), "kube-apiserver /readyz", || {
            if let Ok(Some(_)) = server.child.try_wait() {
                return Some(false);
            }
            let out = curl(
                pki,
                port,
                &["/readyz", "--connect-to", &connect_to(port, &bind_ip)],
            )
            .ok()?;
            (out.0 == 200).then_some(true)
        });
        match ready {
            Ok(true) => Ok(server),
            _ => bail!("kube-apiserver did not become ready:\n{}", server.log_tail()),
        }
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, as a clean shutdown, and waits for the process to exit.
    pub fn terminate(&mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

/// curl's `--connect-to` value that sends [`curl`]'s requests for `127.0.0.1:<port>` to `<ip>:<port>`: a server bound
/// to another loopback address, verified under the name its certificate has.
pub fn connect_to(port: u16, ip: &str) -> String {
    format!("127.0.0.1:{port}:{ip}:{port}")
}

/// A raw HTTPS request as the admin user: `(status, body)`. `args` are extra curl arguments, the first the path.
pub fn curl(pki: &Pki, port: u16, args: &[&str]) -> Result<(u16, String)> {
    let (path, rest) = args.split_first().context("no path")?;
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
        ])
        .arg("--cacert")
        .arg(pki.pki_dir().join("ca.crt"))
        .arg("--cert")
        .arg(pki.dir.path().join("admin.crt"))
        .arg("--key")
        .arg(pki.dir.path().join("admin.key"))
        .args(rest)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()?;
    let s = text(&out.stdout);
    let (body, code) = s.rsplit_once('\n').unwrap_or(("", s.as_str()));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
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

/// The newest kubectl: `kubectl.1.NN` beside the preinstalled kubectl's target, or that kubectl itself.
pub fn kubectl_newest() -> Option<PathBuf> {
    let installed = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.exists())
    })?;
    let target = std::fs::canonicalize(&installed).unwrap_or(installed);
    let dir = target.parent()?.to_path_buf();
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(&dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(minor) = name
            .strip_prefix("kubectl.1.")
            .and_then(|m| m.parse::<u32>().ok())
            && best.as_ref().is_none_or(|(b, _)| minor > *b)
        {
            best = Some((minor, entry.path()));
        }
    }
    Some(best.map(|(_, p)| p).unwrap_or(target))
}

/// Runs kubectl against `pki`'s cluster.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.kubeconfig.parent().unwrap_or(Path::new("/tmp")))
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.cmd(args).output()?)
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed: {}\n{}",
                text(&out.stderr),
                text(&out.stdout)
            );
        }
        Ok(text(&out.stdout))
    }

    /// `<args> -o json` parsed, or `None` if kubectl failed (NotFound, say).
    pub fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.run(&a).ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The `items` of a list `get`, empty if kubectl failed.
    pub fn items(&self, args: &[&str]) -> Vec<serde_json::Value> {
        self.json(args)
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Pods matching `selector` in `ns` that are not being deleted.
    pub fn live_pods(&self, ns: &str, selector: &str) -> Vec<serde_json::Value> {
        self.items(&["get", "pods", "-n", ns, "-l", selector])
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect()
    }

    /// Runs with stdin, whatever the outcome.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Result<Output> {
        use std::io::Write;
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Runs with stdin and requires success; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> Result<String> {
        let out = self.run_stdin(args, input)?;
        if !out.status.success() {
            bail!("kubectl {args:?} failed: {}", text(&out.stderr));
        }
        Ok(text(&out.stdout))
    }
}

/// Whether a pod (as JSON) has the condition Ready=True.
pub fn pod_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// `metadata.name` of an object as JSON.
pub fn name_of(v: &serde_json::Value) -> String {
    v["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
pub struct Streaming {
    child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Streaming {
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines: rx })
    }

    /// Waits for a line containing all of `needles`.
    pub fn wait_for(&self, needles: &[&str], deadline: Duration) -> Result<String> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if needles.iter().all(|n| line.contains(n)) => return Ok(line),
                Ok(_) => continue,
                Err(_) => bail!("no line with {needles:?} within {deadline:?}"),
            }
        }
    }
}
