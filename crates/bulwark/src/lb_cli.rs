//! `bulwark lb`: the TCP load balancer in front of the API servers (guide A's load balancer), wiring only; the
//! behaviour is the `lb` crate's. SIGTERM or SIGINT stops it cleanly.

use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

#[derive(Clone, Copy, ValueEnum)]
enum CheckKind {
    /// A TCP connect succeeds
    Tcp,
    /// GET --check-path over TLS (certificate not verified) answers 200
    Https,
}

#[derive(Clone, Copy, ValueEnum)]
enum BalanceKind {
    /// Each new connection to the next healthy backend in turn
    Roundrobin,
    /// The healthy backend with the fewest open connections
    Leastconn,
}

/// A drain grace: a duration, or `never` to keep connections of a backend that went down.
#[derive(Clone, Copy)]
struct Grace(Option<Duration>);

#[derive(clap::Args)]
#[command(
    after_help = "Example: bulwark lb --bind 10.0.0.5:6443 --backend 10.0.0.10:6443,10.0.0.11:6443 \
                        --check https --status-bind 127.0.0.1:8404"
)]
pub struct LbArgs {
    /// Address to accept client connections on
    #[arg(long, default_value = "0.0.0.0:6443")]
    bind: SocketAddr,
    /// A backend as host:port; repeat the flag or give a comma-separated list
    #[arg(long = "backend", value_name = "HOST:PORT", value_delimiter = ',', required = true, value_parser = backend)]
    backends: Vec<SocketAddr>,
    /// Health check
    #[arg(long, value_enum, default_value_t = CheckKind::Tcp)]
    check: CheckKind,
    /// Path the https check requests
    #[arg(long, default_value = "/readyz")]
    check_path: String,
    /// Time between two checks of a backend
    #[arg(long, default_value = "2s", value_parser = duration)]
    interval: Duration,
    /// Passed checks in a row that bring a backend up
    #[arg(long, default_value_t = 2)]
    rise: u32,
    /// Failed checks in a row that take a backend down
    #[arg(long, default_value_t = 3)]
    fall: u32,
    /// Limit for one check
    #[arg(long, default_value = "1s", value_parser = duration)]
    timeout: Duration,
    /// Limit for connecting to a backend for a client before trying the next one
    #[arg(long, default_value = "3s", value_parser = duration)]
    connect_timeout: Duration,
    /// How new connections are spread over the healthy backends
    #[arg(long, value_enum, default_value_t = BalanceKind::Roundrobin)]
    balance: BalanceKind,
    /// Open connections of a backend that goes down are closed after this grace; "never" keeps them
    #[arg(long, default_value = "2s", value_parser = grace)]
    drain_grace: Grace,
    /// Serve GET /status (JSON), /healthz and /readyz on this address
    #[arg(long, value_name = "HOST:PORT")]
    status_bind: Option<SocketAddr>,
}

fn duration(text: &str) -> Result<Duration, String> {
    lb::parse_duration(text).map_err(|e| e.to_string())
}

fn grace(text: &str) -> Result<Grace, String> {
    match text {
        "never" | "none" => Ok(Grace(None)),
        _ => duration(text).map(|d| Grace(Some(d))),
    }
}

/// `host:port`, resolved once at start (the first address).
fn backend(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("{text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text}: no address"))
}

pub fn main(args: LbArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulwark lb: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config(args: &LbArgs) -> lb::Config {
    lb::Config {
        backends: args.backends.clone(),
        check: match args.check {
            CheckKind::Tcp => lb::Check::Tcp,
            CheckKind::Https => lb::Check::Https {
                path: args.check_path.clone(),
            },
        },
        interval: args.interval,
        timeout: args.timeout,
        rise: args.rise,
        fall: args.fall,
        connect_timeout: args.connect_timeout,
        balance: match args.balance {
            BalanceKind::Roundrobin => lb::Balance::RoundRobin,
            BalanceKind::Leastconn => lb::Balance::LeastConnections,
        },
        drain_grace: args.drain_grace.0,
    }
}

fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = StdListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(listener)?)
}

fn run(args: LbArgs) -> anyhow::Result<()> {
    let balancer = lb::Balancer::new(config(&args))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = tokio_util::sync::CancellationToken::new();
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let signals = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::info!("shutting down");
                signals.cancel();
            });
        }
        let listener = bind(args.bind)?;
        let status = match args.status_bind {
            Some(addr) => {
                let listener = bind(addr)?;
                let (balancer, shutdown) = (balancer.clone(), shutdown.clone());
                Some(tokio::spawn(async move {
                    balancer.serve_status(listener, shutdown).await
                }))
            }
            None => None,
        };
        balancer.run(listener, shutdown.clone()).await?;
        shutdown.cancel();
        if let Some(status) = status {
            status.await??;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        lb: LbArgs,
    }

    #[test]
    fn backends_come_from_repeated_flags_and_comma_lists() {
        let cli = Cli::try_parse_from([
            "lb",
            "--backend",
            "127.0.0.1:1,127.0.0.1:2",
            "--backend=127.0.0.1:3",
            "--check",
            "https",
            "--drain-grace",
            "never",
            "--interval",
            "500ms",
        ])
        .unwrap();
        let c = config(&cli.lb);
        let ports: Vec<u16> = c.backends.iter().map(|b| b.port()).collect();
        assert_eq!(ports, [1, 2, 3]);
        assert_eq!(
            c.check,
            lb::Check::Https {
                path: "/readyz".into()
            }
        );
        assert_eq!(c.drain_grace, None);
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!((c.rise, c.fall), (2, 3));
    }

    #[test]
    fn a_backend_is_required_and_durations_need_units() {
        assert!(Cli::try_parse_from(["lb"]).is_err());
        assert!(Cli::try_parse_from(["lb", "--backend", "127.0.0.1:1", "--interval", "2"]).is_err());
        assert!(Cli::try_parse_from(["lb", "--backend", "no-port"]).is_err());
    }
}
