//! The node authorizer (`--authorization-mode=Node`): confines a kubelet (`system:node:<name>` in `system:nodes`) to
//! what upstream's node authorizer grants. Objects a kubelet reads by name (secrets, configmaps, persistent volume
//! claims, pods) must be related to it through a pod bound to the node; upstream keeps a graph for that, this looks
//! the pods up through the [`ObjectReader`]. Everything else a node may do is the fixed rule list of upstream's
//! `NodeRules()` ([`node_rules`]), with writes to Node objects and pods confined further by the NodeRestriction
//! admission plugin. Non-node users get no opinion.

use super::objects::{self, str_at};
use super::rbac::rule_allows;
use super::{Attributes, Authorizer, Decision, ObjectReader, UserInfo};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::sync::Arc;

pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The node name of a kubelet identity: `Some("")` for a user in `system:nodes` with no usable name, `None` for
/// users that are not nodes.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    Some(user.name.strip_prefix(NODE_USER_PREFIX).unwrap_or(""))
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

/// Upstream's `NodeRules()`: what any node may do, before the graph and admission narrow it.
pub fn node_rules() -> Vec<Value> {
    let read = ["get", "list", "watch"];
    vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(&read, &[""], &["services"]),
        rule(&["create", "get", "list", "watch"], &[""], &["nodes"]),
        rule(&["update", "patch"], &[""], &["nodes/status"]),
        rule(&["update", "patch"], &[""], &["nodes"]),
        rule(
            &["create", "update", "patch"],
            &["", "events.k8s.io"],
            &["events"],
        ),
        rule(&read, &[""], &["pods"]),
        rule(&["create", "delete"], &[""], &["pods"]),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(&read, &[""], &["secrets", "configmaps"]),
        rule(&["get"], &[""], &["persistentvolumeclaims", "persistentvolumes"]),
        rule(&["get"], &[""], &["endpoints"]),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(&["update", "patch"], &[""], &["persistentvolumeclaims/status"]),
        rule(&read, &["storage.k8s.io"], &["csidrivers"]),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["storage.k8s.io"],
            &["csinodes"],
        ),
        rule(&read, &["node.k8s.io"], &["runtimeclasses"]),
    ]
}

/// Whether a raw field selector requires `field` to equal `value`.
pub fn selects(field_selector: &str, field: &str, value: &str) -> bool {
    field_selector.split(',').any(|term| {
        let term = term.trim();
        if term.contains("!=") {
            return false;
        }
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .unwrap_or(("", ""));
        k.trim() == field && v.trim() == value
    })
}

/// The value of a `metadata.name=` (or `==`) term of a raw field selector.
fn metadata_name(field_selector: &str) -> Option<&str> {
    field_selector.split(',').find_map(|term| {
        let term = term.trim();
        if term.contains("!=") {
            return None;
        }
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        (k.trim() == "metadata.name").then_some(v.trim())
    })
}

/// What a pod spec references, for the relationship checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    ServiceAccount,
}

/// Whether `pod` references an object of `kind` named `name`, as upstream's graph records.
pub fn pod_references(pod: &Value, kind: Reference, name: &str) -> bool {
    referenced_names(pod, kind).iter().any(|n| n == name)
}

/// The names of every object of `kind` a pod references: volumes, projected sources, env, envFrom, image pull
/// secrets and volume-plugin secrets, or its service account.
pub fn referenced_names(pod: &Value, kind: Reference) -> Vec<String> {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let mut names = Vec::new();
    let mut add = |n: &str| {
        if !n.is_empty() {
            names.push(n.to_string());
        }
    };
    if kind == Reference::ServiceAccount {
        add(str_at(&spec, &["serviceAccountName"]));
        return names;
    }
    let (volume_key, volume_field, projected_key, env_ref, env_from_ref) = match kind {
        Reference::Secret => ("secret", "secretName", "secret", "secretKeyRef", "secretRef"),
        Reference::ConfigMap => (
            "configMap",
            "name",
            "configMap",
            "configMapKeyRef",
            "configMapRef",
        ),
        Reference::PersistentVolumeClaim => ("persistentVolumeClaim", "claimName", "", "", ""),
        Reference::ServiceAccount => return names,
    };
    if kind == Reference::Secret {
        for s in objects::array_at(&spec, &["imagePullSecrets"]) {
            add(str_at(s, &["name"]));
        }
    }
    for volume in objects::array_at(&spec, &["volumes"]) {
        add(str_at(volume, &[volume_key, volume_field]));
        if !projected_key.is_empty() {
            for source in objects::array_at(volume, &["projected", "sources"]) {
                add(str_at(source, &[projected_key, "name"]));
            }
        }
        if kind == Reference::Secret {
            // Secrets referenced by volume plugins (CSI node-publish secrets and the like).
            for plugin in [
                "csi",
                "cephfs",
                "rbd",
                "flexVolume",
                "iscsi",
                "scaleIO",
                "storageos",
                "azureFile",
            ] {
                add(str_at(volume, &[plugin, "secretRef", "name"]));
                add(str_at(volume, &[plugin, "nodePublishSecretRef", "name"]));
                add(str_at(volume, &[plugin, "secretName"]));
            }
        }
    }
    if env_ref.is_empty() {
        return names;
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in objects::array_at(&spec, &[key]) {
            for e in objects::array_at(c, &["env"]) {
                add(str_at(e, &["valueFrom", env_ref, "name"]));
            }
            for e in objects::array_at(c, &["envFrom"]) {
                add(str_at(e, &[env_from_ref, "name"]));
            }
        }
    }
    names
}

