//! The balancer against real sockets: echo servers as backends, the HTTPS health endpoint of the `client` crate
//! as a self-signed `/readyz`, the status endpoint over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use lb::{Balance, Balancer, Check, Config, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

/// A backend that greets each connection with its name and a newline, then echoes.
struct Echo {
    name: &'static str,
    addr: SocketAddr,
    /// Stops accepting (the port then refuses) but keeps open connections.
    accepting: CancellationToken,
    /// Closes everything.
    all: CancellationToken,
}

impl Echo {
    async fn start(name: &'static str) -> Result<Self> {
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    async fn start_at(name: &'static str, addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accepting = CancellationToken::new();
        let all = CancellationToken::new();
        let (stop, everything) = (accepting.clone(), all.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stop.cancelled() => return,
                    () = everything.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut stream, _)) = accepted else { continue };
                let everything = everything.clone();
                tokio::spawn(async move {
                    let serve = async {
                        stream.write_all(format!("{name}\n").as_bytes()).await?;
                        let (mut r, mut w) = stream.split();
                        tokio::io::copy(&mut r, &mut w).await
                    };
                    tokio::select! {
                        _ = serve => {}
                        () = everything.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self {
            name,
            addr,
            accepting,
            all,
        })
    }

    fn stop_accepting(&self) {
        self.accepting.cancel();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.all.cancel();
    }
}

/// A running balancer on a free loopback port, stopped on drop.
struct Running {
    balancer: Balancer,
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), lb::Error>>>,
}

impl Running {
    async fn start(config: Config) -> Result<Self> {
        let balancer = Balancer::new(config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (balancer, shutdown) = (balancer.clone(), shutdown.clone());
            async move { balancer.run(listener, shutdown).await }
        });
        Ok(Self {
            balancer,
            addr,
            shutdown,
            task: Some(task),
        })
    }

    fn backend(&self, addr: SocketAddr) -> Result<lb::BackendStatus> {
        self.balancer
            .status()
            .backends
            .into_iter()
            .find(|b| b.address == addr)
            .with_context(|| format!("{addr} not in the status"))
    }

    /// Waits until `addr`'s health is `healthy`.
    async fn wait_health(&self, addr: SocketAddr, healthy: bool) -> Result<lb::BackendStatus> {
        Ok(testkit::eventually(DEADLINE, || async {
            let b = self.backend(addr)?;
            if b.healthy == healthy {
                Ok(b)
            } else {
                bail!("{addr}: {b:?}")
            }
        })
        .await?)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Quick checks so tests move fast; thresholds as HAProxy's defaults unless a test says otherwise.
fn config(backends: &[&Echo]) -> Config {
    Config {
        backends: backends.iter().map(|e| e.addr).collect(),
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(500),
        drain_grace: Some(Duration::from_millis(100)),
        ..Config::default()
    }
}

/// Connects through the balancer; returns the stream and the name of the backend that greeted it.
async fn connect(lb: SocketAddr) -> Result<(TcpStream, String)> {
    let mut stream = TcpStream::connect(lb).await?;
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while !greeting.ends_with(b"\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .context("no greeting")??;
        ensure!(n == 1, "closed before the greeting ({greeting:?})");
        greeting.push(byte[0]);
    }
    Ok((stream, String::from_utf8_lossy(&greeting).trim().to_string()))
}

async fn names(lb: SocketAddr, count: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for _ in 0..count {
        out.push(connect(lb).await?.1);
    }
    Ok(out)
}

async fn echoes(stream: &mut TcpStream, text: &str) -> Result<()> {
    stream.write_all(text.as_bytes()).await?;
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut back))
        .await
        .context("no echo")??;
    ensure!(back == text.as_bytes(), "echoed {back:?}");
    Ok(())
}

