//! TCP load balancer with active health checks, for the API endpoint: `bulwark lb` in front of the API servers,
//! and inside the kubelet as a client-side balancer over them (`kubelet::apilb`).
//!
//! It forwards TCP as is (TLS passes through untouched, so clients authenticate to the API servers directly), like
//! HAProxy in `mode tcp`:
//! - New connections go to healthy backends only, round robin or least-connections ([`Balance`]). If the chosen
//!   backend refuses or does not answer within [`Config::connect_timeout`], the next healthy one is tried. With no
//!   healthy backend (or none accepting), the client connection is reset at once, so clients fail fast.
//! - Each backend is checked every [`Config::interval`] ([`Check::Tcp`]: connect; [`Check::Https`]: `GET /readyz`
//!   over TLS without verification, 200 = healthy). As in HAProxy, it goes down after [`Config::fall`] failed
//!   checks in a row and up after [`Config::rise`] passed ones; backends start up (HAProxy's default).
//! - Drain: when a backend goes down or is removed, its open connections are **closed** after
//!   [`Config::drain_grace`] (default 2 s), so clients such as kubectl, client-go and kube-rs see the
//!   connection end, reconnect through the balancer and land on a healthy backend, instead of waiting on a dead
//!   peer until their own timeouts; `None` keeps them open.
//! - Shutdown: cancelling the token stops accepting and closes every forwarded connection.
//!
//! Layout: [`config`] (settings, duration parsing), `health` (probes and the rise/fall state machine),
//! `balancer` (picking, forwarding, check loops, draining), [`status`] (JSON state and its HTTP endpoint).
//!
//! Entry points: [`Balancer::new`], [`Balancer::run`] (accept and forward until shutdown, checks included),
//! [`Balancer::set_backends`] (change the backend set live), [`Balancer::status`] and [`Balancer::serve_status`]
//! (`GET /status` JSON, `/healthz`, `/readyz`).

mod balancer;
pub mod config;
mod health;
pub mod status;

pub use balancer::Balancer;
pub use config::{Balance, Check, Config, parse_duration};
pub use status::{BackendStatus, Status};

/// What can go wrong setting up or running a balancer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("TLS configuration for health checks: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
