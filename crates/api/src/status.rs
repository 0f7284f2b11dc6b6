//! Errors as Kubernetes `meta/v1 Status` objects.
//!
//! [`ApiError`] is the one error type handlers return; [`ApiError::status`] turns it into the
//! [`Status`] body upstream would send, with the same messages, reasons, codes and details, so
//! clients (kubectl's `Error from server (NotFound): ...`, client-go's `IsNotFound`) behave alike.
//! [`FieldError`] and [`FieldPath`] model upstream's `field.Error` for `Invalid` (422) causes.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::registry::{GroupKind, GroupResource};

/// Upstream's `OptimisticLockErrorMsg`, the usual reason inside a `Conflict`.
pub const OPTIMISTIC_LOCK_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A path to a field, printed as upstream does: `spec.containers[0].image`, `metadata.labels[app]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Upstream's `field.ErrorType`; the serialized name is the `reason` of a `StatusCause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooShort,
    TooMany,
    TooFew,
    Internal,
    TypeInvalid,
}

impl FieldErrorType {
    /// The `reason` string in `details.causes`.
    pub fn cause_type(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooShort => "FieldValueTooShort",
            Self::TooMany => "FieldValueTooMany",
            Self::TooFew => "FieldValueTooFew",
            Self::Internal => "InternalError",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human phrase that starts the message body.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooShort => "Too short",
            Self::TooMany => "Too many",
            Self::TooFew => "Too few",
            Self::Internal => "Internal error",
        }
    }
}

