//! The API server against its own storage, run by `cargo bench -p apiserver --bench api`.
//!
//! One real etcd member (testkit) and one `kube-apiserver` process on it (the release build), driven through
//! kube-rs over TLS as the admin user (x509 authentication, RBAC, admission). One run prints:
//! - creates/s: ConfigMaps POSTed through the API vs `Store::create` of the same bytes straight to etcd, at the
//!   same concurrency, in alternating rounds so drift favours neither (target ratio >= 0.6);
//! - p50/p99 of a get and of a list of 10,000 pods at `resourceVersion=0`, served from the watch cache, measured
//!   to the last byte of the response (target p99 < 50 ms), with a list straight from etcd for reference;
//! - p50/p99 of event delivery to 1,000 concurrent watchers: each round updates one ConfigMap with the time of
//!   the write and waits until every watcher has seen it (target p99 < 100 ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use store::{EtcdConfig, EtcdStore, Store};
use testkit::EtcdCluster;
use testkit::cluster::{ApiServer, Pki, free_port};
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 32;
const ROUND: Duration = Duration::from_millis(1000);
const ROUNDS: usize = 4;
const PODS: usize = 10_000;
const READS: usize = 200;
const WATCHERS: usize = 1_000;
const EVENTS: usize = 50;

/// Runs `op(task, i)` from `CONCURRENCY` tasks for `ROUND`; returns operations that succeeded.
async fn run<F, Fut>(op: F) -> u64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    testkit::bench::run_for(CONCURRENCY, ROUND, op).await
}

fn config_map(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"bench": "api"}},
        "data": {"key": "v".repeat(200)}})
}

fn pod(i: usize) -> Bytes {
    let name = format!("pod-{i:05}");
    Bytes::from(
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "uid": format!("00000000-0000-4000-a000-{i:012}"),
                "labels": {"app": "bench", "shard": (i % 10).to_string()}, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": format!("node-{}", i % 50), "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "command": ["/pause"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}]},
            "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", i / 250, i % 250),
                "conditions": [{"type": "Ready", "status": "True"}]}})
        .to_string(),
    )
}

/// (p50, p99) in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples
            .get(i)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    (at(0.50), at(0.99))
}

async fn time_reads(client: &kube::Client, path: &str, n: usize) -> Result<(Vec<Duration>, usize)> {
    let mut samples = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let req = http::Request::get(path).body(Vec::new())?;
        let start = Instant::now();
        let body = client.request_text(req).await?;
        samples.push(start.elapsed());
        bytes = body.len();
    }
    Ok((samples, bytes))
}

