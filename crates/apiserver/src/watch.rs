//! `?watch=true`: a stream of JSON watch events served from the resource's [`crate::cache`] cacher, filtered by
//! selectors with upstream's transitions (an object that leaves the selection is `DELETED`, one that enters it
//! `ADDED`), with bookmarks and `sendInitialEvents` as upstream.
//!
//! Where the watch starts:
//! - `resourceVersion` unset: the current objects as `ADDED` from a consistent store read, then the changes
//!   after it (the cacher's revision lags the store's global one, so only the store can say "current");
//! - `resourceVersion=0`: the cacher's snapshot, then its changes;
//! - `resourceVersion=N`: the changes after N from the cacher's window, or 410 Gone when N is older than it;
//! - `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`): a snapshot not older than N as `ADDED`
//!   events, then a `BOOKMARK` annotated `k8s.io/initial-events-end`, then the changes.

use std::sync::Arc;
use std::time::Duration;

use api::ApiError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::{Value, json};
use store::EventKind;
use tokio::sync::mpsc;

use crate::cache::{CacheError, CacheEvent, CacheWatch, Start};
use crate::negotiate::Output;
use crate::rest::{Filter, Query, Target, decode};
use crate::state::AppState;

/// Upstream's `--min-request-timeout` default: watches without `timeoutSeconds` end after about this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Rendered events buffered between a watcher and its HTTP body.
const BODY_BUFFER: usize = 64;

