//! OpenAPI documents of the API server: `/openapi/v2` (Swagger 2.0 as JSON and as gnostic
//! protobuf, which kubectl 1.20 fetches before `apply`, `create` and `explain`) and
//! `/openapi/v3` (an index plus one OpenAPI 3.0 document per group version, which newer kubectl
//! uses for `explain` and `apply`).
//!
//! Layout:
//! - [`definitions`]: schema definitions for every kind the registry serves, from k8s-openapi's
//!   `schemars` impls (descriptions, `required`, types), list kinds, custom kinds' structural
//!   schemas, `x-kubernetes-group-version-kind` and the list semantics of
//!   [`api::patch::schema`] (merge keys, patch strategies, list types and map keys).
//! - [`paths`]: CRUD operations per resource, shared by both versions.
//! - [`v2`] / [`proto`]: the Swagger document and its protobuf encoding.
//! - [`v3`]: per-group-version documents and the index.
//!
//! Entry points: [`v2_json`], [`v2_protobuf`], [`v2_etag`], [`v3_index`], [`v3_group_version`]
//! and [`v3_hash`] for the serving side; [`documents`] for everything at once (serialized, with
//! the hashes for ETags); [`documents_with`] when custom (CRD) kinds bring their own schemas
//! through a [`SchemaSource`]. Documents are deterministic for their inputs, so they are built
//! once per distinct registry content (and custom schemas) and cached; a CRD change produces a
//! different registry and hence fresh documents.

pub mod definitions;
pub mod paths;
pub mod proto;
pub mod v2;
pub mod v3;

#[cfg(test)]
mod kubectl_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use api::Registry;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

pub use definitions::{CrdSchemas, NoCustomSchemas, SchemaSource};

/// The Kubernetes version the documents claim in `info.version` (k8s-openapi's newest types).
pub const KUBERNETES_VERSION: &str = "v1.37.0";

/// Media type of the protobuf v2 document, as kubectl asks for it.
pub const V2_PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// One group version's v3 document, serialized, with its content hash.
#[derive(Debug, Clone)]
pub struct GroupVersionDocument {
    pub json: Vec<u8>,
    /// Upper-case hex SHA-512 of `json`: the `?hash=` of the index and the ETag.
    pub hash: String,
}

/// Every document of one registry, serialized once.
#[derive(Debug, Clone)]
pub struct Documents {
    pub v2_json: Vec<u8>,
    pub v2_protobuf: Vec<u8>,
    /// Upper-case hex SHA-512 of `v2_json` (upstream's ETag for both encodings, quoted).
    pub v2_hash: String,
    /// Keyed by index key (`api/v1`, `apis/apps/v1`).
    pub v3: BTreeMap<String, GroupVersionDocument>,
}

impl Documents {
    /// Builds every document; `custom` supplies the schemas of kinds k8s-openapi lacks (CRDs).
    pub fn build(registry: &Registry, custom: &dyn SchemaSource) -> Self {
        let defs = definitions::build(registry, custom);
        let v2_doc = v2::document(registry, &defs);
        let v2_json = v2_doc.to_string().into_bytes();
        let v2_protobuf = proto::document(&v2_doc).encode_to_vec();
        let v2_hash = sha512_hex(&v2_json);
        let mut v3 = BTreeMap::new();
        for (group, version) in registry.group_versions() {
            if let Some(doc) = v3::group_version_document(registry, &defs, &group, &version) {
                let json = doc.to_string().into_bytes();
                let hash = sha512_hex(&json);
                v3.insert(
                    v3::index_key(&group, &version),
                    GroupVersionDocument { json, hash },
                );
            }
        }
        Self {
            v2_json,
            v2_protobuf,
            v2_hash,
            v3,
        }
    }

    /// The `/openapi/v3` index.
    pub fn v3_index(&self) -> Value {
        let paths: serde_json::Map<String, Value> = self
            .v3
            .iter()
            .map(|(key, doc)| {
                (
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
                )
            })
            .collect();
        json!({ "paths": paths })
    }