/// Waits for the balancer to end this connection (EOF or reset).
async fn closed(stream: &mut TcpStream) -> Result<()> {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(()),
        Ok(Ok(n)) => bail!("read {n} bytes instead of the end"),
        Err(_) => bail!("the connection stayed open for {DEADLINE:?}"),
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut answer)).await??;
    let (head, body) = answer.split_once("\r\n\r\n").context("no head")?;
    let code = head.split_whitespace().nth(1).context("no status")?.parse()?;
    Ok((code, body.to_string()))
}

#[tokio::test]
async fn connections_are_forwarded_both_ways_and_spread_round_robin() -> Result<()> {
    let (a, b) = (Echo::start("a").await?, Echo::start("b").await?);
    let lb = Running::start(config(&[&a, &b])).await?;
    let (mut stream, _) = connect(lb.addr).await?;
    echoes(&mut stream, "hello through the balancer").await?;
    let mut got = names(lb.addr, 4).await?;
    got.sort();
    assert_eq!(got, ["a", "a", "b", "b"]);
    let status = lb.balancer.status();
    assert_eq!(status.healthy_backends, 2);
    assert_eq!(
        status.backends.iter().map(|b| b.total_connections).sum::<u64>(),
        5
    );
    Ok(())
}

#[tokio::test]
async fn a_dead_backend_is_skipped_after_fall_failed_checks_and_readmitted_after_rise_passed_checks()
-> Result<()> {
    let (a, b) = (Echo::start("a").await?, Echo::start("b").await?);
    let lb = Running::start(config(&[&a, &b])).await?;
    let b_addr = b.addr;
    drop(b);
    let down = lb.wait_health(b_addr, false).await?;
    assert!(down.checks_failed_in_row >= 3, "{down:?}");
    let error = down.last_check_error.unwrap_or_default();
    assert!(error.contains("connect"), "{error}");
    assert_eq!(names(lb.addr, 4).await?, ["a", "a", "a", "a"]);

    let b = Echo::start_at("b", b_addr).await?;
    let up = lb.wait_health(b.addr, true).await?;
    assert!(up.checks_passed_in_row >= 2, "{up:?}");
    assert_eq!(up.last_check_error, None);
    let mut got = names(lb.addr, 4).await?;
    got.sort();
    assert_eq!(got, ["a", "a", "b", "b"]);
    Ok(())
}

#[tokio::test]
async fn a_refusing_backend_is_passed_over_before_the_checks_take_it_down() -> Result<()> {
    let a = Echo::start("a").await?;
    let gone = Echo::start("gone").await?;
    let gone_addr = gone.addr;
    drop(gone);
    let lb = Running::start(Config {
        // Checks that cannot notice within the test: only the connect fallback keeps clients away.
        interval: Duration::from_secs(3600),
        ..config(&[&a])
    })
    .await?;
    lb.balancer.set_backends(vec![gone_addr, a.addr]);
    assert_eq!(names(lb.addr, 4).await?, ["a", "a", "a", "a"]);
    let gone = lb.backend(gone_addr)?;
    assert!(gone.healthy, "{gone:?}");
    assert!(gone.failed_connections >= 1, "{gone:?}");
    Ok(())
}

#[tokio::test]
async fn when_no_backend_is_healthy_a_new_connection_is_closed_at_once() -> Result<()> {
    let a = Echo::start("a").await?;
    let lb = Running::start(Config {
        fall: 1,
        ..config(&[&a])
    })
    .await?;
    a.stop_accepting();
    lb.wait_health(a.addr, false).await?;
    let mut stream = TcpStream::connect(lb.addr).await?;
    closed(&mut stream).await?;
    assert_eq!(lb.balancer.status().healthy_backends, 0);
    Ok(())
}

#[tokio::test]
async fn connections_to_a_backend_that_goes_down_are_closed_after_the_drain_grace() -> Result<()> {
    let a = Echo::start("a").await?;
    let lb = Running::start(config(&[&a])).await?;
    let (mut stream, name) = connect(lb.addr).await?;
    assert_eq!(name, "a");
    a.stop_accepting();
    lb.wait_health(a.addr, false).await?;
    closed(&mut stream).await?;
    let status = testkit::eventually(DEADLINE, || async {
        let s = lb.backend(a.addr)?;
        if s.active_connections == 0 {
            Ok(s)
        } else {
            bail!("{s:?}")
        }
    })
    .await?;
    assert_eq!(status.total_connections, 1);
    Ok(())
}

