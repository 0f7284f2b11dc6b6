//! `GET pods/<name>/log`: proxied to the kubelet of the pod's node, as upstream
//! (`https://<node address>:<kubeletEndpoint port>/containerLogs/<ns>/<pod>/<container>?follow=...`), the body
//! streamed through so `follow` works. The API server authenticates to the kubelet with
//! `--kubelet-client-certificate`/`--kubelet-client-key`.

use std::time::Duration;

use api::{ApiError, GroupResource};
use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tracing::Instrument;

use crate::rest::{self, Query, Target};
use crate::state::AppState;

/// How long connecting to a kubelet (TCP and TLS) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream's default kubelet port.
const DEFAULT_KUBELET_PORT: u64 = 10250;

/// Query parameters of `PodLogOptions` passed on to the kubelet, and whether each must be an integer.
const PASSED: &[(&str, bool)] = &[
    ("follow", false),
    ("previous", false),
    ("timestamps", false),
    ("sinceSeconds", true),
    ("sinceTime", false),
    ("tailLines", true),
    ("limitBytes", true),
];

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container to read, chosen as upstream's `validateContainer`.
pub fn container_for(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let spec = &pod["spec"];
    let containers = names(&spec["containers"]);
    let mut all = names(&spec["initContainers"]);
    all.extend(containers.iter().cloned());
    all.extend(names(&spec["ephemeralContainers"]));
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                all.join(" ")
            ))),
        },
    }
}

/// The kubelet's address and port from the Node object (InternalIP, then ExternalIP, then Hostname, as kubeadm
/// configures `--kubelet-preferred-address-types`).
pub fn kubelet_endpoint(node: &Value) -> Option<(String, u16)> {
    let addrs = node["status"]["addresses"].as_array()?;
    let host = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|t| {
        addrs
            .iter()
            .find(|a| a["type"] == *t)
            .and_then(|a| a["address"].as_str())
            .filter(|a| !a.is_empty())
    })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some((host.to_string(), u16::try_from(port).ok()?))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The kubelet path and query for these log options; bad options are upstream's errors.
pub fn kubelet_path(ns: &str, pod: &str, container: &str, q: &Query) -> Result<String, ApiError> {
    let mut params = Vec::new();
    for (key, integer) in PASSED {
        let Some(v) = q.get(*key) else { continue };
        if *integer {
            let n: i64 = v.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for query parameter {key}"))
            })?;
            let min = if *key == "tailLines" { 0 } else { 1 };
            if n < min {
                return Err(ApiError::bad_request(format!(
                    "{key}: Invalid value: {n}: must be {} than 0",
                    if min == 0 {
                        "greater than or equal to"
                    } else {
                        "greater"
                    }
                )));
            }
        }
        params.push(format!("{key}={}", encode(v)));
    }
    if q.contains_key("sinceSeconds") && q.contains_key("sinceTime") {
        return Err(ApiError::bad_request(
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        encode(ns),
        encode(pod),
        encode(container)
    );
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    Ok(path)
}

fn text_plain(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Serves `GET pods/<name>/log`.
pub async fn pod_log(state: &AppState, t: &Target, q: &Query) -> Result<Response, ApiError> {
    let pod_target = Target {
        subresource: None,
        ..t.clone()
    };
    let pod = rest::get(state, &pod_target).await?.body;
    let container = container_for(&pod, q.get("container").map(String::as_str))?;
    let Some(node_name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        // Upstream answers an empty log for a pod no node runs yet.
        return Ok(text_plain(Body::empty()));
    };
    let node_info = state
        .registry()
        .by_gvr(&api::GroupVersionResource::new("", "v1", "nodes"))
        .cloned()
        .ok_or_else(|| ApiError::internal("nodes are not registered"))?;
    let node_target = Target {
        info: node_info,
        namespace: None,
        name: Some(node_name.to_string()),
        subresource: None,
        user: t.user.clone(),
        manager: String::new(),
    };
    let node = rest::get(state, &node_target).await?.body;
    let (host, port) = kubelet_endpoint(&node).ok_or_else(|| {
        ApiError::internal(format!("node {node_name} has no address to reach its kubelet at"))
    })?;
    let ns = t.namespace.clone().unwrap_or_default();
    let pod_name = t.name.clone().unwrap_or_default();
    let path = kubelet_path(&ns, &pod_name, &container, q)?;
    let span = tracing::info_span!("kubelet-proxy", node = %node_name, %host, port);
    let resp = fetch(state, &host, port, &path).instrument(span).await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(text_plain(Body::new(resp.into_body())));
    }
    // Upstream's response checker: the kubelet's reason, with its status code.
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).trim().to_string())
        .unwrap_or_default();
    Err(match status {
        StatusCode::NOT_FOUND => ApiError::NotFound {
            resource: GroupResource::new("", "pods/log"),
            name: pod_name,
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ApiError::internal(format!(
            "the kubelet on {node_name} refused the API server ({status}): {body}"
        )),
        s if s.is_client_error() => ApiError::bad_request(body),
        _ => ApiError::internal(format!("kubelet on {node_name} answered {status}: {body}")),
    })
}

