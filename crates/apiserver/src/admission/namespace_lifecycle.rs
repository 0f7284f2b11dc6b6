//! NamespaceLifecycle: no new objects in a namespace that does not exist (404) or is terminating (403), and the
//! system namespaces cannot be deleted (403 "this namespace may not be deleted"), as upstream's plugin.

use super::{AdmissionPlugin, AdmissionRequest, Operation};
use crate::auth::ObjectReader;
use crate::auth::objects::{self, str_at};
use api::ApiError;
use async_trait::async_trait;
use serde_json::Value;

/// Namespaces that always exist: `default`, `kube-system`, `kube-public`, `kube-node-lease`.
pub const IMMORTAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceLifecycle;

fn is_namespace(req: &AdmissionRequest<'_>) -> bool {
    req.resource.group.is_empty() && req.resource.kind == "Namespace"
}

#[async_trait]
impl AdmissionPlugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn admit(
        &self,
        req: &AdmissionRequest<'_>,
        obj: &mut Value,
        reader: &dyn ObjectReader,
    ) -> Result<(), ApiError> {
        if is_namespace(req) {
            if req.operation == Operation::Delete && IMMORTAL_NAMESPACES.contains(&req.name) {
                return Err(ApiError::ForbiddenMessage {
                    resource: req.resource.group_resource(),
                    name: req.name.into(),
                    message: "this namespace may not be deleted".into(),
                });
            }
            return Ok(());
        }
        // Cluster-scoped objects, deletions and access reviews (which would leak namespace existence) pass.
        if req.namespace.is_empty() || req.operation == Operation::Delete || is_access_review(req) {
            return Ok(());
        }
        let Some(namespace) = reader.get(&objects::namespaces(), None, req.namespace).await? else {
            return Err(ApiError::not_found(&objects::namespaces(), req.namespace));
        };
        let terminating =
            str_at(&namespace, &["status", "phase"]) == "Terminating" || objects::is_terminating(&namespace);
        if req.operation == Operation::Create && terminating {
            let name = if req.name.is_empty() {
                objects::name(obj)
            } else {
                req.name
            };
            return Err(ApiError::ForbiddenMessage {
                resource: req.resource.group_resource(),
                name: name.into(),
                message: format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    req.namespace
                ),
            });
        }
        Ok(())
    }
}

fn is_access_review(req: &AdmissionRequest<'_>) -> bool {
    req.resource.group == "authorization.k8s.io" && req.resource.plural == "localsubjectaccessreviews"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::{request, resource};
    use crate::auth::testutil::MemoryReader;
    use serde_json::json;

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        r.put(
            "",
            "namespaces",
            json!({"metadata": {"name": "default"}, "status": {"phase": "Active"}}),
        );
        r.put(
            "",
            "namespaces",
            json!({"metadata": {"name": "leaving", "deletionTimestamp": "2030-01-01T00:00:00Z"},
            "status": {"phase": "Terminating"}}),
        );
        r
    }

    async fn admit(op: Operation, kind: &str, ns: &str, name: &str) -> Result<(), ApiError> {
        let info = resource(kind);
        let user = crate::auth::testutil::user("alice", &[]);
        let req = request(op, &user, &info, ns, name);
        NamespaceLifecycle
            .admit(&req, &mut json!({"metadata": {"name": name}}), &reader())
            .await
    }

    #[tokio::test]
    async fn creating_in_an_active_namespace_is_admitted() {
        assert_eq!(
            admit(Operation::Create, "ConfigMap", "default", "c").await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn creating_in_a_missing_namespace_is_not_found() {
        let err = admit(Operation::Create, "ConfigMap", "nowhere", "c")
            .await
            .unwrap_err();
        assert_eq!(err.code(), 404);
        assert_eq!(err.message(), r#"namespaces "nowhere" not found"#);
    }

    #[tokio::test]
    async fn creating_in_a_terminating_namespace_is_forbidden() {
        let err = admit(Operation::Create, "ConfigMap", "leaving", "c")
            .await
            .unwrap_err();
        assert_eq!(err.code(), 403);
        assert_eq!(
            err.message(),
            r#"configmaps "c" is forbidden: unable to create new content in namespace leaving because it is being terminated"#
        );
        // Updates and deletes of what is already there go on while the namespace drains.
        assert_eq!(
            admit(Operation::Update, "ConfigMap", "leaving", "c").await,
            Ok(())
        );
        assert_eq!(
            admit(Operation::Delete, "ConfigMap", "leaving", "c").await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn system_namespaces_may_not_be_deleted() {
        for ns in IMMORTAL_NAMESPACES {
            let err = admit(Operation::Delete, "Namespace", "", ns).await.unwrap_err();
            assert_eq!(
                err.message(),
                format!(r#"namespaces "{ns}" is forbidden: this namespace may not be deleted"#)
            );
        }
        assert_eq!(admit(Operation::Delete, "Namespace", "", "leaving").await, Ok(()));
    }

    #[tokio::test]
    async fn cluster_scoped_objects_are_not_checked() {
        assert_eq!(admit(Operation::Create, "Node", "", "n").await, Ok(()));
    }
}
