//! Fixtures for federation tests and benchmarks: API servers that can stop and come back on the same port and
//! data ([`Cluster`]), what a member needs to run pods ([`Worker`]), the `kubefed-controller-manager` process
//! ([`Manager`]), and registering a member in a host the way `kubefedctl join` leaves it ([`register`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::cluster::{ApiServer, Kubectl, Pki, bulwark, free_port, kubectl_newest};

/// The namespace of the federation control plane.
pub const NAMESPACE: &str = "kube-federation-system";

/// One API server on the embedded store whose process can be stopped and started again on the same port and data.
pub struct Cluster {
    pub server: Option<ApiServer>,
    pub pki: Pki,
}

impl Cluster {
    pub fn start() -> Result<Self> {
        let port = free_port()?;
        let pki = Pki::new(port)?;
        let server = ApiServer::start(&pki, port, &[Self::storage(&pki)])?;
        Ok(Self {
            server: Some(server),
            pki,
        })
    }

    fn storage(pki: &Pki) -> String {
        format!("--storage-dir={}", pki.dir.path().join("store").display())
    }

    pub fn stop(&mut self) {
        self.server = None;
    }

    pub fn restart(&mut self) -> Result<()> {
        self.server = Some(ApiServer::start(
            &self.pki,
            self.pki.port,
            &[Self::storage(&self.pki)],
        )?);
        Ok(())
    }

    pub fn kubectl(&self) -> Result<Kubectl> {
        Ok(Kubectl {
            bin: kubectl_newest().context("no kubectl installed")?,
            kubeconfig: self.pki.kubeconfig(),
        })
    }
}

/// A `bulwark kubefed-controller-manager` process against `host`, stopped on drop.
pub struct Manager {
    child: Child,
    log: PathBuf,
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Manager {
    /// Starts one without leader election, probing members every `period_secs`.
    pub fn start(host: &Cluster, period_secs: u32) -> Result<Self> {
        let log = host.pki.dir.path().join("kubefed.log");
        let child = Command::new(bulwark()?)
            .args([
                "kubefed-controller-manager",
                "--leader-elect=false",
                &format!("--cluster-health-check-period={period_secs}"),
                "--cluster-health-check-timeout=1",
            ])
            .arg("--kubeconfig")
            .arg(host.pki.kubeconfig())
            .env("BULWARK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        Ok(Self { child, log })
    }

    pub fn log_tail(&self) -> String {
        let t = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The CA of a cluster as its admin kubeconfig carries it (base64 already).
fn ca_data(kubeconfig: &Path) -> Result<String> {
    let conf: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(kubeconfig)?)?;
    Ok(conf["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .context("no certificate-authority-data")?
        .to_string())
}

/// Registers `member` in the host as `name` with a ServiceAccount token of the member: the Secret and
/// KubeFedCluster `kubefedctl join` leaves.
pub fn register(host: &Kubectl, member: &Cluster, name: &str) -> Result<()> {
    let m = member.kubectl()?;
    m.ok(&["create", "serviceaccount", "fed", "-n", "default"])?;
    m.ok(&[
        "create",
        "clusterrolebinding",
        "fed",
        "--clusterrole=cluster-admin",
        "--serviceaccount=default:fed",
    ])?;
    let token = m.ok(&["create", "token", "fed", "-n", "default", "--duration=1h"])?;
    host.ok(&[
        "create",
        "secret",
        "generic",
        &format!("{name}-token"),
        "-n",
        NAMESPACE,
        &format!("--from-literal=token={}", token.trim()),
    ])?;
    let cluster = format!(
        "apiVersion: core.kubefed.io/v1beta1\nkind: KubeFedCluster\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n  apiEndpoint: https://127.0.0.1:{}\n  caBundle: {}\n  secretRef: {{name: {name}-token}}\n",
        member.pki.port,
        ca_data(&member.pki.kubeconfig())?
    );
    host.ok_stdin(&["apply", "-f", "-"], &cluster)?;
    Ok(())
}

/// The READY column of `name` in `kubectl get kubefedclusters`.
pub fn ready(host: &Kubectl, name: &str) -> Option<String> {
    let table = host.ok(&["get", "kubefedclusters", "-n", NAMESPACE]).ok()?;
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last().map(str::to_string))
}

/// What a member needs to run pods: the cluster's `kube-controller-manager` (deployments, replica sets, service
/// accounts, the root CA ConfigMap, garbage collection of what a deleted Deployment owned) and one `kubelet` registering node [`Worker::NODE`] with the admin
/// credentials, on the cluster's PKI root as its `--rootfs`. No scheduler: pods name the node themselves
/// (`spec.nodeName`). Stopped on drop, the pods' processes with it.
pub struct Worker {
    controller_manager: Child,
    kubelet: Child,
    root: PathBuf,
}

impl Worker {
    pub const NODE: &'static str = "worker";

    pub fn start(cluster: &Cluster) -> Result<Self> {
        let root = cluster.pki.dir.path().join("root");
        let pki = cluster.pki.pki_dir();
        let log = |name: &str| std::fs::File::create(cluster.pki.dir.path().join(name));
        let controller_manager = Command::new(bulwark()?)
            .arg("kube-controller-manager")
            .arg(format!("--kubeconfig={}", cluster.pki.kubeconfig().display()))
            .args([
                "--secure-port=0",
                "--leader-elect=false",
                "--controllers=deployment,replicaset,serviceaccount,root-ca-cert-publisher,garbagecollector",
            ])
            .arg(format!("--root-ca-file={}", pki.join("ca.crt").display()))
            .env("BULWARK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("kube-controller-manager.log")?)
            .spawn()?;
        std::fs::create_dir_all(root.join("var/lib/kubelet"))?;
        std::fs::write(
            root.join("var/lib/kubelet/config.yaml"),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             authentication: {anonymous: {enabled: false}, x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}}\n\
             authorization: {mode: Webhook}\ncgroupDriver: systemd\n",
        )?;
        let kubelet = Command::new(bulwark()?)
            .args([
                "kubelet",
                "--kubeconfig=/etc/kubernetes/admin.conf",
                "--config=/var/lib/kubelet/config.yaml",
                "--node-ip=127.0.0.1",
                "--address=127.0.0.1",
                "--healthz-port=0",
            ])
            .arg(format!("--port={}", free_port()?))
            .arg(format!("--hostname-override={}", Self::NODE))
            .arg("--rootfs")
            .arg(&root)
            .env("BULWARK_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("kubelet.log")?)
            .spawn()?;
        Ok(Self {
            controller_manager,
            kubelet,
            root,
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for child in [&mut self.kubelet, &mut self.controller_manager] {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Containers outlive their kubelet by design: end them by the PIDs their shims recorded.
        let mut dirs = vec![self.root.join("var/lib/kubelet/bulwark/containers")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if matches!(
                    path.file_name().and_then(|n| n.to_str()),
                    Some("container.pid" | "shim.pid")
                ) && let Ok(pid) = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .trim()
                    .parse::<i32>()
                {
                    let _ = Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}
