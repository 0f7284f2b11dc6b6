//! The processes a real cluster runs beside its API server ([`crate::cluster::SingleServer`]), for scenario tests:
//! `bulwark kube-controller-manager` ([`controller_manager`]), `bulwark kube-scheduler` ([`scheduler`]) and nodes
//! ([`KubeletNode`]: a `bulwark kubelet` on a root directory of its own, a loopback address of its own and, if asked,
//! a loopback pod CIDR, authenticated as `system:node:<name>`). Everything is killed on drop, containers included
//! ([`Containers`]): containers outlive kubelets by design, so tests stop their own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::cluster::{Pki, SingleServer, bulwark, free_port};

/// A child process with its log file, SIGKILLed and reaped on drop.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// Starts `bulwark <personality> <args>` with its stdout and stderr appended to `log`.
    pub fn spawn(personality: &str, args: &[String], log: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("{}", log.display()))?;
        let child = Command::new(bulwark()?)
            .arg(personality)
            .args(args)
            .env("BULWARK_LOG", "info,kube_client=warn,kube_runtime=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, each cut to 400 characters, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| l.chars().take(400).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `sig` (`TERM`, `KILL`, ...) without waiting.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{sig} {} failed", self.child.id());
        }
        Ok(())
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// `bulwark kube-controller-manager` against `server` with the flags kubeadm's manifest passes (the certificate and
/// token controllers refuse to start without them), every controller, no serving port, and `extra`.
pub fn controller_manager(server: &SingleServer, name: &str, extra: &[&str]) -> Result<Process> {
    let pki = server.pki.pki_dir();
    let file = |flag: &str, f: &str| format!("--{flag}={}", pki.join(f).display());
    let mut args = vec![
        format!("--kubeconfig={}", server.kubeconfig().display()),
        "--secure-port=0".into(),
        "--controllers=*".into(),
        file("root-ca-file", "ca.crt"),
        file("service-account-private-key-file", "sa.key"),
        file("cluster-signing-cert-file", "ca.crt"),
        file("cluster-signing-key-file", "ca.key"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Process::spawn(
        "kube-controller-manager",
        &args,
        &server.pki.dir.path().join(format!("{name}.log")),
    )
}

/// `bulwark kube-scheduler` against `server` on 127.0.0.1, with `extra` (`--secure-port`, leader election, ...).
pub fn scheduler(server: &SingleServer, name: &str, extra: &[&str]) -> Result<Process> {
    let kubeconfig = server.kubeconfig().display().to_string();
    let mut args = vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Process::spawn(
        "kube-scheduler",
        &args,
        &server.pki.dir.path().join(format!("scheduler-{name}.log")),
    )
}

/// PIDs of the containers (and their shims) a kubelet started below `rootfs`.
pub fn container_pids(rootfs: &Path) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .file_name()
                .is_some_and(|n| n == "container.pid" || n == "shim.pid")
                && let Ok(pid) = std::fs::read_to_string(&path).unwrap_or_default().trim().parse()
            {
                out.push(pid);
            }
        }
    }
    let mut pids = Vec::new();
    walk(&rootfs.join("var/lib/kubelet/bulwark/containers"), &mut pids);
    pids
}

/// SIGKILLs every container (and its shim) a kubelet started below `rootfs`.
pub fn kill_containers(rootfs: &Path) {
    for pid in container_pids(rootfs) {
        let _ = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Kills every container a kubelet started below the root directory when dropped.
pub struct Containers(pub PathBuf);

impl Drop for Containers {
    fn drop(&mut self) {
        kill_containers(&self.0);
    }
}

/// How a [`KubeletNode`] registers.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub name: String,
    /// `--node-ip` and `--address`.
    pub ip: String,
    /// `--pod-cidr`: a loopback range giving each pod an address of its own.
    pub pod_cidr: Option<String>,
    /// `--node-labels`.
    pub labels: Option<String>,
    /// `--register-with-taints`.
    pub taints: Option<String>,
    /// TLS bootstrap with this bootstrap token (`--bootstrap-kubeconfig`) instead of a client certificate made
    /// for the node.
    pub bootstrap_token: Option<String>,
    /// `rotateCertificates: true` in the configuration file, as kubeadm writes it.
    pub rotate_certificates: bool,
}

impl NodeOptions {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            ip: "127.0.0.1".into(),
            pod_cidr: None,
            labels: None,
            taints: None,
            bootstrap_token: None,
            rotate_certificates: false,
        }
    }
}

/// A node: a root directory, a kubelet kubeconfig for `system:node:<name>` signed by the cluster CA, a
/// `KubeletConfiguration` with short status and lease periods, and the kubelet process.
pub struct KubeletNode {
    kubelet: Option<Process>,
    // Dropped after the kubelet: the containers go before their root directory.
    _containers: Containers,
    pub root: tempfile::TempDir,
    pub options: NodeOptions,
    /// The kubelet's HTTPS port.
    pub port: u16,
}

