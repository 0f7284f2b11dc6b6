//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`): what a CRD serves and the rules its objects obey.
//!
//! - [`served_resources`]: the [`ResourceInfo`] of every served version of a CRD, each carrying its
//!   [`CustomResource`] (schema, printer columns, storage version, scale paths).
//! - [`validate_definition`]: the checks upstream makes on a CRD itself (names, scope, one storage version,
//!   structural schemas), as field errors for a 422.
//! - [`established_status`]: the `status` an API server gives an accepted CRD (`NamesAccepted`, `Established`,
//!   `acceptedNames`, `storedVersions`).
//! - [`schema`]: the structural-schema rules for custom objects: pruning of undeclared fields, defaults, and
//!   validation with upstream's messages.
//!
//! Everything works on `serde_json::Value` so that a CRD written by any client is read exactly as stored.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::registry::{GroupVersionKind, ResourceInfo, Subresource};
use crate::status::{FieldError, FieldPath};
use crate::table::PrinterColumn;

pub mod schema;

/// What a served version of a CRD brings beyond a [`ResourceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomResource {
    /// The version's `schema.openAPIV3Schema`.
    pub schema: Option<Value>,
    pub printer_columns: Vec<PrinterColumn>,
    /// The version objects are stored in (the one with `storage: true`).
    pub storage_version: String,
    pub scale: Option<ScalePaths>,
}

