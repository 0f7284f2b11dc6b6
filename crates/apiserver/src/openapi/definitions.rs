//! The schema definitions every OpenAPI document is cut from.
//!
//! [`build`] turns a [`Registry`] into one map of definitions, named as upstream names them
//! (`io.k8s.api.core.v1.Pod`), in a neutral JSON Schema form: `$ref`s point at
//! `#/definitions/<name>` and sit beside their field's `description`, as in upstream's Swagger
//! document. The v2 and v3 writers ([`super::v2`], [`super::v3`]) only adapt that form.
//!
//! Sources, in order:
//! - k8s-openapi's `schemars` impls for the built-in kinds ([`BUILTIN_TYPES`]) and everything
//!   they reference (field descriptions, `required`, `type`, `format`);
//! - list kinds (`PodList`), which k8s-openapi models as one generic `List<T>` without a schema;
//! - custom (CRD) kinds, whose structural schema the caller supplies;
//! - decorations: `x-kubernetes-group-version-kind` on top-level kinds, and the list semantics
//!   of [`api::patch::schema`] on the fields it lists.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ::api::patch::schema::{FieldSchema, fields_of};
use ::api::{GroupVersionKind, Registry, ResourceInfo};
use k8s_openapi::api as k8s;
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator};
use k8s_openapi::{Resource, apiextensions_apiserver, apimachinery};
use serde_json::{Map, Value, json};

/// Prefix of every reference in the neutral form.
pub const REF_PREFIX: &str = "#/definitions/";

/// Definitions by name; sorted, so every document built from them is byte-for-byte stable.
pub type Definitions = BTreeMap<String, Value>;

pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
pub const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

/// Union types of the CRD schema (`default`, `enum`, `items`, `additionalProperties`, ...) that upstream publishes
/// without a type, so that any JSON validates; k8s-openapi's schemas would make clients insist on an object.
pub const UNTYPED: &[&str] = &[
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
];

/// A built-in kind whose schema k8s-openapi provides.
pub struct BuiltinType {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The upstream definition name (`JsonSchema::schema_name`).
    pub name: fn() -> Cow<'static, str>,
    /// Adds the kind's schema and everything it references to the generator.
    pub generate: fn(&mut SchemaGenerator),
}

impl BuiltinType {
    fn matches(&self, gvk: &GroupVersionKind) -> bool {
        self.group == gvk.group && self.version == gvk.version && self.kind == gvk.kind
    }
}

macro_rules! builtin_types {
    ($($t:ty),* $(,)?) => {
        &[$(BuiltinType {
            group: <$t as Resource>::GROUP,
            version: <$t as Resource>::VERSION,
            kind: <$t as Resource>::KIND,
            name: <$t as JsonSchema>::schema_name,
            generate: |g| {
                // Only the side effect matters: the definition lands in the generator.
                let _ = g.subschema_for::<$t>();
            },
        }),*]
    };
}

/// Every kind the built-in registry serves, plus the kinds its subresources read and write
/// (`Scale`, `Eviction`, `TokenRequest`). Registry entries are matched by group/version/kind, so
/// a kind only appears in the documents while the registry serves it.
pub static BUILTIN_TYPES: &[BuiltinType] = builtin_types![
    k8s::core::v1::Binding,
    k8s::core::v1::ConfigMap,
    k8s::core::v1::Endpoints,
    k8s::core::v1::Event,
    k8s::core::v1::Namespace,
    k8s::core::v1::Node,
    k8s::core::v1::Pod,
    k8s::core::v1::Secret,
    k8s::core::v1::Service,
    k8s::core::v1::ServiceAccount,
    k8s::apps::v1::DaemonSet,
    k8s::apps::v1::Deployment,
    k8s::apps::v1::ReplicaSet,
    k8s::authentication::v1::TokenReview,
    k8s::authentication::v1::TokenRequest,
    k8s::authorization::v1::LocalSubjectAccessReview,
    k8s::authorization::v1::SelfSubjectAccessReview,
    k8s::authorization::v1::SelfSubjectRulesReview,
    k8s::authorization::v1::SubjectAccessReview,
    k8s::autoscaling::v1::Scale,
    k8s::certificates::v1::CertificateSigningRequest,
    k8s::coordination::v1::Lease,
    k8s::events::v1::Event,
    k8s::policy::v1::Eviction,
    k8s::rbac::v1::ClusterRole,
    k8s::rbac::v1::ClusterRoleBinding,
    k8s::rbac::v1::Role,
    k8s::rbac::v1::RoleBinding,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
];

/// The built-in type for a kind, if k8s-openapi has one.
pub fn builtin_type(gvk: &GroupVersionKind) -> Option<&'static BuiltinType> {
    BUILTIN_TYPES.iter().find(|t| t.matches(gvk))
}

/// Where a served kind's schema comes from and what it is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindDefinition {
    pub gvk: GroupVersionKind,
    /// Definition name of the kind.
    pub name: String,
    /// Definition name of its list kind, when the resource can be listed.
    pub list_name: Option<String>,
}