async fn fetch(
    state: &AppState,
    host: &str,
    port: u16,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
    let unreachable = |e: String| ApiError::internal(format!("reaching the kubelet at {host}:{port}: {e}"));
    let cfg = &state.config;
    let tls = crate::tls::kubelet_client_config(
        cfg.kubelet_client_certificate.as_deref(),
        cfg.kubelet_client_key.as_deref(),
        cfg.kubelet_certificate_authority.as_deref(),
    )
    .map_err(|e| unreachable(e.to_string()))?;
    let server_name =
        rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| unreachable(e.to_string()))?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|e| e.to_string())
    };
    let stream = tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(unreachable)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let shutdown = state.shutdown.clone();
    tokio::spawn(
        async move {
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "kubelet connection ended"); },
                () = shutdown.cancelled() => {}
            }
        }
        .in_current_span(),
    );
    let req = http::Request::get(path)
        .header(header::HOST, format!("{host}:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let c = |n: &[&str]| n.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"metadata": {"name": "web"}, "spec": {"containers": c(containers), "initContainers": c(init)}})
    }

    #[test]
    fn a_single_container_pod_needs_no_container_name() {
        assert_eq!(container_for(&pod(&["app"], &[]), None).unwrap(), "app");
    }

    #[test]
    fn several_containers_need_a_name_and_the_error_lists_them_as_upstream() {
        let e = container_for(&pod(&["app", "side"], &["init"]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod web, choose one of: [init app side]"
        );
        assert_eq!(
            container_for(&pod(&["app", "side"], &["init"]), Some("init")).unwrap(),
            "init"
        );
        let e = container_for(&pod(&["app"], &[]), Some("nope")).unwrap_err();
        assert_eq!(e.to_string(), "container nope is not valid for pod web");
    }

    #[test]
    fn log_options_become_the_kubelet_query_and_bad_ones_are_rejected() {
        let q: Query = [("follow", "true"), ("tailLines", "10"), ("container", "x")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            kubelet_path("ns", "p", "c", &q).unwrap(),
            "/containerLogs/ns/p/c?follow=true&tailLines=10"
        );
        let bad: Query = [("tailLines".to_string(), "x".to_string())].into_iter().collect();
        assert!(kubelet_path("ns", "p", "c", &bad).is_err());
        let both: Query = [("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:00Z")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(kubelet_path("ns", "p", "c", &both).is_err());
    }

    #[test]
    fn the_kubelet_is_reached_at_the_internal_ip_and_its_advertised_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 11250}}}});
        assert_eq!(kubelet_endpoint(&node), Some(("10.0.0.5".into(), 11250)));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(kubelet_endpoint(&bare), Some(("n1".into(), 10250)));
    }
}
