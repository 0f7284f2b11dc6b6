#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Scheduling throughput against a real API server: 1,000 Ready nodes and 10,000 pending pods are created through
//! the API (concurrently, not timed), then the scheduler starts and we time until every pod is bound, as seen through
//! a watch. Prints pods bound per second and the ratio to kube-scheduler's CI threshold (680-810 pods/s for the
//! comparable scheduler_perf workload). Also times the placement algorithm alone, without the API.
//!
//! Also prints what a full list of the pods costs (paged by 500 as kube's watcher lists, and whole): the bulk of the
//! scheduler's cache sync before its first binding.
//!
//! `cargo bench -p scheduler` (testkit builds the release `bulwark` for the API server if needed). Sizes:
//! `SCHED_BENCH_NODES`, `SCHED_BENCH_PODS`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node_json(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i:04}"),
        "labels": {"kubernetes.io/hostname": format!("node-{i:04}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}}})
}

fn pod_json(i: usize) -> serde_json::Value {
    // 100 "ReplicaSets" of 100 pods each, so that spreading has work to do.
    let owner = i % 100;
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i:05}"), "namespace": "default",
        "labels": {"app": format!("app-{owner}")},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("rs-{owner}"),
            "uid": format!("00000000-0000-0000-0000-{owner:012}"), "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}}]}})
}

fn ready_status() -> serde_json::Value {
    let r = json!({"cpu": "32", "memory": "128Gi", "pods": "110"});
    json!({"status": {"capacity": r, "allocatable": r, "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
}

/// The placement algorithm alone: every pod through filters and scores over every node, assumed in the cache.
fn placement_only(nodes: usize, pods: usize) -> f64 {
    let mut cache = scheduler::cache::Cache::new(0, 42);
    for i in 0..nodes {
        let mut n: Node = serde_json::from_value(node_json(i)).unwrap();
        let s: Node = serde_json::from_value(ready_status()).unwrap();
        n.status = s.status;
        cache.upsert_node(n);
    }
    let pods: Vec<Pod> = (0..pods)
        .map(|i| serde_json::from_value(pod_json(i)).unwrap())
        .collect();
    let start = Instant::now();
    for pod in &pods {
        let info = scheduler::cache::PodInfo::new(pod);
        let node = cache.find_node(&info).unwrap();
        cache.place(&info, "", &node, true);
    }
    pods.len() as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let nodes = env_or("SCHED_BENCH_NODES", 1000);
    let pods = env_or("SCHED_BENCH_PODS", 10_000);
    let algo = placement_only(nodes, pods);
    println!("placement alone (no API): {algo:.0} pods/s over {nodes} nodes");

    let server = testkit::cluster::SingleServer::start()?;
    let kubeconfig = server.kubeconfig();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let client = client::from_kubeconfig(&kubeconfig).await?;
        let pp = PostParams::default();
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
        Api::<ServiceAccount>::namespaced(client.clone(), "default").create(&pp, &sa).await?;

        let t = Instant::now();
        let node_api: Api<Node> = Api::all(client.clone());
        stream::iter(0..nodes)
            .map(|i| {
                let api = node_api.clone();
                let pp = pp.clone();
                async move {
                    let n: Node = serde_json::from_value(node_json(i))?;
                    api.create(&pp, &n).await?;
                    api.patch_status(&format!("node-{i:04}"), &PatchParams::default(), &Patch::Merge(ready_status()))
                        .await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32)
            .try_collect::<()>()
            .await?;
        println!("created {nodes} ready nodes in {:.1}s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
        stream::iter(0..pods)
            .map(|i| {
                let api = pod_api.clone();
                let pp = pp.clone();
                async move {
                    let p: Pod = serde_json::from_value(pod_json(i))?;
                    api.create(&pp, &p).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32)
            .try_collect::<()>()
            .await?;
        println!("created {pods} pending pods in {:.1}s", t.elapsed().as_secs_f64());

        // What the scheduler's first sync costs: listing every pod, in pages of 500 as kube's watcher does, and whole.
        for limit in [500u32, 0] {
            let t = Instant::now();
            let mut lp = kube::api::ListParams::default();
            if limit > 0 {
                lp = lp.limit(limit);
            }
            let mut n = 0;
            loop {
                let page = pod_api.list(&lp).await?;
                n += page.items.len();
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => lp = lp.continue_token(&c),
                    None => break,
                }
            }
            println!("listed {n} pods (limit {limit}) in {:.2}s", t.elapsed().as_secs_f64());
        }

        // Count bindings as any client sees them: through a watch.
        let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let watch = tokio::spawn({
            let api = pod_api.clone();
            async move {
                let mut seen = HashSet::new();
                let mut s = std::pin::pin!(watcher(api, watcher::Config::default()));
                while let Some(ev) = s.next().await {
                    let pods = match ev {
                        Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
                        _ => continue,
                    };
                    for p in pods {
                        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                            && seen.insert(p.metadata.name.clone().unwrap_or_default())
                            && bound_tx.send(Instant::now()).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });

        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let sched = tokio::spawn(scheduler::run(client.clone(), scheduler::Config::default(), shutdown.clone()));
        let mut first = None;
        let mut count = 0usize;
        let deadline = start + Duration::from_secs(600);
        while count < pods {
            match tokio::time::timeout_at(deadline.into(), bound_rx.recv()).await {
                Ok(Some(at)) => {
                    first.get_or_insert(at);
                    count += 1;
                    if count.is_multiple_of(2000) {
                        println!("  {count} bound after {:.2}s", start.elapsed().as_secs_f64());
                    }
                }
                _ => break,
            }
        }
        let total = start.elapsed();
        shutdown.cancel();
        let _ = sched.await;
        watch.abort();
        let first = first.map_or(Duration::ZERO, |f| f - start);
        let rate = count as f64 / total.as_secs_f64();
        let steady = count as f64 / (total - first).as_secs_f64().max(1e-9);
        println!("bound {count}/{pods} pods on {nodes} nodes in {:.2}s (first binding after {:.2}s: cache sync)", total.as_secs_f64(), first.as_secs_f64());
        println!("throughput: {rate:.0} pods/s from scheduler start, {steady:.0} pods/s from the first binding");
        println!(
            "ratio vs kube-scheduler CI threshold 680-810 pods/s: {:.2}x-{:.2}x (from start), {:.2}x-{:.2}x (from first binding)",
            rate / 810.0,
            rate / 680.0,
            steady / 810.0,
            steady / 680.0
        );
        anyhow::Ok(())
    })?;
    Ok(())
}