/// One line of the stream, serialized without copying the object.
fn event(kind: &str, object: &Value) -> Bytes {
    let mut line = Vec::with_capacity(512);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    // Serializing a `Value` into memory cannot fail.
    let _ = serde_json::to_writer(&mut line, object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn error_event(err: &ApiError) -> Bytes {
    event("ERROR", &err.status().to_value())
}

/// What a watcher with `filter` is told about `ev`, upstream's way: entering the selection is `ADDED`, leaving it
/// `DELETED`.
pub fn transition<'a>(ev: &'a CacheEvent, filter: &Filter) -> Option<(&'static str, &'a Value)> {
    let cur = ev.current.as_deref().map(|o| &o.value);
    let prev = ev.prev.as_deref().map(|o| &o.value);
    let cur_match = cur.is_some_and(|o| filter.matches(o));
    let prev_match = prev.is_some_and(|o| filter.matches(o));
    match ev.kind {
        EventKind::Added if cur_match => cur.map(|o| ("ADDED", o)),
        EventKind::Modified if cur_match && prev_match => cur.map(|o| ("MODIFIED", o)),
        EventKind::Modified if cur_match => cur.map(|o| ("ADDED", o)),
        EventKind::Modified if prev_match => cur.map(|o| ("DELETED", o)),
        EventKind::Deleted if prev_match => prev.map(|o| ("DELETED", o)),
        _ => None,
    }
}

/// Upstream's checks of the watch-list parameters.
fn check_initial_events(q: &Query) -> Result<bool, ApiError> {
    let send_initial = match q.get("sendInitialEvents").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid sendInitialEvents: {other}"
            )));
        }
    };
    let rv_match = q.get("resourceVersionMatch").map(String::as_str).unwrap_or("");
    if send_initial && rv_match != "NotOlderThan" {
        return Err(ApiError::bad_request(
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    if !send_initial && !rv_match.is_empty() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    Ok(send_initial)
}

/// Starts the watch; errors before the stream starts (bad selectors, unreadable revision) are returned as such.
pub async fn watch(state: &AppState, t: &Target, q: &Query, output: Output) -> Result<Response, ApiError> {
    let info = t.info.clone();
    let filter = Filter::from_query(&info, q)?;
    let single = t.name.is_some();
    let not_stored = || ApiError::MethodNotAllowed {
        resource: t.resource(),
        action: "watch".into(),
    };
    let key = match &t.name {
        Some(name) => info.storage_key(t.namespace.as_deref(), name),
        None => info.storage_list_prefix(t.namespace.as_deref()),
    }
    .ok_or_else(not_stored)?;
    let resource_prefix = info.storage_list_prefix(None).ok_or_else(not_stored)?;
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let send_initial = check_initial_events(q)?;
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let from_rv: Option<i64> = match rv {
        "" | "0" => None,
        r => Some(
            r.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
        ),
    };

    let cacher = state.watch_cache.cacher(&resource_prefix, from_rv);
    if !cacher.wait_ready(state.watch_cache.config().ready_timeout).await {
        return Err(ApiError::ServiceUnavailable(format!(
            "the watch cache of {} is not ready",
            t.resource()
        )));
    }
    let fresh_enough = |n: i64| cacher.revision().is_some_and(|r| r >= n);
    let started = match (rv, from_rv) {
        ("0", _) => cacher.watch(&key, !single, Start::Snapshot).map(|w| (w, None)),
        (_, Some(n)) if send_initial && fresh_enough(n) => {
            cacher.watch(&key, !single, Start::Snapshot).map(|w| (w, None))
        }
        (_, Some(n)) if !send_initial => cacher.watch(&key, !single, Start::After(n)).map(|w| (w, None)),
        _ => {
            let (objects, rev) = store_snapshot(state, t, &key, single).await?;
            cacher
                .watch(&key, !single, Start::After(rev))
                .map(|w| (w, Some(objects)))
        }
    };
    let (mut w, from_store): (CacheWatch, Option<Vec<Value>>) = match started {
        Ok(s) => s,
        Err(CacheError::TooOld { requested, oldest }) => {
            // As upstream's cacher: the watch opens and says 410 in an ERROR event, and clients relist.
            let err = ApiError::too_old_resource_version(requested, oldest);
            return Ok(stream_response(futures_util::stream::iter([Ok::<
                _,
                std::io::Error,
            >(
                error_event(&err)
            )])));
        }
        Err(e @ CacheError::NotReady { .. }) => return Err(ApiError::ServiceUnavailable(e.to_string())),
    };
    // A watch from a revision gets no snapshot; one without gets the cacher's or the store's.
    let initial: Vec<Value> = match from_store {
        Some(objects) => objects,
        None => std::mem::take(&mut w.initial)
            .into_iter()
            .map(|o| Arc::try_unwrap(o).map_or_else(|o| o.value.clone(), |o| o.value))
            .collect(),
    }
    .into_iter()
    .filter(|o| filter.matches(o))
    .collect();

    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(BODY_BUFFER);
    let shutdown = state.shutdown.clone();
    let kind = info.kind.clone();
    let api_version = info.api_version();
    let render_state = state.clone();
    let query = q.clone();
    // kubectl get -w asks for Table events: each object becomes a one-row Table.
    let render = move |ty: &str, obj: &Value| -> Bytes {
        match output {
            Output::Table { beta } => {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"].clone()});
                let table = crate::rest::table(
                    &render_state,
                    &info,
                    std::slice::from_ref(obj),
                    meta,
                    &query,
                    beta,
                )
                .unwrap_or_else(|_| obj.clone());
                event(ty, &table)
            }
            Output::Json if info.custom.is_some() => {
                let mut obj = obj.clone();
                crate::crd::served_as(&info, &mut obj);
                event(ty, &obj)
            }
            Output::Json => event(ty, obj),
        }
    };
    let span = tracing::debug_span!("watch", resource = %t.resource(), key = %key);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut last_rev = w.revision;
            for obj in &initial {
                if tx.send(Ok(render("ADDED", obj))).await.is_err() {
                    return;
                }
            }
            if send_initial {
                let mark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rev.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                if tx.send(Ok(event("BOOKMARK", &mark))).await.is_err() {
                    return;
                }
            }
            let deliver = async |ev: &CacheEvent| -> bool {
                match transition(ev, &filter) {
                    Some((ty, obj)) => tx.send(Ok(render(ty, obj))).await.is_ok(),
                    None => true,
                }
            };
            let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = &mut deadline => return,
                    _ = tx.closed() => return,
                    _ = ticker.tick(), if bookmarks => {
                        // Everything up to the cacher's revision is already buffered: deliver it, then the
                        // bookmark can promise that revision.
                        let cache_rev = w.cache_revision();
                        while let Some(ev) = w.try_next() {
                            last_rev = last_rev.max(ev.revision);
                            if !deliver(&ev).await {
                                return;
                            }
                        }
                        last_rev = last_rev.max(cache_rev.unwrap_or(0));
                        let mark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rev.to_string()}});
                        if tx.send(Ok(event("BOOKMARK", &mark))).await.is_err() {
                            return;
                        }
                    }
                    ev = w.next() => match ev {
                        // Ended by the cacher (this watcher fell behind, or the cache relists): the client
                        // re-watches from the last resourceVersion it saw.
                        None => return,
                        Some(ev) => {
                            last_rev = ev.revision;
                            if !deliver(&ev).await {
                                return;
                            }
                        }
                    },
                }
            }
        },
        span,
    ));
    let mut rx = rx;
    Ok(stream_response(futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
    })))
}

fn stream_response(
    stream: impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Response {
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The objects at `key` (under it unless `single`) from a consistent store read, and its revision.
async fn store_snapshot(
    state: &AppState,
    t: &Target,
    key: &str,
    single: bool,
) -> Result<(Vec<Value>, i64), ApiError> {
    let err = |e| crate::error::store_error(&t.resource(), "", e);
    if single {
        // The revision first: the object read after it is at least as new, and a newer one carries its own.
        let rev = state.store.current_revision().await.map_err(err)?;
        return match state.store.get(key).await {
            Ok(kv) => Ok((vec![decode(&kv)?], rev.max(kv.mod_revision))),
            Err(store::Error::NotFound { .. }) => Ok((Vec::new(), rev)),
            Err(e) => Err(err(e)),
        };
    }
    let page = state
        .store
        .list(key, store::ListOptions::default())
        .await
        .map_err(err)?;
    let objects = page.items.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    Ok((objects, page.revision))
}
