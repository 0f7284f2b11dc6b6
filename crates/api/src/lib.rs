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
//! - [`table`]: server-side `Table` output per kind ([`table::to_table`]), CRD printer columns,
//!   upstream's `HumanDuration` for AGE.
//! - [`validation`]: name/label/annotation rules per kind, `generateName` suffixes.

pub mod fields;
pub mod labels;
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