/// One validation failure at a field; upstream's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    pub field: String,
    /// The offending value; `None` leaves it out of the message (upstream's `omitValue`).
    pub bad_value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    fn new(kind: FieldErrorType, field: &FieldPath, bad_value: Option<Value>, detail: &str) -> Self {
        Self {
            kind,
            field: field.to_string(),
            bad_value,
            detail: detail.to_string(),
        }
    }

    pub fn invalid(field: &FieldPath, value: impl Into<Value>, detail: &str) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value.into()), detail)
    }

    pub fn required(field: &FieldPath, detail: &str) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }

    pub fn forbidden(field: &FieldPath, detail: &str) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }

    pub fn duplicate(field: &FieldPath, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorType::Duplicate, field, Some(value.into()), "")
    }

    pub fn not_found(field: &FieldPath, value: impl Into<Value>) -> Self {
        Self::new(FieldErrorType::NotFound, field, Some(value.into()), "")
    }

    pub fn not_supported(field: &FieldPath, value: impl Into<Value>, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(FieldErrorType::NotSupported, field, Some(value.into()), &detail)
    }

    pub fn too_long(field: &FieldPath, max_bytes: usize) -> Self {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        Self::new(
            FieldErrorType::TooLong,
            field,
            None,
            &format!("may not be more than {max_bytes} {unit}"),
        )
    }

    pub fn too_many(field: &FieldPath, actual: usize, max: usize) -> Self {
        let unit = if max == 1 { "item" } else { "items" };
        Self::new(
            FieldErrorType::TooMany,
            field,
            Some(actual.into()),
            &format!("must have at most {max} {unit}"),
        )
    }

    pub fn internal(field: &FieldPath, detail: &str) -> Self {
        Self::new(FieldErrorType::Internal, field, None, detail)
    }

    /// The message without the field: `Invalid value: "Foo": a lowercase RFC 1123 ...`.
    pub fn body(&self) -> String {
        use FieldErrorType::*;
        let mut s = match (self.kind, &self.bad_value) {
            (Required | Forbidden | TooLong | TooShort | Internal, _) | (_, None) => {
                self.kind.phrase().to_string()
            }
            (_, Some(Value::String(v))) => format!("{}: {}", self.kind.phrase(), go_quote(v)),
            (_, Some(v)) => format!("{}: {v}", self.kind.phrase()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Joins field errors the way upstream's aggregate prints them: one alone, several in `[a, b]`,
/// duplicates dropped.
pub fn aggregate_message(errors: &[FieldError]) -> String {
    let mut seen: Vec<String> = Vec::new();
    for e in errors {
        let m = e.to_string();
        if !seen.contains(&m) {
            seen.push(m);
        }
    }
    match seen.len() {
        0 => String::new(),
        1 => seen.remove(0),
        _ => format!("[{}]", seen.join(", ")),
    }
}

/// What was denied, for the `Forbidden` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeniedRequest {
    Resource {
        user: String,
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        namespace: String,
        name: String,
    },
    NonResource {
        user: String,
        verb: String,
        path: String,
    },
}

/// Every failure an API request can end in; [`ApiError::status`] renders it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{}", self.message())]
    NotFound { resource: GroupResource, name: String },
    #[error("{}", self.message())]
    AlreadyExists { resource: GroupResource, name: String },
    /// A `generateName` create that collided with an existing object.
    #[error("{}", self.message())]
    GenerateNameConflict {
        resource: GroupResource,
        name: String,
        retry_after_seconds: i32,
    },
    #[error("{}", self.message())]
    Conflict {
        resource: GroupResource,
        name: String,
        reason: String,
    },
    /// A server-side apply that would change fields other managers own (409 `Conflict`, one
    /// `FieldManagerConflict` cause per field).
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<StatusCause>,
    },
    #[error("{}", self.message())]
    Invalid {
        kind: GroupKind,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", self.message())]
    Unauthorized(String),
    /// `reason` is the authorizer's own explanation; it is appended after the standard sentence.
    #[error("{}", self.message())]
    Forbidden { denied: DeniedRequest, reason: String },
    /// A free-form Forbidden (admission, immutable namespaces) naming the resource and object.
    #[error("{}", self.message())]
    ForbiddenMessage {
        resource: GroupResource,
        name: String,
        message: String,
    },
    #[error("{0}")]
    Gone(String),
    /// 410 with reason `Expired`: a watch or continue token older than the compacted revision.
    #[error("{0}")]
    Expired(String),
    #[error("{}", self.message())]
    MethodNotAllowed { resource: GroupResource, action: String },
    #[error("{}", self.message())]
    NotAcceptable { accepted: Vec<String> },
    #[error("{}", self.message())]
    UnsupportedMediaType { accepted: Vec<String> },
    #[error("{}", self.message())]
    RequestEntityTooLarge(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: i32,
    },
    #[error("{}", self.message())]
    InternalError(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{}", self.message())]
    Timeout {
        message: String,
        retry_after_seconds: i32,
    },
    /// 500 `ServerTimeout`: the storage did not finish an operation in time.
    #[error("{}", self.message())]
    ServerTimeout {
        resource: GroupResource,
        operation: String,
        retry_after_seconds: i32,
    },
}

impl ApiError {
    pub fn not_found(resource: &GroupResource, name: &str) -> Self {
        Self::NotFound {
            resource: resource.clone(),
            name: name.into(),
        }
    }

    pub fn already_exists(resource: &GroupResource, name: &str) -> Self {
        Self::AlreadyExists {
            resource: resource.clone(),
            name: name.into(),
        }
    }

    /// The optimistic-concurrency conflict an update with a stale `resourceVersion` gets.
    pub fn conflict(resource: &GroupResource, name: &str) -> Self {
        Self::Conflict {
            resource: resource.clone(),
            name: name.into(),
            reason: OPTIMISTIC_LOCK_MESSAGE.into(),
        }
    }

    pub fn invalid(kind: &GroupKind, name: &str, causes: Vec<FieldError>) -> Self {
        Self::Invalid {
            kind: kind.clone(),
            name: name.into(),
            causes,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::InternalError(message.into())
    }

    /// Upstream's watch/list answer for a `resourceVersion` older than the compaction.
    pub fn too_old_resource_version(requested: i64, oldest: i64) -> Self {
        Self::Expired(format!("too old resource version: {requested} ({oldest})"))
    }

    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::AlreadyExists { .. }
            | Self::GenerateNameConflict { .. }
            | Self::Conflict { .. }
            | Self::ApplyConflict { .. } => 409,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden { .. } | Self::ForbiddenMessage { .. } => 403,
            Self::Gone(_) | Self::Expired(_) => 410,
            Self::MethodNotAllowed { .. } => 405,
            Self::NotAcceptable { .. } => 406,
            Self::UnsupportedMediaType { .. } => 415,
            Self::RequestEntityTooLarge(_) => 413,
            Self::TooManyRequests { .. } => 429,
            Self::InternalError(_) | Self::ServerTimeout { .. } => 500,
            Self::ServiceUnavailable(_) => 503,
            Self::Timeout { .. } => 504,
        }
    }

    /// The `reason` field (`metav1.StatusReason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } | Self::GenerateNameConflict { .. } => "AlreadyExists",
            Self::Conflict { .. } | Self::ApplyConflict { .. } => "Conflict",
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::Unauthorized(_) => "Unauthorized",
            Self::Forbidden { .. } | Self::ForbiddenMessage { .. } => "Forbidden",
            Self::Gone(_) => "Gone",
            Self::Expired(_) => "Expired",
            Self::MethodNotAllowed { .. } => "MethodNotAllowed",
            Self::NotAcceptable { .. } => "NotAcceptable",
            Self::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            Self::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::InternalError(_) => "InternalError",
            Self::ServiceUnavailable(_) => "ServiceUnavailable",
            Self::Timeout { .. } => "Timeout",
            Self::ServerTimeout { .. } => "ServerTimeout",
        }
    }

    /// The `message` field, worded as upstream's constructors word it.
    pub fn message(&self) -> String {
        match self {
            Self::NotFound { resource, name } => format!("{resource} {} not found", go_quote(name)),
            Self::AlreadyExists { resource, name } => format!("{resource} {} already exists", go_quote(name)),
            Self::GenerateNameConflict { resource, name, .. } => format!(
                "{resource} {} already exists, the server was not able to generate a unique name for the object",
                go_quote(name)
            ),
            Self::Conflict {
                resource,
                name,
                reason,
            } => {
                format!(
                    "Operation cannot be fulfilled on {resource} {}: {reason}",
                    go_quote(name)
                )
            }
            Self::ApplyConflict { message, .. } => message.clone(),
            Self::Invalid { kind, name, causes } => {
                if causes.is_empty() {
                    format!("{kind} {} is invalid", go_quote(name))
                } else {
                    format!(
                        "{kind} {} is invalid: {}",
                        go_quote(name),
                        aggregate_message(causes)
                    )
                }
            }
            Self::BadRequest(m) | Self::Gone(m) | Self::Expired(m) | Self::ServiceUnavailable(m) => m.clone(),
            Self::Unauthorized(m) => {
                if m.is_empty() {
                    "not authorized".into()
                } else {
                    m.clone()
                }
            }
            Self::Forbidden { denied, reason } => {
                let mut sentence = denied_sentence(denied);
                if !reason.is_empty() {
                    sentence.push_str(": ");
                    sentence.push_str(reason);
                }
                let (resource, name) = denied_target(denied);
                forbidden_message(&resource, &name, &sentence)
            }
            Self::ForbiddenMessage {
                resource,
                name,
                message,
            } => forbidden_message(resource, name, message),
            Self::MethodNotAllowed { resource, action } => {
                format!(
                    "{action} is not supported on resources of kind {}",
                    go_quote(&resource.to_string())
                )
            }
            Self::NotAcceptable { accepted } => {
                format!(
                    "only the following media types are accepted: {}",
                    accepted.join(", ")
                )
            }
            Self::UnsupportedMediaType { accepted } => format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            Self::RequestEntityTooLarge(m) => format!("Request entity too large: {m}"),
            Self::TooManyRequests { message, .. } => message.clone(),
            Self::InternalError(m) => format!("Internal error occurred: {m}"),
            Self::Timeout { message, .. } => format!("Timeout: {message}"),
            Self::ServerTimeout {
                resource, operation, ..
            } => format!(
                "The {operation} operation against {resource} could not be completed at this time, please try again."
            ),
        }
    }

    fn details(&self) -> Option<StatusDetails> {
        let named = |r: &GroupResource, name: &str| StatusDetails {
            name: name.to_string(),
            group: r.group.clone(),
            kind: r.resource.clone(),
            ..Default::default()
        };
        let d = match self {
            Self::NotFound { resource, name }
            | Self::AlreadyExists { resource, name }
            | Self::Conflict { resource, name, .. }
            | Self::ForbiddenMessage { resource, name, .. } => named(resource, name),
            Self::GenerateNameConflict {
                resource,
                name,
                retry_after_seconds,
            } => StatusDetails {
                retry_after_seconds: *retry_after_seconds,
                ..named(resource, name)
            },
            Self::Forbidden { denied, .. } => {
                let (resource, name) = denied_target(denied);
                named(&resource, &name)
            }
            Self::ApplyConflict { causes, .. } => StatusDetails {
                causes: causes.clone(),
                ..Default::default()
            },
            Self::Invalid { kind, name, causes } => StatusDetails {
                name: name.clone(),
                group: kind.group.clone(),
                kind: kind.kind.clone(),
                causes: causes
                    .iter()
                    .map(|c| StatusCause {
                        reason: c.kind.cause_type().into(),
                        message: c.body(),
                        field: c.field.clone(),
                    })
                    .collect(),
                ..Default::default()
            },
            Self::MethodNotAllowed { resource, .. } => named(resource, ""),
            Self::TooManyRequests {
                retry_after_seconds, ..
            }
            | Self::Timeout {
                retry_after_seconds, ..
            } => StatusDetails {
                retry_after_seconds: *retry_after_seconds,
                ..Default::default()
            },
            Self::ServerTimeout {
                resource,
                operation,
                retry_after_seconds,
            } => StatusDetails {
                retry_after_seconds: *retry_after_seconds,
                ..named(resource, operation)
            },
            Self::InternalError(m) => StatusDetails {
                causes: vec![StatusCause {
                    message: m.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            _ => return None,
        };
        Some(d)
    }

    /// The `Status` body for this error.
    pub fn status(&self) -> Status {
        Status {
            status: "Failure".into(),
            message: self.message(),
            reason: self.reason().into(),
            details: self.details(),
            code: i32::from(self.code()),
            ..Status::default()
        }
    }
}

fn denied_sentence(denied: &DeniedRequest) -> String {
    match denied {
        DeniedRequest::NonResource { user, verb, path } => {
            format!("User {} cannot {verb} path {}", go_quote(user), go_quote(path))
        }
        DeniedRequest::Resource {
            user,
            verb,
            group,
            resource,
            subresource,
            namespace,
            ..
        } => {
            let res = if subresource.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{subresource}")
            };
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {}", go_quote(namespace))
            };
            format!(
                "User {} cannot {verb} resource {} in API group {} {scope}",
                go_quote(user),
                go_quote(&res),
                go_quote(group)
            )
        }
    }
}

