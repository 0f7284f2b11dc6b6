//! `POST pods/<name>/binding` against a real server: the pod gets its node, the Binding's annotations and a
//! `PodScheduled: True` condition (replacing a scheduler's `Unschedulable` one), once.

mod common;

use anyhow::{Result, ensure};
use common::*;
use serde_json::{Value, json};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn send(s: &SingleServer, method: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
    let body = body.to_string();
    let mut args = vec![path, "-X", method, "-H", "Content-Type: application/json"];
    if method != "GET" {
        args.extend(["--data-binary", body.as_str()]);
    }
    let (code, text) = curl(&s.pki, s.server.port, &args)?;
    Ok((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn scheduled_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled")
}

#[tokio::test(flavor = "multi_thread")]
async fn binding_sets_the_node_and_marks_the_pod_scheduled_once() -> Result<()> {
    let s = SingleServer::start()?;
    let (code, _) = send(
        &s,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    )?;
    ensure!(code == 201, "{code}");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let (code, created) = send(&s, "POST", PODS, &pod)?;
    ensure!(code == 201, "{code} {created}");

    // The scheduler reported it unschedulable first.
    let mut unschedulable = created.clone();
    unschedulable["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/1 nodes are available",
        "lastTransitionTime": "2024-01-01T00:00:00Z"}]);
    let (code, body) = send(&s, "PUT", &format!("{PODS}/web/status"), &unschedulable)?;
    ensure!(code == 200, "{code} {body}");

    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web", "annotations": {"example.com/placed-by": "test"}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let (code, body) = send(&s, "POST", &format!("{PODS}/web/binding"), &binding)?;
    ensure!(code == 201 && body["status"] == "Success", "{code} {body}");

    let (code, bound) = send(&s, "GET", &format!("{PODS}/web"), &Value::Null)?;
    ensure!(code == 200, "{code} {bound}");
    ensure!(bound["spec"]["nodeName"] == "node-1", "{bound}");
    ensure!(
        bound["metadata"]["annotations"]["example.com/placed-by"] == "test",
        "{bound}"
    );
    let cond = scheduled_condition(&bound).cloned().unwrap_or(Value::Null);
    ensure!(cond["status"] == "True", "{bound}");
    ensure!(
        cond.get("reason").is_none() && cond.get("message").is_none(),
        "the Unschedulable reason stays: {cond}"
    );
    ensure!(
        cond["lastTransitionTime"]
            .as_str()
            .is_some_and(|t| t != "2024-01-01T00:00:00Z"),
        "{cond}"
    );
    let conditions = bound["status"]["conditions"].as_array().map_or(0, Vec::len);
    ensure!(conditions == 1, "{bound}");

    // A second binding is refused and changes nothing.
    let again = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-2"}});
    let (code, body) = send(&s, "POST", &format!("{PODS}/web/binding"), &again)?;
    ensure!(code == 409, "{code} {body}");
    let (_, after) = send(&s, "GET", &format!("{PODS}/web"), &Value::Null)?;
    ensure!(after["spec"]["nodeName"] == "node-1", "{after}");
    Ok(())
}
