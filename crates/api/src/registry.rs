//! The resource registry: which kinds the API server serves and how each is addressed.
//!
//! Entries are owned values in a [`Registry`] so CRDs can be inserted and removed at runtime;
//! [`Registry::builtin`] fills one with the built-in kinds as upstream's discovery documents them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Group, version and kind of an object type (`apps`, `v1`, `Deployment`). The core group is `""`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// The `apiVersion` field value: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// Splits an `apiVersion` string and a kind into a GVK (`apps/v1` + `Deployment`).
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = split_api_version(api_version);
        Self::new(group, version, kind)
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Kind={}", self.api_version(), self.kind)
    }
}

/// Group, version and resource (plural) as they appear in request paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupVersionResource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl GroupVersionResource {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.resource)
    }
}

impl fmt::Display for GroupVersionResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, Resource={}", self.api_version(), self.resource)
    }
}

impl GroupVersionResource {
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

/// Group and resource, the unit errors and RBAC talk about (`deployments.apps`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

impl GroupResource {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.into(),
            resource: resource.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.group.is_empty() && self.resource.is_empty()
    }
}

/// Upstream's `GroupResource.String()`: `pods`, `deployments.apps`.
impl fmt::Display for GroupResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// Group and kind, what validation errors name (`Deployment.apps`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct GroupKind {
    pub group: String,
    pub kind: String,
}

impl GroupKind {
    pub fn new(group: &str, kind: &str) -> Self {
        Self {
            group: group.into(),
            kind: kind.into(),
        }
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subresource {
    /// The path segment after the object name (`status`, `scale`, `log`).
    pub name: String,
    /// The kind the subresource reads and writes; `Scale` lives in `autoscaling/v1`, `status` is the parent kind.
    pub kind: GroupVersionKind,
    pub verbs: Vec<String>,
}

/// Everything the API server needs to know about one served resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The path segment and RBAC resource name, e.g. `pods`.
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Key prefix in the store, ending in `/`; `None` for virtual resources (reviews) that are never stored.
    pub storage_prefix: Option<String>,
    /// What a CustomResourceDefinition says about its objects; `None` for built-in kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<Box<crate::crd::CustomResource>>,
}

impl ResourceInfo {
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::new(&self.group, &self.version, &self.kind)
    }

    pub fn gvr(&self) -> GroupVersionResource {
        GroupVersionResource::new(&self.group, &self.version, &self.plural)
    }

    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.group, &self.kind)
    }

    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }

    /// `PodList` for `Pod`, as upstream names list kinds.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn supports_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// The store key of one object: `<prefix><namespace>/<name>` or `<prefix><name>`.
    /// `None` for resources that are never stored.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> Option<String> {
        let prefix = self.storage_prefix.as_deref()?;
        Some(match namespace {
            Some(ns) if self.namespaced => format!("{prefix}{ns}/{name}"),
            _ => format!("{prefix}{name}"),
        })
    }

    /// The key prefix that lists a namespace (or the whole resource when `namespace` is `None`).
    pub fn storage_list_prefix(&self, namespace: Option<&str>) -> Option<String> {
        let prefix = self.storage_prefix.as_deref()?;
        Some(match namespace {
            Some(ns) if self.namespaced => format!("{prefix}{ns}/"),
            _ => prefix.to_string(),
        })
    }

    /// A resource served from a CustomResourceDefinition; stored as upstream does under
    /// `/registry/<group>/<plural>/`, with the verbs every custom resource gets.
    pub fn custom(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        singular: &str,
        namespaced: bool,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: singular.into(),
            namespaced,
            verbs: strings(CRUD),
            short_names: vec![],
            categories: vec![],
            subresources: vec![],
            storage_prefix: Some(format!("/registry/{group}/{plural}/")),
            custom: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("resource {0} is already registered")]
    Duplicate(GroupVersionResource),
    #[error("resource {gvr} has an invalid {field}: {value:?}")]
    Invalid {
        gvr: GroupVersionResource,
        field: &'static str,
        value: String,
    },
}

