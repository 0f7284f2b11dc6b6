//! `metadata.managedFields` and server-side apply, as upstream's field manager and structured-merge-diff
//! define them. Pure functions over `serde_json::Value`: no I/O, no clock (the caller passes `now`), so a
//! fuzz target can drive [`apply`] directly.
//!
//! - [`record_update`]: after a create, update or non-apply patch, the writer's `Update` entry gains the
//!   fields it added or changed, and every other manager loses them; removed fields leave every set.
//! - [`apply`]: merges an applied configuration into the live object along list semantics, refuses (unless
//!   forced) to change fields other managers own with other values, removes fields this manager applied
//!   before and no longer applies when nobody else owns them, and records the `Apply` entry.
//! - [`resolve_incoming`]: what a write's own `managedFields` mean (kept, replaced, or reset by `[{}]`).

pub mod fieldset;
pub mod walk;

use serde_json::{Map, Value, json};

pub use fieldset::{FieldSet, PathElement, path_string};
pub use walk::{Schema, Scope};

use crate::status::{ApiError, FieldError, FieldPath, StatusCause};

/// Upstream's `FieldManagerMaxLength`.
pub const MAX_MANAGER_LENGTH: usize = 128;

/// `operation` of a managed-fields entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One `ManagedFieldsEntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn from_value(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let operation = match v.get("operation").and_then(Value::as_str)? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let fields = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f).ok()?,
            None => FieldSet::new(),
        };
        Some(Self {
            manager: s("manager"),
            operation,
            api_version: s("apiVersion"),
            time: v.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: s("subresource"),
            fields,
        })
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }

    fn same_writer(&self, manager: &str, operation: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// Upstream's `printManager`: how a conflict names this entry.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
            if let Some(t) = &self.time {
                s.push_str(&format!(" at {t}"));
            }
        }
        s
    }
}

/// The entries of an object's `metadata.managedFields`; entries that cannot be read are dropped, as upstream
/// does with managed fields it cannot decode.
pub fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::from_value).collect())
        .unwrap_or_default()
}

/// Writes `entries` (the empty ones dropped) into `obj`'s metadata.
pub fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_value)
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Settles the `managedFields` a write carries before the server records its own change: none (or an
/// empty list) keeps the stored ones, `[{}]` resets them, anything else replaces them.
pub fn resolve_incoming(old: Option<&Value>, new: &mut Value) {
    let incoming = new.pointer("/metadata/managedFields").cloned();
    let keep_old = match &incoming {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => true,
    };
    let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if keep_old {
        match old.and_then(|o| o.pointer("/metadata/managedFields")) {
            Some(v) => meta.insert("managedFields".into(), v.clone()),
            None => meta.remove("managedFields"),
        };
    } else if incoming
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() == 1 && a[0] == json!({}))
    {
        meta.remove("managedFields");
    }
}

/// Who writes, and how their write is seen.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    /// The API version the writer used (`apps/v1`).
    pub api_version: &'a str,
    /// `""`, `"status"` or `"scale"`.
    pub subresource: &'a str,
    /// RFC 3339, seconds.
    pub now: &'a str,
    pub schema: Schema<'a>,
    pub scope: Scope,
}

/// Records an `Update` by `w` that turned `old` (`None` for a create) into `new`, in `new`'s managedFields
/// (which [`resolve_incoming`] settled).
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer<'_>) {
    let empty = json!({});
    let cmp = walk::compare(old.unwrap_or(&empty), new, w.schema, w.scope);
    if cmp.changed.is_empty() && cmp.removed.is_empty() {
        return;
    }
    let mut list = entries(new);
    let mut taken = cmp.changed.clone();
    taken.union_with(&cmp.removed);
    let mut mine = None;
    for (i, e) in list.iter_mut().enumerate() {
        if e.same_writer(w.manager, Operation::Update, w.subresource) {
            mine = Some(i);
        } else {
            e.fields.remove_subtrees(&taken);
        }
    }
    let i = mine.unwrap_or_else(|| {
        list.push(Entry {
            manager: w.manager.to_string(),
            operation: Operation::Update,
            api_version: w.api_version.to_string(),
            time: None,
            subresource: w.subresource.to_string(),
            fields: FieldSet::new(),
        });
        list.len() - 1
    });
    let e = &mut list[i];
    e.fields.union_with(&cmp.changed);
    e.fields.remove_subtrees(&cmp.removed);
    e.api_version = w.api_version.to_string();
    e.time = Some(w.now.to_string());
    set_entries(new, &list);
}

