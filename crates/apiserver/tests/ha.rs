//! Several API servers on one etcd serve one cluster.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_api_server_is_seen_by_a_watch_on_another_over_a_three_member_etcd() -> Result<()>
{
    let etcd = testkit::etcd::EtcdCluster::start_tls(3).await?;
    let tls = etcd.client_tls().context("TLS cluster")?.clone();
    let storage = vec![
        format!("--etcd-servers={}", etcd.endpoints().join(",")),
        format!("--etcd-cafile={}", tls.ca_file.display()),
        format!("--etcd-certfile={}", tls.cert_file.display()),
        format!("--etcd-keyfile={}", tls.key_file.display()),
    ];
    let (port_a, port_b) = (free_port()?, free_port()?);
    let pki = Pki::new(port_a)?;
    let a = ApiServer::start(&pki, port_a, &storage)?;
    let b = ApiServer::start(&pki, port_b, &storage)?;
    let mut watch_cmd = std::process::Command::new("curl");
    watch_cmd
        .args(["-sN", "--cacert"])
        .arg(pki.pki_dir().join("ca.crt"))
        .arg("--cert")
        .arg(pki.dir.path().join("admin.crt"))
        .arg("--key")
        .arg(pki.dir.path().join("admin.key"))
        .arg(format!(
            "https://127.0.0.1:{port_b}/api/v1/namespaces/default/configmaps?watch=true"
        ));
    let watch = Streaming::spawn(watch_cmd)?;
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"shared"},"data":{"k":"v"}}"#;
    let (code, out) = curl(
        &pki,
        a.port,
        &[
            "/api/v1/namespaces/default/configmaps",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ],
    )?;
    ensure!(code == 201, "{code} {out}\n{}", a.log_tail());
    watch
        .wait_for(&["\"ADDED\"", "shared"], Duration::from_secs(20))
        .with_context(|| b.log_tail())?;
    let (code, got) = curl(&pki, b.port, &["/api/v1/namespaces/default/configmaps/shared"])?;
    ensure!(code == 200 && got.contains("\"k\":\"v\""), "{got}");
    Ok(())
}
