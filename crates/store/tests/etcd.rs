//! The conformance suite on the etcd backend, each case against its own real single-member etcd.

#[macro_use]
mod conformance;

use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use conformance::Harness;
use store::{EtcdConfig, EtcdStore, Store};
use testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

async fn harness() -> anyhow::Result<Harness> {
    let etcd = EtcdCluster::start_single().await?;
    let store = EtcdStore::connect(EtcdConfig::new(etcd.endpoints()), CancellationToken::new()).await?;
    Ok(Harness {
        store: Arc::new(store),
        // etcd expires leases by its own clock.
        advance_clock: Box::new(|_| {}),
        keep: Box::new(etcd),
    })
}

conformance_tests!(harness);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_similar_ttls_share_one_lease_and_an_update_without_ttl_detaches_it() -> anyhow::Result<()>
{
    let etcd = EtcdCluster::start_single().await?;
    let store = EtcdStore::connect(EtcdConfig::new(etcd.endpoints()), CancellationToken::new()).await?;
    let mut raw = etcd.client().await?;
    let hour = Some(Duration::from_secs(3600));
    let mut leases = Vec::new();
    for i in 0..3 {
        let key = format!("/registry/events/default/e{i}");
        store.create(&key, Bytes::from_static(b"x"), hour).await?;
        leases.push(raw.get(key, None).await?.kvs()[0].lease());
    }
    ensure!(
        leases[0] != 0 && leases.iter().all(|l| *l == leases[0]),
        "leases: {leases:?}"
    );
    let kv = store.get("/registry/events/default/e0").await?;
    store
        .update(&kv.key, Bytes::from_static(b"y"), kv.mod_revision, None)
        .await?;
    ensure!(
        raw.get(kv.key.as_str(), None).await?.kvs()[0].lease() == 0,
        "the update kept the lease"
    );
    Ok(())
}
