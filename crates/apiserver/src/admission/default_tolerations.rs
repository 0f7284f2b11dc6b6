//! DefaultTolerationSeconds: new pods tolerate `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable`
//! NoExecute taints for 300 seconds unless they already tolerate them (on create and update), so a node failure evicts pods after five
//! minutes, as upstream.

use super::{AdmissionPlugin, AdmissionRequest, Operation};
use crate::auth::ObjectReader;
use crate::auth::objects::str_at;
use api::ApiError;
use async_trait::async_trait;
use serde_json::{Value, json};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const DEFAULT_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy)]
pub struct DefaultTolerationSeconds {
    pub not_ready_seconds: i64,
    pub unreachable_seconds: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        Self {
            not_ready_seconds: DEFAULT_SECONDS,
            unreachable_seconds: DEFAULT_SECONDS,
        }
    }
}

fn tolerates(tolerations: &[Value], key: &str) -> bool {
    tolerations.iter().any(|t| {
        let (k, effect) = (str_at(t, &["key"]), str_at(t, &["effect"]));
        (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    })
}

#[async_trait]
impl AdmissionPlugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }

    async fn admit(
        &self,
        req: &AdmissionRequest<'_>,
        obj: &mut Value,
        _: &dyn ObjectReader,
    ) -> Result<(), ApiError> {
        let is_pod = req.resource.group.is_empty() && req.resource.kind == "Pod";
        // Upstream handles creates and updates alike (an update cannot drop the defaults either).
        if !is_pod
            || !req.subresource.is_empty()
            || !matches!(req.operation, Operation::Create | Operation::Update)
        {
            return Ok(());
        }
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        let existing = spec
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut added = Vec::new();
        for (key, seconds) in [
            (NOT_READY, self.not_ready_seconds),
            (UNREACHABLE, self.unreachable_seconds),
        ] {
            if !tolerates(&existing, key) {
                added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
            }
        }
        if !added.is_empty() {
            let mut all = existing;
            all.extend(added);
            spec.insert("tolerations".into(), Value::Array(all));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::tests::{request, resource};
    use crate::auth::testutil::{MemoryReader, pod, user};

    async fn admit(obj: &mut Value) {
        let (info, u) = (resource("Pod"), user("alice", &[]));
        let req = request(Operation::Create, &u, &info, "default", "web");
        DefaultTolerationSeconds::default()
            .admit(&req, obj, &MemoryReader::new())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn new_pods_tolerate_not_ready_and_unreachable_for_300_seconds() {
        let mut p = pod("default", "web", "");
        admit(&mut p).await;
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
    }

    #[tokio::test]
    async fn an_existing_toleration_is_kept_and_not_duplicated() {
        let mut p = pod("default", "web", "");
        p["spec"]["tolerations"] = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]);
        admit(&mut p).await;
        let t = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 10);
        assert_eq!(t[1]["key"], NOT_READY);
    }

    #[tokio::test]
    async fn a_toleration_of_everything_needs_no_defaults() {
        let mut p = pod("default", "web", "");
        p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        admit(&mut p).await;
        assert_eq!(p["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }
}
