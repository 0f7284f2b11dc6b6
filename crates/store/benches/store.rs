//! Throughput of the `Store` backends, run by `cargo bench -p store`.
//!
//! Against one real etcd member (started by testkit), the same requests at the same concurrency go through
//! `Store` and through the raw `etcd-client`, alternating in rounds so drift affects both alike; the ratio
//! `Store / raw` is the overhead of the abstraction (target: at least 0.9). A put is what `Store::create` sends,
//! a create-if-absent transaction; a raw plain put is shown for reference. Then the embedded SQLite backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use store::{EtcdConfig, EtcdStore, SqliteConfig, SqliteStore, Store};
use testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

const CONCURRENCY: usize = 32;
const ROUND: Duration = Duration::from_millis(1000);
const ROUNDS: usize = 4;
const GET_KEYS: usize = 1000;
const VALUE: &[u8] = &[b'v'; 256];

/// Runs `op(task, i)` from `CONCURRENCY` tasks for `ROUND`; returns operations that succeeded.
async fn run<F, Fut>(op: F) -> u64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    testkit::bench::run_for(CONCURRENCY, ROUND, op).await
}

fn rate(ops: u64, rounds: usize) -> f64 {
    ops as f64 / (ROUND.as_secs_f64() * rounds as f64)
}

/// A key unique to this run, task and iteration.
fn key(id: &str, task: usize, i: u64) -> String {
    format!("/registry/bench/{id}/t{task:02}-{i:08}")
}

async fn put_with_store(store: Arc<dyn Store>, id: &'static str) -> u64 {
    run(move |task, i| {
        let store = store.clone();
        async move {
            store
                .create(&key(id, task, i), Bytes::from_static(VALUE), None)
                .await
                .is_ok()
        }
    })
    .await
}

async fn get_with_store(store: Arc<dyn Store>) -> u64 {
    run(move |task, i| {
        let store = store.clone();
        async move {
            store
                .get(&key("seed", 0, (task as u64 * 7919 + i) % GET_KEYS as u64))
                .await
                .is_ok()
        }
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let etcd = EtcdCluster::start_single().await?;
    let store: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(EtcdConfig::new(etcd.endpoints()), CancellationToken::new()).await?);
    let raw = etcd.client().await?;
    for i in 0..GET_KEYS as u64 {
        store
            .create(&key("seed", 0, i), Bytes::from_static(VALUE), None)
            .await?;
    }

    let (mut store_puts, mut raw_txns, mut raw_puts, mut store_gets, mut raw_gets) = (0, 0, 0, 0, 0);
    for round in 0..ROUNDS {
        // Alternate which side goes first, so warm-up and the growing database favour neither.
        for store_first in [round % 2 == 1, round % 2 == 0] {
            if store_first {
                store_puts +=
                    put_with_store(store.clone(), ["store0", "store1", "store2", "store3"][round % 4]).await;
                store_gets += get_with_store(store.clone()).await;
                continue;
            }
            let kv = raw.kv_client();
            raw_txns += run(move |task, i| {
                let mut kv = kv.clone();
                async move {
                    let k = key(["raw0", "raw1", "raw2", "raw3"][round % 4], task, i);
                    let txn = Txn::new()
                        .when([Compare::mod_revision(k.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(k.as_str(), VALUE, None)]);
                    kv.txn(txn).await.is_ok_and(|r| r.succeeded())
                }
            })
            .await;
            let kv = raw.kv_client();
            raw_gets += run(move |task, i| {
                let mut kv = kv.clone();
                async move {
                    let k = key("seed", 0, (task as u64 * 7919 + i) % GET_KEYS as u64);
                    kv.get(k, None).await.is_ok_and(|r| r.kvs().len() == 1)
                }
            })
            .await;
        }
    }
    let kv = raw.kv_client();
    raw_puts += run(move |task, i| {
        let mut kv = kv.clone();
        async move { kv.put(key("plain", task, i), VALUE, None).await.is_ok() }
    })
    .await;

    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            SqliteConfig::new(dir.path().join("bench.db")),
            CancellationToken::new(),
        )
        .await?,
    );
    for i in 0..GET_KEYS as u64 {
        sqlite
            .create(&key("seed", 0, i), Bytes::from_static(VALUE), None)
            .await?;
    }
    let sqlite_puts = put_with_store(sqlite.clone(), "sqlite").await;
    let sqlite_gets = get_with_store(sqlite.clone()).await;

    let (sp, rt, sg, rg) = (
        rate(store_puts, ROUNDS),
        rate(raw_txns, ROUNDS),
        rate(store_gets, ROUNDS),
        rate(raw_gets, ROUNDS),
    );
    println!(
        "store benchmark: {CONCURRENCY} concurrent tasks, {}-byte values, {ROUNDS} alternating rounds of {ROUND:?}",
        VALUE.len()
    );
    println!(
        "etcd  puts/s  Store::create {sp:>9.0}   raw txn {rt:>9.0}   ratio {:.3}   (raw plain put {:.0})",
        sp / rt,
        rate(raw_puts, 1)
    );
    println!(
        "etcd  gets/s  Store::get    {sg:>9.0}   raw get {rg:>9.0}   ratio {:.3}",
        sg / rg
    );
    println!(
        "sqlite puts/s {:>9.0}   gets/s {:>9.0}",
        rate(sqlite_puts, 1),
        rate(sqlite_gets, 1)
    );
    Ok(())
}