#[tokio::test]
async fn without_a_drain_grace_connections_outlive_their_backend_going_down() -> Result<()> {
    let a = Echo::start("a").await?;
    let lb = Running::start(Config {
        drain_grace: None,
        ..config(&[&a])
    })
    .await?;
    let (mut stream, _) = connect(lb.addr).await?;
    a.stop_accepting();
    lb.wait_health(a.addr, false).await?;
    echoes(&mut stream, "still here").await?;
    assert_eq!(lb.backend(a.addr)?.active_connections, 1);
    Ok(())
}

#[tokio::test]
async fn set_backends_changes_where_new_connections_go_while_running() -> Result<()> {
    let (a, b, c) = (
        Echo::start("a").await?,
        Echo::start("b").await?,
        Echo::start("c").await?,
    );
    let lb = Running::start(config(&[&a])).await?;
    let (mut old, name) = connect(lb.addr).await?;
    assert_eq!(name, "a");

    lb.balancer.set_backends(vec![b.addr]);
    assert_eq!(names(lb.addr, 2).await?, ["b", "b"]);
    let listed: Vec<SocketAddr> = lb.balancer.status().backends.iter().map(|s| s.address).collect();
    assert_eq!(listed, [b.addr]);
    // The removed backend's connection drains like one to a backend that went down.
    closed(&mut old).await?;

    lb.balancer.set_backends(vec![b.addr, c.addr]);
    testkit::eventually(DEADLINE, || async {
        let c = lb.backend(c.addr)?;
        if c.checks > 0 { Ok(()) } else { bail!("{c:?}") }
    })
    .await?;
    let mut got = names(lb.addr, 4).await?;
    got.sort();
    assert_eq!(got, ["b", "b", "c", "c"]);
    assert_eq!(lb.backend(b.addr)?.total_connections, 4, "b kept its counters");
    Ok(())
}

#[tokio::test]
async fn least_connections_sends_a_new_connection_to_the_least_busy_backend() -> Result<()> {
    let (a, b) = (Echo::start("a").await?, Echo::start("b").await?);
    let lb = Running::start(Config {
        balance: Balance::LeastConnections,
        ..config(&[&a, &b])
    })
    .await?;
    let (_held, first) = connect(lb.addr).await?;
    let (mut other, second) = connect(lb.addr).await?;
    assert_ne!(first, second);
    let second_addr = if second == a.name { a.addr } else { b.addr };
    // Each time the other backend is idle again, it is the one with fewer connections and gets the next one.
    for _ in 0..3 {
        drop(other);
        testkit::eventually(DEADLINE, || async {
            let s = lb.backend(second_addr)?;
            if s.active_connections == 0 {
                Ok(())
            } else {
                bail!("{s:?}")
            }
        })
        .await?;
        let next;
        (other, next) = connect(lb.addr).await?;
        assert_eq!(next, second, "the busier backend is avoided");
    }
    Ok(())
}

