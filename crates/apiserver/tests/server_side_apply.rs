//! Server-side apply, managedFields and dry-run against a real `bulwark kube-apiserver`: kubectl 1.20 and the
//! newest kubectl (`apply --server-side`, conflicts, `--force-conflicts`), kube-rs `Patch::Apply` on a typed
//! object and on a custom resource, and `dryRun=All` on every write leaving the store as it was.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
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
"#;

const REPLICAS_ONLY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 5
"#;

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn owns(obj: &Value, manager: &str, pointer: &str) -> bool {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["manager"] == manager)
        .any(|e| e["fieldsV1"].pointer(pointer).is_some())
}

/// The Deployment with its managedFields: kubectl after 1.20 hides them unless asked, 1.20 knows no such flag.
fn get_web(k: &Kubectl, ns: &str) -> Result<Value> {
    k.json(&["get", "deploy", "web", "-n", ns, "--show-managed-fields"])
        .or_else(|| k.json(&["get", "deploy", "web", "-n", ns]))
        .context("get deploy web")
}

/// One kubectl binary through create, update, conflict and forced takeover, in its own namespace.
fn kubectl_apply_workflow(k: &Kubectl, ns: &str) -> Result<()> {
    k.ok(&["create", "namespace", ns])?;
    let out = k.ok_stdin(&["apply", "--server-side", "-n", ns, "-f", "-"], DEPLOYMENT)?;
    ensure!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    let live = get_web(k, ns)?;
    ensure!(
        managers(&live) == [("kubectl".to_string(), "Apply".to_string())],
        "{}",
        live["metadata"]["managedFields"]
    );
    ensure!(owns(&live, "kubectl", "/f:spec/f:replicas"), "{live}");

    // Updating through apply: the change lands, generation moves.
    let changed = DEPLOYMENT.replace("nginx:1.25", "nginx:1.26");
    k.ok_stdin(&["apply", "--server-side", "-n", ns, "-f", "-"], &changed)?;
    let live = get_web(k, ns)?;
    ensure!(
        live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
            && live["metadata"]["generation"] == 2,
        "{live}"
    );

    // Server-side dry run: answered, not stored.
    let dry = DEPLOYMENT.replace("nginx:1.25", "nginx:dry");
    k.ok_stdin(
        &["apply", "--server-side", "--dry-run=server", "-n", ns, "-f", "-"],
        &dry,
    )?;
    let after = get_web(k, ns)?;
    ensure!(
        after["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"],
        "dry run wrote: {after}"
    );

    // Another manager wants other replicas: a conflict, printed by kubectl.
    let out = k.run_stdin(
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "--field-manager=scaler",
            "-n",
            ns,
            "-f",
            "-",
        ],
        REPLICAS_ONLY,
    )?;
    let err = text(&out.stderr);
    ensure!(!out.status.success(), "conflict accepted");
    ensure!(
        err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#),
        "{err}"
    );

    // Forced, the other manager takes the field.
    k.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--validate=false",
            "--field-manager=scaler",
            "-n",
            ns,
            "-f",
            "-",
        ],
        REPLICAS_ONLY,
    )?;
    let live = get_web(k, ns)?;
    ensure!(live["spec"]["replicas"] == 5, "{live}");
    ensure!(owns(&live, "scaler", "/f:spec/f:replicas"), "{live}");
    ensure!(!owns(&live, "kubectl", "/f:spec/f:replicas"), "{live}");

    // The first manager re-applies without replicas: the field is the scaler's now, so it stays.
    let without = changed.replace("  replicas: 2\n", "");
    k.ok_stdin(&["apply", "--server-side", "-n", ns, "-f", "-"], &without)?;
    let live = get_web(k, ns)?;
    ensure!(live["spec"]["replicas"] == 5, "{live}");
    k.ok(&["delete", "namespace", ns, "--wait=false"])?;
    Ok(())
}

