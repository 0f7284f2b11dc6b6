//! Request entry: one span per request, body limit, authentication and authorization, then the URL decides
//! between discovery, health, OpenAPI and the REST handlers.

use std::collections::HashMap;
use std::sync::Arc;

use api::{ApiError, PatchType};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tracing::Instrument;

use crate::auth::{Attributes, UserInfo};
use crate::error::error_response;
use crate::negotiate::{self, Output};
use crate::rest::{self, Query, Target};
use crate::state::AppState;
use crate::{discovery, health, reviews, watch};

/// Upstream's limit on request bodies (`maxRequestBodyBytes`).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The verified client certificate chain of the connection a request came in on (DER).
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<Vec<u8>>>);

pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        user = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let info = crate::metrics::RequestInfo::parse(
        req.method(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        req.headers(),
        &state.registry(),
    );
    let measured = state.metrics.request(info);
    async {
        let resp = match dispatch(&state, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        let resp = measured.finish(resp);
        tracing::Span::current().record("status", resp.status().as_u16());
        tracing::debug!("served");
        resp
    }
    .instrument(span)
    .await
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text_response(code: StatusCode, body: String) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

fn not_found_path() -> ApiError {
    ApiError::NotFound {
        resource: api::GroupResource::new("", ""),
        name: String::new(),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::RequestEntityTooLarge(
            format!("limit is {MAX_BODY_BYTES}"),
        )),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

async fn dispatch(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY_BYTES
    {
        return Err(ApiError::RequestEntityTooLarge(format!(
            "limit is {MAX_BODY_BYTES}"
        )));
    }
    let peer = parts
        .extensions
        .get::<PeerCertificates>()
        .cloned()
        .unwrap_or_default();
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let user = state.security.authenticate(&peer.0, bearer).await?;
    let user = crate::impersonation::apply(state, user, &parts.headers).await?;
    tracing::Span::current().record("user", user.name.as_str());
    let query: Query = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = parts.method.clone();
    let headers = parts.headers;

    // Non-resource endpoints.
    let verbose = query.contains_key("verbose");
    match segs.as_slice() {
        []
        | ["version"]
        | ["healthz", ..]
        | ["livez", ..]
        | ["readyz", ..]
        | ["metrics"]
        | ["openapi", ..]
        | ["api"]
        | ["apis"] => {
            let verb = match method {
                Method::GET | Method::HEAD => "get",
                _ => {
                    return Err(ApiError::MethodNotAllowed {
                        resource: api::GroupResource::new("", ""),
                        action: method.to_string(),
                    });
                }
            };
            state
                .security
                .authorize(&non_resource(&user, verb, &path))
                .await?;
        }
        _ => {}
    }
    match segs.as_slice() {
        [] => {
            let paths: Vec<String> = [
                "/api",
                "/api/v1",
                "/apis",
                "/healthz",
                "/livez",
                "/metrics",
                "/readyz",
                "/version",
                "/openapi/v2",
                "/openapi/v3",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(
                state
                    .registry()
                    .group_versions()
                    .into_iter()
                    .filter(|(g, _)| !g.is_empty())
                    .map(|(g, v)| format!("/apis/{g}/{v}")),
            )
            .collect();
            return Ok(json_response(200, &serde_json::json!({"paths": paths})));
        }
        ["version"] => return Ok(json_response(200, &discovery::version())),
        ["metrics"] => {
            let text = state
                .metrics
                .render(state.store.as_ref(), &state.registry())
                .await;
            let mut resp = text_response(StatusCode::OK, text);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return Ok(resp);
        }
        [ep @ ("healthz" | "livez" | "readyz"), rest @ ..] => {
            let only = rest.first().copied();
            return Ok(match health::check(state, ep, only, verbose).await {
                Ok((true, body)) => text_response(StatusCode::OK, body),
                Ok((false, body)) => text_response(StatusCode::SERVICE_UNAVAILABLE, body),
                Err(_) => return Err(not_found_path()),
            });
        }
        ["openapi", rest @ ..] => return crate::openapi_routes::serve(state, rest, &headers),
        ["api"] => {
            if let Some(v) = negotiate::aggregated_discovery(&headers) {
                return Ok(aggregated_response(
                    &discovery::aggregated(&state.registry(), true, v),
                    v,
                ));
            }
            return Ok(json_response(200, &discovery::core_versions()));
        }
        ["apis"] => {
            if let Some(v) = negotiate::aggregated_discovery(&headers) {
                return Ok(aggregated_response(
                    &discovery::aggregated(&state.registry(), false, v),
                    v,
                ));
            }
            return Ok(json_response(200, &discovery::group_list(&state.registry())));
        }
        ["api", "v1"] => {
            state
                .security
                .authorize(&non_resource(&user, "get", &path))
                .await?;
            return discovery::resource_list(&state.registry(), "", "v1")
                .map(|d| json_response(200, &d))
                .ok_or_else(not_found_path);
        }
        ["apis", g] => {
            state
                .security
                .authorize(&non_resource(&user, "get", &path))
                .await?;
            return discovery::group(&state.registry(), g)
                .map(|d| json_response(200, &d))
                .ok_or_else(not_found_path);
        }
        ["apis", g, v] => {
            state
                .security
                .authorize(&non_resource(&user, "get", &path))
                .await?;
            return discovery::resource_list(&state.registry(), g, v)
                .map(|d| json_response(200, &d))
                .ok_or_else(not_found_path);
        }
        _ => {}
    }

    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path()),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let find = |plural: &str| {
        state
            .registry()
            .by_gvr(&api::GroupVersionResource::new(group, version, plural))
            .cloned()
    };
    // A CRD created through another API server moments ago may not have reached this one's registry yet.
    let named = match rest {
        ["namespaces", _, plural, ..] => Some(*plural),
        [plural, ..] => Some(*plural),
        [] => None,
    };
    if !group.is_empty()
        && named.is_some_and(|p| find(p).is_none())
        && let Err(e) = crate::crd::refresh(state.store.as_ref(), &state.registries).await
    {
        tracing::debug!(error = %e, "refreshing CRDs failed");
    }
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => (
            Some(ns.to_string()),
            *plural,
            tail.first().copied(),
            tail.get(1).copied(),
        ),
        [plural, tail @ ..] => (None, *plural, tail.first().copied(), tail.get(1).copied()),
        [] => return Err(not_found_path()),
    };
    if rest.len() > 5 || (namespace.is_none() && rest.len() > 3) {
        return Err(not_found_path());
    }
    let info = find(plural).ok_or_else(not_found_path)?;
    let is_watch = legacy_watch || matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, name.is_some()) {
        (&Method::GET | &Method::HEAD, true) if is_watch => "watch",
        (&Method::GET | &Method::HEAD, true) => "get",
        (&Method::GET | &Method::HEAD, false) if is_watch => "watch",
        (&Method::GET | &Method::HEAD, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(ApiError::MethodNotAllowed {
                resource: info.group_resource(),
                action: method.to_string(),
            });
        }
    };
    let target = Target {
        info: info.clone(),
        namespace: namespace.clone(),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
        user: user.clone(),
        manager: match query.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(m) => m.clone(),
            None => api::managed::manager_from_user_agent(
                headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            ),
        },
    };
    let mut attrs = Attributes {
        user: user.clone(),
        verb: verb.into(),
        namespace: namespace.clone().unwrap_or_default(),
        api_group: group.into(),
        api_version: version.into(),
        resource: plural.into(),
        subresource: sub.unwrap_or("").into(),
        name: name.unwrap_or("").into(),
        resource_request: true,
        path: path.clone(),
        field_selector: query.get("fieldSelector").cloned().unwrap_or_default(),
        label_selector: query.get("labelSelector").cloned().unwrap_or_default(),
    };
    // As upstream's request info: a list or watch narrowed to one name by field selector is about that name.
    if attrs.name.is_empty()
        && matches!(verb, "list" | "watch")
        && let Some(n) = attrs
            .field_selector
            .split(',')
            .find_map(|t| t.strip_prefix("metadata.name="))
    {
        attrs.name = n.to_string();
    }
    state.security.authorize(&attrs).await?;
    let allowed = match sub {
        None => info.supports_verb(verb),
        Some(s) => info
            .subresource(s)
            .is_some_and(|sr| sr.verbs.iter().any(|v| v == verb)),
    };
    if !allowed {
        if let Some(s) = sub
            && info.subresource(s).is_none()
        {
            return Err(not_found_path());
        }
        return Err(ApiError::MethodNotAllowed {
            resource: info.group_resource(),
            action: verb.into(),
        });
    }
    let output = negotiate::output(&headers)?;
    let needs_body = matches!(verb, "create" | "update" | "patch");
    let raw = read_body(body).await?;
    let parsed: Option<Value> = if needs_body {
        Some(negotiate::decode_body(&headers, &raw)?)
    } else if !raw.is_empty() && matches!(verb, "delete" | "deletecollection") {
        negotiate::decode_body(&headers, &raw).ok()
    } else {
        None
    };
    let validation = crate::field_validation::Mode::parse(query.get("fieldValidation").map(String::as_str))?;
    let mut parsed = parsed;
    let mut warnings = Vec::new();
    if info.storage_prefix.is_some()
        && matches!(sub, None | Some("status"))
        && let Some(body) = parsed.as_mut()
    {
        let prunable = match verb {
            "create" | "update" => true,
            "patch" => matches!(
                patch_type(&headers)?,
                PatchType::Merge | PatchType::StrategicMerge | PatchType::Apply
            ),
            _ => false,
        };
        if prunable {
            let unknown = crate::field_validation::prune(&state.registry(), &info, body);
            warnings = crate::field_validation::enforce(validation, unknown)?;
        }
    }

    // Reviews are never stored: they are answered.
    if info.storage_prefix.is_none() {
        let body = parsed.unwrap_or(Value::Null);
        let reply = reviews::create(state, &info, &user, namespace.as_deref(), body).await?;
        return Ok(json_response(reply.code, &reply.body));
    }

    let reply = match (verb, sub) {
        ("watch", None) => return watch::watch(state, &target, &query, output).await,
        ("get", None) => rest::get_as_of(state, &target, &query).await?,
        ("get", Some("status")) => rest::get(state, &target).await?,
        ("get", Some("log")) => return crate::logs::pod_log(state, &target, &query).await,
        ("list", None) => {
            if let Some(body) = rest::list_cached_json(state, &target, &query, output).await? {
                let mut resp = Response::new(Body::from(body));
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return Ok(resp);
            }
            rest::list(state, &target, &query, output).await?
        }
        ("create", None) => rest::create(state, &target, &query, parsed.unwrap_or(Value::Null)).await?,
        ("create", Some("binding")) => {
            let ns = namespace.clone().unwrap_or_default();
            rest::bind(
                state,
                &info,
                &ns,
                name.unwrap_or(""),
                &query,
                parsed.unwrap_or(Value::Null),
            )
            .await?
        }
        // `namespaces/<n>/finalize` writes spec.finalizers; the namespace controller ends a deletion through it.
        ("update", None | Some("status") | Some("finalize")) => {
            rest::update(state, &target, &query, parsed.unwrap_or(Value::Null)).await?
        }
        ("patch", None | Some("status")) => {
            let pt = patch_type(&headers)?;
            rest::patch(state, &target, &query, pt, parsed.unwrap_or(Value::Null)).await?
        }
        ("get", Some("scale")) => rest::scale(state, &target, &query, None).await?,
        ("update", Some("scale")) => {
            rest::scale(
                state,
                &target,
                &query,
                Some((None, parsed.unwrap_or(Value::Null))),
            )
            .await?
        }
        ("patch", Some("scale")) => {
            let pt = patch_type(&headers)?;
            rest::scale(
                state,
                &target,
                &query,
                Some((Some(pt), parsed.unwrap_or(Value::Null))),
            )
            .await?
        }
        ("create", Some("token")) => {
            reviews::token_request(state, &target, parsed.unwrap_or(Value::Null)).await?
        }
        ("update" | "patch", Some("approval")) => {
            let t = Target {
                subresource: Some("status".into()),
                ..target.clone()
            };
            match verb {
                "update" => rest::update(state, &t, &query, parsed.unwrap_or(Value::Null)).await?,
                _ => {
                    rest::patch(
                        state,
                        &t,
                        &query,
                        patch_type(&headers)?,
                        parsed.unwrap_or(Value::Null),
                    )
                    .await?
                }
            }
        }
        ("delete", None) => rest::delete(state, &target, &query, parsed.as_ref()).await?,
        ("deletecollection", None) => {
            rest::delete_collection(state, &target, &query, parsed.as_ref()).await?
        }
        _ => {
            return Err(ApiError::MethodNotAllowed {
                resource: info.group_resource(),
                action: verb.into(),
            });
        }
    };
    let body = match (output, verb, sub) {
        (Output::Table { beta }, "get" | "create" | "update" | "patch", None) => rest::table(
            state,
            &info,
            std::slice::from_ref(&reply.body),
            serde_json::json!({"resourceVersion": reply.body["metadata"]["resourceVersion"].clone()}),
            &query,
            beta,
        )?,
        _ => {
            let mut body = reply.body;
            crate::crd::served_as(&info, &mut body);
            body
        }
    };
    // This server serves a CRD it just wrote at once; others catch up through their watch.
    if info.group == "apiextensions.k8s.io"
        && matches!(
            verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
        && let Err(e) = crate::crd::refresh(state.store.as_ref(), &state.registries).await
    {
        tracing::warn!(error = %e, "refreshing CRDs after a write failed");
    }
    let mut resp = json_response(reply.code, &body);
    for w in warnings {
        // RFC 7234 warn-text is a quoted string: quotes and backslashes escaped.
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(resp)
}

fn patch_type(headers: &http::HeaderMap) -> Result<PatchType, ApiError> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(PatchType::from_content_type)
        .ok_or_else(|| ApiError::UnsupportedMediaType {
            accepted: PatchType::ALL_CONTENT_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        })
}

fn aggregated_response(body: &Value, version: &str) -> Response {
    let mut resp = json_response(200, body);
    let ct = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn non_resource(user: &UserInfo, verb: &str, path: &str) -> Attributes {
    Attributes {
        user: user.clone(),
        verb: verb.into(),
        path: path.into(),
        resource_request: false,
        ..Default::default()
    }
}