/// `subresources.scale` of a CRD version: where the replica counts live in the custom object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalePaths {
    pub spec_replicas_path: String,
    pub status_replicas_path: String,
    pub label_selector_path: Option<String>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn strings_at(v: &Value, path: &[&str]) -> Vec<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn versions(crd: &Value) -> &[Value] {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The name of the version with `storage: true` (the first one if a CRD is invalid and has several).
pub fn storage_version(crd: &Value) -> Option<&str> {
    versions(crd)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
}

/// `spec.names.singular`, defaulted to the lower-cased kind as upstream does.
fn singular(crd: &Value) -> String {
    match str_at(crd, &["spec", "names", "singular"]) {
        "" => str_at(crd, &["spec", "names", "kind"]).to_ascii_lowercase(),
        s => s.to_string(),
    }
}

/// The resources a (valid) CRD serves: one per version with `served: true`.
pub fn served_resources(crd: &Value) -> Vec<ResourceInfo> {
    let group = str_at(crd, &["spec", "group"]);
    let kind = str_at(crd, &["spec", "names", "kind"]);
    let plural = str_at(crd, &["spec", "names", "plural"]);
    let namespaced = str_at(crd, &["spec", "scope"]) != "Cluster";
    let storage = storage_version(crd).unwrap_or("").to_string();
    let singular = singular(crd);
    versions(crd)
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| {
            let version = v.get("name").and_then(Value::as_str)?;
            let mut info = ResourceInfo::custom(group, version, kind, plural, &singular, namespaced);
            info.short_names = strings_at(crd, &["spec", "names", "shortNames"]);
            info.categories = strings_at(crd, &["spec", "names", "categories"]);
            let subresources = v.get("subresources");
            let scale = subresources.and_then(|s| s.get("scale")).map(|s| ScalePaths {
                spec_replicas_path: str_at(s, &["specReplicasPath"]).to_string(),
                status_replicas_path: str_at(s, &["statusReplicasPath"]).to_string(),
                label_selector_path: s
                    .get("labelSelectorPath")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            });
            if subresources.and_then(|s| s.get("status")).is_some() {
                info.subresources.push(Subresource {
                    name: "status".into(),
                    kind: GroupVersionKind::new(group, version, kind),
                    verbs: vec!["get".into(), "patch".into(), "update".into()],
                });
            }
            if scale.is_some() {
                info.subresources.push(Subresource {
                    name: "scale".into(),
                    kind: GroupVersionKind::new("autoscaling", "v1", "Scale"),
                    verbs: vec!["get".into(), "patch".into(), "update".into()],
                });
            }
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default();
            info.custom = Some(Box::new(CustomResource {
                schema: v.pointer("/schema/openAPIV3Schema").cloned(),
                printer_columns,
                storage_version: storage.clone(),
                scale,
            }));
            Some(info)
        })
        .collect()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The checks upstream's CRD validation makes that clients run into; an empty result means valid.
pub fn validate_definition(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = FieldPath::new("spec");
    let names = spec.child("names");
    let group = str_at(crd, &["spec", "group"]);
    let plural = str_at(crd, &["spec", "names", "plural"]);
    let kind = str_at(crd, &["spec", "names", "kind"]);
    if group.is_empty() {
        errs.push(FieldError::required(&spec.child("group"), ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            &spec.child("group"),
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required(&names.child("plural"), ""));
    } else if !is_dns_label(plural) {
        errs.push(FieldError::invalid(
            &names.child("plural"),
            plural,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ));
    }
    let singular = str_at(crd, &["spec", "names", "singular"]);
    if !singular.is_empty() && !is_dns_label(singular) {
        errs.push(FieldError::invalid(
            &names.child("singular"),
            singular,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ));
    }
    if kind.is_empty() {
        errs.push(FieldError::required(&names.child("kind"), ""));
    }
    let name = str_at(crd, &["metadata", "name"]);
    let expected = format!("{plural}.{group}");
    if !plural.is_empty() && !group.is_empty() && name != expected {
        errs.push(FieldError::invalid(
            &FieldPath::new("metadata").child("name"),
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = str_at(crd, &["spec", "scope"]);
    if !matches!(scope, "Cluster" | "Namespaced") {
        errs.push(FieldError::not_supported(
            &spec.child("scope"),
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let vs = versions(crd);
    if vs.is_empty() {
        errs.push(FieldError::invalid(
            &spec.child("versions"),
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = vs
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !vs.is_empty() && storage != 1 {
        errs.push(FieldError::invalid(
            &spec.child("versions"),
            json!(vs),
            "must have exactly one version marked as storage version",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        let at = spec.child("versions").index(i);
        let vname = str_at(v, &["name"]);
        if !is_dns_label(vname) {
            errs.push(FieldError::invalid(
                &at.child("name"),
                vname,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            ));
        } else if seen.contains(&vname) {
            errs.push(FieldError::invalid(&at.child("name"), vname, "must be unique"));
        }
        seen.push(vname);
        let schema_at = at.child("schema").child("openAPIV3Schema");
        match v.pointer("/schema/openAPIV3Schema") {
            None | Some(Value::Null) => errs.push(FieldError::required(&schema_at, "schemas are required")),
            Some(s) => {
                let root_type = s.get("type").and_then(Value::as_str).unwrap_or("");
                let preserves = s.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
                if root_type != "object" && !(root_type.is_empty() && preserves) {
                    errs.push(FieldError::invalid(
                        &schema_at.child("type"),
                        root_type,
                        "must be object at the root",
                    ));
                }
                schema::check_structural(s, &schema_at, &mut errs);
            }
        }
    }
    errs
}

/// The status an API server gives a CRD whose names it accepted, keeping the stored versions of `old`.
pub fn established_status(crd: &Value, old: Option<&Value>, now: &str) -> Value {
    let mut stored: Vec<String> = old
        .map(|o| strings_at(o, &["status", "storedVersions"]))
        .unwrap_or_default();
    if let Some(s) = storage_version(crd)
        && !stored.iter().any(|v| v == s)
    {
        stored.push(s.to_string());
    }
    let condition = |type_: &str, reason: &str, message: &str| {
        // A condition keeps its transition time while it stays True.
        let since = old
            .and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == "True"))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        json!({"type": type_, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let mut accepted = crd.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    accepted["singular"] = json!(singular(crd));
    if let Some(m) = accepted.as_object_mut()
        && m.get("listKind").is_none()
    {
        let kind = str_at(crd, &["spec", "names", "kind"]);
        m.insert("listKind".into(), json!(format!("{kind}List")));
    }
    json!({
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn crontab() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"], "categories": ["all"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                             "statusReplicasPath": ".status.replicas"}},
                     "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}],
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string"}, "replicas": {"type": "integer"}}}}}}},
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v0", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}
                ]
            }
        })
    }

    #[test]
    fn a_crd_serves_each_served_version_with_its_names_subresources_and_columns() {
        let infos = served_resources(&crontab());
        assert_eq!(infos.len(), 2);
        let v1 = &infos[0];
        assert_eq!(
            (
                v1.group.as_str(),
                v1.version.as_str(),
                v1.plural.as_str(),
                v1.singular.as_str()
            ),
            ("stable.example.com", "v1", "crontabs", "crontab")
        );
        assert!(v1.namespaced);
        assert_eq!(v1.short_names, vec!["ct"]);
        assert_eq!(v1.categories, vec!["all"]);
        assert!(v1.subresource("status").is_some() && v1.subresource("scale").is_some());
        let custom = v1.custom.as_ref().unwrap();
        assert_eq!(custom.printer_columns[0].json_path, ".spec.cronSpec");
        assert_eq!(custom.storage_version, "v1");
        assert_eq!(
            custom.scale.as_ref().unwrap().spec_replicas_path,
            ".spec.replicas"
        );
        assert_eq!(infos[1].version, "v1beta1");
        assert!(infos[1].subresources.is_empty());
        assert_eq!(
            v1.storage_prefix.as_deref(),
            Some("/registry/stable.example.com/crontabs/")
        );
    }

    #[test]
    fn a_valid_crd_has_no_errors_and_broken_ones_name_the_field() {
        assert_eq!(validate_definition(&crontab()), vec![]);
        let mut bad = crontab();
        bad["metadata"]["name"] = json!("crontabs.other.com");
        bad["spec"]["scope"] = json!("Global");
        bad["spec"]["versions"][1]["storage"] = json!(true);
        bad["spec"]["versions"][2]["schema"] = json!(null);
        let fields: Vec<String> = validate_definition(&bad).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.name",
                "spec.scope",
                "spec.versions",
                "spec.versions[2].schema.openAPIV3Schema"
            ]
        );
        let mut flat = crontab();
        flat["spec"]["group"] = json!("example");
        flat["metadata"]["name"] = json!("crontabs.example");
        let errs = validate_definition(&flat);
        assert_eq!(errs[0].detail, "should be a domain with at least one dot");
    }

    #[test]
    fn an_accepted_crd_is_established_and_remembers_its_stored_versions() {
        let crd = crontab();
        let status = established_status(&crd, None, "2026-01-01T00:00:00Z");
        assert_eq!(status["storedVersions"], json!(["v1"]));
        assert_eq!(status["acceptedNames"]["singular"], "crontab");
        assert_eq!(status["acceptedNames"]["listKind"], "CronTabList");
        assert_eq!(status["conditions"][1]["type"], "Established");
        let mut moved = crd.clone();
        moved["spec"]["versions"][0]["storage"] = json!(false);
        moved["spec"]["versions"][1]["storage"] = json!(true);
        let old = json!({"status": status});
        let later = established_status(&moved, Some(&old), "2026-02-01T00:00:00Z");
        assert_eq!(later["storedVersions"], json!(["v1", "v1beta1"]));
        assert_eq!(
            later["conditions"][1]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
    }
}