#[test]
fn kubectl_apply_server_side_creates_updates_and_reports_conflicts() -> Result<()> {
    let s = SingleServer::start()?;
    let mut ran = 0;
    for (bin, ns) in [(kubectl_1_20(), "ssa-120"), (kubectl_newest(), "ssa-newest")] {
        let Some(bin) = bin else { continue };
        kubectl_apply_workflow(&s.kubectl(bin), ns).with_context(|| ns.to_string())?;
        ran += 1;
    }
    ensure!(ran > 0, "no kubectl found");
    Ok(())
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.ssa.example.com}
spec:
  group: ssa.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              hosts:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              routes:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [path]
                items:
                  type: object
                  properties:
                    path: {type: string}
                    to: {type: string}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_apply_owns_typed_and_custom_objects_and_conflicts_are_409() -> Result<()> {
    let s = SingleServer::start()?;
    let client = client::from_kubeconfig(&s.kubeconfig()).await?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut desired: Value = serde_yaml_value(DEPLOYMENT)?;
    let created = deployments
        .patch("web", &PatchParams::apply("mgr"), &Patch::Apply(&desired))
        .await?;
    let fields = created.metadata.managed_fields.clone().unwrap_or_default();
    ensure!(
        fields.len() == 1
            && fields[0].manager.as_deref() == Some("mgr")
            && fields[0].operation.as_deref() == Some("Apply"),
        "{fields:?}"
    );
    desired["spec"]["replicas"] = json!(7);
    let err = deployments
        .patch("web", &PatchParams::apply("other"), &Patch::Apply(&desired))
        .await
        .expect_err("conflict");
    match &err {
        kube::Error::Api(s) => ensure!(
            s.code == 409
                && s.reason == "Conflict"
                && s.message.contains(r#"conflict with "mgr": .spec.replicas"#),
            "{s:?}"
        ),
        other => anyhow::bail!("{other}"),
    }
    let forced = deployments
        .patch(
            "web",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&desired),
        )
        .await?;
    ensure!(forced.spec.replicas == Some(7));

    // A custom resource: its schema's set and map lists merge instead of being replaced.
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    crds.create(&PostParams::default(), &serde_yaml::from_str(CRD)?)
        .await?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ssa.example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let first = json!({"apiVersion": "ssa.example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1, "hosts": ["a"], "routes": [{"path": "/", "to": "x"}]}});
    widgets
        .patch("w", &PatchParams::apply("one"), &Patch::Apply(&first))
        .await?;
    let second = json!({"apiVersion": "ssa.example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"hosts": ["b"], "routes": [{"path": "/api", "to": "y"}]}});
    let merged = widgets
        .patch("w", &PatchParams::apply("two"), &Patch::Apply(&second))
        .await?;
    ensure!(
        merged.data["spec"]
            == json!({"size": 1, "hosts": ["a", "b"],
            "routes": [{"path": "/", "to": "x"}, {"path": "/api", "to": "y"}]}),
        "{}",
        merged.data
    );
    // The first manager drops its host: gone, since nobody else owns it; the second's stays.
    let shrunk = json!({"apiVersion": "ssa.example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 1, "routes": [{"path": "/", "to": "x"}]}});
    let out = widgets
        .patch("w", &PatchParams::apply("one"), &Patch::Apply(&shrunk))
        .await?;
    ensure!(out.data["spec"]["hosts"] == json!(["b"]), "{}", out.data);
    Ok(())
}

fn serde_yaml_value(s: &str) -> Result<Value> {
    Ok(serde_yaml::from_str(s)?)
}

fn env_req(
    s: &SingleServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, Value)> {
    let ct = format!("Content-Type: {content_type}");
    let mut args = vec![path, "-X", method, "-H", ct.as_str(), "-A", "curl-test/1.0"];
    if !body.is_empty() {
        args.extend(["--data-binary", body]);
    }
    let (code, text) = curl(&s.pki, s.server.port, &args)?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[test]
fn every_write_records_its_field_manager_and_bad_options_are_refused() -> Result<()> {
    let s = SingleServer::start()?;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": {"a": "1"}});
    // No fieldManager: the User-Agent's product.
    let (code, body) = env_req(&s, "POST", CMS, "application/json", &cm.to_string())?;
    ensure!(code == 201, "{code} {body}");
    ensure!(
        managers(&body) == [("curl-test".into(), "Update".into())],
        "{body}"
    );
    ensure!(
        body["metadata"]["managedFields"][0]["fieldsV1"] == json!({"f:data": {".": {}, "f:a": {}}}),
        "{body}"
    );
    // A patch by a named manager takes the key it changed.
    let (code, body) = env_req(
        &s,
        "PATCH",
        &format!("{CMS}/m?fieldManager=editor"),
        "application/merge-patch+json",
        r#"{"data":{"a":"2","b":"3"}}"#,
    )?;
    ensure!(code == 200, "{code} {body}");
    ensure!(
        owns(&body, "editor", "/f:data/f:a") && owns(&body, "editor", "/f:data/f:b"),
        "{body}"
    );
    ensure!(!owns(&body, "curl-test", "/f:data/f:a"), "{body}");

    let long = "x".repeat(129);
    let (code, body) = env_req(
        &s,
        "POST",
        &format!("{CMS}?fieldManager={long}"),
        "application/json",
        &cm.to_string(),
    )?;
    ensure!(
        code == 422
            && body["message"]
                == r#"CreateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes"#,
        "{code} {body}"
    );
    let (code, body) = env_req(
        &s,
        "PATCH",
        &format!("{CMS}/m"),
        "application/apply-patch+yaml",
        &cm.to_string(),
    )?;
    ensure!(
        code == 422
            && body["message"]
                == r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#,
        "{code} {body}"
    );
    let (code, body) = env_req(
        &s,
        "PATCH",
        &format!("{CMS}/m?force=true"),
        "application/merge-patch+json",
        "{}",
    )?;
    ensure!(code == 422, "{code} {body}");
    // An apply conflict carries its causes.
    let (code, body) = env_req(
        &s,
        "PATCH",
        &format!("{CMS}/m?fieldManager=applier"),
        "application/apply-patch+yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata: {a: other}\n",
    )?;
    ensure!(code == 409 && body["reason"] == "Conflict", "{code} {body}");
    ensure!(
        body["details"]["causes"][0]
            == json!({"reason": "FieldManagerConflict", "field": ".data.a",
                      "message": body["details"]["causes"][0]["message"].clone()})
            && body["details"]["causes"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(r#"conflict with "editor" using v1 at "#)),
        "{body}"
    );
    Ok(())
}

#[test]
fn dry_run_on_every_write_answers_and_leaves_the_store_unchanged() -> Result<()> {
    let s = SingleServer::start()?;
    let dep: Value = serde_yaml_value(DEPLOYMENT)?;
    let (code, body) = env_req(&s, "POST", DEPLOYS, "application/json", &dep.to_string())?;
    ensure!(code == 201, "{code} {body}");
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    env_req(
        &s,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        "application/json",
        &sa.to_string(),
    )?;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let (code, body) = env_req(
        &s,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        &pod.to_string(),
    )?;
    ensure!(code == 201, "{code} {body}");
    let snapshot = |s: &SingleServer| -> Result<(Value, Value)> {
        let (_, d) = env_req(s, "GET", &format!("{DEPLOYS}/web"), "application/json", "")?;
        let (_, p) = env_req(
            s,
            "GET",
            "/api/v1/namespaces/default/pods/p",
            "application/json",
            "",
        )?;
        Ok((d, p))
    };
    let before = snapshot(&s)?;

    let mut changed = dep.clone();
    changed["spec"]["replicas"] = json!(9);
    let writes: Vec<(&str, String, &str, String, u16)> = vec![
        ("POST", format!("{DEPLOYS}?dryRun=All"), "application/json",
         dep.to_string().replace("\"web\"", "\"other\""), 201),
        ("PUT", format!("{DEPLOYS}/web?dryRun=All"), "application/json", changed.to_string(), 200),
        ("PATCH", format!("{DEPLOYS}/web?dryRun=All"), "application/merge-patch+json",
         r#"{"spec":{"replicas":9}}"#.into(), 200),
        ("PATCH", format!("{DEPLOYS}/web?dryRun=All&fieldManager=m&force=true"), "application/apply-patch+yaml",
         changed.to_string(), 200),
        ("PATCH", format!("{DEPLOYS}/other?dryRun=All&fieldManager=m"), "application/apply-patch+yaml",
         dep.to_string().replace("\"web\"", "\"other\""), 201),
        ("PUT", format!("{DEPLOYS}/web/scale?dryRun=All"), "application/json",
         json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"replicas": 9}}).to_string(), 200),
        ("PATCH", format!("{DEPLOYS}/web/status?dryRun=All"), "application/merge-patch+json",
         r#"{"status":{"replicas":9}}"#.into(), 200),
        ("POST", "/api/v1/namespaces/default/pods/p/binding?dryRun=All".into(), "application/json",
         json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                "target": {"kind": "Node", "name": "n1"}}).to_string(), 201),
        ("DELETE", format!("{DEPLOYS}/web?dryRun=All"), "application/json", String::new(), 200),
        ("DELETE", format!("{DEPLOYS}?dryRun=All"), "application/json", String::new(), 200),
        ("DELETE", "/api/v1/namespaces/default/pods/p?dryRun=All".into(), "application/json", String::new(), 200),
    ];
    for (method, path, ct, body, want) in &writes {
        let (code, out) = env_req(&s, method, path, ct, body)?;
        ensure!(code == *want, "{method} {path}: {code} {out}");
    }
    let after = snapshot(&s)?;
    ensure!(
        before == after,
        "dry runs changed the store:\n{before:?}\n{after:?}"
    );
    let (code, _) = env_req(&s, "GET", &format!("{DEPLOYS}/other"), "application/json", "")?;
    ensure!(code == 404, "a dry-run create stored its object");

    let (code, body) = env_req(
        &s,
        "DELETE",
        &format!("{DEPLOYS}/web?dryRun=Bogus"),
        "application/json",
        "",
    )?;
    ensure!(code == 400, "{code} {body}");
    Ok(())
}
