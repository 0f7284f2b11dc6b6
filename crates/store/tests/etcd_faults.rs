//! The etcd backend against a 3-member TLS cluster while members die: leader killed under a steady writer,
//! quorum lost and regained, a watch's member killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use store::{Error, EtcdConfig, EtcdStore, ListOptions, Store, WatchOptions};
use testkit::{EtcdCluster, eventually};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

fn config(cluster: &EtcdCluster, request_timeout: Duration) -> anyhow::Result<EtcdConfig> {
    let tls = cluster.client_tls().context("the cluster has no TLS files")?;
    Ok(EtcdConfig::new(cluster.endpoints())
        .with_tls(&tls.ca_file, &tls.cert_file, &tls.key_file)
        .with_request_timeout(request_timeout))
}

async fn connect(cluster: &EtcdCluster, request_timeout: Duration) -> anyhow::Result<Arc<EtcdStore>> {
    Ok(Arc::new(
        EtcdStore::connect(config(cluster, request_timeout)?, CancellationToken::new()).await?,
    ))
}

fn key(i: usize) -> String {
    format!("/registry/configmaps/default/w{i:05}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_write_is_lost_when_the_leader_is_killed_and_the_writer_goes_on() -> anyhow::Result<()>
{
    let mut cluster = EtcdCluster::start_tls(3).await?;
    // The store talks to the leader first, so killing it breaks the store's own connection mid-write, the
    // hardest case (through a follower, writes only stall until a new leader is elected).
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let mut config = config(&cluster, Duration::from_secs(2))?;
    config.endpoints.rotate_left(leader);
    let store = Arc::new(EtcdStore::connect(config, CancellationToken::new()).await?);
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let writer = {
        let (store, acked, stop) = (store.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 20_000 {
                let mut retried = false;
                loop {
                    match store.create(&key(i), Bytes::from(i.to_string()), None).await {
                        Ok(_) => break,
                        // An earlier attempt whose answer was lost did land.
                        Err(Error::AlreadyExists { .. }) if retried => break,
                        Err(e) if e.is_transient() => {
                            failures.push(e.to_string());
                            retried = true;
                            if failures.len() > 200 {
                                return Err(anyhow::anyhow!("the writer never recovered: {failures:?}"));
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                acked.lock().await.push(i);
                i += 1;
            }
            Ok::<_, anyhow::Error>(failures)
        })
    };

    let acked_count = || async { acked.lock().await.len() };
    eventually(Duration::from_secs(20), || async {
        let n = acked_count().await;
        if n >= 50 {
            Ok(n)
        } else {
            Err(format!("{n} writes so far"))
        }
    })
    .await?;
    ensure!(
        cluster.wait_for_leader(Duration::from_secs(10)).await? == leader,
        "leadership moved on its own"
    );
    cluster.kill(leader);
    let killed_at = Instant::now();
    let before = acked_count().await;
    eventually(Duration::from_secs(30), || async {
        let n = acked_count().await;
        if n >= before + 100 {
            Ok(n)
        } else {
            Err(format!("{} writes since the leader was killed", n - before))
        }
    })
    .await
    .context("the writer did not resume by itself")?;
    let resumed_after = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let failures = writer.await??;
    println!(
        "leader m{leader} killed; 100 more writes acknowledged {resumed_after:?} later; failures seen: {failures:?}"
    );

    let acked = acked.lock().await.clone();
    for &i in &acked {
        let kv = store
            .get(&key(i))
            .await
            .with_context(|| format!("acknowledged write {i} lost"))?;
        ensure!(kv.value == Bytes::from(i.to_string()));
    }
    let listed = store
        .list("/registry/configmaps/", ListOptions::default())
        .await?;
    ensure!(listed.items.len() >= acked.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_calls_fail_within_their_deadline_and_succeed_once_it_returns() -> anyhow::Result<()> {
    let mut cluster = EtcdCluster::start_tls(3).await?;
    let deadline = Duration::from_secs(1);
    let store = connect(&cluster, deadline).await?;
    let before = store.create(&key(0), Bytes::from_static(b"before"), None).await?;
    let mut watch = store
        .watch(
            "/registry/configmaps/",
            WatchOptions {
                prefix: true,
                start_revision: None,
            },
        )
        .await?;

    cluster.kill(1);
    cluster.kill(2);
    // Every call fails, with a typed error, within its deadline (plus scheduling slack), however often asked.
    for attempt in 0..3 {
        let started = Instant::now();
        let write = store
            .create(&key(1 + attempt), Bytes::from_static(b"lost"), None)
            .await;
        let write_took = started.elapsed();
        let started = Instant::now();
        let read = store.get(&key(0)).await;
        let read_took = started.elapsed();
        for (what, result, took) in [
            ("write", write.err(), write_took),
            ("read", read.err(), read_took),
        ] {
            match result {
                Some(Error::Unavailable(_) | Error::Timeout(_)) => {}
                other => bail!("{what} without quorum: expected Unavailable or Timeout, got {other:?}"),
            }
            ensure!(
                took < deadline + Duration::from_millis(750),
                "{what} took {took:?}"
            );
        }
    }

    cluster.restart(1).await?;
    cluster.restart(2).await?;
    let after = eventually(Duration::from_secs(30), || async {
        store.create(&key(100), Bytes::from_static(b"after"), None).await
    })
    .await?;
    ensure!(store.get(&key(0)).await? == before);
    // The watch survived the outage: it resumes once a member has a leader again and sees the new write.
    let event = loop {
        match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
            Ok(Some(Ok(event))) if event.key == key(100) => break event,
            Ok(Some(Ok(_))) => continue,
            other => bail!("watch after the outage: {other:?}"),
        }
    };
    ensure!(event.revision == after.mod_revision);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_on_another_member_when_its_member_is_killed_without_gaps_or_repeats()
-> anyhow::Result<()> {
    let mut cluster = EtcdCluster::start_tls(3).await?;
    let store = connect(&cluster, Duration::from_secs(2)).await?;
    let start = store.current_revision().await? + 1;
    // Requests start on the first endpoint, so that is where the watch stream lives.
    let mut watch = store
        .watch(
            "/registry/configmaps/",
            WatchOptions {
                prefix: true,
                start_revision: Some(start),
            },
        )
        .await?;
    for i in 0..10 {
        store.create(&key(i), Bytes::from_static(b"x"), None).await?;
    }
    for i in 0..5 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await?
            .context("watch ended")??;
        ensure!(event.key == key(i));
    }
    cluster.kill(0);
    for i in 10..20 {
        eventually(Duration::from_secs(20), || async {
            match store.create(&key(i), Bytes::from_static(b"x"), None).await {
                Ok(_) | Err(Error::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
    }
    for i in 5..20 {
        let event = tokio::time::timeout(Duration::from_secs(20), watch.next())
            .await
            .with_context(|| format!("no event for key {i}"))?
            .context("watch ended")??;
        ensure!(event.key == key(i), "expected key {i}, got {event:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_follow_kube_apiserver_flags() -> anyhow::Result<()> {
    let cluster = EtcdCluster::start_tls(1).await?;
    let tls = cluster.client_tls().context("no TLS files")?;

    // A certificate without its key, or a client certificate without the CA, is a configuration error.
    let mut half = EtcdConfig::new(cluster.endpoints());
    half.ca_file = Some(tls.ca_file.clone());
    half.cert_file = Some(tls.cert_file.clone());
    let result = EtcdStore::connect(half, CancellationToken::new()).await;
    ensure!(matches!(result, Err(Error::Config(_))), "{result:?}");
    let result = EtcdStore::connect(EtcdConfig::new(cluster.endpoints()), CancellationToken::new()).await;
    ensure!(
        matches!(result, Err(Error::Config(_))),
        "https without a CA: {result:?}"
    );

    // etcd requires client certificates: the CA alone connects to nothing.
    let mut ca_only = EtcdConfig::new(cluster.endpoints()).with_request_timeout(Duration::from_millis(500));
    ca_only.ca_file = Some(tls.ca_file.clone());
    let store = EtcdStore::connect(ca_only, CancellationToken::new()).await?;
    let result = store.get("/registry/pods/default/a").await;
    ensure!(
        matches!(result, Err(Error::Unavailable(_) | Error::Timeout(_))),
        "{result:?}"
    );

    let store = connect(&cluster, Duration::from_secs(2)).await?;
    store
        .create("/registry/pods/default/a", Bytes::from_static(b"ok"), None)
        .await?;
    Ok(())
}
