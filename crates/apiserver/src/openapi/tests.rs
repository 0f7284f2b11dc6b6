//! Unit tests of the OpenAPI documents: content, shape rules kubectl relies on, the protobuf
//! encoding and the cache.

use std::sync::Arc;

use api::{Registry, ResourceInfo};
use prost::Message;
use serde_json::{Value, json};

use super::definitions::{self, GVK_EXTENSION, REF_PREFIX, kind_definition};
use super::*;

fn v2(registry: &Registry) -> Value {
    serde_json::from_slice(&v2_json(registry)).unwrap()
}

fn gvks_of(schema: &Value) -> Vec<(String, String, String)> {
    schema[GVK_EXTENSION]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| {
                    (
                        g["group"].as_str().unwrap().to_owned(),
                        g["version"].as_str().unwrap().to_owned(),
                        g["kind"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_registry_kind_and_list_kind_has_a_definition_tagged_with_its_gvk() {
    let registry = Registry::builtin();
    let doc = v2(&registry);
    let defs = &doc["definitions"];
    for info in registry.iter() {
        let kd = kind_definition(info);
        assert!(
            kd.name.starts_with("io.k8s."),
            "{} has name {}",
            info.kind,
            kd.name
        );
        let def = &defs[&kd.name];
        assert!(def.is_object(), "no definition {}", kd.name);
        let gvk = (info.group.clone(), info.version.clone(), info.kind.clone());
        assert!(gvks_of(def).contains(&gvk), "{} lacks its GVK", kd.name);
        assert!(
            !def["description"].as_str().unwrap_or_default().is_empty(),
            "{}",
            kd.name
        );
        if let Some(list) = &kd.list_name {
            let list_def = &defs[list];
            let list_gvk = (
                info.group.clone(),
                info.version.clone(),
                format!("{}List", info.kind),
            );
            assert!(gvks_of(list_def).contains(&list_gvk), "{list} lacks its GVK");
            assert_eq!(
                list_def["properties"]["items"]["items"]["$ref"],
                format!("{REF_PREFIX}{}", kd.name)
            );
        }
    }
    // Subresource kinds and the shared meta kinds are there too.
    for name in [
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.api.policy.v1.Eviction",
        "io.k8s.api.authentication.v1.TokenRequest",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    ] {
        assert!(defs[name].is_object(), "{name}");
    }
    assert!(
        gvks_of(&defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]).contains(&(
            "apps".into(),
            "v1".into(),
            "DeleteOptions".into()
        ))
    );
}

#[test]
fn pod_spec_containers_carry_upstream_merge_key_and_list_type() {
    let registry = Registry::builtin();
    let containers = &v2(&registry)["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(containers["type"], "array");
    assert_eq!(
        containers["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    assert!(
        containers["description"]
            .as_str()
            .unwrap()
            .contains("List of containers")
    );

    let ports = &v2(&registry)["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    let strategy =
        &v2(&registry)["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");

    let v3 = v3_group_version(&registry, "", "v1").unwrap();
    let containers = &v3["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        containers["items"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.Container"
    );
}

#[test]
fn special_types_are_written_as_upstream_writes_them() {
    let registry = Registry::builtin();
    let defs = &v2(&registry)["definitions"];
    let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(
        (ios["type"].as_str(), ios["format"].as_str()),
        (Some("string"), Some("int-or-string"))
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
    let time = &defs["io.k8s.apimachinery.pkg.apis.meta.v1.Time"];
    assert_eq!(
        (time["type"].as_str(), time["format"].as_str()),
        (Some("string"), Some("date-time"))
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.runtime.RawExtension"]["type"],
        "object"
    );

    let apps = v3_group_version(&registry, "apps", "v1").unwrap();
    let schemas = &apps["components"]["schemas"];
    let ios = &schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
    assert_eq!(ios["x-kubernetes-int-or-string"], true);
    assert_eq!(ios["format"], "int-or-string");
    // A described reference is wrapped in allOf, since OpenAPI 3.0 ignores $ref siblings.
    let meta = &schemas["io.k8s.api.apps.v1.Deployment"]["properties"]["metadata"];
    assert_eq!(
        meta["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(meta["description"].is_string());
}

#[test]
fn top_level_kinds_do_not_require_metadata() {
    let registry = Registry::builtin();
    let defs = &v2(&registry)["definitions"];
    for name in [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.core.v1.ConfigMap",
        "io.k8s.api.apps.v1.Deployment",
    ] {
        let required = defs[name]["required"].as_array().cloned().unwrap_or_default();
        assert!(!required.contains(&json!("metadata")), "{name}: {required:?}");
    }
    // Upstream's real requirements stay, metadata of core Events included.
    let event = defs["io.k8s.api.core.v1.Event"]["required"].as_array().unwrap();
    assert!(event.contains(&json!("metadata")) && event.contains(&json!("involvedObject")));
    assert!(
        defs["io.k8s.api.core.v1.PodSpec"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("containers"))
    );
}

/// kube-openapi's `util/proto` (kubectl 1.20) rejects the whole document on any of these.
fn check_kubectl_parser_rules(path: &str, v: &Value, defs: &serde_json::Map<String, Value>) {
    let Some(o) = v.as_object() else {
        panic!("{path}: schema is not an object");
    };
    if let Some(r) = o.get("$ref") {
        let r = r.as_str().unwrap();
        let name = r
            .strip_prefix(REF_PREFIX)
            .unwrap_or_else(|| panic!("{path}: bad ref {r}"));
        assert!(defs.contains_key(name), "{path}: dangling ref {r}");
        assert!(
            !o.contains_key("type") && !o.contains_key("properties"),
            "{path}: ref with type"
        );
        return;
    }
    match o.get("type") {
        Some(Value::String(t)) => {
            assert!(
                ["object", "array", "string", "number", "integer", "boolean"].contains(&t.as_str()),
                "{path}: type {t}"
            );
            if t == "array" {
                assert!(
                    o.get("items").is_some_and(Value::is_object),
                    "{path}: array without one items schema"
                );
            }
        }
        Some(other) => panic!("{path}: type {other}"),
        None => {}
    }
    for key in ["oneOf", "anyOf"] {
        assert!(!o.contains_key(key), "{path}: {key} in v2");
    }
    if let Some(Value::Object(props)) = o.get("properties") {
        for (k, p) in props {
            check_kubectl_parser_rules(&format!("{path}.{k}"), p, defs);
        }
    }
    if let Some(items) = o.get("items") {
        check_kubectl_parser_rules(&format!("{path}[]"), items, defs);
    }
    if let Some(ap @ Value::Object(_)) = o.get("additionalProperties") {
        check_kubectl_parser_rules(&format!("{path}{{}}"), ap, defs);
    }
}

#[test]
fn v2_definitions_follow_the_rules_of_kubectl_1_20_schema_parser() {
    let doc = v2(&Registry::builtin());
    let defs = doc["definitions"].as_object().unwrap();
    assert!(defs.len() > 150, "{} definitions", defs.len());
    for (name, schema) in defs {
        check_kubectl_parser_rules(name, schema, defs);
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            assert!(op["x-kubernetes-action"].is_string(), "{path} {method}");
            assert!(
                op["x-kubernetes-group-version-kind"]["kind"].is_string(),
                "{path} {method}"
            );
            let r = op["responses"]["200"]["schema"]["$ref"].as_str().unwrap();
            assert!(
                defs.contains_key(r.trim_start_matches(REF_PREFIX)),
                "{path} {method}: {r}"
            );
        }
    }
    let pod_get = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["get"];
    assert_eq!(pod_get["operationId"], "readCoreV1NamespacedPod");
    assert_eq!(
        pod_get["x-kubernetes-group-version-kind"],
        json!({"group": "", "kind": "Pod", "version": "v1"})
    );
    let list = &doc["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles"]["get"];
    assert_eq!(list["operationId"], "listRbacAuthorizationV1ClusterRole");
}

#[test]
fn protobuf_round_trips_and_carries_extensions_as_yaml() {
    let registry = Registry::builtin();
    let bytes = v2_protobuf(&registry);
    let decoded = proto::Document::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, proto::document(&v2(&registry)));
    assert_eq!(decoded.swagger, "2.0");
    let defs = &decoded.definitions.as_ref().unwrap().additional_properties;
    let pod = defs.iter().find(|d| d.name == "io.k8s.api.core.v1.Pod").unwrap();
    let pod = pod.value.as_ref().unwrap();
    let gvk = pod
        .vendor_extension
        .iter()
        .find(|e| e.name == GVK_EXTENSION)
        .unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&gvk.value.as_ref().unwrap().yaml).unwrap();
    let expected: serde_yaml::Value =
        serde_yaml::from_str("- group: ''\n  kind: Pod\n  version: v1\n").unwrap();
    assert_eq!(yaml, expected);
    assert!(pod.description.starts_with("Pod is a collection of containers"));

    let spec = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.PodSpec")
        .unwrap();
    let props = &spec
        .value
        .as_ref()
        .unwrap()
        .properties
        .as_ref()
        .unwrap()
        .additional_properties;
    let containers = props
        .iter()
        .find(|p| p.name == "containers")
        .unwrap()
        .value
        .as_ref()
        .unwrap();
    assert_eq!(containers.r#type.as_ref().unwrap().value, ["array"]);
    assert_eq!(
        containers.items.as_ref().unwrap().schema[0].xref,
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    let merge_key = containers
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-patch-merge-key")
        .unwrap();
    assert_eq!(merge_key.value.as_ref().unwrap().yaml.trim(), "name");

    let paths = &decoded.paths.as_ref().unwrap().path;
    let pod_path = paths
        .iter()
        .find(|p| p.name == "/api/v1/namespaces/{namespace}/pods/{name}")
        .unwrap();
    let get = pod_path.value.as_ref().unwrap().get.as_ref().unwrap();
    assert!(
        get.vendor_extension
            .iter()
            .any(|e| e.name == "x-kubernetes-action")
    );
}

#[test]
fn v3_index_lists_every_group_version_with_the_hash_of_its_document() {
    let registry = Registry::builtin();
    let index = v3_index(&registry);
    let paths = index["paths"].as_object().unwrap();
    assert!(paths.contains_key("api/v1"));
    assert!(paths.contains_key("apis/apps/v1"));
    assert!(paths.contains_key("apis/rbac.authorization.k8s.io/v1"));
    assert_eq!(paths.len(), registry.group_versions().len());
    let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let hash = v3_hash(&registry, "apps", "v1").unwrap();
    assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
    assert_eq!(hash.len(), 128);

    let apps = v3_group_version(&registry, "apps", "v1").unwrap();
    assert_eq!(apps["openapi"], "3.0.0");
    let schemas = apps["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    assert!(schemas.contains_key("io.k8s.api.apps.v1.DeploymentList"));
    assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
    // Self-contained: every reference resolves within the document, none is left in v2 form.
    let text = apps.to_string();
    assert!(!text.contains("#/definitions/"));
    let mut refs = Vec::new();
    collect_refs(&apps, &mut refs);
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "dangling {r}");
    }
    assert!(
        !schemas.contains_key("io.k8s.api.core.v1.Service"),
        "core kinds leak into apps/v1"
    );
    assert!(v3_group_version(&registry, "nope.example.com", "v1").is_none());
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match v {
                    Value::String(s) if k == "$ref" => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn documents_are_cached_per_registry_content() {
    let registry = Registry::builtin();
    let a = documents(&registry);
    let b = documents(&registry.clone());
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(v2_etag(&registry), a.v2_hash);

    let mut with_crd = registry.clone();
    with_crd
        .insert(ResourceInfo::custom(
            "stable.example.com",
            "v1",
            "CronTab",
            "crontabs",
            "crontab",
            true,
        ))
        .unwrap();
    let c = documents(&with_crd);
    assert!(!Arc::ptr_eq(&a, &c));
    assert!(c.v3.contains_key("apis/stable.example.com/v1"));
}

/// A CRD-style structural schema for `stable.example.com/v1 CronTab`.
pub(super) struct CronTabSchema;

impl SchemaSource for CronTabSchema {
    fn schema(&self, info: &ResourceInfo) -> Option<Value> {
        (info.kind == "CronTab").then(|| {
            json!({
                "type": "object",
                "description": "A cron tab.",
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {
                            "cronSpec": {"type": "string", "description": "When to run."},
                            "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}},
                        },
                    },
                },
            })
        })
    }
}

#[test]
fn a_custom_kind_publishes_its_structural_schema_under_upstream_naming() {
    let mut registry = Registry::builtin();
    registry
        .insert(ResourceInfo::custom(
            "stable.example.com",
            "v1",
            "CronTab",
            "crontabs",
            "crontab",
            true,
        ))
        .unwrap();
    let docs = documents_with(&registry, &CronTabSchema);
    assert!(
        !Arc::ptr_eq(&docs, &documents(&registry)),
        "custom schemas are part of the cache key"
    );
    let v2: Value = serde_json::from_slice(&docs.v2_json).unwrap();
    let def = &v2["definitions"]["com.example.stable.v1.CronTab"];
    assert_eq!(
        gvks_of(def),
        [("stable.example.com".into(), "v1".into(), "CronTab".into())]
    );
    assert_eq!(
        def["properties"]["metadata"]["$ref"],
        format!("{REF_PREFIX}{}", definitions::OBJECT_META)
    );
    assert_eq!(
        def["properties"]["spec"]["properties"]["cronSpec"]["description"],
        "When to run."
    );
    let port = &def["properties"]["spec"]["properties"]["port"];
    assert_eq!(
        (port["type"].as_str(), port["format"].as_str()),
        (Some("string"), Some("int-or-string"))
    );
    assert!(port.get("anyOf").is_none());
    let extra = &def["properties"]["spec"]["properties"]["extra"];
    assert!(extra.get("properties").is_none() && extra.get("type").is_none());
    assert!(v2["definitions"]["com.example.stable.v1.CronTabList"].is_object());

    let v3: Value = serde_json::from_slice(&docs.v3["apis/stable.example.com/v1"].json).unwrap();
    let schemas = &v3["components"]["schemas"];
    assert_eq!(
        schemas["com.example.stable.v1.CronTab"]["properties"]["spec"]["properties"]["port"]["x-kubernetes-int-or-string"],
        true
    );
    assert!(schemas[definitions::OBJECT_META].is_object());
}
