//! Discovery documents: `/api`, `/apis`, per group-version resource lists, aggregated discovery (`apidiscovery.k8s.io`
//! v2 and v2beta1, as kubectl >= 1.30 asks for), and `/version`.

use api::{Registry, ResourceInfo};
use serde_json::{Value, json};

/// The Kubernetes version bulwark serves, kept equal to what `kubeadm` deploys.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": KUBERNETES_VERSION,
        "gitCommit": "bulwark",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn server_addresses() -> Value {
    json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}])
}

/// Groups other than core, each with its versions (the registry's first version preferred).
fn groups(reg: &Registry) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (g, v) in reg.group_versions() {
        if g.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(name, _)| *name == g) {
            Some((_, vs)) => {
                if !vs.contains(&v) {
                    vs.push(v)
                }
            }
            None => out.push((g, vec![v])),
        }
    }
    out
}

pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": server_addresses()})
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = groups(reg)
        .into_iter()
        .map(|(g, vs)| group_doc(&g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_doc(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({
        "name": g,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn group(reg: &Registry, g: &str) -> Option<Value> {
    let (_, vs) = groups(reg).into_iter().find(|(name, _)| name == g)?;
    let mut doc = group_doc(g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resources<'a>(reg: &'a Registry, g: &str, v: &str) -> Vec<&'a ResourceInfo> {
    reg.iter().filter(|r| r.group == g && r.version == v).collect()
}

/// `APIResourceList` for one group-version, or `None` when it is not served.
pub fn resource_list(reg: &Registry, g: &str, v: &str) -> Option<Value> {
    let rs = resources(reg, g, v);
    if rs.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in rs {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        list.push(main);
        for s in &r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind.kind,
                "verbs": s.verbs,
            });
            if s.kind.group != r.group || s.kind.version != r.version {
                sub["group"] = json!(s.kind.group);
                sub["version"] = json!(s.kind.version);
            }
            list.push(sub);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api::registry::api_version(g, v),
        "resources": list,
    }))
}

fn aggregated_resources(reg: &Registry, g: &str, v: &str) -> Vec<Value> {
    resources(reg, g, v)
        .into_iter()
        .map(|r| {
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    json!({
                        "subresource": s.name,
                        "responseKind": {"group": s.kind.group, "version": s.kind.version, "kind": s.kind.kind},
                        "verbs": s.verbs,
                    })
                })
                .collect();
            let mut doc = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                doc["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                doc["categories"] = json!(r.categories);
            }
            if !subs.is_empty() {
                doc["subresources"] = json!(subs);
            }
            doc
        })
        .collect()
}

/// `APIGroupDiscoveryList` for `/api` (`core`) or `/apis` (every other group).
pub fn aggregated(reg: &Registry, core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({
            "metadata": {"creationTimestamp": null},
            "versions": [{"version": "v1", "resources": aggregated_resources(reg, "", "v1"), "freshness": "Current"}],
        })]
    } else {
        groups(reg)
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"version": v, "resources": aggregated_resources(reg, &g, v), "freshness": "Current"}))
                    .collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}
