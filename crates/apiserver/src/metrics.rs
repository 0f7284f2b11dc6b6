//! `/metrics` in Prometheus text format, with upstream's metric names and labels so that existing dashboards and
//! alerts read bulwark as they read kube-apiserver:
//! - `apiserver_request_total{verb,group,version,resource,subresource,scope,component,code}` and
//!   `apiserver_request_duration_seconds{verb,group,version,resource,subresource,scope,component}` (long-running
//!   requests, watches, are counted but kept out of the latency histogram, as upstream);
//! - `apiserver_current_inflight_requests{request_kind}` (`readOnly` / `mutating`) and
//!   `apiserver_longrunning_requests{verb,group,version,resource,subresource,scope,component}` (open watches);
//! - `etcd_request_duration_seconds{operation,type}`: every store call, timed by [`InstrumentedStore`] whatever the
//!   backend;
//! - `apiserver_storage_objects{resource}`: counted from the store when scraped.
//!
//! Labels come from the URL ([`RequestInfo::parse`]); a resource the registry does not serve is recorded with
//! empty resource labels, so clients cannot grow the number of series by requesting made-up paths.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::Registry;
use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use store::{Deleted, KeyValue, ListOptions, ListResult, Revision, Store, WatchOptions, WatchStream};

/// Upstream's buckets for `apiserver_request_duration_seconds`.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0,
];
/// Upstream's buckets for `etcd_request_duration_seconds`.
const STORE_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0,
    20.0, 30.0, 45.0, 60.0,
];

/// What a request is about, as upstream's `RequestInfo` labels it.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestInfo {
    /// Upper case: `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE`, `DELETECOLLECTION`, or the
    /// method of a non-resource request.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    /// `resource` (one named object), `namespace` (a namespace's collection), `cluster` (all of it), or empty for
    /// non-resource requests.
    pub scope: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestCode {
    #[prometheus(flatten)]
    info: RequestInfo,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestKind {
    request_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreOp {
    operation: &'static str,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS.iter().copied())
}

/// The API server's metrics; cheap to share.
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    requests: Family<RequestCode, Counter>,
    latency: HistogramFamily<RequestInfo>,
    inflight: Family<RequestKind, Gauge>,
    longrunning: Family<RequestInfo, Gauge>,
    store_latency: HistogramFamily<StoreOp>,
    objects: Family<ResourceLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let requests = Family::<RequestCode, Counter>::default();
        let latency =
            HistogramFamily::<RequestInfo>::new_with_constructor(request_histogram as fn() -> Histogram);
        let inflight = Family::<RequestKind, Gauge>::default();
        let longrunning = Family::<RequestInfo, Gauge>::default();
        let store_latency =
            HistogramFamily::<StoreOp>::new_with_constructor(store_histogram as fn() -> Histogram);
        let objects = Family::<ResourceLabel, Gauge>::default();
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component.",
            latency.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            inflight.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
            longrunning.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation and object type.",
            store_latency.clone(),
        );
        registry.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            objects.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            inflight,
            longrunning,
            store_latency,
            objects,
        }
    }
}

/// Held while a request is served: counts it in flight, then records its code and latency when finished.
#[derive(Debug)]
pub struct RequestGuard {
    metrics: Arc<Metrics>,
    info: RequestInfo,
    kind: RequestKind,
    started: Instant,
}

/// Held by a watch's response body: the watch counts as long-running until the client goes away.
#[derive(Debug)]
struct LongRunningGuard {
    metrics: Arc<Metrics>,
    info: RequestInfo,
}

impl Drop for LongRunningGuard {
    fn drop(&mut self) {
        self.metrics.longrunning.get_or_create(&self.info).dec();
    }
}

impl RequestGuard {
    /// Records the response's code; a watch that started streaming keeps being counted as long-running until its
    /// body is dropped, and is kept out of the latency histogram.
    pub fn finish(self, response: axum::response::Response) -> axum::response::Response {
        let code = response.status().as_u16().to_string();
        self.metrics
            .requests
            .get_or_create(&RequestCode {
                info: self.info.clone(),
                code,
            })
            .inc();
        self.metrics.inflight.get_or_create(&self.kind).dec();
        if self.info.verb == "WATCH" && response.status().is_success() {
            self.metrics.longrunning.get_or_create(&self.info).inc();
            let guard = LongRunningGuard {
                metrics: self.metrics.clone(),
                info: self.info.clone(),
            };
            let (parts, body) = response.into_parts();
            let stream = body.into_data_stream().map(move |chunk| {
                let _held = &guard;
                chunk
            });
            return axum::response::Response::from_parts(parts, Body::from_stream(stream));
        }
        self.metrics
            .latency
            .get_or_create(&self.info)
            .observe(self.started.elapsed().as_secs_f64());
        response
    }
}

