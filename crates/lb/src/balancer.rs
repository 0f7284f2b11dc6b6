//! The balancer: the backend set, picking a backend for a new connection, forwarding, the per-backend check
//! loops, draining, and the status snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, info, info_span, warn};

use crate::health::{Health, Prober, Transition};
use crate::status::{BackendStatus, Status};
use crate::{Balance, Config, Error};

/// Bytes buffered per direction of a forwarded connection. tokio's default (8 KiB) costs a read and a write per
/// 8 KiB; larger buffers move bulk transfers (big lists, logs) with fewer wake-ups, at memory per open connection.
const COPY_BUFFER: usize = 64 * 1024;

/// A TCP load balancer over a live set of backends. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    prober: Prober,
    backends: RwLock<Vec<Arc<Backend>>>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Wakes the check supervisor when backends were added.
    added: Notify,
}

struct Backend {
    addr: SocketAddr,
    health: Mutex<Health>,
    active: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
    /// The shutdown token of the run whose check loop checks this backend: a later run (after that one stopped)
    /// starts its own loop.
    checker: Mutex<Option<CancellationToken>>,
    /// Cancelled when `set_backends` drops this backend: stops its check loop.
    removed: CancellationToken,
    /// Cancelled when the backend goes down or is removed, replaced by a fresh one when it comes back up. Each
    /// connection holds the token current when it was opened, so only connections from before the fall drain.
    drain: Mutex<CancellationToken>,
}

impl Backend {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            health: Mutex::new(Health::new()),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            checker: Mutex::new(None),
            removed: CancellationToken::new(),
            drain: Mutex::new(CancellationToken::new()),
        }
    }

    fn healthy(&self) -> bool {
        self.health.lock().unwrap_or_else(PoisonError::into_inner).healthy
    }

    fn drain_token(&self) -> CancellationToken {
        self.drain.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn drain_now(&self) {
        self.drain.lock().unwrap_or_else(PoisonError::into_inner).cancel();
    }

    fn renew_drain(&self) {
        *self.drain.lock().unwrap_or_else(PoisonError::into_inner) = CancellationToken::new();
    }

    fn status(&self) -> BackendStatus {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner).clone();
        BackendStatus {
            address: self.addr,
            healthy: health.healthy,
            active_connections: self.active.load(Ordering::Relaxed),
            total_connections: self.total.load(Ordering::Relaxed),
            failed_connections: self.failed.load(Ordering::Relaxed),
            checks: health.checks,
            checks_passed_in_row: health.passed_in_row,
            checks_failed_in_row: health.failed_in_row,
            last_check_error: health.last_error,
        }
    }
}

/// Counts a forwarded connection as active for as long as it lives.
struct Active(Arc<Backend>);

