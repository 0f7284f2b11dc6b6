//! kubectl 1.20 and the newest kubectl against a real `bulwark kube-apiserver` on a real etcd.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;

struct Env {
    _etcd: testkit::etcd::EtcdCluster,
    pki: Pki,
    server: ApiServer,
}

async fn env() -> Result<Env> {
    let etcd = testkit::etcd::EtcdCluster::start_single().await?;
    let port = free_port()?;
    let pki = Pki::new(port)?;
    let server = ApiServer::start(
        &pki,
        port,
        &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
    )?;
    Ok(Env {
        _etcd: etcd,
        pki,
        server,
    })
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

/// The everyday workflow, in its own namespace, with one kubectl binary.
fn everyday_workflow(k: &Kubectl, ns: &str, validate: bool) -> Result<()> {
    let validate_flag = if validate {
        "--validate=true"
    } else {
        "--validate=false"
    };
    let out = k.ok_stdin(
        &["create", "-f", "-"],
        &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
    )?;
    ensure!(out.contains(&format!("namespace/{ns} created")), "{out}");

    let out = k.ok_stdin(&["apply", validate_flag, "-n", ns, "-f", "-"], DEPLOYMENT)?;
    ensure!(out.contains("deployment.apps/web created"), "{out}");
    let out = k.ok(&["get", "deploy", "-n", ns])?;
    ensure!(
        out.lines()
            .next()
            .is_some_and(|h| h.split_whitespace().collect::<Vec<_>>()
                == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]),
        "deployment columns: {out}"
    );
    ensure!(out.contains("web") && out.contains("0/2"), "{out}");

    // Re-apply with a change: the spec moves, so does generation.
    let changed = DEPLOYMENT.replace("nginx:1.25", "nginx:1.26");
    let out = k.ok_stdin(&["apply", validate_flag, "-n", ns, "-f", "-"], &changed)?;
    ensure!(out.contains("deployment.apps/web configured"), "{out}");
    let out = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}",
    ])?;
    ensure!(out == "nginx:1.26 2", "{out}");

    let out = k.ok(&["describe", "deploy", "web", "-n", ns])?;
    ensure!(
        out.contains("Name:") && out.contains("web") && out.contains("RollingUpdate"),
        "{out}"
    );

    let out = k.ok(&["scale", "deploy", "web", "-n", ns, "--replicas=3"])?;
    ensure!(out.contains("scaled"), "{out}");
    let out = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ])?;
    ensure!(out == "3", "{out}");

    // A watch sees a ConfigMap appear.
    let watch = Streaming::spawn(k.cmd(&["get", "configmaps", "-n", ns, "-w"]))?;
    k.ok_stdin(
        &["create", "-n", ns, "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
    )?;
    watch.wait_for(&["settings"], Duration::from_secs(20))?;
    drop(watch);

    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        ns,
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ])?;
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"data":{"c":"3"}}"#,
    ])?;
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        ns,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/a"}]"#,
    ])?;
    let out = k.ok(&["get", "configmap", "settings", "-n", ns, "-o", "jsonpath={.data}"])?;
    ensure!(
        out.contains(r#""b":"2""#) && out.contains(r#""c":"3""#) && !out.contains(r#""a""#),
        "{out}"
    );

    k.ok(&["label", "configmap", "settings", "-n", ns, "tier=gold"])?;
    k.ok(&["annotate", "configmap", "settings", "-n", ns, "note=hello"])?;
    let out = k.ok(&[
        "get",
        "configmap",
        "-n",
        ns,
        "-l",
        "tier=gold",
        "-o",
        "jsonpath={.items[*].metadata.annotations.note}",
    ])?;
    ensure!(out == "hello", "{out}");

    // kubectl edit through an EDITOR script.
    let editor = k
        .kubeconfig
        .parent()
        .context("dir")?
        .join(format!("editor-{ns}.sh"));
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/tier: gold/tier: silver/' \"$1\"\n")?;
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()?;
    let out = k
        .cmd(&["edit", "configmap", "settings", "-n", ns])
        .env("EDITOR", &editor)
        .output()?;
    ensure!(out.status.success(), "edit: {}", text(&out.stderr));
    let out = k.ok(&[
        "get",
        "configmap",
        "settings",
        "-n",
        ns,
        "-o",
        "jsonpath={.metadata.labels.tier}",
    ])?;
    ensure!(out == "silver", "{out}");

    let out = k.ok(&["api-resources"])?;
    ensure!(
        out.lines()
            .any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")),
        "{out}"
    );

    // explain reads the schema: /openapi/v2 (protobuf) for kubectl 1.20, /openapi/v3 for newer ones.
    let out = k.ok(&["explain", "deployment.spec.replicas"])?;
    ensure!(
        out.contains("KIND:") && out.contains("Deployment") && out.contains("replicas"),
        "{out}"
    );

    let out = k.ok(&["delete", "configmap", "settings", "-n", ns])?;
    ensure!(out.contains("configmap \"settings\" deleted"), "{out}");
    let out = k.run(&["get", "configmap", "settings", "-n", ns])?;
    ensure!(
        !out.status.success() && text(&out.stderr).contains("NotFound"),
        "{}",
        text(&out.stderr)
    );

    let out = k.ok(&["config", "get-contexts", "-o", "name"])?;
    ensure!(out.contains("kubernetes-admin@kubernetes"), "{out}");
    k.ok(&["config", "use-context", "kubernetes-admin@kubernetes"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_1_20_creates_applies_watches_patches_edits_scales_and_deletes() -> Result<()> {
    let Some(bin) = kubectl_1_20() else {
        eprintln!("kubectl 1.20 not installed (scripts/install-deps); skipping");
        return Ok(());
    };
    let env = env().await?;
    let k = Kubectl {
        bin,
        kubeconfig: env.pki.kubeconfig(),
    };
    // kubectl 1.20 validates against /openapi/v2 (protobuf) before it sends anything.
    everyday_workflow(&k, "old-kubectl", true).with_context(|| env.server.log_tail())
}

#[tokio::test(flavor = "multi_thread")]
async fn newest_kubectl_creates_applies_watches_patches_edits_scales_and_deletes() -> Result<()> {
    let Some(bin) = kubectl_newest() else {
        eprintln!("no kubectl installed; skipping");
        return Ok(());
    };
    let env = env().await?;
    let k = Kubectl {
        bin,
        kubeconfig: env.pki.kubeconfig(),
    };
    everyday_workflow(&k, "new-kubectl", true).with_context(|| env.server.log_tail())
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_prints_upstream_columns_for_system_objects() -> Result<()> {
    let Some(bin) = kubectl_newest() else {
        return Ok(());
    };
    let env = env().await?;
    let k = Kubectl {
        bin,
        kubeconfig: env.pki.kubeconfig(),
    };
    let out = eventually(Duration::from_secs(20), "system namespaces", || {
        k.ok(&["get", "namespaces"])
            .ok()
            .filter(|o| o.contains("kube-system"))
    })?;
    let header: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
    ensure!(header == ["NAME", "STATUS", "AGE"], "{out}");
    ensure!(out.contains("default") && out.contains("Active"), "{out}");
    let out = k.ok(&["get", "svc", "kubernetes"])?;
    ensure!(
        out.contains("ClusterIP") && out.contains("10.96.0.1") && out.contains("443/TCP"),
        "{out}"
    );
    let out = k.ok(&["version", "-o", "json"])?;
    ensure!(out.contains("\"gitVersion\": \"v1.33.0\""), "{out}");
    Ok(())
}
