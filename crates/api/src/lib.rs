//! Object model shared by every bulwark component. No I/O: everything here is pure data and
//! functions over `serde_json::Value` or k8s-openapi types, so the API server, controllers and
//! tests can all rely on one definition of how Kubernetes objects behave.
//!
//! Layout:
//! - [`registry`]: served resources (GVK/GVR, names, verbs, subresources, storage keys);
//!   [`Registry::builtin`] is the entry point, CRDs are inserted at runtime.
//! - [`status`]: [`ApiError`] and its `meta/v1 Status` rendering ([`ApiError::status`]),
//!   field errors with paths for `Invalid`.
//! - [`labels`] / [`fields`]: label selectors (string syntax and `LabelSelector`) and per-kind
//!   field selectors.
//! - [`patch`]: JSON patch, JSON merge patch and strategic merge patch ([`patch::apply_patch`]),
//!   with the per-type list semantics table in [`patch::schema`].
//! - [`managed`]: `metadata.managedFields` (field sets in the `FieldsV1` format) and server-side apply: the
//!   merge along list semantics, ownership, conflicts ([`managed::apply`] is pure, for fuzzing).
//! - [`table`]: server-side `Table` output per kind ([`table::to_table`]), CRD printer columns,
//!   upstream's `HumanDuration` for AGE.
//! - [`crd`]: what a CustomResourceDefinition serves, its own validation and status, and the structural-schema
//!   rules (pruning, defaults, validation) of custom objects.
//! - [`validation`]: name/label/annotation rules per kind, `generateName` suffixes.

pub mod crd;
pub mod fields;
pub mod labels;
pub mod managed;
pub mod patch;
pub mod registry;
pub mod status;
pub mod table;
pub mod validation;

pub use fields::FieldSelector;
pub use labels::{Selector, SelectorError};
pub use patch::{PatchError, PatchType, apply_patch};
pub use registry::{
    GroupKind, GroupResource, GroupVersionKind, GroupVersionResource, Registry, RegistryError, ResourceInfo,
    Subresource,
};
pub use status::{ApiError, DeniedRequest, FieldError, FieldErrorType, FieldPath, Status};
pub use table::{IncludeObject, Table, to_table};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_builtin_kind_has_patch_semantics_and_printer_columns() {
        for r in Registry::builtin().iter().filter(|r| r.storage_prefix.is_some()) {
            if r.group == "apiextensions.k8s.io" {
                continue;
            }
            assert!(
                patch::root_type(&r.group, &r.kind).is_some(),
                "{} has no patch root type",
                r.kind
            );
            let cols = table::columns_for(&r.group, &r.kind);
            assert!(
                cols.iter().any(|c| c.format == "name"),
                "{} has no name column",
                r.kind
            );
        }
    }
}
