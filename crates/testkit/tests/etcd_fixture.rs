use std::time::Duration;

use testkit::EtcdCluster;

fn process_exists(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would still show, so check its state too.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_single_member_serves_and_is_removed_on_drop() -> anyhow::Result<()> {
    let etcd = EtcdCluster::start_single().await?;
    let mut client = etcd.client().await?;
    client.put("/registry/test/a", "1", None).await?;
    let got = client.get("/registry/test/a", None).await?;
    assert_eq!(got.kvs()[0].value(), b"1");
    let pid = etcd.pid(0).ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let dir = etcd.dir().to_path_buf();
    drop(etcd);
    assert!(!process_exists(pid), "etcd {pid} survived the fixture");
    assert!(!dir.exists(), "{} survived the fixture", dir.display());
    Ok(())
}

#[tokio::test]
async fn a_tls_cluster_elects_a_new_leader_when_the_leader_is_killed_and_takes_it_back() -> anyhow::Result<()>
{
    let mut cluster = EtcdCluster::start_tls(3).await?;
    let tls = cluster
        .client_tls()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no TLS files"))?;
    assert!(tls.ca_file.exists() && tls.cert_file.exists() && tls.key_file.exists());
    assert!(
        cluster
            .endpoints()
            .iter()
            .all(|e| e.starts_with("https://127.0.0.1"))
    );
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    cluster.kill(leader);
    assert!(!cluster.is_running(leader));
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
    assert_ne!(new_leader, leader);
    cluster.restart(leader).await?;
    cluster.wait_for_leader(Duration::from_secs(10)).await?;
    let mut client = cluster.client().await?;
    client.put("/registry/test/b", "2", None).await?;
    Ok(())
}
