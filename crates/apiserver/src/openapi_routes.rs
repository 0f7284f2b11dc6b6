//! Routes `/openapi/v2` and `/openapi/v3...` to the documents built in [`crate::openapi`].

use api::ApiError;
use axum::response::Response;
use http::HeaderMap;

use crate::state::AppState;

pub fn serve(_state: &AppState, _rest: &[&str], _headers: &HeaderMap) -> Result<Response, ApiError> {
    // TODO: route to crate::openapi once its documents land.
    Err(ApiError::NotFound {
        resource: api::GroupResource::new("", ""),
        name: String::new(),
    })
}
