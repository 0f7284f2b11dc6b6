//! The KubeFed API as CustomResourceDefinitions, the way upstream's chart installs it: `core.kubefed.io/v1beta1`
//! KubeFedCluster, KubeFedConfig and FederatedTypeConfig, `scheduling.kubefed.io/v1alpha1`
//! ReplicaSchedulingPreference, and one `types.kubefed.io/v1beta1` Federated<Kind> per enabled target type.

use serde_json::{Value, json};

use crate::Error;

pub const CORE_GROUP: &str = "core.kubefed.io";
pub const TYPES_GROUP: &str = "types.kubefed.io";
pub const SCHEDULING_GROUP: &str = "scheduling.kubefed.io";
pub const VERSION: &str = "v1beta1";
/// The label every object the sync controller writes into a member carries.
pub const MANAGED_LABEL: &str = "kubefed.io/managed";

const STATIC: [(&str, &str); 4] = [
    ("kubefedclusters.yaml", include_str!("crds/kubefedclusters.yaml")),
    ("kubefedconfigs.yaml", include_str!("crds/kubefedconfigs.yaml")),
    (
        "federatedtypeconfigs.yaml",
        include_str!("crds/federatedtypeconfigs.yaml"),
    ),
    (
        "replicaschedulingpreferences.yaml",
        include_str!("crds/replicaschedulingpreferences.yaml"),
    ),
];

/// A kind member clusters serve that KubeFed can federate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl TargetType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `FederatedDeployment` for `Deployment`.
    pub fn federated_kind(&self) -> String {
        format!("Federated{}", self.kind)
    }

    pub fn federated_plural(&self) -> String {
        format!("federated{}", self.plural)
    }

    /// The FederatedTypeConfig's name: `deployments.apps`, or `configmaps` for the core group, as upstream.
    pub fn config_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The types `kubefedctl` enables on install, as upstream's chart does for these kinds.
pub const DEFAULT_TYPES: [TargetType; 7] = [
    TargetType {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
    },
    TargetType {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
    },
    TargetType {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
    },
    TargetType {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
    },
    TargetType {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
    },
    TargetType {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
    },
    TargetType {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
    },
];

/// Finds a default type by what a user types: `deployments.apps`, `deployments`, `Deployment`.
pub fn target_type(name: &str) -> Option<TargetType> {
    let lower = name.to_ascii_lowercase();
    DEFAULT_TYPES
        .iter()
        .copied()
        .find(|t| t.config_name() == lower || t.plural == lower || t.kind.to_ascii_lowercase() == lower)
}

fn federated_schema(t: &TargetType) -> Value {
    let placement = json!({"type": "object", "properties": {
        "clusters": {"type": "array", "items": {"type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}}}},
        "clusterSelector": {"type": "object", "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {"type": "array", "items": {"type": "object", "required": ["key", "operator"],
                "properties": {"key": {"type": "string"}, "operator": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}}}}}}}}});
    let override_ = json!({"type": "object", "required": ["path"], "properties": {
        "op": {"type": "string", "enum": ["add", "remove", "replace"]},
        "path": {"type": "string"},
        "value": {"x-kubernetes-preserve-unknown-fields": true}}});
    let overrides = json!({"type": "array", "items": {"type": "object", "properties": {
        "clusterName": {"type": "string"},
        "clusterOverrides": {"type": "array", "items": override_}}}});
    let template = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "description": format!("The {} every selected member cluster gets.", t.kind)});
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "template": template, "placement": placement, "overrides": overrides}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
}

/// The CRD of `Federated<Kind>`: template, placement and overrides in spec, propagation status.
pub fn federated_crd(t: &TargetType) -> Value {
    let kind = t.federated_kind();
    let plural = t.federated_plural();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{TYPES_GROUP}")},
        "spec": {
            "group": TYPES_GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                      "singular": kind.to_ascii_lowercase()},
            "versions": [{
                "name": VERSION, "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": federated_schema(t)}
            }]
        }
    })
}

/// The FederatedTypeConfig that enables propagation of `t`, in the KubeFed namespace.
pub fn type_config(t: &TargetType, namespace: &str) -> Value {
    let scope = |namespaced: bool| if namespaced { "Namespaced" } else { "Cluster" };
    json!({
        "apiVersion": format!("{CORE_GROUP}/{VERSION}"),
        "kind": "FederatedTypeConfig",
        "metadata": {"name": t.config_name(), "namespace": namespace},
        "spec": {
            "federatedType": {"group": TYPES_GROUP, "version": VERSION, "kind": t.federated_kind(),
                              "pluralName": t.federated_plural(), "scope": "Namespaced"},
            "targetType": {"group": t.group, "version": t.version, "kind": t.kind, "pluralName": t.plural,
                           "scope": scope(t.namespaced)},
            "propagation": "Enabled"
        }
    })
}

/// Every CRD the federation control plane needs: its own API and the federated default types.
pub fn all() -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for (file, text) in STATIC {
        let crd: Value = serde_yaml::from_str(text).map_err(|e| Error::Manifest {
            file,
            message: e.to_string(),
        })?;
        out.push(crd);
    }
    out.extend(DEFAULT_TYPES.iter().map(federated_crd));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_is_one_the_api_server_accepts() {
        let crds = all().unwrap();
        assert_eq!(crds.len(), 4 + DEFAULT_TYPES.len());
        for crd in &crds {
            let errs = api::crd::validate_definition(crd);
            assert!(errs.is_empty(), "{}: {errs:?}", crd["metadata"]["name"]);
        }
        let names: Vec<&str> = crds
            .iter()
            .filter_map(|c| c["metadata"]["name"].as_str())
            .collect();
        assert!(names.contains(&"federateddeployments.types.kubefed.io"));
        assert!(names.contains(&"kubefedclusters.core.kubefed.io"));
    }

    #[test]
    fn types_are_found_by_config_name_plural_or_kind() {
        assert_eq!(target_type("deployments.apps").unwrap().kind, "Deployment");
        assert_eq!(target_type("ConfigMap").unwrap().plural, "configmaps");
        assert_eq!(target_type("secrets").unwrap().config_name(), "secrets");
        assert!(target_type("widgets").is_none());
        let ftc = type_config(&target_type("deployments").unwrap(), "kube-federation-system");
        assert_eq!(ftc["spec"]["federatedType"]["kind"], "FederatedDeployment");
        assert_eq!(ftc["metadata"]["name"], "deployments.apps");
    }
}