impl Metrics {
    /// Starts accounting for one request.
    pub fn request(self: &Arc<Self>, info: RequestInfo) -> RequestGuard {
        let kind = RequestKind {
            request_kind: match info.verb.as_str() {
                "GET" | "LIST" | "WATCH" | "HEAD" => "readOnly",
                _ => "mutating",
            },
        };
        self.inflight.get_or_create(&kind).inc();
        RequestGuard {
            metrics: self.clone(),
            info,
            kind,
            started: Instant::now(),
        }
    }

    fn observe_store(&self, operation: &'static str, key: &str, took: Duration) {
        self.store_latency
            .get_or_create(&StoreOp {
                operation,
                r#type: key_type(key),
            })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, after counting the objects of every served resource in `store`.
    pub async fn render(&self, store: &dyn Store, registry: &Registry) -> String {
        let mut prefixes: Vec<(String, String)> = registry
            .iter()
            .filter_map(|info| {
                let prefix = info.storage_list_prefix(None)?;
                let name = if info.group.is_empty() {
                    info.plural.clone()
                } else {
                    format!("{}.{}", info.plural, info.group)
                };
                Some((name, prefix))
            })
            .collect();
        prefixes.sort();
        prefixes.dedup_by(|a, b| a.1 == b.1);
        let counts = futures_util::future::join_all(prefixes.iter().map(|(_, prefix)| {
            store.list(
                prefix,
                ListOptions {
                    limit: Some(1),
                    ..Default::default()
                },
            )
        }))
        .await;
        for ((resource, _), count) in prefixes.into_iter().zip(counts) {
            // A resource that cannot be counted right now keeps its last figure, as upstream.
            if let Ok(page) = count {
                let n = page.items.len() as i64 + i64::try_from(page.remaining).unwrap_or(i64::MAX);
                self.objects.get_or_create(&ResourceLabel { resource }).set(n);
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("encoding metrics failed");
        }
        out
    }
}

/// Upstream's `type` label of store metrics: the resource part of `/registry/<resource>/...` (for custom
/// resources `/registry/<group>/<plural>/...`, both parts).
fn key_type(key: &str) -> String {
    let mut parts = key.trim_start_matches("/registry/").split('/');
    match (parts.next(), parts.next()) {
        (Some(group), Some(plural)) if group.contains('.') => format!("{plural}.{group}"),
        (Some(resource), _) => resource.to_string(),
        _ => String::new(),
    }
}

impl RequestInfo {
    /// Labels for a request, from its method, path, query and `Content-Type`. Only resources in `registry` get
    /// resource labels.
    pub fn parse(method: &Method, path: &str, query: &str, headers: &HeaderMap, registry: &Registry) -> Self {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Self::non_resource(method),
        };
        let (watch_path, rest) = match rest {
            ["watch", rest @ ..] => (true, rest),
            rest => (false, rest),
        };
        let (namespaced, rest) = match rest {
            ["namespaces", _, resource, rest @ ..] => (true, [&[*resource][..], rest].concat()),
            rest => (false, rest.to_vec()),
        };
        let Some(resource) = rest.first().copied() else {
            return Self::non_resource(method);
        };
        let name = rest.get(1).copied();
        let subresource = rest.get(2).copied().unwrap_or("");
        let served = registry.iter().any(|i| {
            i.group == group
                && i.version == version
                && i.plural == resource
                && (subresource.is_empty() || i.subresources.iter().any(|s| s.name == subresource))
        });
        if !served {
            return Self {
                verb: method.as_str().to_string(),
                component: "apiserver".into(),
                ..Default::default()
            };
        }
        let watch = watch_path || query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
        let apply = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/apply-patch"));
        let verb = match (method.as_str(), name.is_some()) {
            ("GET" | "HEAD", _) if watch => "WATCH",
            ("GET" | "HEAD", true) => "GET",
            ("GET" | "HEAD", false) => "LIST",
            ("PATCH", _) if apply => "APPLY",
            ("DELETE", false) => "DELETECOLLECTION",
            (other, _) => other,
        };
        let scope = match (name.is_some(), namespaced) {
            (true, _) => "resource",
            (false, true) => "namespace",
            (false, false) => "cluster",
        };
        Self {
            verb: verb.to_string(),
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            scope: scope.to_string(),
            component: "apiserver".into(),
        }
    }

    fn non_resource(method: &Method) -> Self {
        Self {
            verb: method.as_str().to_string(),
            component: "apiserver".into(),
            ..Default::default()
        }
    }
}

/// A [`Store`] that times every call into [`Metrics`]; the backend underneath does the work.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(&self, operation: &'static str, key: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.metrics.observe_store(operation, key, started.elapsed());
        out
    }
}