fn denied_target(denied: &DeniedRequest) -> (GroupResource, String) {
    match denied {
        DeniedRequest::NonResource { .. } => (GroupResource::default(), String::new()),
        DeniedRequest::Resource {
            group,
            resource,
            name,
            ..
        } => (GroupResource::new(group, resource), name.clone()),
    }
}

fn forbidden_message(resource: &GroupResource, name: &str, err: &str) -> String {
    if resource.is_empty() {
        format!("forbidden: {err}")
    } else if name.is_empty() {
        format!("{resource} is forbidden: {err}")
    } else {
        format!("{resource} {} is forbidden: {err}", go_quote(name))
    }
}

/// Go's `%q` for the strings that appear in messages: double quotes with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// `meta/v1 Status`, with fields in the order upstream serializes them and empty ones omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `{}` in error responses; kept as a value so list metadata can be carried if ever needed.
    pub metadata: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: i32,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            kind: "Status".into(),
            api_version: "v1".into(),
            metadata: serde_json::Map::new(),
            status: String::new(),
            message: String::new(),
            reason: String::new(),
            details: None,
            code: 0,
        }
    }
}

impl Status {
    /// The `Success` status some deletes answer with.
    pub fn success(resource: &GroupResource, name: &str, uid: &str) -> Self {
        Self {
            status: "Success".into(),
            details: Some(StatusDetails {
                name: name.into(),
                group: resource.group.clone(),
                kind: resource.resource.clone(),
                uid: uid.into(),
                ..Default::default()
            }),
            ..Self::default()
        }
    }