/// A field an apply would change that another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The owner as upstream prints it (`"mgr" using apps/v1 at ...`).
    pub manager: String,
    /// `.spec.replicas`.
    pub field: String,
}

/// An apply refused because of conflicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", conflict_message(.0))]
pub struct Conflicts(pub Vec<Conflict>);

/// Upstream's wording: one conflict on one line, several grouped by manager.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager, c.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        lines.extend(
            conflicts
                .iter()
                .filter(|c| c.manager == m)
                .map(|c| format!("- {}", c.field)),
        );
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

impl Conflicts {
    /// The 409 the server answers with, one `FieldManagerConflict` cause per field.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::ApplyConflict {
            message: conflict_message(&self.0),
            causes: self
                .0
                .iter()
                .map(|c| StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {}", c.manager),
                    field: c.field.clone(),
                })
                .collect(),
        }
    }
}

/// Server-side apply of `applied` by `w` onto `live` (which carries its managedFields). Returns the new object
/// with its managedFields, or the conflicts when `force` is off.
pub fn apply(live: &Value, applied: &Value, w: &Writer<'_>, force: bool) -> Result<Value, Conflicts> {
    let mut list = entries(live);
    let applied_set = walk::fields_of(applied, w.schema, w.scope);
    let mut merged = walk::merge(live, applied, w.schema, w.scope);
    let changed = walk::compare(live, &merged, w.schema, w.scope).changed;

    let mut conflicts = Vec::new();
    let mut conflicting = FieldSet::new();
    for e in list.iter().filter(|e| e.manager != w.manager) {
        for p in e.fields.intersection(&changed).members() {
            conflicts.push(Conflict {
                manager: e.describe(),
                field: path_string(&p),
            });
            conflicting.insert(&p);
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(Conflicts(conflicts));
        }
        for e in list.iter_mut().filter(|e| e.manager != w.manager) {
            e.fields.remove_members(&conflicting);
        }
    }

    let mine = list
        .iter()
        .position(|e| e.same_writer(w.manager, Operation::Apply, w.subresource));
    if let Some(i) = mine {
        let mut others = FieldSet::new();
        for (j, e) in list.iter().enumerate() {
            if j != i {
                others.union_with(&e.fields);
            }
        }
        let dropped = list[i].fields.difference(&applied_set);
        // Parents first: a dropped list item goes whole, before its key fields could go one by one.
        for p in dropped.members() {
            if !others.has_any_under(&p) && !applied_set.has_any_under(&p) {
                walk::remove_path(&mut merged, &p);
            }
        }
    }
    let entry = Entry {
        manager: w.manager.to_string(),
        operation: Operation::Apply,
        api_version: w.api_version.to_string(),
        time: Some(w.now.to_string()),
        subresource: w.subresource.to_string(),
        fields: applied_set,
    };
    match mine {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    set_entries(&mut merged, &list);
    Ok(merged)
}

/// Upstream's `prefixFromUserAgent`: the manager of a write that names none.
pub fn manager_from_user_agent(user_agent: &str) -> String {
    user_agent.split('/').next().unwrap_or("").to_string()
}

/// Upstream's `ValidateFieldManager`: at most 128 bytes, printable characters only.
pub fn validate_manager(manager: &str) -> Vec<FieldError> {
    let path = FieldPath::new("fieldManager");
    let mut errs = Vec::new();
    if manager.len() > MAX_MANAGER_LENGTH {
        errs.push(FieldError::too_long(&path, MAX_MANAGER_LENGTH));
    }
    if manager.chars().any(char::is_control) {
        errs.push(FieldError::invalid(
            &path,
            manager,
            "FieldManager must only contain printable characters",
        ));
    }
    errs
}

#[cfg(test)]
mod tests;
