//! The conformance suite on the etcd backend, each case against its own real single-member etcd.

#[macro_use]
mod conformance;

use std::sync::Arc;

use conformance::Harness;
use store::{EtcdConfig, EtcdStore};
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
