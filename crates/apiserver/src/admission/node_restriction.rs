//! NodeRestriction: what a kubelet (`system:node:<name>` in `system:nodes`) may write, beyond what the node
//! authorizer lets through, as upstream's plugin: only its own Node (no taint changes, no restricted labels such as
//! `node-restriction.kubernetes.io/*`), only mirror pods bound to itself (no service accounts, secrets, configmaps or
//! claims), status updates and evictions only of pods bound to itself, its own Lease in `kube-node-lease`, and
//! service-account tokens only bound to pods on itself. Other users pass untouched.

// Rejections are `ApiError`s, the one error type requests end in; they are cold paths, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::{AdmissionPlugin, AdmissionRequest, Operation};
use crate::admission::service_account::MIRROR_POD_ANNOTATION;
use crate::auth::ObjectReader;
use crate::auth::node::{Reference, node_identity, referenced_names};
use crate::auth::objects::{self, str_at};
use api::ApiError;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, Default)]
pub struct NodeRestriction;

/// Labels a kubelet may set on its Node although they are in the `kubernetes.io`/`k8s.io` namespaces.
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
];
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain || ns.ends_with(&format!(".{domain}"))
}

/// Whether a kubelet may not set this label key on its own Node.
pub fn is_forbidden_label(key: &str) -> bool {
    let Some((ns, _)) = key.split_once('/') else {
        return false;
    };
    if in_namespace(ns, "node-restriction.kubernetes.io") {
        return true;
    }
    let kubelet_label =
        KUBELET_LABELS.contains(&key) || KUBELET_LABEL_NAMESPACES.iter().any(|d| in_namespace(ns, d));
    (in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io")) && !kubelet_label
}

/// Label keys added, removed or changed between `old` and `new`, that a kubelet may not touch, sorted.
fn forbidden_modified_labels(new: &Value, old: Option<&Value>) -> Vec<String> {
    let labels = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/metadata/labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (new, old) = (labels(Some(new)), labels(old));
    let keys: BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    keys.into_iter()
        .filter(|k| new.get(*k) != old.get(*k) && is_forbidden_label(k))
        .cloned()
        .collect()
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

struct Ctx<'a, 'r> {
    req: &'a AdmissionRequest<'r>,
    node: &'a str,
    obj: &'a Value,
}

impl Ctx<'_, '_> {
    fn forbid(&self, message: impl Into<String>) -> ApiError {
        let name = if self.req.name.is_empty() {
            objects::name(self.obj)
        } else {
            self.req.name
        };
        ApiError::ForbiddenMessage {
            resource: self.req.resource.group_resource(),
            name: name.into(),
            message: message.into(),
        }
    }

    async fn pod(&self, reader: &dyn ObjectReader, name: &str) -> Result<Value, ApiError> {
        reader
            .get(&objects::pods(), Some(self.req.namespace), name)
            .await?
            .ok_or_else(|| ApiError::not_found(&objects::pods(), name))
    }

    fn pod_create(&self) -> Result<(), ApiError> {
        let (node, pod) = (self.node, self.obj);
        let annotations = pod.pointer("/metadata/annotations").and_then(Value::as_object);
        if !annotations.is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION)) {
            return Err(self.forbid(format!(
                "pod does not have \"{MIRROR_POD_ANNOTATION}\" annotation, node \"{node}\" can only create mirror pods"
            )));
        }
        if str_at(pod, &["spec", "nodeName"]) != node {
            return Err(self.forbid(format!(
                "node \"{node}\" can only create pods with spec.nodeName set to itself"
            )));
        }
        let owners = objects::array_at(pod, &["metadata", "ownerReferences"]);
        if owners.len() > 1 {
            return Err(self.forbid(format!(
                "node \"{node}\" can only create pods with a single owner reference set to itself"
            )));
        }
        if let Some(owner) = owners.first() {
            if str_at(owner, &["apiVersion"]) != "v1"
                || str_at(owner, &["kind"]) != "Node"
                || str_at(owner, &["name"]) != node
            {
                return Err(self.forbid(format!(
                    "node \"{node}\" can only create pods with an owner reference set to itself"
                )));
            }
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                return Err(self.forbid(format!(
                    "node \"{node}\" can only create pods with a controller owner reference set to itself"
                )));
            }
            if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                return Err(self.forbid(format!(
                    "node \"{node}\" must not set blockOwnerDeletion on an owner reference"
                )));
            }
        }
        if !str_at(pod, &["spec", "serviceAccountName"]).is_empty() {
            return Err(self.forbid(format!(
                "node \"{node}\" can not create pods that reference a service account"
            )));
        }
        for (kind, what) in [
            (Reference::Secret, "secrets"),
            (Reference::ConfigMap, "configmaps"),
            (Reference::PersistentVolumeClaim, "persistentvolumeclaims"),
        ] {
            if !referenced_names(pod, kind).is_empty() {
                return Err(self.forbid(format!(
                    "node \"{node}\" can not create pods that reference {what}"
                )));
            }
        }
        Ok(())
    }

    async fn pods(&self, reader: &dyn ObjectReader) -> Result<(), ApiError> {
        let (node, op) = (self.node, self.req.operation);
        match (self.req.subresource, op) {
            ("", Operation::Create) => self.pod_create(),
            ("", Operation::Delete) => {
                let existing = self.pod(reader, self.req.name).await?;
                if str_at(&existing, &["spec", "nodeName"]) != node {
                    return Err(self.forbid(format!(
                        "node \"{node}\" can only delete pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            ("", _) => Err(self.forbid(format!(
                "unexpected operation \"{}\", node \"{node}\" can only create and delete mirror pods",
                op_name(op)
            ))),
            ("status", Operation::Update) => {
                let old = self.req.old.unwrap_or(&Value::Null);
                if str_at(old, &["spec", "nodeName"]) != node {
                    return Err(self.forbid(format!(
                        "node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"
                    )));
                }
                if old.pointer("/metadata/labels") != self.obj.pointer("/metadata/labels") {
                    return Err(
                        self.forbid(format!("node \"{node}\" cannot update labels through pod status"))
                    );
                }
                Ok(())
            }
            ("status", _) => Err(self.forbid(format!("unexpected operation \"{}\"", op_name(op)))),
            ("eviction", Operation::Create) => {
                let name = if self.req.name.is_empty() {
                    objects::name(self.obj)
                } else {
                    self.req.name
                };
                if name.is_empty() {
                    return Err(ApiError::bad_request("could not determine pod from request data"));
                }
                let pod = self.pod(reader, name).await?;
                if str_at(&pod, &["spec", "nodeName"]) != node {
                    return Err(self.forbid(format!(
                        "node {node} can only evict pods with spec.nodeName set to itself"
                    )));
                }
                Ok(())
            }
            ("eviction", _) => Err(self.forbid(format!("unexpected operation {}", op_name(op)))),
            (sub, _) => Err(self.forbid(format!(
                "unexpected pod subresource \"{sub}\", only 'status' and 'eviction' are allowed"
            ))),
        }
    }

    fn node_object(&self) -> Result<(), ApiError> {
        let node = self.node;
        let requested = if self.req.name.is_empty() {
            objects::name(self.obj)
        } else {
            self.req.name
        };
        if requested != node {
            return Err(self.forbid(format!(
                "node \"{node}\" is not allowed to modify node \"{requested}\""
            )));
        }
        match self.req.operation {
            Operation::Create => {
                let forbidden = forbidden_modified_labels(self.obj, None);
                if !forbidden.is_empty() {
                    return Err(self.forbid(format!(
                        "node \"{node}\" is not allowed to set the following labels: {}",
                        forbidden.join(", ")
                    )));
                }
            }
            Operation::Update => {
                let old = self.req.old.unwrap_or(&Value::Null);
                if self.req.subresource.is_empty()
                    && old.pointer("/spec/taints") != self.obj.pointer("/spec/taints")
                {
                    return Err(self.forbid(format!("node \"{node}\" is not allowed to modify taints")));
                }
                let forbidden = forbidden_modified_labels(self.obj, Some(old));
                if !forbidden.is_empty() {
                    return Err(self.forbid(format!(
                        "is not allowed to modify labels: {}",
                        forbidden.join(", ")
                    )));
                }
            }
            Operation::Delete | Operation::Connect => {}
        }
        Ok(())
    }

    fn lease(&self) -> Result<(), ApiError> {
        if self.req.namespace != "kube-node-lease" {
            return Err(self.forbid("can only access leases in the \"kube-node-lease\" namespace"));
        }
        let name = if self.req.operation == Operation::Create {
            objects::name(self.obj)
        } else {
            self.req.name
        };
        if name != self.node {
            return Err(self.forbid("can only access node lease with the same name as the requesting node"));
        }
        Ok(())
    }

    async fn token(&self, reader: &dyn ObjectReader) -> Result<(), ApiError> {
        if self.req.subresource != "token" || self.req.operation != Operation::Create {
            return Ok(());
        }
        let r = self
            .obj
            .pointer("/spec/boundObjectRef")
            .cloned()
            .unwrap_or(Value::Null);
        if str_at(&r, &["apiVersion"]) != "v1"
            || str_at(&r, &["kind"]) != "Pod"
            || str_at(&r, &["name"]).is_empty()
        {
            return Err(self.forbid("node requested token not bound to a pod"));
        }
        let uid = str_at(&r, &["uid"]);
        if uid.is_empty() {
            return Err(self.forbid("node requested token with a pod binding without a uid"));
        }
        let pod = self.pod(reader, str_at(&r, &["name"])).await?;
        if objects::uid(&pod) != uid {
            return Err(self.forbid(format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        if str_at(&pod, &["spec", "nodeName"]) != self.node {
            return Err(self.forbid("node requested token bound to a pod scheduled on a different node"));
        }
        Ok(())
    }
}

#[async_trait]
impl AdmissionPlugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    async fn admit(
        &self,
        req: &AdmissionRequest<'_>,
        obj: &mut Value,
        reader: &dyn ObjectReader,
    ) -> Result<(), ApiError> {
        let Some(node) = node_identity(req.user) else {
            return Ok(());
        };
        let ctx = Ctx { req, node, obj };
        if node.is_empty() {
            return Err(ctx.forbid(format!(
                "could not determine node from user \"{}\"",
                req.user.name
            )));
        }
        match (req.resource.group.as_str(), req.resource.plural.as_str()) {
            ("", "pods") => ctx.pods(reader).await,
            ("", "nodes") => ctx.node_object(),
            ("", "serviceaccounts") => ctx.token(reader).await,
            ("coordination.k8s.io", "leases") => ctx.lease(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::{request, resource};
    use crate::auth::UserInfo;
    use crate::auth::testutil::{MemoryReader, pod, user};
    use serde_json::json;

    fn kubelet() -> UserInfo {
        user("system:node:node-1", &["system:nodes", "system:authenticated"])
    }

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        r.put("", "pods", pod("default", "mine", "node-1"));
        r.put("", "pods", pod("default", "theirs", "node-2"));
        r
    }

    async fn admit(
        op: Operation,
        kind: &str,
        sub: &str,
        ns: &str,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let (info, u) = (resource(kind), kubelet());
        let mut req = request(op, &u, &info, ns, name);
        req.subresource = sub;
        req.old = old;
        NodeRestriction.admit(&req, obj, &reader()).await
    }

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})
    }

    #[tokio::test]
    async fn a_kubelet_cannot_modify_another_node() {
        let err = admit(
            Operation::Update,
            "Node",
            "",
            "",
            "node-2",
            &mut node("node-2"),
            Some(&node("node-2")),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), 403);
        assert_eq!(
            err.message(),
            r#"nodes "node-2" is forbidden: node "node-1" is not allowed to modify node "node-2""#
        );
        assert!(
            admit(
                Operation::Update,
                "Node",
                "status",
                "",
                "node-2",
                &mut node("node-2"),
                Some(&node("node-2"))
            )
            .await
            .is_err()
        );
        assert!(
            admit(
                Operation::Delete,
                "Node",
                "",
                "",
                "node-2",
                &mut node("node-2"),
                None
            )
            .await
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_kubelet_registers_and_updates_its_own_node() {
        assert_eq!(
            admit(
                Operation::Create,
                "Node",
                "",
                "",
                "node-1",
                &mut node("node-1"),
                None
            )
            .await,
            Ok(())
        );
        let mut updated = node("node-1");
        updated["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
        updated["metadata"]["labels"]["example.com/rack"] = json!("r1");
        assert_eq!(
            admit(
                Operation::Update,
                "Node",
                "",
                "",
                "node-1",
                &mut updated,
                Some(&node("node-1"))
            )
            .await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_kubelet_may_not_set_restricted_labels_or_change_taints() {
        let mut n = node("node-1");
        n["metadata"]["labels"]["node-restriction.kubernetes.io/trusted"] = json!("yes");
        n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        let err = admit(Operation::Create, "Node", "", "", "node-1", &mut n, None)
            .await
            .unwrap_err();
        assert!(err.message().ends_with(
            r#"node "node-1" is not allowed to set the following labels: node-restriction.kubernetes.io/trusted, node-role.kubernetes.io/control-plane"#
        ), "{}", err.message());
        let err = admit(
            Operation::Update,
            "Node",
            "",
            "",
            "node-1",
            &mut n,
            Some(&node("node-1")),
        )
        .await
        .unwrap_err();
        assert!(
            err.message()
                .contains("is not allowed to modify labels: node-restriction.kubernetes.io/trusted")
        );
        let mut tainted = node("node-1");
        tainted["spec"] = json!({"taints": []});
        let mut old = node("node-1");
        old["spec"] = json!({"taints": [{"key": "k", "effect": "NoSchedule"}]});
        let err = admit(
            Operation::Update,
            "Node",
            "",
            "",
            "node-1",
            &mut tainted,
            Some(&old),
        )
        .await
        .unwrap_err();
        assert!(
            err.message()
                .ends_with(r#"node "node-1" is not allowed to modify taints"#)
        );
    }

    #[tokio::test]
    async fn a_kubelet_creates_only_mirror_pods_bound_to_itself_without_api_references() {
        let mut p = pod("kube-system", "etcd-node-1", "node-1");
        p["spec"].as_object_mut().unwrap().remove("serviceAccountName");
        let err = admit(
            Operation::Create,
            "Pod",
            "",
            "kube-system",
            "etcd-node-1",
            &mut p.clone(),
            None,
        )
        .await
        .unwrap_err();
        assert!(
            err.message()
                .contains(r#"node "node-1" can only create mirror pods"#),
            "{}",
            err.message()
        );
        p["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "h"});
        assert_eq!(
            admit(
                Operation::Create,
                "Pod",
                "",
                "kube-system",
                "etcd-node-1",
                &mut p.clone(),
                None
            )
            .await,
            Ok(())
        );
        let mut elsewhere = p.clone();
        elsewhere["spec"]["nodeName"] = json!("node-2");
        assert!(
            admit(
                Operation::Create,
                "Pod",
                "",
                "kube-system",
                "x",
                &mut elsewhere,
                None
            )
            .await
            .unwrap_err()
            .message()
            .contains("can only create pods with spec.nodeName set to itself")
        );
        let mut secretive = p.clone();
        secretive["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "admin"}}]);
        assert!(
            admit(
                Operation::Create,
                "Pod",
                "",
                "kube-system",
                "x",
                &mut secretive,
                None
            )
            .await
            .unwrap_err()
            .message()
            .contains(r#"node "node-1" can not create pods that reference secrets"#)
        );
    }

    #[tokio::test]
    async fn a_kubelet_updates_status_and_deletes_only_pods_bound_to_it() {
        let (mine, theirs) = (
            pod("default", "mine", "node-1"),
            pod("default", "theirs", "node-2"),
        );
        assert_eq!(
            admit(
                Operation::Update,
                "Pod",
                "status",
                "default",
                "mine",
                &mut mine.clone(),
                Some(&mine)
            )
            .await,
            Ok(())
        );
        let err = admit(
            Operation::Update,
            "Pod",
            "status",
            "default",
            "theirs",
            &mut theirs.clone(),
            Some(&theirs),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.message(),
            r#"pods "theirs" is forbidden: node "node-1" can only update pod status for pods with spec.nodeName set to itself"#
        );
        assert_eq!(
            admit(
                Operation::Delete,
                "Pod",
                "",
                "default",
                "mine",
                &mut mine.clone(),
                Some(&mine)
            )
            .await,
            Ok(())
        );
        assert!(
            admit(
                Operation::Delete,
                "Pod",
                "",
                "default",
                "theirs",
                &mut theirs.clone(),
                Some(&theirs)
            )
            .await
            .is_err()
        );
        assert!(
            admit(
                Operation::Update,
                "Pod",
                "",
                "default",
                "mine",
                &mut mine.clone(),
                Some(&mine)
            )
            .await
            .unwrap_err()
            .message()
            .contains(
                r#"unexpected operation "UPDATE", node "node-1" can only create and delete mirror pods"#
            )
        );
    }

    #[tokio::test]
    async fn a_kubelet_requests_tokens_only_for_pods_bound_to_it() {
        let mut tr = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "mine", "uid": "uid-mine"}}});
        assert_eq!(
            admit(
                Operation::Create,
                "ServiceAccount",
                "token",
                "default",
                "default",
                &mut tr,
                None
            )
            .await,
            Ok(())
        );
        let mut theirs = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "theirs", "uid": "uid-theirs"}}});
        assert!(
            admit(
                Operation::Create,
                "ServiceAccount",
                "token",
                "default",
                "default",
                &mut theirs,
                None
            )
            .await
            .unwrap_err()
            .message()
            .contains("node requested token bound to a pod scheduled on a different node")
        );
        let mut unbound = json!({"spec": {}});
        assert!(
            admit(
                Operation::Create,
                "ServiceAccount",
                "token",
                "default",
                "default",
                &mut unbound,
                None
            )
            .await
            .unwrap_err()
            .message()
            .contains("node requested token not bound to a pod")
        );
    }

    #[tokio::test]
    async fn a_kubelet_writes_only_its_own_lease() {
        let mut lease = json!({"metadata": {"name": "node-1", "namespace": "kube-node-lease"}});
        assert_eq!(
            admit(
                Operation::Create,
                "Lease",
                "",
                "kube-node-lease",
                "node-1",
                &mut lease,
                None
            )
            .await,
            Ok(())
        );
        let other = json!({"metadata": {"name": "node-2", "namespace": "kube-node-lease"}});
        assert!(
            admit(
                Operation::Update,
                "Lease",
                "",
                "kube-node-lease",
                "node-2",
                &mut other.clone(),
                Some(&other)
            )
            .await
            .is_err()
        );
    }

    #[tokio::test]
    async fn other_users_are_not_restricted() {
        let (info, u) = (resource("Node"), user("admin", &["system:masters"]));
        let req = request(Operation::Delete, &u, &info, "", "node-2");
        assert_eq!(
            NodeRestriction.admit(&req, &mut node("node-2"), &reader()).await,
            Ok(())
        );
    }
}
