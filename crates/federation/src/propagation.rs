//! What a federated object asks of each member cluster, as pure functions: which clusters its placement selects
//! ([`selected_clusters`]) and the object each of them should hold ([`desired_object`]: the template, the
//! per-cluster overrides, the managed label).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::crds::{MANAGED_LABEL, TargetType};

/// A member cluster as the sync controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
}

fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    if match_labels.is_some_and(|m| {
        m.iter()
            .any(|(k, v)| labels.get(k).map(String::as_str) != v.as_str())
    }) {
        return false;
    }
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    exprs.iter().all(|e| {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let have = labels.get(key).map(String::as_str);
        match e["operator"].as_str().unwrap_or("") {
            "In" => have.is_some_and(|h| values.contains(&h)),
            "NotIn" => have.is_none_or(|h| !values.contains(&h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    })
}

/// The clusters a federated object's `spec.placement` selects, in name order: the `clusters` list when given,
/// otherwise those matching `clusterSelector` (`{}` selects every cluster); no placement selects none, as upstream.
pub fn selected_clusters(fed: &Value, members: &[Member]) -> Vec<String> {
    let placement = &fed["spec"]["placement"];
    let mut out: Vec<String> = if let Some(list) = placement.get("clusters").and_then(Value::as_array) {
        list.iter()
            .filter_map(|c| c["name"].as_str())
            .filter(|n| members.iter().any(|m| m.name == *n))
            .map(str::to_string)
            .collect()
    } else if let Some(selector) = placement.get("clusterSelector").filter(|s| s.is_object()) {
        members
            .iter()
            .filter(|m| selector_matches(selector, &m.labels))
            .map(|m| m.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    out.sort();
    out.dedup();
    out
}

/// Applies one `clusterOverrides` entry: `op` add, replace (the default) or remove at a JSON-pointer `path`.
fn apply_override(obj: &mut Value, op: &str, path: &str, value: Option<&Value>) {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => m.entry(seg.clone()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    match (cur, op) {
        (Value::Object(m), "remove") => {
            m.remove(last);
        }
        (Value::Object(m), _) => {
            if let Some(v) = value {
                m.insert(last.clone(), v.clone());
            }
        }
        (Value::Array(a), "remove") => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < a.len()) {
                a.remove(i);
            }
        }
        (Value::Array(a), "add") => {
            if let Some(v) = value {
                match last.parse::<usize>().ok().filter(|i| *i <= a.len()) {
                    Some(i) => a.insert(i, v.clone()),
                    None if last == "-" => a.push(v.clone()),
                    None => {}
                }
            }
        }
        (Value::Array(a), _) => {
            if let (Some(v), Some(slot)) = (value, last.parse::<usize>().ok().and_then(|i| a.get_mut(i))) {
                *slot = v.clone();
            }
        }
        _ => {}
    }
}

/// The object `cluster` should hold for federated object `fed`: its template with name, namespace and the managed
/// label, then the cluster's overrides applied in order.
pub fn desired_object(fed: &Value, target: &TargetType, cluster: &str) -> Value {
    let mut obj = fed["spec"]["template"].clone();
    if !obj.is_object() {
        obj = json!({});
    }
    obj["apiVersion"] = json!(target.api_version());
    obj["kind"] = json!(target.kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let name = fed["metadata"]["name"].clone();
    obj["metadata"]["name"] = name;
    if target.namespaced {
        obj["metadata"]["namespace"] = fed["metadata"]["namespace"].clone();
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    if !obj["metadata"]["labels"].is_object() {
        obj["metadata"]["labels"] = json!({});
    }
    obj["metadata"]["labels"][MANAGED_LABEL] = json!("true");
    let overrides = fed["spec"]["overrides"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for o in overrides.iter().filter(|o| o["clusterName"] == cluster) {
        for co in o["clusterOverrides"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let op = co["op"].as_str().unwrap_or("replace");
            if let Some(path) = co["path"].as_str() {
                apply_override(&mut obj, op, path, co.get("value"));
            }
        }
    }
    obj
}

/// The parts of an object propagation owns: everything but `metadata` and `status`, plus the labels and
/// annotations the template sets. Two objects with equal parts need no write.
pub fn managed_parts(obj: &Value, template_meta: &Value) -> Value {
    let mut parts = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind") {
                parts.insert(k.clone(), v.clone());
            }
        }
    }
    for field in ["labels", "annotations"] {
        let wanted = template_meta[field].as_object();
        let have: Map<String, Value> = wanted
            .map(|w| {
                w.keys()
                    .map(|k| (k.clone(), obj["metadata"][field][k].clone()))
                    .collect()
            })
            .unwrap_or_default();
        parts.insert(format!("metadata.{field}"), Value::Object(have));
    }
    Value::Object(parts)
}

/// `current` (as the member holds it) updated to `desired`: propagation's fields replaced, the member's own
/// metadata (resourceVersion, uid, other labels) and status kept. With `retain_replicas`, the member's
/// `spec.replicas` stays (upstream's `retainReplicas`, for members that autoscale).
pub fn merged_for_update(current: &Value, desired: &Value, retain_replicas: bool) -> Value {
    let mut out = desired.clone();
    out["metadata"] = current["metadata"].clone();
    for field in ["labels", "annotations"] {
        if let Some(want) = desired["metadata"][field].as_object() {
            if !out["metadata"][field].is_object() {
                out["metadata"][field] = json!({});
            }
            for (k, v) in want {
                out["metadata"][field][k] = v.clone();
            }
        }
    }
    if let Some(status) = current.get("status") {
        out["status"] = status.clone();
    }
    if retain_replicas && let Some(r) = current.pointer("/spec/replicas") {
        out["spec"]["replicas"] = r.clone();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crds::target_type;

    fn member(name: &str, labels: &[(&str, &str)]) -> Member {
        Member {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ready: true,
        }
    }

    fn fed() -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"replicas": 3,
                "template": {"spec": {"containers": [{"name": "c", "args": ["a"]}]}}}},
            "placement": {"clusters": [{"name": "m2"}, {"name": "m1"}, {"name": "gone"}]},
            "overrides": [{"clusterName": "m2", "clusterOverrides": [
                {"path": "/spec/replicas", "value": 5},
                {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "b"},
                {"op": "remove", "path": "/metadata/labels/app"}]}]}})
    }

    #[test]
    fn placement_by_list_or_selector_picks_known_clusters_in_name_order() {
        let members = [
            member("m1", &[("region", "eu")]),
            member("m2", &[("region", "us")]),
        ];
        assert_eq!(selected_clusters(&fed(), &members), vec!["m1", "m2"]);
        let by_label = json!({"spec": {"placement": {"clusterSelector": {"matchLabels": {"region": "us"}}}}});
        assert_eq!(selected_clusters(&by_label, &members), vec!["m2"]);
        let all = json!({"spec": {"placement": {"clusterSelector": {}}}});
        assert_eq!(selected_clusters(&all, &members), vec!["m1", "m2"]);
        let expr = json!({"spec": {"placement": {"clusterSelector": {"matchExpressions": [
            {"key": "region", "operator": "NotIn", "values": ["us"]}]}}}});
        assert_eq!(selected_clusters(&expr, &members), vec!["m1"]);
        assert!(selected_clusters(&json!({"spec": {}}), &members).is_empty());
    }

    #[test]
    fn each_cluster_gets_the_template_with_its_own_overrides_and_the_managed_label() {
        let t = target_type("deployments").unwrap();
        let m1 = desired_object(&fed(), &t, "m1");
        assert_eq!(m1["apiVersion"], "apps/v1");
        assert_eq!(m1["metadata"]["namespace"], "shop");
        assert_eq!(m1["metadata"]["labels"]["kubefed.io/managed"], "true");
        assert_eq!(m1["metadata"]["labels"]["app"], "web");
        assert_eq!(m1["spec"]["replicas"], 3);
        let m2 = desired_object(&fed(), &t, "m2");
        assert_eq!(m2["spec"]["replicas"], 5);
        assert_eq!(
            m2["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["a", "b"])
        );
        assert!(m2["metadata"]["labels"].get("app").is_none());
    }

    #[test]
    fn an_update_keeps_the_members_metadata_status_and_retained_replicas() {
        let t = target_type("deployments").unwrap();
        let desired = desired_object(&fed(), &t, "m1");
        let current = json!({"metadata": {"name": "web", "resourceVersion": "7", "labels": {"mine": "x"}},
            "spec": {"replicas": 9}, "status": {"readyReplicas": 9}});
        let merged = merged_for_update(&current, &desired, true);
        assert_eq!(merged["metadata"]["resourceVersion"], "7");
        assert_eq!(merged["metadata"]["labels"]["mine"], "x");
        assert_eq!(merged["metadata"]["labels"]["kubefed.io/managed"], "true");
        assert_eq!(merged["spec"]["replicas"], 9);
        assert_eq!(merged["status"]["readyReplicas"], 9);
        let tm = &fed()["spec"]["template"]["metadata"];
        assert_eq!(
            managed_parts(&merged_for_update(&current, &desired, false), tm),
            managed_parts(&desired, tm)
        );
    }
}