/// The node authorizer.
#[derive(Clone)]
pub struct NodeAuthorizer {
    reader: Arc<dyn ObjectReader>,
    rules: Vec<Value>,
}

impl std::fmt::Debug for NodeAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeAuthorizer")
    }
}

type Answer = (Decision, String);

fn no(reason: impl Into<String>) -> Answer {
    (Decision::NoOpinion, reason.into())
}

fn allow() -> Answer {
    (Decision::Allow, String::new())
}

impl NodeAuthorizer {
    pub fn new(reader: Arc<dyn ObjectReader>) -> Self {
        Self {
            reader,
            rules: node_rules(),
        }
    }

    fn rules_allow(&self, attrs: &Attributes) -> Answer {
        if self.rules.iter().any(|r| rule_allows(attrs, r)) {
            allow()
        } else {
            no("")
        }
    }

    /// Whether a pod bound to `node` relates the node to `namespace/name` of `kind`.
    async fn related(&self, node: &str, kind: Reference, namespace: &str, name: &str) -> bool {
        let Ok(pods) = self.reader.list(&objects::pods(), Some(namespace)).await else {
            return false;
        };
        pods.iter()
            .filter(|p| str_at(p, &["spec", "nodeName"]) == node)
            .any(|p| pod_references(p, kind, name))
    }