    /// Compact JSON exactly as upstream writes it on the wire.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings, ints and maps cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The same status as a k8s-openapi value, for clients built on kube-rs.
    pub fn to_k8s(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Status {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        meta::Status {
            code: (self.code != 0).then_some(self.code),
            message: opt(&self.message),
            reason: opt(&self.reason),
            status: opt(&self.status),
            metadata: meta::ListMeta::default(),
            details: self.details.as_ref().map(|d| meta::StatusDetails {
                name: opt(&d.name),
                group: opt(&d.group),
                kind: opt(&d.kind),
                uid: opt(&d.uid),
                retry_after_seconds: (d.retry_after_seconds != 0).then_some(d.retry_after_seconds),
                causes: (!d.causes.is_empty()).then(|| {
                    d.causes
                        .iter()
                        .map(|c| meta::StatusCause {
                            field: opt(&c.field),
                            message: opt(&c.message),
                            reason: opt(&c.reason),
                        })
                        .collect()
                }),
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusDetails {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(default, rename = "retryAfterSeconds", skip_serializing_if = "is_zero")]
    pub retry_after_seconds: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusCause {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> GroupResource {
        GroupResource::new("", "pods")
    }

    #[test]
    fn not_found_prints_like_upstream() {
        let e = ApiError::not_found(&pods(), "foo");
        assert_eq!(
            e.status().to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"foo\" not found","reason":"NotFound","details":{"name":"foo","kind":"pods"},"code":404}"#
        );
        assert_eq!(e.to_string(), r#"pods "foo" not found"#);
    }

    #[test]
    fn not_found_in_a_named_group_qualifies_the_resource() {
        let e = ApiError::not_found(&GroupResource::new("apps", "deployments"), "web");
        assert_eq!(
            e.status().to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" not found","reason":"NotFound","details":{"name":"web","group":"apps","kind":"deployments"},"code":404}"#
        );
    }

    #[test]
    fn already_exists_and_conflict_are_409() {
        let e = ApiError::already_exists(&pods(), "foo");
        assert_eq!(e.message(), r#"pods "foo" already exists"#);
        assert_eq!((e.code(), e.reason()), (409, "AlreadyExists"));
        let c = ApiError::conflict(&pods(), "foo");
        assert_eq!(
            c.message(),
            r#"Operation cannot be fulfilled on pods "foo": the object has been modified; please apply your changes to the latest version and try again"#
        );
        assert_eq!((c.code(), c.reason()), (409, "Conflict"));
        let g = ApiError::GenerateNameConflict {
            resource: pods(),
            name: "web-abcde".into(),
            retry_after_seconds: 1,
        };
        assert_eq!(g.status().details.unwrap().retry_after_seconds, 1);
        assert_eq!(g.reason(), "AlreadyExists");
    }

    #[test]
    fn invalid_lists_causes_with_field_paths() {
        let name = FieldPath::new("metadata").child("name");
        let e = ApiError::invalid(
            &GroupKind::new("apps", "Deployment"),
            "Web",
            vec![
                FieldError::invalid(
                    &name,
                    "Web",
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
                ),
                FieldError::required(&FieldPath::new("spec").child("selector"), ""),
            ],
        );
        assert_eq!(
            e.status().to_json(),
            concat!(
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Deployment.apps \"Web\" is invalid: "#,
                r#"[metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, spec.selector: Required value]","#,
                r#""reason":"Invalid","details":{"name":"Web","group":"apps","kind":"Deployment","causes":["#,
                r#"{"reason":"FieldValueInvalid","message":"Invalid value: \"Web\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters","field":"metadata.name"},"#,
                r#"{"reason":"FieldValueRequired","message":"Required value","field":"spec.selector"}]},"code":422}"#
            )
        );
    }

    #[test]
    fn invalid_with_one_cause_has_no_brackets_and_duplicates_collapse() {
        let f = FieldPath::new("spec").child("replicas");
        let cause = FieldError::invalid(&f, -1, "must be greater than or equal to 0");
        let e = ApiError::invalid(&GroupKind::new("", "Pod"), "p", vec![cause.clone(), cause]);
        assert_eq!(
            e.message(),
            r#"Pod "p" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"#
        );
        assert_eq!(e.status().details.unwrap().causes.len(), 2);
    }

    #[test]
    fn field_error_bodies_follow_upstream_wording() {
        let p = FieldPath::new("spec").child("restartPolicy");
        assert_eq!(
            FieldError::not_supported(&p, "Sometimes", &["Always", "Never", "OnFailure"]).to_string(),
            r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#
        );
        assert_eq!(
            FieldError::forbidden(&p, "field is immutable").body(),
            "Forbidden: field is immutable"
        );
        assert_eq!(
            FieldError::too_long(&p, 262144).body(),
            "Too long: may not be more than 262144 bytes"
        );
        assert_eq!(FieldError::duplicate(&p, "a").body(), r#"Duplicate value: "a""#);
        assert_eq!(
            FieldError::invalid(&p, serde_json::json!({"a": 1}), "x").body(),
            r#"Invalid value: {"a":1}: x"#
        );
        assert_eq!(
            FieldPath::new("spec")
                .child("containers")
                .index(0)
                .child("image")
                .as_str(),
            "spec.containers[0].image"
        );
        assert_eq!(
            FieldPath::new("metadata").child("labels").key("app").as_str(),
            "metadata.labels[app]"
        );
    }

    #[test]
    fn forbidden_names_user_verb_resource_group_and_namespace() {
        let denied = DeniedRequest::Resource {
            user: "x".into(),
            verb: "list".into(),
            group: "".into(),
            resource: "pods".into(),
            subresource: "".into(),
            namespace: "default".into(),
            name: "".into(),
        };
        let e = ApiError::Forbidden {
            denied,
            reason: String::new(),
        };
        assert_eq!(
            e.status().to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"x\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#
        );
    }

    #[test]
    fn forbidden_on_a_named_subresource_at_cluster_scope() {
        let denied = DeniedRequest::Resource {
            user: "system:anonymous".into(),
            verb: "get".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: "scale".into(),
            namespace: "".into(),
            name: "web".into(),
        };
        let e = ApiError::Forbidden {
            denied,
            reason: "no RBAC policy matched".into(),
        };
        assert_eq!(
            e.message(),
            r#"deployments.apps "web" is forbidden: User "system:anonymous" cannot get resource "deployments/scale" in API group "apps" at the cluster scope: no RBAC policy matched"#
        );
    }

    #[test]
    fn forbidden_non_resource_paths() {
        let denied = DeniedRequest::NonResource {
            user: "bob".into(),
            verb: "get".into(),
            path: "/metrics".into(),
        };
        let e = ApiError::Forbidden {
            denied,
            reason: String::new(),
        };
        assert_eq!(e.message(), r#"forbidden: User "bob" cannot get path "/metrics""#);
        assert_eq!(e.status().details.unwrap(), StatusDetails::default());
    }

    #[test]
    fn every_reason_has_its_code_and_message() {
        let cases: Vec<(ApiError, u16, &str, &str)> = vec![
            (ApiError::bad_request("bad"), 400, "BadRequest", "bad"),
            (
                ApiError::Unauthorized("Unauthorized".into()),
                401,
                "Unauthorized",
                "Unauthorized",
            ),
            (
                ApiError::Unauthorized(String::new()),
                401,
                "Unauthorized",
                "not authorized",
            ),
            (ApiError::Gone("gone".into()), 410, "Gone", "gone"),
            (
                ApiError::too_old_resource_version(5, 10),
                410,
                "Expired",
                "too old resource version: 5 (10)",
            ),
            (
                ApiError::MethodNotAllowed {
                    resource: GroupResource::new("", "pods"),
                    action: "deletecollection".into(),
                },
                405,
                "MethodNotAllowed",
                r#"deletecollection is not supported on resources of kind "pods""#,
            ),
            (
                ApiError::NotAcceptable {
                    accepted: vec!["application/json".into(), "application/yaml".into()],
                },
                406,
                "NotAcceptable",
                "only the following media types are accepted: application/json, application/yaml",
            ),
            (
                ApiError::UnsupportedMediaType {
                    accepted: vec!["application/json".into()],
                },
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json",
            ),
            (
                ApiError::RequestEntityTooLarge("limit is 3145728".into()),
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            ),
            (
                ApiError::TooManyRequests {
                    message: "Too many requests, please try again later.".into(),
                    retry_after_seconds: 1,
                },
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
            ),
            (
                ApiError::internal("boom"),
                500,
                "InternalError",
                "Internal error occurred: boom",
            ),
            (
                ApiError::ServiceUnavailable("etcd down".into()),
                503,
                "ServiceUnavailable",
                "etcd down",
            ),
            (
                ApiError::Timeout {
                    message: "request did not complete within 60s".into(),
                    retry_after_seconds: 0,
                },
                504,
                "Timeout",
                "Timeout: request did not complete within 60s",
            ),
            (
                ApiError::ServerTimeout {
                    resource: pods(),
                    operation: "create".into(),
                    retry_after_seconds: 2,
                },
                500,
                "ServerTimeout",
                "The create operation against pods could not be completed at this time, please try again.",
            ),
        ];
        for (e, code, reason, message) in cases {
            let s = e.status();
            assert_eq!(
                (s.code, s.reason.as_str(), s.message.as_str()),
                (i32::from(code), reason, message)
            );
            assert_eq!(s.status, "Failure");
        }
    }

    #[test]
    fn internal_error_carries_its_cause() {
        assert_eq!(
            ApiError::internal("boom").status().to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","details":{"causes":[{"message":"boom"}]},"code":500}"#
        );
    }

    #[test]
    fn success_status_and_k8s_conversion() {
        let s = Status::success(&GroupResource::new("apps", "deployments"), "web", "u1");
        assert_eq!(
            s.to_json(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"web","group":"apps","kind":"deployments","uid":"u1"}}"#
        );
        let k = ApiError::not_found(&pods(), "foo").status().to_k8s();
        assert_eq!(k.code, Some(404));
        assert_eq!(k.details.and_then(|d| d.kind).as_deref(), Some("pods"));
    }

    #[test]
    fn status_round_trips_through_json() {
        let s = ApiError::conflict(&pods(), "a").status();
        let back: Status = serde_json::from_str(&s.to_json()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn go_quote_escapes_control_characters() {
        assert_eq!(go_quote("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\x01""#);
    }
}
