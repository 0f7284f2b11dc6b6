//! `/healthz`, `/livez`, `/readyz` over HTTPS on `--secure-port`, as upstream serves them: with no serving
//! certificate configured, kube-scheduler makes a self-signed one in memory, and so does this. Kubelet probes and
//! `curl -k` only need a status line and `ok`, so a minimal HTTP/1.1 responder is enough (one request per connection).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating the self-signed serving certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds `addr` and serves health checks until `shutdown`; returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> Result<SocketAddr, Error> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        addr.ip().to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let chain = vec![certified.cert.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    info!(address = %local, "serving health checks over HTTPS (self-signed)");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, peer)) = accepted else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(
                async move {
                    let answer = async {
                        let mut tls = acceptor.accept(stream).await?;
                        let mut buf = Vec::with_capacity(1024);
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                            let n = tls.read(&mut chunk).await?;
                            if n == 0 {
                                break;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        let response = respond(&String::from_utf8_lossy(&buf));
                        tls.write_all(response.as_bytes()).await?;
                        tls.shutdown().await
                    };
                    match tokio::time::timeout(Duration::from_secs(10), answer).await {
                        Ok(Err(err)) => debug!(error = %err, "health connection failed"),
                        Err(_) => debug!("health connection timed out"),
                        Ok(Ok(())) => {}
                    }
                }
                .instrument(info_span!("health", %peer)),
            );
        }
    });
    Ok(local)
}

/// The whole HTTP response to a request head.
fn respond(head: &str) -> String {
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, body) = match path {
        "/healthz" | "/livez" | "/readyz" => ("200 OK", "ok"),
        p if ["/healthz/", "/livez/", "/readyz/"]
            .iter()
            .any(|pre| p.starts_with(pre)) =>
        {
            ("200 OK", "ok")
        }
        _ => ("404 Not Found", "404 page not found\n"),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_paths_answer_ok_and_others_not_found() {
        assert!(respond("GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
        assert!(respond("GET /readyz?verbose HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nok"));
        assert!(respond("GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    }
}