impl Active {
    fn new(backend: Arc<Backend>) -> Self {
        backend.active.fetch_add(1, Ordering::Relaxed);
        backend.total.fetch_add(1, Ordering::Relaxed);
        Self(backend)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn dedup(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

impl Balancer {
    /// A balancer over `config.backends`. Nothing runs until [`Balancer::run`].
    pub fn new(config: Config) -> Result<Self, Error> {
        config.validate()?;
        let prober = Prober::new(config.check.clone(), config.timeout)?;
        let backends = dedup(config.backends.clone())
            .into_iter()
            .map(|addr| Arc::new(Backend::new(addr)))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                prober,
                backends: RwLock::new(backends),
                next: AtomicUsize::new(0),
                added: Notify::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Replaces the backend set. Backends that stay keep their health and counters; new ones start up (as at
    /// start) and are checked at once if the balancer runs; removed ones get no new connections from now on and
    /// their open connections drain as if they had gone down.
    pub fn set_backends(&self, backends: Vec<SocketAddr>) {
        let mut list = self
            .inner
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next: Vec<Arc<Backend>> = dedup(backends)
            .into_iter()
            .map(|addr| match list.iter().find(|b| b.addr == addr) {
                Some(kept) => kept.clone(),
                None => {
                    info!(backend = %addr, "backend added");
                    Arc::new(Backend::new(addr))
                }
            })
            .collect();
        for old in list.iter() {
            if !next.iter().any(|b| b.addr == old.addr) {
                info!(backend = %old.addr, "backend removed");
                old.removed.cancel();
                old.drain_now();
            }
        }
        *list = next;
        drop(list);
        self.inner.added.notify_one();
    }

    /// The backends as they are now: health, connection counts, the last check error.
    pub fn status(&self) -> Status {
        let backends: Vec<BackendStatus> = self.snapshot().iter().map(|b| b.status()).collect();
        Status {
            healthy_backends: backends.iter().filter(|b| b.healthy).count(),
            backends,
        }
    }

    fn snapshot(&self) -> Vec<Arc<Backend>> {
        self.inner
            .backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Healthy backends in the order a new connection tries them.
    fn candidates(&self) -> Vec<Arc<Backend>> {
        let mut healthy: Vec<Arc<Backend>> = self.snapshot().into_iter().filter(|b| b.healthy()).collect();
        if healthy.is_empty() {
            return healthy;
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % healthy.len();
        healthy.rotate_left(start);
        if self.inner.config.balance == Balance::LeastConnections {
            // A stable sort keeps the rotation among equally loaded backends, so ties still take turns.
            healthy.sort_by_key(|b| b.active.load(Ordering::Relaxed));
        }
        healthy
    }

    /// Accepts connections on `listener` and forwards them, and checks the backends, until `shutdown`; then
    /// stops accepting and closes the connections it forwards.
    pub async fn run(&self, listener: TcpListener, shutdown: CancellationToken) -> Result<(), Error> {
        let local = listener.local_addr().map_err(|source| Error::Io {
            context: "the listening address".into(),
            source,
        })?;
        info!(
            address = %local,
            backends = ?self.snapshot().iter().map(|b| b.addr).collect::<Vec<_>>(),
            "load balancing"
        );
        let supervisor = tokio::spawn(self.clone().supervise_checks(shutdown.clone()));
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let span = info_span!("connection", %peer, backend = tracing::field::Empty);
                    tokio::spawn(self.clone().forward(stream, shutdown.clone()).instrument(span));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning on the error.
                    warn!(%error, "accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
        let _ = supervisor.await;
        info!(address = %local, "load balancer stopped");
        Ok(())
    }

    /// Starts a check loop for every backend that has none, now and whenever backends are added.
    async fn supervise_checks(self, shutdown: CancellationToken) {
        loop {
            for backend in self.snapshot() {
                let mut checker = backend.checker.lock().unwrap_or_else(PoisonError::into_inner);
                if checker.as_ref().is_none_or(CancellationToken::is_cancelled) {
                    *checker = Some(shutdown.clone());
                    drop(checker);
                    let span = info_span!("health_check", backend = %backend.addr);
                    tokio::spawn(
                        self.clone()
                            .check_loop(backend, shutdown.clone())
                            .instrument(span),
                    );
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.added.notified() => {}
            }
        }
    }

    async fn check_loop(self, backend: Arc<Backend>, shutdown: CancellationToken) {
        let config = &self.inner.config;
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The first tick is immediate: a backend is checked as soon as it is known.
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                () = backend.removed.cancelled() => return,
                result = async {
                    ticker.tick().await;
                    self.inner.prober.probe(backend.addr).await
                } => result,
            };
            let failure = result.as_ref().err().cloned();
            let transition = backend
                .health
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(result, config.rise, config.fall);
            match transition {
                Some(Transition::Down) => {
                    warn!(
                        error = failure.as_deref().unwrap_or_default(),
                        fall = config.fall,
                        "backend is down: no new connections go there"
                    );
                    backend.drain_now();
                }
                Some(Transition::Up) => {
                    info!(rise = config.rise, "backend is up");
                    backend.renew_drain();
                }
                None => {
                    if let Some(error) = failure {
                        debug!(%error, "check failed");
                    }
                }
            }
        }
    }

    /// One client connection: the first healthy backend that accepts a connect gets it.
    async fn forward(self, client: TcpStream, shutdown: CancellationToken) {
        let candidates = self.candidates();
        if candidates.is_empty() {
            warn!("no healthy backend: closing the connection");
            reject(client);
            return;
        }
        for backend in candidates {
            let connect = tokio::time::timeout(
                self.inner.config.connect_timeout,
                TcpStream::connect(backend.addr),
            );
            let server = tokio::select! {
                () = shutdown.cancelled() => return,
                connected = connect => connected,
            };
            match server {
                Ok(Ok(server)) => {
                    Span::current().record("backend", tracing::field::display(backend.addr));
                    self.proxy(client, server, backend, shutdown).await;
                    return;
                }
                Ok(Err(error)) => {
                    backend.failed.fetch_add(1, Ordering::Relaxed);
                    debug!(backend = %backend.addr, %error, "connect failed; trying the next backend");
                }
                Err(_) => {
                    backend.failed.fetch_add(1, Ordering::Relaxed);
                    debug!(backend = %backend.addr, "connect timed out; trying the next backend");
                }
            }
        }
        warn!("no backend accepted the connection: closing it");
        reject(client);
    }

    async fn proxy(
        &self,
        mut client: TcpStream,
        mut server: TcpStream,
        backend: Arc<Backend>,
        shutdown: CancellationToken,
    ) {
        let _active = Active::new(backend.clone());
        let drained = backend.drain_token();
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        debug!("forwarding");
        let grace = self.inner.config.drain_grace;
        let copy =
            tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUFFER, COPY_BUFFER);
        tokio::pin!(copy);
        let finished = tokio::select! {
            result = &mut copy => Some(result),
            () = shutdown.cancelled() => None,
            () = drained.cancelled(), if grace.is_some() => {
                let grace = grace.unwrap_or_default();
                debug!(?grace, "backend went down: closing this connection after the grace");
                tokio::select! {
                    result = tokio::time::timeout(grace, &mut copy) => result.ok(),
                    () = shutdown.cancelled() => None,
                }
            }
        };
        match finished {
            Some(Ok((sent, received))) => debug!(sent, received, "connection closed"),
            Some(Err(error)) => debug!(%error, "connection failed"),
            None => debug!("connection closed by the balancer"),
        }
    }
}

/// Closes with a reset rather than a FIN, so the client fails at once instead of reading an empty answer.
fn reject(client: TcpStream) {
    let _ = client.set_zero_linger();
    drop(client);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn balancer(balance: Balance, ports: &[u16]) -> Balancer {
        let config = Config {
            backends: ports.iter().map(|p| addr(*p)).collect(),
            balance,
            ..Config::default()
        };
        Balancer::new(config).unwrap()
    }

    fn first(b: &Balancer) -> u16 {
        b.candidates()[0].addr.port()
    }

    #[test]
    fn round_robin_takes_healthy_backends_in_turn_and_skips_down_ones() {
        let b = balancer(Balance::RoundRobin, &[1, 2, 3]);
        let picks: Vec<u16> = (0..6).map(|_| first(&b)).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        let down = b.snapshot()[1].clone();
        for _ in 0..3 {
            down.health.lock().unwrap().record(Err("refused".into()), 2, 3);
        }
        let picks: Vec<u16> = (0..4).map(|_| first(&b)).collect();
        assert!(!picks.contains(&2), "{picks:?}");
        // The rest of the order is the fallback when the first refuses.
        assert_eq!(b.candidates().len(), 2);
    }

    #[test]
    fn least_connections_prefers_the_backend_with_fewest_open_connections() {
        let b = balancer(Balance::LeastConnections, &[1, 2]);
        let busy = b.snapshot()[0].clone();
        let _held = Active::new(busy.clone());
        assert_eq!(first(&b), 2);
        assert_eq!(first(&b), 2);
        let _held2 = Active::new(b.snapshot()[1].clone());
        let mut ties: Vec<u16> = (0..2).map(|_| first(&b)).collect();
        ties.sort();
        assert_eq!(ties, [1, 2], "ties take turns");
    }

    #[test]
    fn no_candidate_when_every_backend_is_down() {
        let b = balancer(Balance::RoundRobin, &[1]);
        b.snapshot()[0]
            .health
            .lock()
            .unwrap()
            .record(Err("refused".into()), 1, 1);
        assert!(b.candidates().is_empty());
        assert_eq!(b.status().healthy_backends, 0);
    }

    #[test]
    fn set_backends_keeps_the_state_of_backends_that_stay_and_drains_removed_ones() {
        let b = balancer(Balance::RoundRobin, &[1, 2]);
        let stays = b.snapshot()[0].clone();
        let goes = b.snapshot()[1].clone();
        let goes_drain = goes.drain_token();
        let _held = Active::new(stays.clone());
        b.set_backends(vec![addr(1), addr(3), addr(3)]);
        let status = b.status();
        let ports: Vec<u16> = status.backends.iter().map(|s| s.address.port()).collect();
        assert_eq!(ports, [1, 3]);
        assert_eq!(status.backends[0].active_connections, 1);
        assert!(goes.removed.is_cancelled());
        assert!(goes_drain.is_cancelled());
        assert!(!stays.drain_token().is_cancelled());
    }
}