#[tokio::main]
async fn main() -> Result<()> {
    let etcd = EtcdCluster::start_single().await?;
    let store: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(EtcdConfig::new(etcd.endpoints()), CancellationToken::new()).await?);
    let port = free_port()?;
    let pki = Pki::new(port)?;
    let _server = ApiServer::start(
        &pki,
        port,
        &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
    )?;
    let client = client::from_kubeconfig(&pki.kubeconfig()).await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Creates through the API vs Store::create, alternating which goes first.
    let (mut api_creates, mut store_creates) = (0, 0);
    for round in 0..ROUNDS {
        for api_first in [round % 2 == 0, round % 2 == 1] {
            if api_first {
                let cms = cms.clone();
                api_creates += run(move |task, i| {
                    let cms = cms.clone();
                    async move {
                        let Ok(cm) = serde_json::from_value::<ConfigMap>(config_map(&format!(
                            "api-{round}-{task}-{i}"
                        ))) else {
                            return false;
                        };
                        cms.create(&PostParams::default(), &cm).await.is_ok()
                    }
                })
                .await;
            } else {
                let store = store.clone();
                store_creates += run(move |task, i| {
                    let store = store.clone();
                    async move {
                        let name = format!("store-{round}-{task}-{i}");
                        let value = Bytes::from(config_map(&name).to_string());
                        store
                            .create(&format!("/registry/configmaps/default/{name}"), value, None)
                            .await
                            .is_ok()
                    }
                })
                .await;
            }
        }
    }
    let secs = ROUND.as_secs_f64() * ROUNDS as f64;
    let (api_rate, store_rate) = (api_creates as f64 / secs, store_creates as f64 / secs);
    println!(
        "api benchmark: one etcd member, one kube-apiserver process (release), kube-rs over TLS as admin"
    );
    println!(
        "creates/s  API {api_rate:>8.0}   Store::create {store_rate:>8.0}   ratio {:.3}   (target >= 0.6: {:.2}x of target)   [{CONCURRENCY} tasks, {ROUNDS} alternating rounds of {ROUND:?}]",
        api_rate / store_rate,
        api_rate / store_rate / 0.6
    );

    // 10,000 pods straight into etcd; the cache follows them through its watch.
    let next = Arc::new(AtomicUsize::new(0));
    let fillers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= PODS {
                        return Ok::<_, store::Error>(());
                    }
                    store
                        .create(&format!("/registry/pods/bench/pod-{i:05}"), pod(i), None)
                        .await?;
                }
            })
        })
        .collect();
    for f in fillers {
        f.await??;
    }
    let list_path = "/api/v1/namespaces/bench/pods?resourceVersion=0";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = http::Request::get(list_path).body(Vec::new())?;
        let list: serde_json::Value = serde_json::from_str(&client.request_text(req).await?)?;
        if list["items"].as_array().map(Vec::len) == Some(PODS) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the watch cache never showed {PODS} pods");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (get_samples, _) = time_reads(
        &client,
        "/api/v1/namespaces/bench/pods/pod-04242?resourceVersion=0",
        READS * 5,
    )
    .await?;
    let (list_samples, list_bytes) = time_reads(&client, list_path, READS).await?;
    let (etcd_list_samples, _) = time_reads(&client, "/api/v1/namespaces/bench/pods", READS / 4).await?;
    let (g50, g99) = percentiles(get_samples);
    let (l50, l99) = percentiles(list_samples);
    let (e50, e99) = percentiles(etcd_list_samples);
    println!(
        "get  pod  RV=0 (cache)         p50 {g50:>7.2} ms   p99 {g99:>7.2} ms   (target p99 < 50 ms: {:.2}x of budget)   [{} gets]",
        g99 / 50.0,
        READS * 5
    );
    println!(
        "list {PODS} pods RV=0 (cache) p50 {l50:>7.2} ms   p99 {l99:>7.2} ms   (target p99 < 50 ms: {:.2}x of budget)   [{READS} lists, {:.1} MB each]",
        l99 / 50.0,
        list_bytes as f64 / 1e6
    );
    println!(
        "list {PODS} pods RV=\"\" (etcd)  p50 {e50:>7.2} ms   p99 {e99:>7.2} ms   (cache/etcd p50 ratio {:.3})   [{} lists]",
        l50 / e50,
        READS / 4
    );

    // Event delivery to 1,000 watchers of one ConfigMap.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(config_map("latency")).context("config map")?,
    )
    .await?;
    let epoch = Instant::now();
    let seen = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(WATCHERS * EVENTS)));
    let mut watchers = Vec::new();
    let ready = Arc::new(AtomicUsize::new(0));
    // A thousand TLS handshakes at once starve each other on a small machine: a few at a time.
    let opening = Arc::new(tokio::sync::Semaphore::new(32));
    for _ in 0..WATCHERS {
        let (cms, seen, latencies, ready) = (cms.clone(), seen.clone(), latencies.clone(), ready.clone());
        let opening = opening.clone();
        watchers.push(tokio::spawn(async move {
            let wp = WatchParams::default()
                .fields("metadata.name=latency")
                .timeout(290);
            let permit = opening.acquire_owned().await;
            let mut stream = loop {
                match cms.watch(&wp, "0").await {
                    Ok(s) => break s.boxed(),
                    Err(e) => {
                        eprintln!("opening a watch failed, retrying: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            drop(permit);
            ready.fetch_add(1, Ordering::Relaxed);
            while let Some(ev) = stream.next().await {
                if let WatchEvent::Modified(cm) = ev? {
                    let sent = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get("sent"))
                        .and_then(|s| s.parse::<u64>().ok());
                    if let Some(sent) = sent {
                        let now = epoch.elapsed().as_micros() as u64;
                        if let Ok(mut l) = latencies.lock() {
                            l.push(Duration::from_micros(now.saturating_sub(sent)));
                        }
                        seen.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, kube::Error>(())
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready.load(Ordering::Relaxed) < WATCHERS {
        if Instant::now() > deadline {
            bail!(
                "only {} of {WATCHERS} watches opened",
                ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for round in 1..=EVENTS {
        let sent = epoch.elapsed().as_micros() as u64;
        cms.patch(
            "latency",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"sent": sent.to_string()}})),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.load(Ordering::Relaxed) < round * WATCHERS {
            if Instant::now() > deadline {
                bail!(
                    "event {round}: {} of {} deliveries",
                    seen.load(Ordering::Relaxed),
                    round * WATCHERS
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for w in &watchers {
        w.abort();
    }
    let delivery = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let (d50, d99) = percentiles(delivery);
    println!(
        "watch delivery to {WATCHERS} watchers p50 {d50:>7.2} ms   p99 {d99:>7.2} ms   (target p99 < 100 ms: {:.2}x of budget)   [{EVENTS} events]",
        d99 / 100.0
    );

    Ok(())
}
