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

/// The addresses the `kubernetes` Endpoints list, through API server `port`.
fn kubernetes_endpoints(pki: &Pki, port: u16) -> Option<Vec<String>> {
    let (code, body) = curl(pki, port, &["/api/v1/namespaces/default/endpoints/kubernetes"]).ok()?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut ips: Vec<String> = v["subsets"][0]["addresses"]
        .as_array()?
        .iter()
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    Some(ips)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_endpoints_list_every_api_server_and_one_that_shuts_down_leaves_them() -> Result<()> {
    let etcd = testkit::etcd::EtcdCluster::start_tls(1).await?;
    let tls = etcd.client_tls().context("TLS cluster")?.clone();
    let storage = |advertise: &str| {
        vec![
            format!("--etcd-servers={}", etcd.endpoints().join(",")),
            format!("--etcd-cafile={}", tls.ca_file.display()),
            format!("--etcd-certfile={}", tls.cert_file.display()),
            format!("--etcd-keyfile={}", tls.key_file.display()),
            format!("--advertise-address={advertise}"),
        ]
    };
    let (port_a, port_b) = (free_port()?, free_port()?);
    let pki = Pki::new(port_a)?;
    let a = ApiServer::start(&pki, port_a, &storage("127.0.0.1"))?;
    let mut b = ApiServer::start(&pki, port_b, &storage("127.0.0.2"))?;
    eventually(
        Duration::from_secs(30),
        "both API servers in the Endpoints",
        || (kubernetes_endpoints(&pki, a.port)? == ["127.0.0.1", "127.0.0.2"]).then_some(()),
    )
    .with_context(|| b.log_tail())?;
    // A clean shutdown takes the server out at once, not after its lease's 15 s.
    b.terminate()?;
    let gone = std::time::Instant::now();
    eventually(
        Duration::from_secs(10),
        "the stopped API server out of the Endpoints",
        || (kubernetes_endpoints(&pki, a.port)? == ["127.0.0.1"]).then_some(()),
    )
    .with_context(|| a.log_tail())?;
    ensure!(
        gone.elapsed() < Duration::from_secs(5),
        "took {:?}",
        gone.elapsed()
    );
    Ok(())
}
