//! Test-only: an in-memory [`ObjectReader`] and object builders shared by the auth and admission tests.

use super::ObjectReader;
use api::{ApiError, GroupResource};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Objects keyed by (group, resource, namespace, name).
#[derive(Default)]
pub struct MemoryReader {
    objects: Mutex<BTreeMap<(String, String, String, String), Value>>,
}

impl MemoryReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `obj` under the resource; namespace and name come from its metadata.
    pub fn put(&self, group: &str, resource: &str, obj: Value) {
        let ns = super::objects::str_at(&obj, &["metadata", "namespace"]).to_string();
        let name = super::objects::name(&obj).to_string();
        self.objects
            .lock()
            .unwrap()
            .insert((group.into(), resource.into(), ns, name), obj);
    }

    /// Stores every object of the bootstrap policy.
    pub fn with_bootstrap_policy(self) -> Self {
        for obj in super::bootstrap_policy() {
            let kind = obj["kind"].as_str().unwrap_or_default();
            let resource = format!("{}s", kind.to_lowercase());
            self.put("rbac.authorization.k8s.io", &resource, obj);
        }
        self
    }
}

#[async_trait]
impl ObjectReader for MemoryReader {
    async fn get(
        &self,
        r: &GroupResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let key = (
            r.group.clone(),
            r.resource.clone(),
            namespace.unwrap_or("").to_string(),
            name.to_string(),
        );
        Ok(self.objects.lock().unwrap().get(&key).cloned())
    }

    async fn list(&self, r: &GroupResource, namespace: Option<&str>) -> Result<Vec<Value>, ApiError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((g, res, ns, _), _)| {
                *g == r.group && *res == r.resource && namespace.is_none_or(|want| want == ns)
            })
            .map(|(_, v)| v.clone())
            .collect())
    }
}

pub fn user(name: &str, groups: &[&str]) -> super::UserInfo {
    super::UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

/// Resource attributes for `user` doing `verb` on `group/resource[/sub]` `ns/name`.
pub fn attrs(
    user: &super::UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> super::Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    super::Attributes {
        user: user.clone(),
        verb: verb.into(),
        namespace: ns.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
        resource_request: true,
        ..Default::default()
    }
}

pub fn pod(ns: &str, name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
        "spec": {"nodeName": node, "serviceAccountName": "default", "containers": [{"name": "c", "image": "i"}]}
    })
}
