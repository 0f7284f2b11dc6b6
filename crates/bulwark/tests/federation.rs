//! The federation control plane against three real API servers (a host and two members): the KubeFed API installs
//! itself, member health turns into READY, a FederatedDeployment with a ReplicaSchedulingPreference lands as 6 and
//! 3 replicas with a per-cluster override, a member whose API goes away loses its replicas to the other and gets
//! them back when it returns, and deleting the federated object removes what it placed.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use testkit::cluster::*;
use testkit::federation::{Cluster, Manager, NAMESPACE as NS, ready, register};

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

#[tokio::test(flavor = "multi_thread")]
async fn federated_replicas_follow_preferences_and_member_health() -> Result<()> {
    let host = Cluster::start()?;
    let mut member1 = Cluster::start()?;
    let member2 = Cluster::start()?;
    let k = host.kubectl()?;
    let manager = Manager::start(&host, 1)?;
    let run = async {
        // One command installs the KubeFed API.
        eventually(Duration::from_secs(30), "the KubeFed CRDs", || {
            k.ok(&["get", "federatedtypeconfigs", "-n", NS, "deployments.apps"])
                .ok()
        })?;
        register(&k, &member1, "member1")?;
        register(&k, &member2, "member2")?;
        eventually(Duration::from_secs(30), "both members READY True", || {
            (ready(&k, "member1").as_deref() == Some("True")
                && ready(&k, "member2").as_deref() == Some("True"))
            .then_some(())
        })?;
        let table = k.ok(&["get", "kubefedclusters", "-n", NS])?;
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
                (ready(&k, "member1").as_deref() == Some("False")
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
        .with_context(|| format!("kubefed-controller-manager log:\n{}", manager.log_tail()))
}
