//! The `default/kubernetes` Endpoints lists every live API server, as upstream's lease endpoint reconciler keeps
//! it: each server holds `/registry/masterleases/<advertise address>` with a 15 s time to live, renews it every
//! 10 s and rewrites the Endpoints' addresses from the live leases. A server that shuts down cleanly removes its
//! lease and its address at once; one that dies drops out when its lease expires. Clients that balance over the
//! API servers (kubelets, controllers) learn them from there.
//!
//! Entry point: [`reconcile`], run for the server's lifetime.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use store::Store;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "/registry/masterleases/";
const ENDPOINTS_KEY: &str = "/registry/services/endpoints/default/kubernetes";
const LEASE_TTL: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Keeps this server (`address`, serving on `port`) in the `kubernetes` Endpoints until `shutdown`, then takes it
/// out.
pub async fn reconcile(
    store: std::sync::Arc<dyn Store>,
    address: String,
    port: u16,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("endpoint-reconciler", %address);
    let _enter = span.enter();
    loop {
        if let Err(e) = once(store.as_ref(), &address, port, true).await {
            tracing::warn!(error = %e, "keeping this API server in the kubernetes Endpoints");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
    if let Err(e) = once(store.as_ref(), &address, port, false).await {
        tracing::warn!(error = %e, "removing this API server from the kubernetes Endpoints");
    }
}

/// One round: renew (or drop) this server's lease, then make the Endpoints list exactly the live leases.
async fn once(store: &dyn Store, address: &str, port: u16, present: bool) -> Result<(), store::Error> {
    let key = format!("{PREFIX}{address}");
    if present {
        let value = bytes::Bytes::from(json!({"address": address, "port": port}).to_string());
        match store.get(&key).await {
            Ok(kv) => {
                store
                    .update(&key, value, kv.mod_revision, Some(LEASE_TTL))
                    .await?;
            }
            Err(store::Error::NotFound { .. }) => {
                store.create(&key, value, Some(LEASE_TTL)).await?;
            }
            Err(e) => return Err(e),
        }
    } else {
        match store.delete(&key, None).await {
            Ok(_) | Err(store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let leases = store.list(PREFIX, Default::default()).await?;
    let mut live: BTreeSet<String> = leases
        .items
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(PREFIX).map(str::to_string))
        .collect();
    // A lease written a moment ago may not be in a list served by a lagging member: our own view wins.
    if present {
        live.insert(address.to_string());
    } else {
        live.remove(address);
    }
    let current = match store.get(ENDPOINTS_KEY).await {
        Ok(kv) => kv,
        // The bootstrap creates it; the next round fills it in.
        Err(store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut endpoints: Value = serde_json::from_slice(&current.value).unwrap_or_else(|_| json!({}));
    let listed: BTreeSet<String> = endpoints["subsets"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    if listed == live {
        return Ok(());
    }
    endpoints["subsets"] = if live.is_empty() {
        json!([])
    } else {
        json!([{
            "addresses": live.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }])
    };
    let value = bytes::Bytes::from(endpoints.to_string());
    match store
        .update(ENDPOINTS_KEY, value, current.mod_revision, None)
        .await
    {
        // Another server rewrote it meanwhile; the next round looks again.
        Ok(_) | Err(store::Error::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn addresses(store: &dyn Store) -> Vec<String> {
        let kv = store.get(ENDPOINTS_KEY).await.unwrap();
        let v: Value = serde_json::from_slice(&kv.value).unwrap();
        v["subsets"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ip"].as_str().map(str::to_string))
            .collect()
    }

    #[tokio::test]
    async fn the_kubernetes_endpoints_list_every_server_holding_a_lease_and_lose_one_that_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::SqliteStore::open(
            store::SqliteConfig::new(dir.path().join("db")),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let initial = json!({"kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 6443}]}]});
        store
            .create(ENDPOINTS_KEY, initial.to_string().into(), None)
            .await
            .unwrap();
        once(&store, "10.0.0.1", 6443, true).await.unwrap();
        once(&store, "10.0.0.2", 6443, true).await.unwrap();
        once(&store, "10.0.0.1", 6443, true).await.unwrap();
        assert_eq!(addresses(&store).await, ["10.0.0.1", "10.0.0.2"]);
        once(&store, "10.0.0.2", 6443, false).await.unwrap();
        assert_eq!(addresses(&store).await, ["10.0.0.1"]);
        assert!(store.get(&format!("{PREFIX}10.0.0.2")).await.is_err());
    }
}