#[tokio::test]
async fn the_status_endpoint_serves_every_backend_as_json_and_readiness() -> Result<()> {
    let (a, b) = (Echo::start("a").await?, Echo::start("b").await?);
    let lb = Running::start(Config {
        fall: 1,
        ..config(&[&a, &b])
    })
    .await?;
    let status_listener = TcpListener::bind("127.0.0.1:0").await?;
    let status_addr = status_listener.local_addr()?;
    tokio::spawn({
        let (balancer, shutdown) = (lb.balancer.clone(), lb.shutdown.clone());
        async move { balancer.serve_status(status_listener, shutdown).await }
    });
    let _held = connect(lb.addr).await?;
    b.stop_accepting();
    lb.wait_health(b.addr, false).await?;

    let (code, body) = http_get(status_addr, "/status").await?;
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body)?;
    let backends = json["backends"].as_array().context("backends")?;
    assert_eq!(backends.len(), 2);
    let a_json = &backends[0];
    assert_eq!(a_json["address"], a.addr.to_string());
    assert_eq!(a_json["healthy"], true);
    assert_eq!(a_json["active_connections"], 1);
    assert_eq!(a_json["total_connections"], 1);
    assert!(a_json["last_check_error"].is_null());
    assert_eq!(backends[1]["healthy"], false);
    assert!(
        backends[1]["last_check_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    let typed: Status = serde_json::from_str(&body)?;
    assert_eq!(typed.healthy_backends, 1);

    assert_eq!(http_get(status_addr, "/healthz").await?, (200, "ok".to_string()));
    assert_eq!(http_get(status_addr, "/readyz").await?.0, 200);
    assert_eq!(http_get(status_addr, "/nothing").await?.0, 404);
    a.stop_accepting();
    lb.wait_health(a.addr, false).await?;
    assert_eq!(http_get(status_addr, "/readyz").await?.0, 503);
    assert_eq!(http_get(status_addr, "/healthz").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn https_checks_pass_on_a_self_signed_readyz_and_fail_on_plain_tcp_or_a_non_200_answer() -> Result<()> {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let tls = client::health::serve(SocketAddr::from(([127, 0, 0, 1], 0)), shutdown.clone()).await?;
    let plain = Echo::start("plain").await?;
    let https = |path: &str, backends: Vec<SocketAddr>| Config {
        backends,
        check: Check::Https { path: path.into() },
        fall: 1,
        rise: 1,
        ..config(&[])
    };
    let lb = Running::start(https("/readyz", vec![tls, plain.addr])).await?;
    let ready = testkit::eventually(DEADLINE, || async {
        let s = lb.backend(tls)?;
        if s.checks >= 2 && s.healthy {
            Ok(s)
        } else {
            bail!("{s:?}")
        }
    })
    .await?;
    assert_eq!(ready.last_check_error, None);
    let refused = lb.wait_health(plain.addr, false).await?;
    let error = refused.last_check_error.unwrap_or_default();
    assert!(error.contains("TLS"), "{error}");

    let missing = Running::start(https("/missing", vec![tls])).await?;
    let not_found = missing.wait_health(tls, false).await?;
    let error = not_found.last_check_error.unwrap_or_default();
    assert!(error.contains("404"), "{error}");
    Ok(())
}

#[tokio::test]
async fn cancelling_the_shutdown_stops_accepting_and_closes_forwarded_connections() -> Result<()> {
    let a = Echo::start("a").await?;
    let mut lb = Running::start(config(&[&a])).await?;
    let (mut stream, _) = connect(lb.addr).await?;
    lb.shutdown.cancel();
    let task = lb.task.take().context("task")?;
    tokio::time::timeout(DEADLINE, task).await???;
    closed(&mut stream).await?;
    assert!(TcpStream::connect(lb.addr).await.is_err(), "still accepting");
    Ok(())
}

#[tokio::test]
async fn a_balancer_runs_again_with_its_checks_after_a_shutdown() -> Result<()> {
    let a = Echo::start("a").await?;
    let mut lb = Running::start(config(&[&a])).await?;
    testkit::eventually(DEADLINE, || async {
        let s = lb.backend(a.addr)?;
        if s.checks > 0 { Ok(()) } else { bail!("{s:?}") }
    })
    .await?;
    lb.shutdown.cancel();
    tokio::time::timeout(DEADLINE, lb.task.take().context("task")?).await???;
    let checked = lb.backend(a.addr)?.checks;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn({
        let balancer = lb.balancer.clone();
        async move { balancer.run(listener, shutdown).await }
    });
    assert_eq!(connect(addr).await?.1, "a");
    testkit::eventually(DEADLINE, || async {
        let s = lb.backend(a.addr)?;
        if s.checks > checked {
            Ok(())
        } else {
            bail!("{s:?}")
        }
    })
    .await?;
    Ok(())
}
