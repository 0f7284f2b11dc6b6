//! CustomResourceDefinitions with real kubectl (1.20 and the newest) against a real `bulwark kube-apiserver` on a
//! real etcd: a CRD is served at once, its schema prunes, defaults and validates, its printer columns print, its
//! status subresource owns status, `explain` reads its schema, and deleting it deletes its objects.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.GROUP
spec:
  group: GROUP
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [SHORT]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the cron tab runs and when.
            required: [cronSpec]
            properties:
              cronSpec: {type: string, pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'}
              image: {type: string}
              replicas: {type: integer, minimum: 1, maximum: 10, default: 1}
          status:
            type: object
            properties:
              replicas: {type: integer}
"#;

const CRONTAB: &str = r#"
apiVersion: GROUP/v1
kind: CronTab
metadata: {name: my-cron, namespace: NS}
spec: {cronSpec: "* * * * */5", image: my-cron-image, bogus: dropped}
"#;

fn fill(template: &str, group: &str, ns: &str, short: &str) -> String {
    template
        .replace("GROUP", group)
        .replace("NS", ns)
        .replace("SHORT", short)
}

/// The whole CRD workflow with one kubectl, on its own group and namespace.
fn crd_workflow(k: &Kubectl, env: &(Pki, u16), group: &str, short: &str, newest: bool) -> Result<()> {
    let ns = short;
    let out = k.ok_stdin(&["apply", "-f", "-"], &fill(CRD, group, ns, short))?;
    ensure!(
        out.contains(&format!(
            "customresourcedefinition.apiextensions.k8s.io/crontabs.{group} created"
        )),
        "{out}"
    );
    k.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=20s",
        &format!("crd/crontabs.{group}"),
    ])?;
    k.ok(&["create", "namespace", ns])?;

    // Created with client-side validation on; the undeclared field is pruned, the default filled in.
    let out = k.ok_stdin(
        &["apply", "--validate=false", "-f", "-"],
        &fill(CRONTAB, group, ns, short),
    )?;
    ensure!(out.contains(&format!("crontab.{group}/my-cron created")), "{out}");
    let out = k.ok(&["get", short, "-n", ns])?;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    ensure!(header == ["NAME", "SPEC", "REPLICAS", "AGE"], "{out}");
    let row = lines.next().unwrap_or("");
    ensure!(
        row.starts_with("my-cron") && row.contains("* * * * */5") && row.contains(" 1 "),
        "{out}"
    );
    let json = k.ok(&["get", "crontab", "my-cron", "-n", ns, "-o", "jsonpath={.spec}"])?;
    ensure!(
        !json.contains("bogus") && json.contains("my-cron-image"),
        "{json}"
    );

    // Re-apply with a change.
    let changed = fill(CRONTAB, group, ns, short).replace("image: my-cron-image", "image: v2, replicas: 3");
    let out = k.ok_stdin(&["apply", "--validate=false", "-f", "-"], &changed)?;
    ensure!(out.contains("configured"), "{out}");
    let out = k.ok(&[
        "get",
        "crontab",
        "my-cron",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ])?;
    ensure!(out == "3 2", "{out}");

    // The server's schema validation, with upstream's messages.
    let bad = changed
        .replace("replicas: 3", "replicas: three")
        .replace("my-cron", "bad-cron");
    let out = k.run_stdin(&["create", "--validate=false", "-f", "-"], &bad)?;
    let err = text(&out.stderr);
    ensure!(
        !out.status.success()
            && err.contains("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""),
        "{err}"
    );
    let bad = changed
        .replace("replicas: 3", "replicas: 11")
        .replace("* * * * */5", "never")
        .replace("my-cron", "bad-cron");
    let out = k.run_stdin(&["create", "--validate=false", "-f", "-"], &bad)?;
    let err = text(&out.stderr);
    ensure!(
        err.contains("spec.replicas in body should be less than or equal to 10")
            && err.contains("spec.cronSpec in body should match"),
        "{err}"
    );
    ensure!(k.run(&["get", "crontab", "bad-cron", "-n", ns])?.status.code() != Some(0));

    // The status subresource owns status: a write to the object does not change it, a status write does.
    let (pki, port) = env;
    let path = format!("/apis/{group}/v1/namespaces/{ns}/crontabs/my-cron");
    let patch = r#"{"status":{"replicas":2}}"#;
    let merge = "Content-Type: application/merge-patch+json";
    let (code, body) = curl(pki, *port, &[&path, "-X", "PATCH", "-H", merge, "-d", patch])?;
    ensure!(code == 200 && !body.contains("\"status\""), "{code} {body}");
    let (code, body) = curl(
        pki,
        *port,
        &[&format!("{path}/status"), "-X", "PATCH", "-H", merge, "-d", patch],
    )?;
    ensure!(code == 200 && body.contains("\"replicas\":2"), "{code} {body}");

    // Discovery and the schema.
    let out = k.ok(&["api-resources", "--api-group", group])?;
    ensure!(
        out.lines()
            .any(|l| l.starts_with("crontabs") && l.contains(short) && l.contains("CronTab")),
        "{out}"
    );
    let out = k.ok(&["explain", "crontab.spec"])?;
    ensure!(
        out.contains("cronSpec") && out.contains("What the cron tab runs"),
        "{out}"
    );
    if newest {
        let out = k.ok(&[
            "get",
            "crontab",
            "my-cron",
            "-n",
            ns,
            "-o",
            "jsonpath={.status.replicas}",
        ])?;
        ensure!(out == "2", "{out}");
    }

    // Deleting the CRD deletes its objects: defined again, it serves none.
    let out = k.ok(&["delete", "crd", &format!("crontabs.{group}")])?;
    ensure!(out.contains("deleted"), "{out}");
    k.ok_stdin(&["apply", "-f", "-"], &fill(CRD, group, ns, short))?;
    k.ok(&[
        "wait",
        "--for=condition=established",
        "--timeout=20s",
        &format!("crd/crontabs.{group}"),
    ])?;
    let out = k.run(&["get", "crontabs", "-n", ns])?;
    ensure!(
        out.status.success()
            && text(&out.stdout).trim().is_empty()
            && text(&out.stderr).contains("No resources found"),
        "{} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(())
}

async fn env() -> Result<(testkit::etcd::EtcdCluster, Pki, u16, ApiServer)> {
    let etcd = testkit::etcd::EtcdCluster::start_single().await?;
    let port = free_port()?;
    let pki = Pki::new(port)?;
    let server = ApiServer::start(
        &pki,
        port,
        &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
    )?;
    Ok((etcd, pki, port, server))
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_are_served_validated_printed_explained_and_removed_with_their_objects_for_both_kubectl_ends()
-> Result<()> {
    let (_etcd, pki, port, server) = env().await?;
    let env = (pki, port);
    for (bin, group, short, newest) in [
        (kubectl_1_20(), "old.example.com", "ctold", false),
        (kubectl_newest(), "new.example.com", "ctnew", true),
    ] {
        let Some(bin) = bin else {
            eprintln!("a kubectl is not installed; skipping it");
            continue;
        };
        let k = Kubectl {
            bin,
            kubeconfig: env.0.kubeconfig(),
        };
        crd_workflow(&k, &env, group, short, newest)
            .with_context(|| format!("with {group}\n{}", server.log_tail()))?;
    }
    Ok(())
}