#[async_trait::async_trait]
impl Store for InstrumentedStore {
    async fn get(&self, key: &str) -> store::Result<KeyValue> {
        self.timed("get", key, self.inner.get(key)).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> store::Result<ListResult> {
        self.timed("list", prefix, self.inner.list(prefix, opts)).await
    }
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> store::Result<KeyValue> {
        self.timed("create", key, self.inner.create(key, value, ttl))
            .await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
        ttl: Option<Duration>,
    ) -> store::Result<KeyValue> {
        self.timed(
            "update",
            key,
            self.inner.update(key, value, expected_mod_revision, ttl),
        )
        .await
    }
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> store::Result<Deleted> {
        self.timed("delete", key, self.inner.delete(key, expected_mod_revision))
            .await
    }
    async fn watch(&self, key: &str, opts: WatchOptions) -> store::Result<WatchStream> {
        self.timed("watch", key, self.inner.watch(key, opts)).await
    }
    async fn current_revision(&self) -> store::Result<Revision> {
        self.timed("currentRevision", "", self.inner.current_revision())
            .await
    }
    async fn compact(&self, revision: Revision) -> store::Result<()> {
        self.timed("compact", "", self.inner.compact(revision)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, path: &str, query: &str, content_type: Option<&str>) -> RequestInfo {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
        }
        RequestInfo::parse(&method, path, query, &headers, &Registry::builtin())
    }

    fn labels(i: &RequestInfo) -> [&str; 6] {
        [
            &i.verb,
            &i.group,
            &i.version,
            &i.resource,
            &i.subresource,
            &i.scope,
        ]
    }

    #[test]
    fn requests_are_labelled_with_upstreams_verbs_and_scopes() {
        let cases = [
            (
                info(Method::GET, "/api/v1/pods", "", None),
                ["LIST", "", "v1", "pods", "", "cluster"],
            ),
            (
                info(Method::GET, "/api/v1/namespaces/default/pods", "watch=true", None),
                ["WATCH", "", "v1", "pods", "", "namespace"],
            ),
            (
                info(Method::GET, "/api/v1/watch/namespaces/default/pods", "", None),
                ["WATCH", "", "v1", "pods", "", "namespace"],
            ),
            (
                info(Method::GET, "/api/v1/namespaces/default/pods/p", "", None),
                ["GET", "", "v1", "pods", "", "resource"],
            ),
            (
                info(Method::PUT, "/api/v1/namespaces/default/pods/p/status", "", None),
                ["PUT", "", "v1", "pods", "status", "resource"],
            ),
            (
                info(
                    Method::PATCH,
                    "/apis/apps/v1/namespaces/d/deployments/web",
                    "fieldManager=kubectl",
                    Some("application/apply-patch+yaml"),
                ),
                ["APPLY", "apps", "v1", "deployments", "", "resource"],
            ),
            (
                info(Method::DELETE, "/api/v1/namespaces/d/configmaps", "", None),
                ["DELETECOLLECTION", "", "v1", "configmaps", "", "namespace"],
            ),
            (
                info(Method::GET, "/api/v1/namespaces/kube-system", "", None),
                ["GET", "", "v1", "namespaces", "", "resource"],
            ),
            (
                info(Method::POST, "/api/v1/nodes", "", None),
                ["POST", "", "v1", "nodes", "", "cluster"],
            ),
        ];
        for (got, want) in cases {
            assert_eq!(labels(&got), want, "{got:?}");
        }
    }

    #[test]
    fn made_up_paths_and_non_resource_requests_carry_no_resource_labels() {
        for (method, path) in [
            (Method::GET, "/api/v1/no-such-things"),
            (Method::GET, "/apis/example.com/v1/widgets/x"),
            (Method::GET, "/api/v1/namespaces/default/pods/p/nonsense"),
            (Method::GET, "/healthz"),
            (Method::GET, "/metrics"),
        ] {
            let got = info(method.clone(), path, "", None);
            assert_eq!(labels(&got), [method.as_str(), "", "", "", "", ""], "{path}");
        }
    }

    #[test]
    fn store_keys_name_their_resource_type() {
        assert_eq!(key_type("/registry/pods/default/p"), "pods");
        assert_eq!(
            key_type("/registry/example.com/widgets/default/w"),
            "widgets.example.com"
        );
        assert_eq!(key_type("/registry/masterleases/10.0.0.1"), "masterleases");
    }

    #[tokio::test]
    async fn a_finished_request_is_counted_timed_and_no_longer_in_flight() {
        let metrics = Arc::new(Metrics::default());
        let guard = metrics.request(info(Method::GET, "/api/v1/pods", "", None));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains(r#"apiserver_current_inflight_requests{request_kind="readOnly"} 1"#),
            "{text}"
        );
        let mut resp = axum::response::Response::new(Body::empty());
        *resp.status_mut() = http::StatusCode::OK;
        let _ = guard.finish(resp);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains(r#"apiserver_current_inflight_requests{request_kind="readOnly"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"apiserver_request_total{verb="LIST",group="",version="v1",resource="pods",subresource="",scope="cluster",component="apiserver",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("apiserver_request_duration_seconds_count{verb=\"LIST\""),
            "{text}"
        );
    }
}