    async fn authorize_related(&self, node: &str, kind: Reference, attrs: &Attributes) -> Answer {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        if self.related(node, kind, &attrs.namespace, &attrs.name).await {
            allow()
        } else {
            no(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    async fn read_namespaced(&self, node: &str, kind: Reference, attrs: &Attributes) -> Answer {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.authorize_related(node, kind, attrs).await
    }

    /// Whether the pod `namespace/name` is bound to `node`.
    async fn pod_on_node(&self, node: &str, attrs: &Attributes) -> Answer {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        let pod = self
            .reader
            .get(&objects::pods(), Some(&attrs.namespace), &attrs.name)
            .await;
        match pod {
            Ok(Some(p)) if str_at(&p, &["spec", "nodeName"]) == node => allow(),
            _ => no(format!(
                "no relationship found between node '{node}' and this object"
            )),
        }
    }

    async fn pod(&self, node: &str, attrs: &Attributes) -> Answer {
        match (attrs.subresource.as_str(), attrs.verb.as_str()) {
            ("", "get") => self.pod_on_node(node, attrs).await,
            ("", "list" | "watch") => {
                if selects(&attrs.field_selector, "spec.nodeName", node) {
                    return allow();
                }
                if !attrs.name.is_empty() {
                    return self.pod_on_node(node, attrs).await;
                }
                no("can only list/watch pods with spec.nodeName field selector")
            }
            // Mirror pods, status and evictions; NodeRestriction confines them to pods bound to this node.
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => allow(),
            _ => no(""),
        }
    }

    fn node(&self, node: &str, attrs: &Attributes) -> Answer {
        // Names are compared directly (not through pods) so a kubelet can read its Node before creating it.
        let name = if attrs.name.is_empty() && selects(&attrs.field_selector, "metadata.name", node) {
            node
        } else {
            attrs.name.as_str()
        };
        match (attrs.subresource.as_str(), attrs.verb.as_str()) {
            // NodeRestriction confines writes to the node's own object.
            ("", "create" | "update" | "patch") | ("status", "update" | "patch") => allow(),
            ("", "get" | "list" | "watch") if name == node => allow(),
            ("", "get" | "list" | "watch") if name.is_empty() => no(format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            ("", "get" | "list" | "watch") => no(format!(
                "node '{node}' cannot read '{name}', only its own Node object"
            )),
            _ => no(""),
        }
    }

    fn lease(&self, node: &str, attrs: &Attributes) -> Answer {
        if !matches!(
            attrs.verb.as_str(),
            "get" | "create" | "update" | "patch" | "delete"
        ) {
            return no("can only get, create, update, patch, or delete a node lease");
        }
        if attrs.namespace != "kube-node-lease" {
            return no("can only access leases in the \"kube-node-lease\" system namespace");
        }
        if attrs.verb != "create" && attrs.name != node {
            return no("can only access node lease with the same name as the requesting node");
        }
        allow()
    }

    async fn decide(&self, attrs: &Attributes) -> Answer {
        let Some(node) = node_identity(&attrs.user) else {
            return no("");
        };
        if node.is_empty() {
            return no(format!("unknown node for user {:?}", attrs.user.name));
        }
        if !attrs.resource_request {
            return self.rules_allow(attrs);
        }
        // Upstream's request info names the object of a list/watch with a `metadata.name=` field selector; do the
        // same here in case the caller did not.
        let named;
        let attrs = match metadata_name(&attrs.field_selector) {
            Some(name) if attrs.name.is_empty() && matches!(attrs.verb.as_str(), "list" | "watch") => {
                named = Attributes {
                    name: name.to_string(),
                    ..attrs.clone()
                };
                &named
            }
            _ => attrs,
        };
        match (attrs.api_group.as_str(), attrs.resource.as_str()) {
            ("", "secrets") => self.read_namespaced(node, Reference::Secret, attrs).await,
            ("", "configmaps") => self.read_namespaced(node, Reference::ConfigMap, attrs).await,
            ("", "persistentvolumeclaims") if attrs.subresource == "status" => {
                if !matches!(attrs.verb.as_str(), "update" | "patch") {
                    return no("can only get/update/patch persistentvolumeclaim status");
                }
                self.authorize_related(node, Reference::PersistentVolumeClaim, attrs)
                    .await
            }
            ("", "persistentvolumeclaims") => {
                if attrs.verb != "get" {
                    return no("can only get individual resources of this type");
                }
                self.authorize_related(node, Reference::PersistentVolumeClaim, attrs)
                    .await
            }
            ("", "serviceaccounts") => {
                if attrs.verb != "create" || attrs.name.is_empty() {
                    return no("can only create tokens for individual service accounts");
                }
                if attrs.subresource != "token" {
                    return no("can only create token subresource of serviceaccount");
                }
                self.authorize_related(node, Reference::ServiceAccount, attrs)
                    .await
            }
            ("coordination.k8s.io", "leases") => self.lease(node, attrs),
            ("", "nodes") => self.node(node, attrs),
            ("", "pods") => self.pod(node, attrs).await,
            _ => self.rules_allow(attrs),
        }
    }
}

#[async_trait]
impl Authorizer for NodeAuthorizer {
    async fn authorize(&self, attrs: &Attributes) -> Decision {
        self.decide(attrs).await.0
    }

    async fn authorize_with_reason(&self, attrs: &Attributes) -> (Decision, String) {
        self.decide(attrs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::{MemoryReader, attrs, pod, user};

    fn kubelet() -> UserInfo {
        user("system:node:node-1", &["system:nodes", "system:authenticated"])
    }

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        let mut mine = pod("default", "web", "node-1");
        mine["spec"]["volumes"] = json!([
            {"name": "cfg", "configMap": {"name": "web-config"}},
            {"name": "tls", "secret": {"secretName": "web-tls"}}
        ]);
        mine["spec"]["containers"][0]["env"] =
            json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "web-pass", "key": "p"}}}]);
        r.put("", "pods", mine);
        let mut theirs = pod("default", "db", "node-2");
        theirs["spec"]["volumes"] = json!([{"name": "tls", "secret": {"secretName": "db-tls"}}]);
        r.put("", "pods", theirs);
        r
    }

    async fn decide(a: &Attributes) -> Answer {
        NodeAuthorizer::new(Arc::new(reader())).decide(a).await
    }

