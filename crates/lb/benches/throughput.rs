//! Throughput and connection rate through the balancer against the same backends reached directly, measured in
//! the same run, printed as ratios (`cargo bench -p lb`).
//!
//! - bulk: one connection streams 256 MiB to a sink that answers with the byte count.
//! - connections: 2,000 sequential connections, each a 1-byte round trip to an echo server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lb::{Balancer, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const BULK: u64 = 256 << 20;
const CONNECTIONS: usize = 2_000;

/// Reads until EOF, then answers with the number of bytes read; or echoes one byte if the first is `e`.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 << 10];
                let mut total = 0u64;
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    if total == 0 && buf[0] == b'e' && n == 1 {
                        let _ = s.write_all(b"e").await;
                        return;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_be_bytes()).await;
            });
        }
    });
    addr
}

async fn bulk(target: SocketAddr) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(target).await.unwrap();
    let chunk = vec![7u8; 256 << 10];
    let mut sent = 0u64;
    while sent < BULK {
        s.write_all(&chunk).await.unwrap();
        sent += chunk.len() as u64;
    }
    s.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_be_bytes(count), BULK);
    start.elapsed()
}

async fn connections(target: SocketAddr) -> Duration {
    let start = Instant::now();
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(target).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(b"e").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
    }
    start.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backends = vec![backend().await, backend().await];
        let balancer = Balancer::new(Config {
            backends: backends.clone(),
            ..Config::default()
        })
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let via = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let (balancer, shutdown) = (balancer.clone(), shutdown.clone());
            async move { balancer.run(listener, shutdown).await }
        });
        // Warm-up, and interleaved rounds so both sides see the same machine load.
        bulk(via).await;
        bulk(backends[0]).await;
        let (mut direct_bulk, mut lb_bulk, mut direct_conn, mut lb_conn) = (vec![], vec![], vec![], vec![]);
        for _ in 0..3 {
            direct_bulk.push(bulk(backends[0]).await);
            lb_bulk.push(bulk(via).await);
            direct_conn.push(connections(backends[0]).await);
            lb_conn.push(connections(via).await);
        }
        let best = |v: &[Duration]| v.iter().min().copied().unwrap();
        let mib = (BULK >> 20) as f64;
        let (d, l) = (best(&direct_bulk), best(&lb_bulk));
        println!(
            "bulk {mib} MiB: direct {:.0} MiB/s, via lb {:.0} MiB/s, lb/direct throughput {:.2}",
            mib / d.as_secs_f64(),
            mib / l.as_secs_f64(),
            d.as_secs_f64() / l.as_secs_f64()
        );
        let (d, l) = (best(&direct_conn), best(&lb_conn));
        println!(
            "{CONNECTIONS} connections: direct {:.0}/s, via lb {:.0}/s, lb/direct rate {:.2}",
            CONNECTIONS as f64 / d.as_secs_f64(),
            CONNECTIONS as f64 / l.as_secs_f64(),
            d.as_secs_f64() / l.as_secs_f64()
        );
        shutdown.cancel();
    });
}
