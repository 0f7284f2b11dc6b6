//! Fixtures for federation tests and benchmarks: API servers that can stop and come back on the same port and
//! data ([`Cluster`]), what a member needs to run pods ([`Worker`]), the `kubefed-controller-manager` process
//! ([`Manager`]), and registering a member in a host the way `kubefedctl join` leaves it ([`register`]).

use std::path::Path;

use anyhow::{Context, Result};

use crate::cluster::{ApiServer, Kubectl, Pki, free_port, kubectl_newest};
use crate::components::{Containers, Process};

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
pub struct Manager(Process);

impl Manager {
    /// Starts one without leader election, probing members every `period_secs`.
    pub fn start(host: &Cluster, period_secs: u32) -> Result<Self> {
        let args = vec![
            "--leader-elect=false".to_string(),
            format!("--cluster-health-check-period={period_secs}"),
            "--cluster-health-check-timeout=1".into(),
            format!("--kubeconfig={}", host.pki.kubeconfig().display()),
        ];
        let log = host.pki.dir.path().join("kubefed.log");
        Ok(Self(Process::spawn("kubefed-controller-manager", &args, &log)?))
    }

    pub fn log_tail(&self) -> String {
        self.0.log_tail(40)
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
    // Dropped in this order: the kubelet first, then what it started (containers outlive kubelets by design).
    _kubelet: Process,
    _controller_manager: Process,
    _containers: Containers,
}

impl Worker {
    pub const NODE: &'static str = "worker";

    pub fn start(cluster: &Cluster) -> Result<Self> {
        let root = cluster.pki.dir.path().join("root");
        let pki = cluster.pki.pki_dir();
        let log = |name: &str| cluster.pki.dir.path().join(name);
        let controller_manager = Process::spawn(
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", cluster.pki.kubeconfig().display()),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--controllers=deployment,replicaset,serviceaccount,root-ca-cert-publisher,garbagecollector"
                    .into(),
                format!("--root-ca-file={}", pki.join("ca.crt").display()),
            ],
            &log("kube-controller-manager.log"),
        )?;
        std::fs::create_dir_all(root.join("var/lib/kubelet"))?;
        std::fs::write(
            root.join("var/lib/kubelet/config.yaml"),
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             authentication: {anonymous: {enabled: false}, x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}}\n\
             authorization: {mode: Webhook}\ncgroupDriver: systemd\n",
        )?;
        let kubelet = Process::spawn(
            "kubelet",
            &[
                "--kubeconfig=/etc/kubernetes/admin.conf".into(),
                "--config=/var/lib/kubelet/config.yaml".into(),
                "--node-ip=127.0.0.1".into(),
                "--address=127.0.0.1".into(),
                "--healthz-port=0".into(),
                format!("--port={}", free_port()?),
                format!("--hostname-override={}", Self::NODE),
                format!("--rootfs={}", root.display()),
            ],
            &log("kubelet.log"),
        )?;
        Ok(Self {
            _kubelet: kubelet,
            _controller_manager: controller_manager,
            _containers: Containers(root),
        })
    }
}
