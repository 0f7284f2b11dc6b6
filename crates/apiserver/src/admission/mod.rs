//! Admission: the plugins every write passes through after authorization and before validation and storage.
//!
//! Purpose: upstream's default-on plugins that matter here, with upstream's effects and messages.
//!
//! Layout:
//! - this file: the interface ([`Operation`], [`AdmissionRequest`], [`AdmissionPlugin`]) and the chain
//!   ([`Admission`], [`default_chain`]).
//! - plugins (added one per module): `namespace_lifecycle`, `service_account`, `default_tolerations`,
//!   `node_restriction`.
//!
//! Entry point for the server: build one [`Admission`] with [`default_chain`] at startup, and call
//! [`Admission::admit`] for every create, update (incl. patch), delete and connect, passing the decoded object (which
//! plugins may mutate) and an [`ObjectReader`] over the store.

pub mod default_tolerations;
pub mod namespace_lifecycle;
pub mod node_restriction;
pub mod service_account;

use crate::auth::{ObjectReader, UserInfo};
use api::{ApiError, ResourceInfo};
use async_trait::async_trait;
use rand::RngCore;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// The kind of write being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    /// Update and every patch.
    Update,
    Delete,
    /// `pods/exec`, `pods/attach`, `pods/portforward`, `nodes/proxy`...
    Connect,
}

/// One write, as admission plugins see it.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRequest<'a> {
    pub operation: Operation,
    pub user: &'a UserInfo,
    /// The resource written (for a subresource write, the parent resource: `pods` for `pods/status`).
    pub resource: &'a ResourceInfo,
    /// `""`, or `status`, `binding`, `eviction`...
    pub subresource: &'a str,
    /// The request's namespace (`""` for cluster-scoped resources).
    pub namespace: &'a str,
    /// The object's name (for a create with `generateName`, the name may still be empty).
    pub name: &'a str,
    /// The stored object for updates and deletes.
    pub old: Option<&'a Value>,
}

/// One admission plugin. `obj` is the object being written: plugins may change it (defaulting) or return an error
/// (rejection). For `Delete` and `Connect`, `obj` is the stored object (or the connect options) and changes to it
/// are ignored.
#[async_trait]
pub trait AdmissionPlugin: Send + Sync {
    /// Upstream's plugin name (`NamespaceLifecycle`, ...).
    fn name(&self) -> &'static str;
    async fn admit(
        &self,
        req: &AdmissionRequest<'_>,
        obj: &mut Value,
        reader: &dyn ObjectReader,
    ) -> Result<(), ApiError>;
}

/// Randomness shared by the plugins (the `kube-api-access-<suffix>` volume names), injected so tests are repeatable.
pub type SharedRng = Arc<Mutex<dyn RngCore + Send>>;

/// An ordered chain of plugins; the first error stops it.
#[derive(Clone, Default)]
pub struct Admission {
    plugins: Vec<Arc<dyn AdmissionPlugin>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.plugins.iter().map(|p| p.name()))
            .finish()
    }
}

impl Admission {
    pub fn new(plugins: Vec<Arc<dyn AdmissionPlugin>>) -> Self {
        Self { plugins }
    }

    /// Runs every plugin in order on `obj`.
    pub async fn admit(
        &self,
        req: &AdmissionRequest<'_>,
        obj: &mut Value,
        reader: &dyn ObjectReader,
    ) -> Result<(), ApiError> {
        for plugin in &self.plugins {
            plugin.admit(req, obj, reader).await?;
        }
        Ok(())
    }

    /// The plugins' names in order (for logs and `--enable-admission-plugins` reporting).
    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }
}

/// The default chain, in upstream's order: NamespaceLifecycle, ServiceAccount, NodeRestriction,
/// DefaultTolerationSeconds (with `tolerations`' seconds). `rng` supplies the random suffix of generated volume names.
pub fn default_chain(
    rng: SharedRng,
    tolerations: default_tolerations::DefaultTolerationSeconds,
) -> Admission {
    Admission::new(vec![
        Arc::new(namespace_lifecycle::NamespaceLifecycle),
        Arc::new(service_account::ServiceAccountAdmission::new(rng)),
        Arc::new(node_restriction::NodeRestriction),
        Arc::new(tolerations),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::testutil::{MemoryReader, pod, user};
    use rand::SeedableRng;
    use serde_json::json;

    /// The built-in resource of `kind`.
    pub fn resource(kind: &str) -> ResourceInfo {
        api::Registry::builtin()
            .iter()
            .find(|r| r.kind == kind)
            .cloned()
            .unwrap_or_else(|| panic!("no built-in kind {kind}"))
    }

    pub fn request<'a>(
        operation: Operation,
        user: &'a UserInfo,
        resource: &'a ResourceInfo,
        namespace: &'a str,
        name: &'a str,
    ) -> AdmissionRequest<'a> {
        AdmissionRequest {
            operation,
            user,
            resource,
            subresource: "",
            namespace,
            name,
            old: None,
        }
    }

    pub fn seeded() -> SharedRng {
        Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(1)))
    }

    #[tokio::test]
    async fn the_default_chain_defaults_a_new_pod_in_upstreams_plugin_order() {
        let chain = default_chain(seeded(), Default::default());
        assert_eq!(
            chain.names(),
            vec![
                "NamespaceLifecycle",
                "ServiceAccount",
                "NodeRestriction",
                "DefaultTolerationSeconds"
            ]
        );
        let reader = MemoryReader::new();
        reader.put(
            "",
            "namespaces",
            json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}),
        );
        reader.put(
            "",
            "serviceaccounts",
            json!({"metadata": {"namespace": "default", "name": "default"}}),
        );
        let (info, u) = (resource("Pod"), user("alice", &["system:authenticated"]));
        let mut p = pod("default", "web", "");
        chain
            .admit(
                &request(Operation::Create, &u, &info, "default", "web"),
                &mut p,
                &reader,
            )
            .await
            .unwrap();
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_chain_stops_at_the_first_rejection() {
        let chain = default_chain(seeded(), Default::default());
        let (info, u) = (resource("Pod"), user("alice", &[]));
        let mut p = pod("nowhere", "web", "");
        let err = chain
            .admit(
                &request(Operation::Create, &u, &info, "nowhere", "web"),
                &mut p,
                &MemoryReader::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), 404);
        assert!(p["spec"].get("tolerations").is_none());
    }
}
