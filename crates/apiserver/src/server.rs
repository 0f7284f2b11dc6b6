//! Serving: the TLS listener, HTTP/1.1 and HTTP/2 per connection, graceful shutdown, and the objects every
//! cluster starts with.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::cache::{CacheConfig, WatchCache};
use crate::config::{ServerConfig, StorageConfig};
use crate::error::ServeError;
use crate::ipalloc::ServiceIpRange;
use crate::router::{PeerCertificates, router};
use crate::security::{Security, StoreReader};
use crate::state::AppState;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may take to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Opens the configured store; it stops its background tasks when `shutdown` is cancelled.
pub async fn open_store(
    storage: &StorageConfig,
    shutdown: CancellationToken,
) -> Result<Arc<dyn Store>, ServeError> {
    Ok(match storage {
        StorageConfig::Etcd(cfg) => Arc::new(store::EtcdStore::connect(cfg.clone(), shutdown).await?),
        StorageConfig::Sqlite(path) => {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ServeError::Config(format!("creating {}: {e}", dir.display())))?;
            }
            Arc::new(store::SqliteStore::open(store::SqliteConfig::new(path), shutdown).await?)
        }
    })
}

/// Runs `kube-apiserver` until `shutdown` is cancelled.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let store = open_store(&config.storage, shutdown.child_token()).await?;
    let addr = SocketAddr::new(config.bind_address, config.secure_port);
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    serve(config, store, listener, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 first).
pub async fn serve(
    config: ServerConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tls = crate::tls::server_config(
        &config.tls_cert_file,
        &config.tls_private_key_file,
        config.client_ca_file.as_deref(),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let service_ips = ServiceIpRange::parse(&config.service_cluster_ip_range).map_err(ServeError::Config)?;
    let registries = Arc::new(crate::crd::Registries::default());
    // Every store call is timed, the watch cache's included.
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let store = crate::metrics::InstrumentedStore::wrap(store, metrics.clone());
    let watch_cache = Arc::new(WatchCache::new(
        store.clone(),
        CacheConfig::default(),
        shutdown.child_token(),
    ));
    // Built-in resources are cached from the start, as upstream, so that the revisions clients get from lists
    // are inside the caches' windows when they watch; custom resources start on first use.
    for info in registries.current().iter() {
        if let Some(prefix) = info.storage_list_prefix(None) {
            watch_cache.cacher(&prefix, None);
        }
    }
    let reader = Arc::new(StoreReader {
        store: store.clone(),
        registry: registries.current(),
        cache: Some(watch_cache.clone()),
    });
    let security = Security::from_config(&config, reader)?;
    let state = AppState {
        store,
        metrics,
        watch_cache,
        registries,
        security: Arc::new(security),
        admission: Arc::new(crate::admission::default_chain(
            admission_rng(),
            crate::admission::default_tolerations::DefaultTolerationSeconds {
                not_ready_seconds: config.default_not_ready_toleration_seconds,
                unreachable_seconds: config.default_unreachable_toleration_seconds,
            },
        )),
        config: Arc::new(config),
        service_ips: Arc::new(service_ips),
        clock: Arc::new(store::SystemClock),
        shutdown: shutdown.clone(),
        bootstrapped: Arc::default(),
    };
    tokio::spawn(bootstrap(state.clone()));
    // Its own token, cancelled when the accept loop ends, so the server leaves the Endpoints before it drains.
    let leaving = CancellationToken::new();
    let endpoints = tokio::spawn(crate::endpoints::reconcile(
        state.store.clone(),
        state.config.advertise_address.to_string(),
        state.config.secure_port,
        leaving.clone(),
    ));
    tokio::spawn(crate::crd::follow(
        state.store.clone(),
        state.registries.clone(),
        shutdown.clone(),
    ));
    let app = router(state);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(addr = ?listener.local_addr().ok(), "serving securely");
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        // As Go's net package does for every TCP connection: without it a response written in more than one
        // segment waits for the client's delayed ACK (tens of milliseconds per request).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let span = tracing::debug_span!("connection", %peer);
            let _enter = span.enter();
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let certs: Vec<Vec<u8>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default();
            let certs = PeerCertificates(Arc::new(certs));
            let svc = app.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(certs.clone());
                req.map(axum::body::Body::new)
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    // Out of the Endpoints first, so that balancing clients stop picking this server while it drains.
    leaving.cancel();
    tracing::info!("shutting down: draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoints).await;
    Ok(())
}

/// Creates what every cluster has (system namespaces, the `kubernetes` Service and its Endpoints) when absent;
/// several API servers may race here, and losing the race is fine.
async fn bootstrap(state: AppState) {
    let mut pause = Duration::from_millis(200);
    loop {
        match bootstrap_once(&state).await {
            Ok(()) => {
                state
                    .bootstrapped
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "bootstrapping default objects; retrying"),
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn create_if_absent(state: &AppState, key: &str, obj: Value) -> Result<(), store::Error> {
    let bytes = bytes::Bytes::from(obj.to_string());
    match state.store.create(key, bytes, None).await {
        Ok(_) | Err(store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

fn admission_rng() -> crate::admission::SharedRng {
    use rand::SeedableRng;
    Arc::new(std::sync::Mutex::new(rand::rngs::StdRng::from_entropy()))
}

fn uid() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::thread_rng().r#gen();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

async fn bootstrap_once(state: &AppState) -> Result<(), store::Error> {
    let now = state.now_string();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({
            "kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": ns, "uid": uid(), "creationTimestamp": now, "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        create_if_absent(state, &format!("/registry/namespaces/{ns}"), obj).await?;
    }
    let ip = state.service_ips.first().to_string();
    let _ = state
        .service_ips
        .reserve(
            state.store.as_ref(),
            state.service_ips.first(),
            "default/kubernetes",
        )
        .await;
    let svc = json!({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "kubernetes", "namespace": "default", "uid": uid(), "creationTimestamp": now,
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": state.config.secure_port}],
            "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP", "sessionAffinity": "None",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}},
    });
    create_if_absent(state, "/registry/services/specs/default/kubernetes", svc).await?;
    let ep = json!({
        "kind": "Endpoints", "apiVersion": "v1",
        "metadata": {"name": "kubernetes", "namespace": "default", "uid": uid(), "creationTimestamp": now,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": state.config.advertise_address.to_string()}],
            "ports": [{"name": "https", "port": state.config.secure_port, "protocol": "TCP"}]}],
    });
    create_if_absent(state, "/registry/services/endpoints/default/kubernetes", ep).await?;
    // Upstream's default RBAC policy (cluster-admin, system:masters, system:node, ...), created when absent.
    let registry = state.registry();
    for obj in crate::auth::bootstrap_policy() {
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let gvk = api::GroupVersionKind::from_api_version(av, kind);
        let Some(info) = registry.by_gvk(&gvk) else {
            tracing::warn!(%kind, "bootstrap policy object of an unknown kind");
            continue;
        };
        let meta = &obj["metadata"];
        let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
        let ns = meta.get("namespace").and_then(Value::as_str);
        let Some(key) = info.storage_key(ns, name) else {
            continue;
        };
        let mut obj = obj.clone();
        obj["metadata"]["uid"] = json!(uid());
        obj["metadata"]["creationTimestamp"] = json!(now);
        create_if_absent(state, &key, obj).await?;
    }
    Ok(())
}
