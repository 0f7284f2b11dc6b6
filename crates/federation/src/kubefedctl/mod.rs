//! `kubefedctl`'s verbs as upstream kubefedctl 0.7 performs them, for the `bulwark kubefedctl` personality:
//!
//! - [`join()`]: registers a member with the host. In the member: the KubeFed namespace, a ServiceAccount
//!   `<cluster>-<host>`, a ClusterRole and ClusterRoleBinding `kubefed-controller-manager:<sa>` (a Role, RoleBinding
//!   and health-check ClusterRole when the KubeFedConfig says `Namespaced`), and a legacy token Secret the member's
//!   controller-manager fills. In the host: a Secret with that token and a KubeFedCluster pointing at the member's API
//!   endpoint and CA. A failed join deletes what it created, so no half-registered cluster stays behind.
//! - [`unjoin()`]: removes both sides again (`--force`: the host side even when the member is gone).
//! - [`enable()`] / [`disable()`]: the `Federated<Kind>` CRD and FederatedTypeConfig of a type found by discovery.
//! - [`federate()`]: a `Federated<Kind>` from an object of the host.
//! - [`install()`] (bulwark's, where upstream uses its Helm chart): the control plane itself, CRDs to a
//!   leader-elected `kubefed-controller-manager` Deployment.
//!
//! Layout: [`cluster`] resolves kubeconfig contexts into clients and names clusters in errors; [`console`] prints
//! upstream's result lines and klog-formatted `--v` progress; `join`, `unjoin`, `types` (discovery, enable, disable)
//! and `federate` hold the verbs.

pub mod cluster;
pub mod console;
mod federate;
mod install;
mod join;
mod types;
mod unjoin;

use std::time::Duration;

use kube::core::{ApiResource, GroupVersionKind};

pub use cluster::{Cluster, ContextInfo, Kubeconfig, Role};
pub use console::{Console, Severity};
pub use federate::{FederateOptions, federate, federated_object};
pub use install::{InstallOptions, install, manifests as install_manifests};
pub use join::{JoinOptions, Joined, join};
pub use types::{ApiType, DisableOptions, EnableOptions, disable, enable, lookup};
pub use unjoin::{UnjoinOptions, unjoin};

use crate::Error;
use crate::crds::{CORE_GROUP, VERSION};

/// Where the KubeFed control plane lives unless `--kubefed-namespace` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "kube-federation-system";
/// The KubeFedConfig the control plane reads its scope from.
pub const KUBEFED_CONFIG_NAME: &str = "kubefed";
/// How long join waits for the member's controller-manager to fill the token Secret (upstream's 30 s).
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(250);

/// The ServiceAccount a member gets for the host: `<cluster>-<host>`.
pub fn service_account_name(cluster: &str, host: &str) -> String {
    format!("{cluster}-{host}")
}

/// The ClusterRole, ClusterRoleBinding (or Role, RoleBinding) of that account.
pub fn role_name(service_account: &str) -> String {
    format!("kubefed-controller-manager:{service_account}")
}

/// The health-check ClusterRole of a namespace-scoped federation.
pub fn health_check_role_name(service_account: &str, namespace: &str) -> String {
    format!("kubefed-controller-manager:{namespace}:healthcheck-{service_account}")
}

/// Whether `value` is a DNS-1123 subdomain, the rule for the names join derives; an error message otherwise.
pub fn check_subdomain(what: &str, value: &str) -> Result<(), Error> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !value.is_empty() && value.len() <= 253 && value.split('.').all(label_ok) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{what} \"{value}\" is not a valid name: a lowercase RFC 1123 subdomain must consist of lower case \
         alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    )))
}

/// `--host-cluster-name`, else the host context's name, checked as upstream checks them.
pub(crate) fn host_cluster_name(explicit: Option<&str>, host_context: &str) -> Result<String, Error> {
    match explicit.filter(|n| !n.is_empty()) {
        Some(name) if name.contains([':', '/']) => Err(Error::Usage(
            "host-cluster-name may not contain \"/\" or \":\"".into(),
        )),
        Some(name) => Ok(name.to_string()),
        None if host_context.contains([':', '/']) => Err(Error::Usage(
            "host-cluster-name must be set if the name of the host cluster context contains one of \":\" or \"/\""
                .into(),
        )),
        None => Ok(host_context.to_string()),
    }
}

/// A `core.kubefed.io/v1beta1` resource.
pub(crate) fn kubefed_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(CORE_GROUP, VERSION, kind), plural)
}

pub(crate) fn kubefed_clusters() -> ApiResource {
    kubefed_resource("KubeFedCluster", "kubefedclusters")
}

pub(crate) fn type_configs() -> ApiResource {
    kubefed_resource("FederatedTypeConfig", "federatedtypeconfigs")
}

/// Fails with [`Error::NotInstalled`] unless the host serves these `core.kubefed.io` resources.
pub(crate) async fn ensure_kubefed_api(host: &Cluster, plurals: &[&str]) -> Result<(), Error> {
    let group_version = format!("{CORE_GROUP}/{VERSION}");
    let missing = |plural: &str| Error::NotInstalled {
        context: host.context.clone(),
        missing: format!("{plural}.{CORE_GROUP}"),
    };
    let list = match host.client.list_api_group_resources(&group_version).await {
        Ok(list) => list,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(missing(plurals.first().copied().unwrap_or("kubefedclusters")));
        }
        Err(e) => return Err(host.error(format!("discovering {group_version}"), e)),
    };
    for plural in plurals {
        if !list.resources.iter().any(|r| r.name == *plural) {
            return Err(missing(plural));
        }
    }
    Ok(())
}

/// `ns/name`, or `name` for cluster-scoped objects, as upstream's QualifiedName prints.
pub(crate) fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// A JSON value as a YAML document for `-o yaml`.
pub(crate) fn yaml_document(what: &str, value: &serde_json::Value) -> Result<String, Error> {
    let text = serde_yaml::to_string(value).map_err(|e| Error::Encode {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    Ok(format!("---\n{text}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_derive_as_upstream_derives_them() {
        let sa = service_account_name("member1", "fedhost");
        assert_eq!(sa, "member1-fedhost");
        assert_eq!(role_name(&sa), "kubefed-controller-manager:member1-fedhost");
        assert_eq!(
            health_check_role_name(&sa, "kube-federation-system"),
            "kubefed-controller-manager:kube-federation-system:healthcheck-member1-fedhost"
        );
        assert_eq!(qualified(Some("demo"), "web"), "demo/web");
        assert_eq!(qualified(None, "web"), "web");
    }

    #[test]
    fn host_names_with_separators_need_an_explicit_host_cluster_name() {
        assert_eq!(host_cluster_name(None, "fedhost").unwrap(), "fedhost");
        assert_eq!(host_cluster_name(Some("hub"), "a/b").unwrap(), "hub");
        assert!(host_cluster_name(None, "arn:aws:eks/x").is_err());
        assert!(host_cluster_name(Some("a:b"), "fedhost").is_err());
    }

    #[test]
    fn derived_names_must_be_subdomains() {
        assert!(check_subdomain("cluster name", "member1").is_ok());
        assert!(check_subdomain("cluster name", "eu.west-1").is_ok());
        let err = check_subdomain("service account", "member1-kubernetes-admin@kubernetes").unwrap_err();
        assert!(
            err.to_string()
                .contains("\"member1-kubernetes-admin@kubernetes\" is not a valid name")
        );
        assert!(check_subdomain("cluster name", "Member1").is_err());
        assert!(check_subdomain("cluster name", "-a").is_err());
        assert!(check_subdomain("cluster name", "").is_err());
    }
}