/// Upstream's definition name for a custom kind: the reversed group, the version and the kind
/// (`stable.example.com/v1 CronTab` -> `com.example.stable.v1.CronTab`).
pub fn custom_definition_name(gvk: &GroupVersionKind) -> String {
    let mut parts: Vec<&str> = gvk.group.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    parts.push(&gvk.version);
    parts.push(&gvk.kind);
    parts.join(".")
}

/// The definition name a registry entry's kind gets: k8s-openapi's name for built-in kinds,
/// upstream's CRD naming otherwise.
pub fn definition_name(gvk: &GroupVersionKind) -> String {
    match builtin_type(gvk) {
        Some(t) => (t.name)().into_owned(),
        None => custom_definition_name(gvk),
    }
}

/// The kinds of one resource: its own, and with `list` its list kind.
pub fn kind_definition(info: &ResourceInfo) -> KindDefinition {
    let gvk = info.gvk();
    let name = definition_name(&gvk);
    let list_name = info.supports_verb("list").then(|| format!("{name}List"));
    KindDefinition { gvk, name, list_name }
}

/// Supplies the structural schema (CRD `openAPIV3Schema`) of kinds k8s-openapi does not know.
pub trait SchemaSource {
    /// The OpenAPI v3 schema of `info`'s kind, or `None` to publish the kind as an object that
    /// accepts anything.
    fn schema(&self, info: &ResourceInfo) -> Option<Value>;
}

/// No custom schemas: every kind outside k8s-openapi is published as a free-form object.
pub struct NoCustomSchemas;

impl SchemaSource for NoCustomSchemas {
    fn schema(&self, _info: &ResourceInfo) -> Option<Value> {
        None
    }
}

/// Custom kinds' schemas as their CRDs declare them (the `openAPIV3Schema` carried in the registry).
pub struct CrdSchemas;

impl SchemaSource for CrdSchemas {
    fn schema(&self, info: &ResourceInfo) -> Option<Value> {
        info.custom.as_ref()?.schema.clone()
    }
}

/// Builds every definition the registry's documents need.
pub fn build(registry: &Registry, custom: &dyn SchemaSource) -> Definitions {
    // Draft 7 keeps `definitions` where Swagger 2.0 wants them. The default transforms are
    // dropped: `RemoveRefSiblings` would wrap each `$ref` in `allOf` and lose upstream's shape.
    let mut generator = SchemaSettings::draft07()
        .with(|s| {
            s.transforms.clear();
            s.meta_schema = None;
        })
        .into_generator();
    let _ = generator.subschema_for::<apimachinery::pkg::apis::meta::v1::Status>();
    let _ = generator.subschema_for::<apimachinery::pkg::apis::meta::v1::DeleteOptions>();
    let _ = generator.subschema_for::<apimachinery::pkg::apis::meta::v1::WatchEvent<apimachinery::pkg::runtime::RawExtension>>();
    let _ = generator.subschema_for::<apimachinery::pkg::apis::meta::v1::Patch>();
    let _ = generator.subschema_for::<apimachinery::pkg::apis::meta::v1::ListMeta>();
    let _ = generator.subschema_for::<apimachinery::pkg::apis::meta::v1::ObjectMeta>();

    let mut gvks: BTreeMap<String, Vec<GroupVersionKind>> = BTreeMap::new();
    let mut customs: Vec<(KindDefinition, Option<Value>)> = Vec::new();
    let mut lists: Vec<KindDefinition> = Vec::new();
    for info in registry.iter() {
        let kd = kind_definition(info);
        let mut kinds = vec![kd.gvk.clone()];
        kinds.extend(info.subresources.iter().map(|s| s.kind.clone()));
        for gvk in &kinds {
            if let Some(t) = builtin_type(gvk) {
                (t.generate)(&mut generator);
                push_gvk(&mut gvks, (t.name)().into_owned(), gvk.clone());
            }
        }
        if builtin_type(&kd.gvk).is_none() {
            customs.push((kd.clone(), custom.schema(info)));
            push_gvk(&mut gvks, kd.name.clone(), kd.gvk.clone());
        }
        if kd.list_name.is_some() {
            lists.push(kd);
        }
    }

    let mut defs: Definitions = generator.take_definitions(false).into_iter().collect();
    for (kd, schema) in customs {
        defs.insert(kd.name.clone(), custom_kind_schema(schema));
    }
    for kd in &lists {
        if let Some(list_name) = &kd.list_name {
            defs.insert(list_name.clone(), list_schema(&kd.gvk.kind, &kd.name));
            let list_gvk =
                GroupVersionKind::new(&kd.gvk.group, &kd.gvk.version, &format!("{}List", kd.gvk.kind));
            push_gvk(&mut gvks, list_name.clone(), list_gvk);
        }
    }
    // Upstream tags the option and event kinds shared by every group version with each of them.
    push_gvk(
        &mut gvks,
        STATUS.into(),
        GroupVersionKind::new("", "v1", "Status"),
    );
    for (group, version) in registry.group_versions() {
        for (name, kind) in [(DELETE_OPTIONS, "DeleteOptions"), (WATCH_EVENT, "WatchEvent")] {
            push_gvk(
                &mut gvks,
                name.into(),
                GroupVersionKind::new(&group, &version, kind),
            );
        }
    }

    for (name, schema) in defs.iter_mut() {
        decorate(
            name,
            schema,
            gvks.get(name).map(Vec::as_slice).unwrap_or_default(),
        );
    }
    defs
}