    /// One group version's document by group (`""` for core) and version.
    pub fn v3_group_version(&self, group: &str, version: &str) -> Option<&GroupVersionDocument> {
        self.v3.get(&v3::index_key(group, version))
    }

    /// One group version's document by the path after `/openapi/v3/` (`apis/apps/v1`).
    pub fn v3_by_path(&self, path: &str) -> Option<&GroupVersionDocument> {
        self.v3.get(path.trim_matches('/'))
    }
}

fn sha512_hex(bytes: &[u8]) -> String {
    Sha512::digest(bytes).iter().map(|b| format!("{b:02X}")).collect()
}

/// How many distinct registries keep their documents cached (the built-in one, and the
/// previous and current CRD sets while requests drain).
const CACHE_SLOTS: usize = 4;

type Cache = Mutex<Vec<([u8; 32], Arc<Documents>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// A digest of everything the documents depend on: the registry entries and the custom schemas
/// of the kinds k8s-openapi lacks.
fn fingerprint(registry: &Registry, custom: &dyn SchemaSource) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for info in registry.iter() {
        // Serializing plain data into a Vec cannot fail; were it to, the entry would only hash
        // as empty, which costs at worst a cache hit between two registries of that shape.
        hasher.update(serde_json::to_vec(info).unwrap_or_default());
        hasher.update([0]);
        if definitions::builtin_type(&info.gvk()).is_none()
            && let Some(schema) = custom.schema(info)
        {
            hasher.update(schema.to_string());
        }
        hasher.update([0]);
    }
    hasher.finalize().into()
}

/// The documents of `registry` with the schemas its CRDs declare, built on first use and cached by
/// registry content.
pub fn documents(registry: &Registry) -> Arc<Documents> {
    documents_with(registry, &CrdSchemas)
}

/// The documents of `registry` with custom kinds' schemas from `custom` (CRDs), cached by the
/// content of both: a CRD whose schema changes gets fresh documents.
pub fn documents_with(registry: &Registry, custom: &dyn SchemaSource) -> Arc<Documents> {
    let key = fingerprint(registry, custom);
    // A poisoned lock only means another thread panicked mid-insert; the data is still valid.
    if let Some((_, docs)) = cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|(k, _)| *k == key)
    {
        return Arc::clone(docs);
    }
    // Built outside the lock: it takes a while, and two racing builds produce the same result.
    let docs = Arc::new(Documents::build(registry, custom));
    let mut slots = cache().lock().unwrap_or_else(|e| e.into_inner());
    if !slots.iter().any(|(k, _)| *k == key) {
        if slots.len() >= CACHE_SLOTS {
            slots.remove(0);
        }
        slots.push((key, Arc::clone(&docs)));
    }
    docs
}

/// The Swagger 2.0 document as JSON.
pub fn v2_json(registry: &Registry) -> Vec<u8> {
    documents(registry).v2_json.clone()
}

/// The Swagger 2.0 document as gnostic `openapi_v2.Document` protobuf.
pub fn v2_protobuf(registry: &Registry) -> Vec<u8> {
    documents(registry).v2_protobuf.clone()
}

/// The ETag value of the v2 document, without the quotes the header adds (the same for both
/// encodings, as upstream): upper-case hex SHA-512 of the JSON form.
pub fn v2_etag(registry: &Registry) -> String {
    documents(registry).v2_hash.clone()
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}}}`.
pub fn v3_index(registry: &Registry) -> Value {
    documents(registry).v3_index()
}

/// The OpenAPI 3.0 document of one group version (`""` for the core group); `None` when the
/// registry serves nothing there.
pub fn v3_group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let docs = documents(registry);
    let doc = docs.v3_group_version(group, version)?;
    serde_json::from_slice(&doc.json).ok()
}

/// The hash (and ETag, unquoted) of one group version's v3 document.
pub fn v3_hash(registry: &Registry, group: &str, version: &str) -> Option<String> {
    documents(registry)
        .v3_group_version(group, version)
        .map(|d| d.hash.clone())
}
