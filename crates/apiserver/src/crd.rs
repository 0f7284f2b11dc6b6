//! CustomResourceDefinitions in the API server: the served registry follows the CRDs in the store.
//!
//! [`Registries`] holds the registry requests are routed with: the built-in kinds plus the served versions of every
//! valid CRD ([`api::crd::served_resources`]). It is rebuilt from the store, never from what one server saw, so
//! several API servers serve the same kinds: by [`follow`] (a watch on the CRDs, for discovery), right after this
//! server writes a CRD, and when a request names a resource it does not know yet (another server created the CRD
//! a moment ago).
//!
//! Also here: the CRD's own write hooks ([`on_crd_write`]: validation and the `Established` status), the removal of
//! a CRD's objects with it ([`delete_objects`]), and [`served_as`], which shows an object stored through one version
//! of a CRD under the version it is read through (upstream's `None` conversion strategy).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use api::{ApiError, GroupKind, Registry, ResourceInfo};
use serde_json::Value;
use store::{ListOptions, Store, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::error::store_error;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

fn is_crd(info: &ResourceInfo) -> bool {
    info.group == "apiextensions.k8s.io" && info.kind == "CustomResourceDefinition"
}

/// The registry in force, swapped whole when the CRDs change.
pub struct Registries {
    builtin: Registry,
    current: RwLock<Arc<Registry>>,
}

impl Default for Registries {
    fn default() -> Self {
        let builtin = Registry::builtin();
        Self {
            current: RwLock::new(Arc::new(builtin.clone())),
            builtin,
        }
    }
}

impl Registries {
    pub fn current(&self) -> Arc<Registry> {
        // A poisoned lock only means a panic elsewhere mid-swap; the Arc inside is whole either way.
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Built-in kinds plus what each valid CRD serves; a CRD whose resources collide with kinds already served
    /// (built-in or an older CRD) is left out, as upstream refuses its names.
    pub fn rebuild(&self, crds: &[Value]) {
        let mut next = self.builtin.clone();
        for crd in crds {
            if !api::crd::validate_definition(crd).is_empty() {
                continue;
            }
            let infos = api::crd::served_resources(crd);
            if infos.iter().any(|i| next.by_gvr(&i.gvr()).is_some()) {
                tracing::warn!(
                    crd = crd["metadata"]["name"].as_str().unwrap_or(""),
                    "CRD names conflict; not served"
                );
                continue;
            }
            for info in infos {
                // Checked above: no duplicate.
                let _ = next.insert(info);
            }
        }
        let next = Arc::new(next);
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        if **slot != *next {
            *slot = next;
        }
    }
}

/// Reads every CRD from the store and rebuilds the registry; returns the revision read at.
pub async fn refresh(store: &dyn Store, registries: &Registries) -> Result<i64, ApiError> {
    let resource = api::GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions");
    let list = store
        .list(CRD_PREFIX, ListOptions::default())
        .await
        .map_err(|e| store_error(&resource, "", e))?;
    let crds: Vec<Value> = list
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    registries.rebuild(&crds);
    Ok(list.revision)
}

/// Keeps the registry in step with the CRDs in the store until `shutdown`, so that discovery on this server
/// shows CRDs another server created.
pub async fn follow(store: Arc<dyn Store>, registries: Arc<Registries>, shutdown: CancellationToken) {
    loop {
        let round = async {
            let rev = refresh(store.as_ref(), &registries)
                .await
                .map_err(|e| e.to_string())?;
            let opts = WatchOptions {
                prefix: true,
                start_revision: Some(rev + 1),
            };
            let mut events = store.watch(CRD_PREFIX, opts).await.map_err(|e| e.to_string())?;
            while let Some(ev) = events.next().await {
                ev.map_err(|e| e.to_string())?;
                refresh(store.as_ref(), &registries)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = round => if let Err(e) = r {
                tracing::debug!(error = %e, "following CRDs failed; starting over");
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Validates a CRD being written and gives it the status of an accepted, established definition.
pub fn on_crd_write(
    info: &ResourceInfo,
    obj: &mut Value,
    old: Option<&Value>,
    now: &str,
) -> Result<(), ApiError> {
    if !is_crd(info) {
        return Ok(());
    }
    let errs = api::crd::validate_definition(obj);
    if !errs.is_empty() {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        return Err(ApiError::invalid(
            &GroupKind::new(&info.group, &info.kind),
            &name,
            errs,
        ));
    }
    obj["status"] = api::crd::established_status(obj, old, now);
    Ok(())
}

/// Deletes every object a CRD served, before the CRD itself goes (upstream's `customresourcecleanup` finalizer).
pub async fn delete_objects(store: &dyn Store, info: &ResourceInfo, crd: &Value) -> Result<(), ApiError> {
    if !is_crd(info) {
        return Ok(());
    }
    let Some(served) = api::crd::served_resources(crd).into_iter().next() else {
        return Ok(());
    };
    let (Some(prefix), resource) = (served.storage_prefix.clone(), served.group_resource()) else {
        return Ok(());
    };
    let list = store
        .list(&prefix, ListOptions::default())
        .await
        .map_err(|e| store_error(&resource, "", e))?;
    for kv in list.items {
        match store.delete(&kv.key, None).await {
            Ok(_) | Err(store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error(&resource, "", e)),
        }
    }
    Ok(())
}

/// An object of a custom kind as read through `info`'s version: every version of a CRD shares one storage, and
/// upstream's `None` conversion only changes `apiVersion`. Lists get the same for each item.
pub fn served_as(info: &ResourceInfo, body: &mut Value) {
    if info.custom.is_none() {
        return;
    }
    let api_version = Value::String(info.api_version());
    if body.get("kind").and_then(Value::as_str) == Some(info.kind.as_str()) {
        body["apiVersion"] = api_version.clone();
    }
    // A list of custom objects carries each item's kind and apiVersion (built-in lists leave them out).
    if body.get("kind").and_then(Value::as_str) == Some(info.list_kind().as_str())
        && let Some(items) = body.get_mut("items").and_then(Value::as_array_mut)
    {
        for item in items.iter_mut().filter(|i| i.is_object()) {
            item["kind"] = Value::String(info.kind.clone());
            item["apiVersion"] = api_version.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(group: &str, plural: &str, kind: &str) -> Value {
        json!({"metadata": {"name": format!("{plural}.{group}")}, "spec": {
            "group": group, "scope": "Namespaced", "names": {"plural": plural, "kind": kind},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    #[test]
    fn the_registry_serves_valid_crds_and_skips_invalid_and_conflicting_ones() {
        let r = Registries::default();
        let builtin = r.current().len();
        let mut invalid = crd("b.example.com", "bees", "Bee");
        invalid["spec"]["scope"] = json!("Everywhere");
        r.rebuild(&[
            crd("a.example.com", "ants", "Ant"),
            invalid,
            crd("a.example.com", "ants", "Ant2"),
        ]);
        let now = r.current();
        assert_eq!(now.len(), builtin + 1);
        assert_eq!(
            now.resolve("ants")[0].custom.as_ref().unwrap().storage_version,
            "v1"
        );
        r.rebuild(&[]);
        assert_eq!(r.current().len(), builtin);
    }

    #[test]
    fn objects_read_through_another_version_carry_that_version() {
        let mut info = api::crd::served_resources(&crd("a.example.com", "ants", "Ant"))[0].clone();
        info.version = "v2".into();
        let mut list = json!({"kind": "AntList", "apiVersion": "a.example.com/v2",
            "items": [{"kind": "Ant", "apiVersion": "a.example.com/v1"}]});
        served_as(&info, &mut list);
        assert_eq!(list["items"][0]["apiVersion"], "a.example.com/v2");
    }
}