/// The set of served resources. Cheap to clone; lookups are linear over a few dozen entries,
/// which is faster than hashing for this size and keeps insertion order (discovery order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every built-in kind the API server serves.
    pub fn builtin() -> Self {
        Self {
            resources: builtin_resources(),
        }
    }

    /// Adds a resource; refuses a second entry for the same group/version/resource.
    pub fn insert(&mut self, info: ResourceInfo) -> Result<(), RegistryError> {
        let gvr = info.gvr();
        for (field, value) in [
            ("plural", &info.plural),
            ("kind", &info.kind),
            ("version", &info.version),
        ] {
            if value.is_empty() || value.contains('/') {
                return Err(RegistryError::Invalid {
                    gvr,
                    field,
                    value: value.clone(),
                });
            }
        }
        if self.by_gvr(&gvr).is_some() {
            return Err(RegistryError::Duplicate(gvr));
        }
        self.resources.push(info);
        Ok(())
    }

    /// Adds or replaces the entry for the same group/version/resource (a CRD update).
    pub fn upsert(&mut self, info: ResourceInfo) {
        let gvr = info.gvr();
        match self.resources.iter_mut().find(|r| r.gvr() == gvr) {
            Some(existing) => *existing = info,
            None => self.resources.push(info),
        }
    }

    pub fn remove(&mut self, gvr: &GroupVersionResource) -> Option<ResourceInfo> {
        let idx = self.resources.iter().position(|r| r.gvr() == *gvr)?;
        Some(self.resources.remove(idx))
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.iter()
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn by_gvr(&self, gvr: &GroupVersionResource) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == gvr.group && r.version == gvr.version && r.plural == gvr.resource)
    }

    pub fn by_gvk(&self, gvk: &GroupVersionKind) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == gvk.group && r.version == gvk.version && r.kind == gvk.kind)
    }

    /// Resources of one group/version, in registration order (an `APIResourceList`).
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceInfo> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }

    /// The distinct (group, version) pairs, in registration order; the core group comes first.
    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in &self.resources {
            if !out.iter().any(|(g, v)| *g == r.group && *v == r.version) {
                out.push((r.group.clone(), r.version.clone()));
            }
        }
        out
    }

    /// Resolves what a user typed (`po`, `pod`, `pods`, `deploy.apps`, `deployments.v1.apps`,
    /// `Deployment`) to resources, in registration order so the core group wins ties as in kubectl.
    pub fn resolve(&self, name: &str) -> Vec<&ResourceInfo> {
        let lower = name.to_ascii_lowercase();
        let direct: Vec<&ResourceInfo> = self.resources.iter().filter(|r| names_match(r, &lower)).collect();
        if !direct.is_empty() {
            return direct;
        }
        // `resource.group` or `resource.version.group`
        let Some((res, rest)) = lower.split_once('.') else {
            return vec![];
        };
        let with_version: Vec<&ResourceInfo> = match rest.split_once('.') {
            Some((version, group)) => self
                .resources
                .iter()
                .filter(|r| r.version == version && r.group == group && names_match(r, res))
                .collect(),
            None => vec![],
        };
        if !with_version.is_empty() {
            return with_version;
        }
        self.resources
            .iter()
            .filter(|r| r.group == rest && names_match(r, res))
            .collect()
    }

    /// Resources in a category (`kubectl get all`).
    pub fn in_category<'a>(&'a self, category: &'a str) -> impl Iterator<Item = &'a ResourceInfo> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.categories.iter().any(|c| c == category))
    }
}

fn names_match(r: &ResourceInfo, lower: &str) -> bool {
    r.plural == lower
        || r.singular == lower
        || r.kind.eq_ignore_ascii_case(lower)
        || r.short_names.iter().any(|s| s == lower)
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CRUD_NO_COLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
const CREATE_ONLY: &[&str] = &["create"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

struct Builtin {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    verbs: &'static [&'static str],
    short: &'static [&'static str],
    all: bool,
    sub: &'static [(&'static str, &'static str, &'static str, &'static [&'static str])],
    storage: Option<&'static str>,
}

/// Subresource whose kind is its parent's (`status`).
const SELF: &str = "";