    #[tokio::test]
    async fn a_kubelet_may_read_and_update_its_own_node_and_status() {
        let k = kubelet();
        for (verb, res) in [
            ("get", "nodes"),
            ("update", "nodes"),
            ("patch", "nodes/status"),
            ("create", "nodes"),
        ] {
            assert_eq!(
                decide(&attrs(&k, verb, "", res, "", "node-1")).await.0,
                Decision::Allow,
                "{verb} {res}"
            );
        }
    }

    #[tokio::test]
    async fn a_kubelet_cannot_read_another_node() {
        let (d, reason) = decide(&attrs(&kubelet(), "get", "", "nodes", "", "node-2")).await;
        assert_eq!(d, Decision::NoOpinion);
        assert_eq!(
            reason,
            "node 'node-1' cannot read 'node-2', only its own Node object"
        );
    }

    #[tokio::test]
    async fn a_kubelet_reads_pods_bound_to_it_and_lists_pods_only_by_its_node_name() {
        let k = kubelet();
        assert_eq!(
            decide(&attrs(&k, "get", "", "pods", "default", "web")).await.0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "get", "", "pods", "default", "db")).await.0,
            Decision::NoOpinion
        );
        let mut list = attrs(&k, "list", "", "pods", "", "");
        assert_eq!(
            decide(&list).await,
            no("can only list/watch pods with spec.nodeName field selector")
        );
        list.field_selector = "spec.nodeName=node-1".into();
        assert_eq!(decide(&list).await.0, Decision::Allow);
        list.field_selector = "spec.nodeName=node-2".into();
        assert_eq!(decide(&list).await.0, Decision::NoOpinion);
    }

    #[tokio::test]
    async fn a_kubelet_reads_only_secrets_and_configmaps_its_pods_reference() {
        let k = kubelet();
        assert_eq!(
            decide(&attrs(&k, "get", "", "secrets", "default", "web-tls"))
                .await
                .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "get", "", "secrets", "default", "web-pass"))
                .await
                .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "get", "", "configmaps", "default", "web-config"))
                .await
                .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "get", "", "secrets", "default", "db-tls")).await,
            no("no relationship found between node 'node-1' and this object")
        );
        let mut watch_one = attrs(&k, "watch", "", "configmaps", "default", "");
        watch_one.field_selector = "metadata.name=web-config".into();
        assert_eq!(decide(&watch_one).await.0, Decision::Allow);
        assert_eq!(
            decide(&attrs(&k, "update", "", "secrets", "default", "web-tls")).await,
            no("can only read resources of this type")
        );
    }

    #[tokio::test]
    async fn a_kubelet_manages_only_its_own_lease_in_kube_node_lease() {
        let k = kubelet();
        assert_eq!(
            decide(&attrs(
                &k,
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                "node-1"
            ))
            .await
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(
                &k,
                "create",
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                ""
            ))
            .await
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(
                &k,
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                "node-2"
            ))
            .await,
            no("can only access node lease with the same name as the requesting node")
        );
        assert_eq!(
            decide(&attrs(
                &k,
                "get",
                "coordination.k8s.io",
                "leases",
                "kube-system",
                "node-1"
            ))
            .await
            .0,
            Decision::NoOpinion
        );
    }

    #[tokio::test]
    async fn a_kubelet_creates_events_csrs_mirror_pods_and_pod_status_updates() {
        let k = kubelet();
        assert_eq!(
            decide(&attrs(&k, "create", "", "events", "default", "")).await.0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(
                &k,
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                ""
            ))
            .await
            .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "create", "", "pods", "kube-system", ""))
                .await
                .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "patch", "", "pods/status", "default", "web"))
                .await
                .0,
            Decision::Allow
        );
        assert_eq!(
            decide(&attrs(&k, "delete", "", "namespaces", "", "default"))
                .await
                .0,
            Decision::NoOpinion
        );
    }

    #[tokio::test]
    async fn users_who_are_not_nodes_get_no_opinion() {
        let alice = user("alice", &["system:authenticated"]);
        assert_eq!(
            decide(&attrs(&alice, "get", "", "nodes", "", "node-1")).await,
            no("")
        );
        let nameless = user("bob", &["system:nodes"]);
        assert_eq!(
            decide(&attrs(&nameless, "get", "", "nodes", "", "x")).await,
            no("unknown node for user \"bob\"")
        );
    }
}
