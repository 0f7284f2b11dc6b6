//! Startup errors, and the one place where [`api::ApiError`]s become HTTP responses with a `Status` body.

use api::ApiError;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("storage: {0}")]
    Store(#[from] store::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("listening on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Renders an error as upstream does: the status code, `Content-Type: application/json`, a `Status` body.
pub fn error_response(err: &ApiError) -> Response {
    let status = err.status();
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(status.to_json()));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let retry = match err {
        ApiError::GenerateNameConflict {
            retry_after_seconds, ..
        }
        | ApiError::TooManyRequests {
            retry_after_seconds, ..
        }
        | ApiError::Timeout {
            retry_after_seconds, ..
        }
        | ApiError::ServerTimeout {
            retry_after_seconds, ..
        } => Some(*retry_after_seconds),
        _ => None,
    };
    if let Some(secs) = retry
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Maps a storage failure on `resource`/`name` to the API error upstream's storage layer would give.
pub fn store_error(resource: &api::GroupResource, name: &str, err: store::Error) -> ApiError {
    match err {
        store::Error::NotFound { .. } => ApiError::not_found(resource, name),
        store::Error::AlreadyExists { .. } => ApiError::already_exists(resource, name),
        store::Error::Conflict { .. } => ApiError::conflict(resource, name),
        store::Error::Compacted { compact_revision } => ApiError::Expired(format!(
            "The resourceVersion for the provided list is too old (compacted revision {compact_revision})."
        )),
        store::Error::FutureRevision { requested } => ApiError::Timeout {
            message: format!("Too large resource version: {requested}"),
            retry_after_seconds: 1,
        },
        store::Error::Timeout(m) => ApiError::ServerTimeout {
            resource: resource.clone(),
            operation: m,
            retry_after_seconds: 2,
        },
        store::Error::Unavailable(m) => ApiError::ServiceUnavailable(format!("storage unavailable: {m}")),
        store::Error::ValueTooLarge { .. } => ApiError::RequestEntityTooLarge(err.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}