fn builtin_resources() -> Vec<ResourceInfo> {
    const STATUS: (&str, &str, &str, &[&str]) = ("status", SELF, SELF, GET_PATCH_UPDATE);
    const SCALE: (&str, &str, &str, &[&str]) = ("scale", "autoscaling/v1", "Scale", GET_PATCH_UPDATE);
    let table: &[Builtin] = &[
        // core/v1, in upstream's discovery order for the kinds we serve
        Builtin {
            group: "",
            kind: "Binding",
            plural: "bindings",
            namespaced: true,
            verbs: CREATE_ONLY,
            short: &[],
            all: false,
            sub: &[],
            storage: None,
        },
        Builtin {
            group: "",
            kind: "ConfigMap",
            plural: "configmaps",
            namespaced: true,
            verbs: CRUD,
            short: &["cm"],
            all: false,
            sub: &[],
            storage: Some("/registry/configmaps/"),
        },
        // Endpoints share the services subtree in etcd (upstream's historical layout).
        Builtin {
            group: "",
            kind: "Endpoints",
            plural: "endpoints",
            namespaced: true,
            verbs: CRUD,
            short: &["ep"],
            all: false,
            sub: &[],
            storage: Some("/registry/services/endpoints/"),
        },
        Builtin {
            group: "",
            kind: "Event",
            plural: "events",
            namespaced: true,
            verbs: CRUD,
            short: &["ev"],
            all: false,
            sub: &[],
            storage: Some("/registry/events/"),
        },
        Builtin {
            group: "",
            kind: "Namespace",
            plural: "namespaces",
            namespaced: false,
            verbs: CRUD_NO_COLLECTION,
            short: &["ns"],
            all: false,
            sub: &[("finalize", SELF, SELF, &["update"]), STATUS],
            storage: Some("/registry/namespaces/"),
        },
        // Nodes were called minions once; upstream still stores them under that name.
        Builtin {
            group: "",
            kind: "Node",
            plural: "nodes",
            namespaced: false,
            verbs: CRUD,
            short: &["no"],
            all: false,
            sub: &[STATUS],
            storage: Some("/registry/minions/"),
        },
        Builtin {
            group: "",
            kind: "Pod",
            plural: "pods",
            namespaced: true,
            verbs: CRUD,
            short: &["po"],
            all: true,
            sub: &[
                ("binding", "v1", "Binding", CREATE_ONLY),
                ("eviction", "policy/v1", "Eviction", CREATE_ONLY),
                ("log", SELF, SELF, &["get"]),
                STATUS,
            ],
            storage: Some("/registry/pods/"),
        },
        Builtin {
            group: "",
            kind: "Secret",
            plural: "secrets",
            namespaced: true,
            verbs: CRUD,
            short: &[],
            all: false,
            sub: &[],
            storage: Some("/registry/secrets/"),
        },
        Builtin {
            group: "",
            kind: "ServiceAccount",
            plural: "serviceaccounts",
            namespaced: true,
            verbs: CRUD,
            short: &["sa"],
            all: false,
            sub: &[("token", "authentication.k8s.io/v1", "TokenRequest", CREATE_ONLY)],
            storage: Some("/registry/serviceaccounts/"),
        },
        Builtin {
            group: "",
            kind: "Service",
            plural: "services",
            namespaced: true,
            verbs: CRUD,
            short: &["svc"],
            all: true,
            sub: &[STATUS],
            storage: Some("/registry/services/specs/"),
        },
        Builtin {
            group: "apps",
            kind: "DaemonSet",
            plural: "daemonsets",
            namespaced: true,
            verbs: CRUD,
            short: &["ds"],
            all: true,
            sub: &[STATUS],
            storage: Some("/registry/daemonsets/"),
        },
        Builtin {
            group: "apps",
            kind: "Deployment",
            plural: "deployments",
            namespaced: true,
            verbs: CRUD,
            short: &["deploy"],
            all: true,
            sub: &[SCALE, STATUS],
            storage: Some("/registry/deployments/"),
        },
        Builtin {
            group: "apps",
            kind: "ReplicaSet",
            plural: "replicasets",
            namespaced: true,
            verbs: CRUD,
            short: &["rs"],
            all: true,
            sub: &[SCALE, STATUS],
            storage: Some("/registry/replicasets/"),
        },
        Builtin {
            group: "authentication.k8s.io",
            kind: "TokenReview",
            plural: "tokenreviews",
            namespaced: false,
            verbs: CREATE_ONLY,
            short: &[],
            all: false,
            sub: &[],
            storage: None,
        },
        Builtin {
            group: "authorization.k8s.io",
            kind: "LocalSubjectAccessReview",
            plural: "localsubjectaccessreviews",
            namespaced: true,
            verbs: CREATE_ONLY,
            short: &[],
            all: false,
            sub: &[],
            storage: None,
        },
        Builtin {
            group: "authorization.k8s.io",
            kind: "SelfSubjectAccessReview",
            plural: "selfsubjectaccessreviews",
            namespaced: false,
            verbs: CREATE_ONLY,
            short: &[],
            all: false,
            sub: &[],
            storage: None,
        },
        Builtin {
            group: "authorization.k8s.io",
            kind: "SelfSubjectRulesReview",
            plural: "selfsubjectrulesreviews",
            namespaced: false,
            verbs: CREATE_ONLY,
            short: &[],
            all: false,
            sub: &[],
            storage: None,
        },
        Builtin {
            group: "authorization.k8s.io",
            kind: "SubjectAccessReview",
            plural: "subjectaccessreviews",
            namespaced: false,
            verbs: CREATE_ONLY,
            short: &[],
            all: false,
            sub: &[],
            storage: None,
        },
        Builtin {
            group: "certificates.k8s.io",
            kind: "CertificateSigningRequest",
            plural: "certificatesigningrequests",
            namespaced: false,
            verbs: CRUD,
            short: &["csr"],
            all: false,
            sub: &[("approval", SELF, SELF, GET_PATCH_UPDATE), STATUS],
            storage: Some("/registry/certificatesigningrequests/"),
        },
        Builtin {
            group: "coordination.k8s.io",
            kind: "Lease",
            plural: "leases",
            namespaced: true,
            verbs: CRUD,
            short: &[],
            all: false,
            sub: &[],
            storage: Some("/registry/leases/"),
        },
        // events.k8s.io is another view of the same objects as core events, so it shares their keys.
        Builtin {
            group: "events.k8s.io",
            kind: "Event",
            plural: "events",
            namespaced: true,
            verbs: CRUD,
            short: &["ev"],
            all: false,
            sub: &[],
            storage: Some("/registry/events/"),
        },
        Builtin {
            group: "rbac.authorization.k8s.io",
            kind: "ClusterRoleBinding",
            plural: "clusterrolebindings",
            namespaced: false,
            verbs: CRUD,
            short: &[],
            all: false,
            sub: &[],
            storage: Some("/registry/clusterrolebindings/"),
        },
        Builtin {
            group: "rbac.authorization.k8s.io",
            kind: "ClusterRole",
            plural: "clusterroles",
            namespaced: false,
            verbs: CRUD,
            short: &[],
            all: false,
            sub: &[],
            storage: Some("/registry/clusterroles/"),
        },
        Builtin {
            group: "rbac.authorization.k8s.io",
            kind: "RoleBinding",
            plural: "rolebindings",
            namespaced: true,
            verbs: CRUD,
            short: &[],
            all: false,
            sub: &[],
            storage: Some("/registry/rolebindings/"),
        },
        Builtin {
            group: "rbac.authorization.k8s.io",
            kind: "Role",
            plural: "roles",
            namespaced: true,
            verbs: CRUD,
            short: &[],
            all: false,
            sub: &[],
            storage: Some("/registry/roles/"),
        },
        Builtin {
            group: "apiextensions.k8s.io",
            kind: "CustomResourceDefinition",
            plural: "customresourcedefinitions",
            namespaced: false,
            verbs: CRUD,
            short: &["crd", "crds"],
            all: false,
            sub: &[STATUS],
            storage: Some("/registry/apiextensions.k8s.io/customresourcedefinitions/"),
        },
    ];
    table
        .iter()
        .map(|b| {
            let version = "v1";
            let parent = GroupVersionKind::new(b.group, version, b.kind);
            let categories = if b.all {
                vec!["all".to_string()]
            } else if b.group == "apiextensions.k8s.io" {
                vec!["api-extensions".to_string()]
            } else {
                vec![]
            };
            ResourceInfo {
                group: b.group.into(),
                version: version.into(),
                kind: b.kind.into(),
                plural: b.plural.into(),
                singular: b.kind.to_ascii_lowercase(),
                namespaced: b.namespaced,
                verbs: strings(b.verbs),
                short_names: strings(b.short),
                categories,
                subresources: b
                    .sub
                    .iter()
                    .map(|(name, api_version, kind, verbs)| Subresource {
                        name: name.to_string(),
                        kind: if kind.is_empty() {
                            parent.clone()
                        } else {
                            GroupVersionKind::from_api_version(api_version, kind)
                        },
                        verbs: strings(verbs),
                    })
                    .collect(),
                storage_prefix: b.storage.map(str::to_string),
                custom: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry {
        Registry::builtin()
    }

    #[test]
    fn short_names_resolve_to_their_resources() {
        let r = reg();
        for (short, plural, group) in [
            ("po", "pods", ""),
            ("no", "nodes", ""),
            ("svc", "services", ""),
            ("ns", "namespaces", ""),
            ("cm", "configmaps", ""),
            ("sa", "serviceaccounts", ""),
            ("ep", "endpoints", ""),
            ("deploy", "deployments", "apps"),
            ("rs", "replicasets", "apps"),
            ("ds", "daemonsets", "apps"),
            ("csr", "certificatesigningrequests", "certificates.k8s.io"),
        ] {
            let found = r.resolve(short);
            assert_eq!(found.len(), 1, "{short}");
            assert_eq!(
                (found[0].plural.as_str(), found[0].group.as_str()),
                (plural, group)
            );
        }
    }

    #[test]
    fn events_resolve_to_core_first_then_events_group() {
        let r = reg();
        let found = r.resolve("ev");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].group, "");
        assert_eq!(found[1].group, "events.k8s.io");
        let qualified = r.resolve("events.events.k8s.io");
        assert_eq!(qualified.len(), 1);
        assert_eq!(qualified[0].group, "events.k8s.io");
    }

    #[test]
    fn singular_plural_kind_and_qualified_names_resolve() {
        let r = reg();
        for name in [
            "deployment",
            "deployments",
            "Deployment",
            "deploy.apps",
            "deployments.v1.apps",
        ] {
            let found = r.resolve(name);
            assert_eq!(found.len(), 1, "{name}");
            assert_eq!(found[0].kind, "Deployment");
        }
        assert!(r.resolve("deployments.extensions").is_empty());
        assert!(r.resolve("nothing").is_empty());
    }

    #[test]
    fn lookups_by_gvr_and_gvk_agree() {
        let r = reg();
        let d = r
            .by_gvr(&GroupVersionResource::new("apps", "v1", "deployments"))
            .unwrap();
        assert_eq!(r.by_gvk(&d.gvk()).unwrap(), d);
        assert_eq!(d.gvk().api_version(), "apps/v1");
        assert_eq!(d.list_kind(), "DeploymentList");
        assert!(r.by_gvk(&GroupVersionKind::new("", "v1", "Deployment")).is_none());
    }

    #[test]
    fn storage_keys_follow_upstream_layout() {
        let r = reg();
        let key = |g: &str, res: &str, ns: Option<&str>, n: &str| {
            r.by_gvr(&GroupVersionResource::new(g, "v1", res))
                .unwrap()
                .storage_key(ns, n)
        };
        assert_eq!(
            key("", "pods", Some("default"), "web").as_deref(),
            Some("/registry/pods/default/web")
        );
        assert_eq!(
            key("", "services", Some("default"), "kubernetes").as_deref(),
            Some("/registry/services/specs/default/kubernetes")
        );
        assert_eq!(
            key("", "endpoints", Some("default"), "kubernetes").as_deref(),
            Some("/registry/services/endpoints/default/kubernetes")
        );
        assert_eq!(
            key("", "nodes", None, "n1").as_deref(),
            Some("/registry/minions/n1")
        );
        assert_eq!(
            key("", "namespaces", None, "kube-system").as_deref(),
            Some("/registry/namespaces/kube-system")
        );
        assert_eq!(
            key("coordination.k8s.io", "leases", Some("kube-node-lease"), "n1").as_deref(),
            Some("/registry/leases/kube-node-lease/n1")
        );
        assert_eq!(
            key("events.k8s.io", "events", Some("a"), "e"),
            key("", "events", Some("a"), "e")
        );
        assert_eq!(
            key("authorization.k8s.io", "selfsubjectaccessreviews", None, "x"),
            None
        );
        let pods = r.by_gvr(&GroupVersionResource::new("", "v1", "pods")).unwrap();
        assert_eq!(
            pods.storage_list_prefix(Some("ns1")).as_deref(),
            Some("/registry/pods/ns1/")
        );
        assert_eq!(pods.storage_list_prefix(None).as_deref(), Some("/registry/pods/"));
    }

    #[test]
    fn subresources_carry_their_kinds_and_verbs() {
        let r = reg();
        let deploy = r
            .by_gvr(&GroupVersionResource::new("apps", "v1", "deployments"))
            .unwrap();
        let scale = deploy.subresource("scale").unwrap();
        assert_eq!(scale.kind, GroupVersionKind::new("autoscaling", "v1", "Scale"));
        assert_eq!(scale.verbs, ["get", "patch", "update"]);
        let pods = r.by_gvr(&GroupVersionResource::new("", "v1", "pods")).unwrap();
        assert_eq!(
            pods.subresource("binding").unwrap().kind,
            GroupVersionKind::new("", "v1", "Binding")
        );
        assert_eq!(pods.subresource("log").unwrap().verbs, ["get"]);
        assert_eq!(pods.subresource("status").unwrap().kind.kind, "Pod");
        let sa = r
            .by_gvr(&GroupVersionResource::new("", "v1", "serviceaccounts"))
            .unwrap();
        assert_eq!(
            sa.subresource("token").unwrap().kind.group,
            "authentication.k8s.io"
        );
        let csr = r.resolve("csr")[0];
        assert!(csr.subresource("approval").is_some() && !csr.namespaced);
    }

    #[test]
    fn category_all_holds_workloads_and_services() {
        let r = reg();
        let all: Vec<&str> = r.in_category("all").map(|r| r.plural.as_str()).collect();
        assert_eq!(
            all,
            ["pods", "services", "daemonsets", "deployments", "replicasets"]
        );
    }

    #[test]
    fn reviews_only_accept_create() {
        let r = reg();
        for name in ["selfsubjectaccessreviews", "subjectaccessreviews", "tokenreviews"] {
            let res = r.resolve(name)[0];
            assert_eq!(res.verbs, ["create"]);
            assert!(res.storage_prefix.is_none());
        }
    }

    #[test]
    fn custom_resources_can_be_added_and_removed_at_runtime() {
        let mut r = reg();
        let mut crd =
            ResourceInfo::custom("stable.example.com", "v1", "CronTab", "crontabs", "crontab", true);
        crd.short_names = vec!["ct".into()];
        r.insert(crd.clone()).unwrap();
        assert_eq!(r.insert(crd.clone()), Err(RegistryError::Duplicate(crd.gvr())));
        assert_eq!(r.resolve("ct")[0].kind, "CronTab");
        assert_eq!(
            r.resolve("ct")[0].storage_key(Some("default"), "x").as_deref(),
            Some("/registry/stable.example.com/crontabs/default/x")
        );
        assert!(
            r.group_versions()
                .contains(&("stable.example.com".into(), "v1".into()))
        );
        crd.categories = vec!["all".into()];
        r.upsert(crd.clone());
        assert!(r.in_category("all").any(|x| x.kind == "CronTab"));
        assert_eq!(r.remove(&crd.gvr()).unwrap().kind, "CronTab");
        assert!(r.resolve("ct").is_empty());
    }

    #[test]
    fn insert_rejects_empty_plural() {
        let mut r = Registry::new();
        let bad = ResourceInfo::custom("g", "v1", "K", "", "k", true);
        assert!(matches!(
            r.insert(bad),
            Err(RegistryError::Invalid { field: "plural", .. })
        ));
    }

    #[test]
    fn group_versions_start_with_core() {
        let gv = reg().group_versions();
        assert_eq!(gv[0], ("".to_string(), "v1".to_string()));
        assert!(gv.contains(&("apps".into(), "v1".into())));
    }
}
