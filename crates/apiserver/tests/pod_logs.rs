//! `pods/<name>/log` is proxied to the node's kubelet. A small HTTPS server stands in for the kubelet: it requires
//! a client certificate from the cluster CA, records what it was asked, and streams a log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// What the fake kubelet saw: (client certificate CN, request line).
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Serves `/containerLogs/...`: "hello from <container>\n", and for `follow=true` a second line once `more`
/// is notified.
async fn fake_kubelet(pki_dir: std::path::PathBuf, seen: Seen, more: Arc<Notify>) -> Result<u16> {
    let certs = |f: &str| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(pki_dir.join(f))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca.crt") {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()?;
    // Any serving certificate does: the API server does not verify kubelets without --kubelet-certificate-authority.
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs("apiserver.crt"),
            PrivateKeyDer::from_pem_file(pki_dir.join("apiserver.key"))?,
        )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            let more = more.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| {
                        let (_, x) = x509_parser::parse_x509_certificate(c.as_ref()).ok()?;
                        x.subject()
                            .iter_common_name()
                            .next()
                            .and_then(|n| n.as_str().ok())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or("").to_string();
                seen.lock().unwrap().push((cn, line.clone()));
                let path = line.split(' ').nth(1).unwrap_or("");
                let container = path
                    .split('?')
                    .next()
                    .and_then(|p| p.rsplit('/').next())
                    .unwrap_or("");
                let _ = tls
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nhello from {container}\n"
                        )
                        .as_bytes(),
                    )
                    .await;
                let _ = tls.flush().await;
                if path.contains("follow=true") {
                    more.notified().await;
                    let _ = tls.write_all(b"second line\n").await;
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_are_proxied_from_the_nodes_kubelet_with_the_apiserver_client_certificate() -> Result<()> {
    let Some(bin) = kubectl_newest() else {
        eprintln!("no kubectl installed; skipping");
        return Ok(());
    };
    let port = free_port()?;
    let pki = Pki::new(port)?;
    let dir = pki.pki_dir();
    let f = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let server = ApiServer::start(
        &pki,
        port,
        &[
            format!("--storage-dir={}", pki.dir.path().join("store").display()),
            format!(
                "--kubelet-client-certificate={}",
                f("apiserver-kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", f("apiserver-kubelet-client.key")),
        ],
    )?;
    let seen: Seen = Arc::default();
    let more = Arc::new(Notify::new());
    let kubelet_port = fake_kubelet(dir.clone(), seen.clone(), more.clone()).await?;
    let k = Kubectl {
        bin,
        kubeconfig: pki.kubeconfig(),
    };
    let run = || -> Result<()> {
        k.ok_stdin(
            &["apply", "-f", "-"],
            r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#,
        )?;
        k.ok(&[
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status": {{"addresses": [{{"type": "InternalIP", "address": "127.0.0.1"}}],
                    "daemonEndpoints": {{"kubeletEndpoint": {{"Port": {kubelet_port}}}}}}}}}"#
            ),
        ])?;
        let pod = |name: &str, node: &str| {
            format!(
                r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "namespace": "default"}},
                   "spec": {{"nodeName": "{node}", "containers": [{{"name": "app", "image": "a"}}, {{"name": "side", "image": "b"}}]}}}}"#
            )
        };
        // No controller-manager here to create it; service-account admission needs it.
        k.ok(&["create", "serviceaccount", "default"])?;
        k.ok_stdin(&["apply", "-f", "-"], &pod("web", "n1"))?;

        let out = k.ok(&["logs", "web", "-c", "app", "--tail=5", "--timestamps"])?;
        ensure!(out == "hello from app\n", "{out:?}");
        let (cn, line) = seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .context("kubelet not called")?;
        ensure!(cn == "kube-apiserver-kubelet-client", "{cn}");
        ensure!(
            line.starts_with("GET /containerLogs/default/web/app?")
                && line.contains("tailLines=5")
                && line.contains("timestamps=true"),
            "{line}"
        );

        // Raw clients must name one of several containers, with upstream's message.
        let (code, body) = curl(&pki, port, &["/api/v1/namespaces/default/pods/web/log"])?;
        ensure!(code == 400, "{code} {body}");
        ensure!(
            body.contains("a container name must be specified for pod web, choose one of: [app side]"),
            "{body}"
        );
        let (code, body) = curl(
            &pki,
            port,
            &["/api/v1/namespaces/default/pods/web/log?container=nope"],
        )?;
        ensure!(
            code == 400 && body.contains("container nope is not valid for pod web"),
            "{body}"
        );
        let (code, body) = curl(
            &pki,
            port,
            &["/api/v1/namespaces/default/pods/web/log?container=side&tailLines=x"],
        )?;
        ensure!(code == 400, "{code} {body}");

        // A pod no node runs yet has an empty log.
        k.ok_stdin(&["apply", "-f", "-"], &pod("pending", ""))?;
        let (code, body) = curl(
            &pki,
            port,
            &["/api/v1/namespaces/default/pods/pending/log?container=app"],
        )?;
        ensure!(code == 200 && body.is_empty(), "{code} {body:?}");

        // follow streams: the first line arrives while the kubelet still holds the second.
        let follow = Streaming::spawn(k.cmd(&["logs", "-f", "web", "-c", "side"]))?;
        follow.wait_for(&["hello from side"], Duration::from_secs(20))?;
        more.notify_one();
        follow.wait_for(&["second line"], Duration::from_secs(20))?;
        Ok(())
    };
    run().map_err(|e| e.context(server.log_tail()))
}
