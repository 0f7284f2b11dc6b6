//! The REST operations of each served resource, shared by the v2 and v3 writers.
//!
//! kubectl reads almost nothing from `paths` (it finds kinds through the definitions'
//! `x-kubernetes-group-version-kind`), so this lists the CRUD operations a resource's verbs allow,
//! with upstream's operation ids, `x-kubernetes-action` and `x-kubernetes-group-version-kind`,
//! and leaves out watch paths and query parameters.

use api::ResourceInfo;
use serde_json::{Value, json};

use super::definitions::{DELETE_OPTIONS, KindDefinition, PATCH, STATUS, gvk_value};

/// One operation of one path.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Lower-case HTTP method (`get`, `put`, `post`, `patch`, `delete`).
    pub method: &'static str,
    pub operation_id: String,
    pub description: String,
    /// `x-kubernetes-action`.
    pub action: &'static str,
    /// Definition name of the request body, if any.
    pub body: Option<&'static str>,
    /// `true` when the body is the kind itself (create/replace) rather than `body`.
    pub body_is_kind: bool,
    /// Definition name of the 200 response (the kind, its list, or `Status`).
    pub response: String,
}

/// One path with its path parameters and operations.
#[derive(Debug, Clone)]
pub struct PathEntry {
    pub path: String,
    /// `namespace`, `name`, in path order.
    pub params: Vec<&'static str>,
    pub operations: Vec<Operation>,
}

/// Upstream's URL prefix of a group version: `/api/v1`, `/apis/apps/v1`.
pub fn gv_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// `rbac.authorization.k8s.io` + `v1` -> `RbacAuthorizationV1`, `""` -> `CoreV1`, as in
/// upstream's operation ids.
fn gv_camel(group: &str, version: &str) -> String {
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out = String::new();
    if group.is_empty() {
        out.push_str("Core");
    } else {
        for part in group.split(['.', '-']) {
            out.push_str(&capitalize(part));
        }
    }
    out.push_str(&capitalize(version));
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The paths of one resource.
pub fn resource_paths(info: &ResourceInfo, kd: &KindDefinition) -> Vec<PathEntry> {
    let gv = gv_camel(&info.group, &info.version);
    let scope = if info.namespaced { "Namespaced" } else { "" };
    let kind = &info.kind;
    let base = gv_prefix(&info.group, &info.version);
    let collection = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let ns_params: Vec<&'static str> = if info.namespaced {
        vec!["namespace"]
    } else {
        vec![]
    };
    let op =
        |method, verb: &str, action, body, body_is_kind, response: &str, description: String| Operation {
            method,
            operation_id: format!("{verb}{gv}{scope}{kind}"),
            description,
            action,
            body,
            body_is_kind,
            response: response.to_owned(),
        };

    let mut collection_ops = Vec::new();
    if let Some(list) = &kd.list_name {
        collection_ops.push(op(
            "get",
            "list",
            "list",
            None,
            false,
            list,
            format!("list or watch objects of kind {kind}"),
        ));
    }
    if info.supports_verb("create") {
        collection_ops.push(op(
            "post",
            "create",
            "post",
            None,
            true,
            &kd.name,
            format!("create a {kind}"),
        ));
    }
    if info.supports_verb("deletecollection") {
        let mut o = op(
            "delete",
            "delete",
            "deletecollection",
            Some(DELETE_OPTIONS),
            false,
            STATUS,
            format!("delete collection of {kind}"),
        );
        o.operation_id = format!("delete{gv}Collection{scope}{kind}");
        collection_ops.push(o);
    }

    let mut item_ops = Vec::new();
    if info.supports_verb("get") {
        item_ops.push(op(
            "get",
            "read",
            "get",
            None,
            false,
            &kd.name,
            format!("read the specified {kind}"),
        ));
    }
    if info.supports_verb("update") {
        item_ops.push(op(
            "put",
            "replace",
            "put",
            None,
            true,
            &kd.name,
            format!("replace the specified {kind}"),
        ));
    }
    if info.supports_verb("patch") {
        item_ops.push(op(
            "patch",
            "patch",
            "patch",
            Some(PATCH),
            false,
            &kd.name,
            format!("partially update the specified {kind}"),
        ));
    }
    if info.supports_verb("delete") {
        item_ops.push(op(
            "delete",
            "delete",
            "delete",
            Some(DELETE_OPTIONS),
            false,
            STATUS,
            format!("delete a {kind}"),
        ));
    }

    let mut out = Vec::new();
    if !collection_ops.is_empty() {
        out.push(PathEntry {
            path: collection.clone(),
            params: ns_params.clone(),
            operations: collection_ops,
        });
    }
    if !item_ops.is_empty() {
        let mut params = ns_params;
        params.push("name");
        out.push(PathEntry {
            path: format!("{collection}/{{name}}"),
            params,
            operations: item_ops,
        });
    }
    out
}

pub fn param_description(param: &str) -> &'static str {
    match param {
        "namespace" => "object name and auth scope, such as for teams and projects",
        _ => "name of the object",
    }
}

/// The vendor extensions every operation carries.
pub fn operation_extensions(op: &Operation, kd: &KindDefinition) -> [(String, Value); 2] {
    [
        ("x-kubernetes-action".into(), json!(op.action)),
        ("x-kubernetes-group-version-kind".into(), gvk_value(&kd.gvk)),
    ]
}

/// Upstream's tag for a group version (`core_v1`, `apps_v1`, `rbacAuthorization_v1`).
pub fn tag(group: &str, version: &str) -> String {
    let camel = gv_camel(group, version);
    let gv = camel.strip_suffix(&capitalize(version)).unwrap_or(&camel);
    let mut c = gv.chars();
    let lowered: String = match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    };
    format!("{lowered}_{version}")
}