impl KubeletNode {
    /// Prepares the node's files for the API server on `api_port` and starts its kubelet.
    pub fn start(pki: &Pki, api_port: u16, options: NodeOptions) -> Result<Self> {
        let root = tempfile::tempdir()?;
        let name = &options.name;
        let etc = root.path().join("etc/kubernetes");
        std::fs::create_dir_all(etc.join("manifests"))?;
        std::fs::create_dir_all(etc.join("pki"))?;
        std::fs::create_dir_all(root.path().join("var/lib/kubelet"))?;
        let server = format!("https://127.0.0.1:{api_port}");
        match &options.bootstrap_token {
            Some(token) => pki::Kubeconfig::for_token(
                "kubernetes",
                &server,
                pki.ca()?.certificate(),
                "tls-bootstrap-token-user",
                token,
            )
            .write(&etc.join("bootstrap-kubelet.conf"))?,
            None => {
                let (cert, key) = pki.client_pair(
                    root.path(),
                    "node-client",
                    &format!("system:node:{name}"),
                    "system:nodes",
                )?;
                pki::Kubeconfig::for_client_cert(
                    "kubernetes",
                    &server,
                    pki.ca()?.certificate(),
                    &format!("system:node:{name}"),
                    &cert,
                    &key,
                )?
                .write(&etc.join("kubelet.conf"))?
            }
        }
        // The CA where kubeadm's configuration names it; short lease and status periods keep tests quick.
        std::fs::copy(pki.pki_dir().join("ca.crt"), etc.join("pki/ca.crt"))?;
        let mut config = String::from(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             authentication: {anonymous: {enabled: false}, x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}}\n\
             authorization: {mode: Webhook}\ncgroupDriver: systemd\nstaticPodPath: /etc/kubernetes/manifests\n\
             nodeStatusUpdateFrequency: 1s\nnodeLeaseDurationSeconds: 4\n",
        );
        if options.rotate_certificates {
            config.push_str("rotateCertificates: true\n");
        }
        std::fs::write(root.path().join("var/lib/kubelet/config.yaml"), config)?;
        let mut node = Self {
            kubelet: None,
            _containers: Containers(root.path().to_path_buf()),
            root,
            options,
            port: free_port()?,
        };
        node.start_kubelet()?;
        Ok(node)
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    pub fn start_kubelet(&mut self) -> Result<()> {
        let o = &self.options;
        let mut args: Vec<String> = vec![
            "--kubeconfig=/etc/kubernetes/kubelet.conf".into(),
            "--config=/var/lib/kubelet/config.yaml".into(),
            format!("--node-ip={}", o.ip),
            format!("--address={}", o.ip),
            "--healthz-port=0".into(),
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock".into(),
            format!("--port={}", self.port),
            format!("--hostname-override={}", o.name),
            "--rootfs".into(),
            self.root.path().display().to_string(),
        ];
        if o.bootstrap_token.is_some() {
            args.push("--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf".into());
        }
        let optional = [
            ("pod-cidr", &o.pod_cidr),
            ("node-labels", &o.labels),
            ("register-with-taints", &o.taints),
        ];
        for (flag, value) in optional {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        }
        self.kubelet = Some(Process::spawn(
            "kubelet",
            &args,
            &self.root.path().join("kubelet.log"),
        )?);
        Ok(())
    }

    /// SIGKILLs the kubelet; its containers keep running, as they do upstream.
    pub fn stop_kubelet(&mut self) {
        self.kubelet = None;
    }

    /// SIGKILLs the kubelet and every container, as if the host died.
    pub fn kill_host(&mut self) {
        self.stop_kubelet();
        kill_containers(self.root.path());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("kubelet.log")).unwrap_or_default()
    }

    pub fn manifests(&self) -> PathBuf {
        self.root.path().join("etc/kubernetes/manifests")
    }

    /// PIDs of this node's containers and shims (live or not).
    pub fn container_pids(&self) -> Vec<i32> {
        container_pids(self.root.path())
    }
}

impl Drop for KubeletNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail: Vec<String> = lines[lines.len().saturating_sub(25)..]
                .iter()
                .map(|l| l.chars().take(400).collect())
                .collect();
            eprintln!("kubelet {} log (tail):\n{}", self.options.name, tail.join("\n"));
        }
    }
}

impl Pki {
    /// The cluster CA.
    pub fn ca(&self) -> Result<pki::CertificateAuthority> {
        let dir = self.pki_dir();
        Ok(pki::CertificateAuthority::from_parts(
            pki::read_cert(&dir.join("ca.crt"))?,
            pki::read_key(&dir.join("ca.key"))?,
        )?)
    }

    /// A client certificate for `user` in `group` signed by the cluster CA, written as `<dir>/<base>.crt/.key`.
    pub fn client_pair(
        &self,
        dir: &Path,
        base: &str,
        user: &str,
        group: &str,
    ) -> Result<(pki::Certificate, pki::KeyPair)> {
        let ca = self.ca()?;
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
        let spec = pki::CertSpec {
            common_name: user.into(),
            organizations: vec![group.into()],
            usages: vec![pki::Usage::ClientAuth],
            validity: pki::LEAF_VALIDITY,
            ..Default::default()
        };
        let cert = ca.issue(&spec, &key, SystemTime::now())?;
        pki::write_cert_and_key(dir, base, &cert, &key)?;
        Ok((cert, key))
    }
}
