//! The Python `kubernetes` package (a client-go-style client nobody here wrote) against a real server on etcd.
//! Needs the venv at `$HOME/.cache/bulwark/venv` with `kubernetes` installed (scripts/install-deps).

mod common;

use std::path::PathBuf;

use anyhow::{Result, ensure};
use common::*;

const SCRIPT: &str = r#"
import sys
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "default"

def status_of(fn):
    try:
        fn()
    except ApiException as e:
        return e.status, e.reason
    return None

# CRUD
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"from": "python"}), data={"a": "1"})
created = v1.create_namespaced_config_map(ns, cm)
assert created.metadata.uid and created.metadata.resource_version, created
got = v1.read_namespaced_config_map("py", ns)
assert got.data == {"a": "1"}, got.data
patched = v1.patch_namespaced_config_map("py", ns, {"data": {"b": "2"}})
assert patched.data == {"a": "1", "b": "2"}, patched.data
got = v1.read_namespaced_config_map("py", ns)
got.data["a"] = "changed"
replaced = v1.replace_namespaced_config_map("py", ns, got)
assert replaced.data["a"] == "changed"
listed = v1.list_namespaced_config_map(ns, label_selector="from=python")
assert [i.metadata.name for i in listed.items] == ["py"], listed.items

# Errors as ApiException with upstream's codes
assert status_of(lambda: v1.read_namespaced_config_map("missing", ns))[0] == 404
assert status_of(lambda: v1.create_namespaced_config_map(ns, cm))[0] == 409
bad = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_Valid"))
assert status_of(lambda: v1.create_namespaced_config_map(ns, bad))[0] == 422
got.data["a"] = "stale"
assert status_of(lambda: v1.replace_namespaced_config_map("py", ns, got))[0] == 409
assert status_of(lambda: v1.list_namespaced_config_map(ns, label_selector="a in (b"))[0] == 400

# Deployments through the typed apps client
dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="pyweb"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "pyweb"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "pyweb"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx:1.25")]))))
d = apps.create_namespaced_deployment(ns, dep)
assert d.spec.strategy.type == "RollingUpdate", d.spec.strategy
scale = apps.patch_namespaced_deployment_scale("pyweb", ns, {"spec": {"replicas": 5}})
assert scale.spec.replicas == 5

# Watch from a list's resourceVersion sees a later create and delete
rv = v1.list_namespaced_config_map(ns).metadata.resource_version
v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-watched")))
v1.delete_namespaced_config_map("py-watched", ns)
seen = []
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
    seen.append((ev["type"], ev["object"].metadata.name))
    if ev["type"] == "DELETED":
        w.stop()
assert seen == [("ADDED", "py-watched"), ("DELETED", "py-watched")], seen

v1.delete_namespaced_config_map("py", ns)
assert status_of(lambda: v1.read_namespaced_config_map("py", ns))[0] == 404

# Custom resources: a CRD through the apiextensions client, its objects through CustomObjectsApi, a watch
ext = client.ApiextensionsV1Api()
crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "widgets.py.example.com"},
       "spec": {"group": "py.example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                  "spec": {"type": "object", "properties": {
                                      "size": {"type": "integer", "default": 3}}}}}}}]}}
made = ext.create_custom_resource_definition(crd)
assert [c.type for c in made.status.conditions] == ["NamesAccepted", "Established"], made.status
co = client.CustomObjectsApi()
g = ("py.example.com", "v1", ns, "widgets")
widget = lambda name, spec: {"apiVersion": "py.example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
w1 = co.create_namespaced_custom_object(*g, widget("w1", {}))
assert w1["spec"]["size"] == 3, w1
assert status_of(lambda: co.create_namespaced_custom_object(*g, widget("w2", {"size": "big"})))[0] == 422
listed = co.list_namespaced_custom_object(*g)
assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"], listed
co.patch_namespaced_custom_object(*g, "w1", {"spec": {"size": 5}})
co.delete_namespaced_custom_object(*g, "w1")
seen = []
w = watch.Watch()
for ev in w.stream(co.list_namespaced_custom_object, *g, resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=10):
    seen.append((ev["type"], ev["object"]["spec"]["size"]))
    if ev["type"] == "DELETED":
        w.stop()
assert seen == [("MODIFIED", 5), ("DELETED", 5)], seen
ext.delete_custom_resource_definition("widgets.py.example.com")
print("python client ok")
"#;

fn venv_python() -> Option<PathBuf> {
    let python = PathBuf::from(std::env::var_os("HOME")?).join(".cache/bulwark/venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output()
        .ok()?
        .status
        .success();
    ok.then_some(python)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_does_crud_watch_custom_objects_and_gets_api_exceptions_with_upstream_codes()
-> Result<()> {
    let Some(python) = venv_python() else {
        // CI installs the venv (scripts/install-deps); a missing client there is a failure, not a skip.
        ensure!(
            std::env::var_os("CI").is_none(),
            "no venv with the kubernetes package under ~/.cache/bulwark/venv"
        );
        eprintln!("no venv with the kubernetes package under ~/.cache/bulwark/venv; skipping");
        return Ok(());
    };
    let etcd = testkit::etcd::EtcdCluster::start_single().await?;
    let port = free_port()?;
    let pki = Pki::new(port)?;
    let server = ApiServer::start(
        &pki,
        port,
        &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
    )?;
    let script = pki.dir.path().join("client.py");
    std::fs::write(&script, SCRIPT)?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(pki.kubeconfig())
        .output()?;
    ensure!(
        out.status.success() && text(&out.stdout).contains("python client ok"),
        "python client failed:\n{}\n{}\nserver log:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        server.log_tail()
    );
    Ok(())
}