fn push_gvk(gvks: &mut BTreeMap<String, Vec<GroupVersionKind>>, name: String, gvk: GroupVersionKind) {
    let list = gvks.entry(name).or_default();
    if !list.contains(&gvk) {
        list.push(gvk);
    }
}

/// `x-kubernetes-group-version-kind` as upstream writes it: a list of `{group, kind, version}`.
pub fn gvk_value(gvk: &GroupVersionKind) -> Value {
    json!({"group": gvk.group, "kind": gvk.kind, "version": gvk.version})
}

/// Kinds whose Go type declares `metadata` without `omitempty`, so upstream's schema requires it.
const METADATA_REQUIRED_UPSTREAM: &[&str] = &["io.k8s.api.core.v1.Event"];

/// Adds the GVK extension and list semantics, and undoes k8s-openapi's one departure from
/// upstream's schemas: it marks `metadata` of every kind as required because its Rust field is
/// not optional, while upstream requires it only where the Go field lacks `omitempty`
/// (kubectl 1.20 rejects manifests that miss a required field).
fn decorate(name: &str, schema: &mut Value, gvks: &[GroupVersionKind]) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if !gvks.is_empty() {
        obj.insert(
            GVK_EXTENSION.into(),
            Value::Array(gvks.iter().map(gvk_value).collect()),
        );
        if !METADATA_REQUIRED_UPSTREAM.contains(&name)
            && let Some(Value::Array(required)) = obj.get_mut("required")
        {
            required.retain(|r| r != "metadata");
            if required.is_empty() {
                obj.remove("required");
            }
        }
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for entry in fields_of(name) {
            if let Some(Value::Object(prop)) = props.get_mut(entry.field) {
                add_list_semantics(prop, entry);
            }
        }
    }
}

fn add_list_semantics(prop: &mut Map<String, Value>, entry: &FieldSchema) {
    if let Some(key) = entry.merge_key {
        prop.insert("x-kubernetes-patch-merge-key".into(), key.into());
    }
    if !entry.patch_strategy.is_empty() {
        prop.insert("x-kubernetes-patch-strategy".into(), entry.patch_strategy.into());
    }
    if let Some(list_type) = entry.list_type {
        prop.insert("x-kubernetes-list-type".into(), list_type.as_str().into());
    }
    if !entry.map_keys.is_empty() {
        prop.insert(
            "x-kubernetes-list-map-keys".into(),
            entry.map_keys.to_vec().into(),
        );
    }
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

fn type_meta_properties() -> Map<String, Value> {
    let mut props = Map::new();
    props.insert(
        "apiVersion".into(),
        json!({"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"}),
    );
    props.insert(
        "kind".into(),
        json!({"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"}),
    );
    props
}

/// `<Kind>List`, shaped as upstream's list types.
fn list_schema(kind: &str, item: &str) -> Value {
    let mut props = type_meta_properties();
    props.insert(
        "items".into(),
        json!({"description": format!("List of {}.", plural_words(kind)), "type": "array", "items": reference(item)}),
    );
    let mut meta = reference(LIST_META);
    if let Some(m) = meta.as_object_mut() {
        m.insert(
            "description".into(),
            "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds".into(),
        );
    }
    props.insert("metadata".into(), meta);
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "required": ["items"],
        "properties": props,
    })
}

fn plural_words(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// A custom kind's published schema: its structural schema with the type and object metadata
/// fields every kind has (upstream adds them the same way), or a free-form object without one.
fn custom_kind_schema(schema: Option<Value>) -> Value {
    let mut root = match schema {
        Some(Value::Object(o)) => o,
        _ => {
            let mut o = Map::new();
            o.insert("type".into(), "object".into());
            o.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
            o
        }
    };
    let props = root
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        for (k, v) in type_meta_properties() {
            props.entry(k).or_insert(v);
        }
        let mut meta = reference(OBJECT_META);
        if let Some(m) = meta.as_object_mut() {
            m.insert(
                "description".into(),
                "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
            );
        }
        props.insert("metadata".into(), meta);
    }
    root.entry("type").or_insert_with(|| "object".into());
    Value::Object(root)
}

/// Names of the definitions `roots` reference, themselves included, following `$ref`s.
pub fn closure<'a>(defs: &Definitions, roots: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().map(str::to_owned).collect();
    while let Some(name) = todo.pop() {
        if !defs.contains_key(&name) || !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = defs.get(&name) {
            collect_refs(schema, &mut todo);
        }
    }
    seen.into_iter().collect()
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            out.push(name.to_owned());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Rewrites every `$ref` under `v` with `f`.
pub fn rewrite_refs(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                match v {
                    Value::String(r) if k == "$ref" => *r = f(r),
                    _ => rewrite_refs(v, f),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| rewrite_refs(v, f)),
        _ => {}
    }
}
