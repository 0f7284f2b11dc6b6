//! `?watch=true`: a stream of JSON watch events straight from the store's watch, filtered by selectors with
//! upstream's transitions (an object that leaves the selection is `DELETED`, one that enters it `ADDED`).

use std::time::Duration;

use api::ApiError;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::{Value, json};
use store::{EventKind, WatchOptions};
use tokio::sync::mpsc;

use crate::negotiate::Output;
use crate::rest::{Filter, Query, Target, decode, set_rv};
use crate::state::AppState;

/// Upstream's `--min-request-timeout` default: watches without `timeoutSeconds` end after about this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

fn event(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn error_event(err: &ApiError) -> Bytes {
    event("ERROR", &err.status().to_value())
}

/// Starts the watch; errors before the stream starts (bad selectors, unreadable revision) are returned as such.
pub async fn watch(state: &AppState, t: &Target, q: &Query, output: Output) -> Result<Response, ApiError> {
    let info = t.info.clone();
    let filter = Filter::from_query(&info, q)?;
    let single_name = t.name.clone();
    let prefix = match &single_name {
        Some(_) => t
            .info
            .storage_key(t.namespace.as_deref(), t.name.as_deref().unwrap_or("")),
        None => t.info.storage_list_prefix(t.namespace.as_deref()),
    }
    .ok_or_else(|| ApiError::MethodNotAllowed {
        resource: t.resource(),
        action: "watch".into(),
    })?;
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let send_initial = q.get("sendInitialEvents").map(String::as_str) == Some("true");
    let rv = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let from_rv: Option<i64> = match rv {
        "" | "0" => None,
        r => Some(
            r.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?,
        ),
    };
    // Without a resourceVersion (or with 0, or sendInitialEvents) upstream first replays the current state.
    let mut initial = Vec::new();
    let start_rev = if from_rv.is_none() || send_initial {
        let page = match &single_name {
            Some(_) => match state.store.get(&prefix).await {
                Ok(kv) => {
                    let rev = state
                        .store
                        .current_revision()
                        .await
                        .map_err(|e| crate::error::store_error(&t.resource(), "", e))?;
                    store::ListResult {
                        items: vec![kv],
                        revision: rev,
                        ..Default::default()
                    }
                }
                Err(store::Error::NotFound { .. }) => {
                    let rev = state
                        .store
                        .current_revision()
                        .await
                        .map_err(|e| crate::error::store_error(&t.resource(), "", e))?;
                    store::ListResult {
                        revision: rev,
                        ..Default::default()
                    }
                }
                Err(e) => return Err(crate::error::store_error(&t.resource(), "", e)),
            },
            None => state
                .store
                .list(
                    &prefix,
                    store::ListOptions {
                        revision: from_rv,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| crate::error::store_error(&t.resource(), "", e))?,
        };
        for kv in &page.items {
            let obj = decode(kv)?;
            if filter.matches(&obj) {
                initial.push(obj);
            }
        }
        page.revision
    } else {
        from_rv.unwrap_or(0)
    };
    let mut stream = state
        .store
        .watch(
            &prefix,
            WatchOptions {
                prefix: single_name.is_none(),
                start_revision: Some(start_rev + 1),
            },
        )
        .await
        .map_err(|e| crate::error::store_error(&t.resource(), "", e))?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let shutdown = state.shutdown.clone();
    let kind = info.kind.clone();
    let api_version = info.api_version();
    let render_state = state.clone();
    let query = q.clone();
    // kubectl get -w asks for Table events: each object becomes a one-row Table.
    let render = move |obj: &Value| -> Value {
        match output {
            Output::Table { beta } => {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"].clone()});
                crate::rest::table(
                    &render_state,
                    &info,
                    std::slice::from_ref(obj),
                    meta,
                    &query,
                    beta,
                )
                .unwrap_or_else(|_| obj.clone())
            }
            Output::Json => {
                let mut obj = obj.clone();
                crate::crd::served_as(&info, &mut obj);
                obj
            }
        }
    };
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last_rev = start_rev;
        for obj in &initial {
            if tx.send(Ok(event("ADDED", &render(obj)))).await.is_err() {
                return;
            }
        }
        if send_initial {
            let mark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rev.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(Ok(event("BOOKMARK", &mark))).await.is_err() {
                return;
            }
        }
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let mark = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": last_rev.to_string()}});
                    if tx.send(Ok(event("BOOKMARK", &mark))).await.is_err() {
                        return;
                    }
                    continue;
                }
                ev = stream.next() => ev,
            };
            let ev = match ev {
                None => return,
                Some(Err(store::Error::Compacted { compact_revision })) => {
                    let err = ApiError::too_old_resource_version(start_rev, compact_revision);
                    let _ = tx.send(Ok(error_event(&err))).await;
                    return;
                }
                Some(Err(e)) => {
                    let err = ApiError::internal(format!("watch: {e}"));
                    let _ = tx.send(Ok(error_event(&err))).await;
                    return;
                }
                Some(Ok(ev)) => ev,
            };
            last_rev = ev.revision;
            let cur = ev.current.as_ref().and_then(|kv| decode(kv).ok());
            let prev = ev.prev.as_ref().and_then(|kv| decode(kv).ok());
            let cur_match = cur.as_ref().is_some_and(|o| filter.matches(o));
            let prev_match = prev.as_ref().is_some_and(|o| filter.matches(o));
            let out = match ev.kind {
                EventKind::Added if cur_match => cur.map(|o| ("ADDED", o)),
                EventKind::Modified if cur_match && prev_match => cur.map(|o| ("MODIFIED", o)),
                EventKind::Modified if cur_match => cur.map(|o| ("ADDED", o)),
                EventKind::Modified if prev_match => cur.map(|o| ("DELETED", o)),
                EventKind::Deleted if prev_match => prev.map(|mut o| {
                    set_rv(&mut o, ev.revision);
                    ("DELETED", o)
                }),
                _ => None,
            };
            if let Some((ty, obj)) = out
                && tx.send(Ok(event(ty, &render(&obj)))).await.is_err()
            {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx));
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
