//! Routes `/openapi/v2` and `/openapi/v3...` to the documents built in [`crate::openapi`].

use api::ApiError;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};

use crate::state::AppState;

// Clients ask with `@v1.0` in Accept; upstream answers with `.v1.0`, which Go's MIME parser accepts.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn response(body: Vec<u8>, content_type: &str, etag: Option<String>) -> Response {
    let mut resp = Response::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&format!("\"{t}\"")).ok()) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

fn not_found() -> ApiError {
    ApiError::NotFound {
        resource: api::GroupResource::new("", ""),
        name: String::new(),
    }
}

pub fn serve(state: &AppState, rest: &[&str], headers: &HeaderMap) -> Result<Response, ApiError> {
    let registry = state.registry();
    let reg = &*registry;
    match rest {
        ["v2"] => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let etag = Some(crate::openapi::v2_etag(reg));
            if accept.contains("protobuf") {
                Ok(response(crate::openapi::v2_protobuf(reg), V2_PROTOBUF, etag))
            } else {
                Ok(response(crate::openapi::v2_json(reg), "application/json", etag))
            }
        }
        ["v3"] => Ok(response(
            crate::openapi::v3_index(reg).to_string().into_bytes(),
            "application/json",
            None,
        )),
        ["v3", "api", v] => crate::openapi::v3_group_version(reg, "", v)
            .map(|d| response(d.to_string().into_bytes(), "application/json", None))
            .ok_or_else(not_found),
        ["v3", "apis", g, v] => crate::openapi::v3_group_version(reg, g, v)
            .map(|d| response(d.to_string().into_bytes(), "application/json", None))
            .ok_or_else(not_found),
        _ => Err(not_found()),
    }
}
