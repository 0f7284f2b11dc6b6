//! The federation control plane against three real API servers (a host and two members): the KubeFed API installs
//! itself, member health turns into READY, a FederatedDeployment with a ReplicaSchedulingPreference lands as 6 and
//! 3 replicas with a per-cluster override, a member whose API goes away loses its replicas to the other and gets
//! them back when it returns, and deleting the federated object removes what it placed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use testkit::cluster::*;

/// One API server on the embedded store whose process can be stopped and started again on the same port and data.
struct Cluster {
    server: Option<ApiServer>,
    pki: Pki,
}

impl Cluster {
    fn start() -> Result<Self> {
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

    fn stop(&mut self) {
        self.server = None;
    }

    fn restart(&mut self) -> Result<()> {
        self.server = Some(ApiServer::start(
            &self.pki,
            self.pki.port,
            &[Self::storage(&self.pki)],
        )?);
        Ok(())
    }

    fn kubectl(&self) -> Result<Kubectl> {
        Ok(Kubectl {
            bin: kubectl_newest().context("no kubectl installed")?,
            kubeconfig: self.pki.kubeconfig(),
        })
    }
}

/// The controller-manager process, stopped on drop.
struct Manager(Child, PathBuf);

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Manager {
    fn log(&self) -> String {
        let t = std::fs::read_to_string(&self.1).unwrap_or_default();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

const NS: &str = "kube-federation-system";

/// Registers `member` in the host as `name`, with a ServiceAccount token of the member, as `kubefedctl join` does.
fn register(host: &Kubectl, member: &Cluster, name: &str) -> Result<()> {
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
    // The CA as the member's kubeconfig carries it, base64 already.
    let conf: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(member.pki.kubeconfig())?)?;
    let ca = conf["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .context("no certificate-authority-data")?
        .to_string();
    host.ok(&[
        "create",
        "secret",
        "generic",
        &format!("{name}-token"),
        "-n",
        NS,
        &format!("--from-literal=token={}", token.trim()),
    ])?;
    let cluster = format!(
        "apiVersion: core.kubefed.io/v1beta1\nkind: KubeFedCluster\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  apiEndpoint: https://127.0.0.1:{}\n  caBundle: {ca}\n  secretRef: {{name: {name}-token}}\n",
        member.pki.port
    );
    host.ok_stdin(&["apply", "-f", "-"], &cluster)?;
    Ok(())
}

const FEDERATED: &str = r#"
apiVersion: types.kubefed.io/v1beta1
kind: FederatedDeployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      replicas: 1
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - {name: web, image: python, command: [python3, -m, http.server], args: ["8080"]}
  placement:
    clusterSelector: {}
  overrides:
  - clusterName: member2
    clusterOverrides:
    - {path: /spec/template/spec/containers/0/args, value: ["9090"]}
---
apiVersion: scheduling.kubefed.io/v1alpha1
kind: ReplicaSchedulingPreference
metadata: {name: web, namespace: shop}
spec:
  targetKind: FederatedDeployment
  totalReplicas: 9
  rebalance: true
  clusters:
    member1: {weight: 2}
    member2: {weight: 1}
"#;

fn replicas(member: &Cluster) -> Option<String> {
    let k = member.kubectl().ok()?;
    k.ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .ok()
}

fn ready_column(host: &Kubectl) -> String {
    host.ok(&["get", "kubefedclusters", "-n", NS]).unwrap_or_default()
}

fn row_ready(table: &str, name: &str) -> Option<String> {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_replicas_follow_preferences_and_member_health() -> Result<()> {
    let host = Cluster::start()?;
    let mut member1 = Cluster::start()?;
    let member2 = Cluster::start()?;
    let k = host.kubectl()?;
    let log = host.pki.dir.path().join("kubefed.log");
    let manager = Manager(
        Command::new(bulwark()?)
            .args([
                "kubefed-controller-manager",
                "--leader-elect=false",
                "--cluster-health-check-period=1",
                "--cluster-health-check-timeout=1",
            ])
            .arg("--kubeconfig")
            .arg(host.pki.kubeconfig())
            .env("BULWARK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
        log,
    );
    let run = async {
        // One command installs the KubeFed API.
        eventually(Duration::from_secs(30), "the KubeFed CRDs", || {
            k.ok(&["get", "federatedtypeconfigs", "-n", NS, "deployments.apps"])
                .ok()
        })?;
        register(&k, &member1, "member1")?;
        register(&k, &member2, "member2")?;
        let table = eventually(Duration::from_secs(30), "both members READY True", || {
            let t = ready_column(&k);
            (row_ready(&t, "member1").as_deref() == Some("True")
                && row_ready(&t, "member2").as_deref() == Some("True"))
            .then_some(t)
        })?;
        let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
        ensure!(header == ["NAME", "AGE", "READY"], "{table}");

        k.ok(&["create", "namespace", "shop"])?;
        k.ok_stdin(&["apply", "-f", "-"], FEDERATED)?;
        eventually(Duration::from_secs(30), "a 6/3 split", || {
            (replicas(&member1).as_deref() == Some("6") && replicas(&member2).as_deref() == Some("3"))
                .then_some(())
        })?;
        let args = member2.kubectl()?.ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args[0]} {.metadata.labels.kubefed\\.io/managed}",
        ])?;
        ensure!(args == "9090 true", "{args}");
        let args = member1.kubectl()?.ok(&[
            "get",
            "deployment",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].args[0]}",
        ])?;
        ensure!(args == "8080", "{args}");
        let status = eventually(Duration::from_secs(20), "propagation status", || {
            let s = k
                .ok(&[
                    "get",
                    "federateddeployment",
                    "web",
                    "-n",
                    "shop",
                    "-o",
                    "jsonpath={.status.clusters[*].name} {.status.conditions[0].status}",
                ])
                .ok()?;
            (s == "member1 member2 True").then_some(s)
        })?;
        ensure!(status == "member1 member2 True");

        // member1 goes away: after the failure threshold its replicas move to member2; back, the split returns.
        member1.stop();
        eventually(
            Duration::from_secs(30),
            "member1 offline and 9 on member2",
            || {
                let t = ready_column(&k);
                (row_ready(&t, "member1").as_deref() == Some("False")
                    && replicas(&member2).as_deref() == Some("9"))
                .then_some(())
            },
        )?;
        member1.restart()?;
        eventually(Duration::from_secs(30), "the 6/3 split again", || {
            (replicas(&member1).as_deref() == Some("6") && replicas(&member2).as_deref() == Some("3"))
                .then_some(())
        })?;

        // Deleting the federated object removes what it placed.
        k.ok(&["delete", "replicaschedulingpreference", "web", "-n", "shop"])?;
        k.ok(&[
            "delete",
            "federateddeployment",
            "web",
            "-n",
            "shop",
            "--wait=false",
        ])?;
        eventually(
            Duration::from_secs(30),
            "the deployments removed from both members",
            || (replicas(&member1).is_none() && replicas(&member2).is_none()).then_some(()),
        )?;
        Ok::<(), anyhow::Error>(())
    };
    run.await
        .with_context(|| format!("kubefed-controller-manager log:\n{}", manager.log()))
}
