//! `kube-controller-manager`: upstream's flags turned into [`controllers::Settings`], a client from `--kubeconfig`,
//! leader election on the Lease kube-system/kube-controller-manager (`client::leader`), a health endpoint, and
//! SIGTERM/SIGINT as a clean shutdown that releases the Lease.
//!
//! The health endpoint (`/healthz`, `/livez`, `/readyz` on `--bind-address:--secure-port`, default 10257) is HTTPS
//! with a self-signed certificate made in memory, as upstream serves it; `--secure-port=0` turns it off.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "kube-controller-manager",
    about = "bulwark's controller manager",
    version
)]
struct Args {
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long)]
    authentication_kubeconfig: Option<PathBuf>,
    #[arg(long)]
    authorization_kubeconfig: Option<PathBuf>,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    #[arg(long)]
    requestheader_client_ca_file: Option<PathBuf>,
    #[arg(long, default_value = "kubernetes")]
    cluster_name: String,
    #[arg(long)]
    cluster_cidr: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    allocate_node_cidrs: bool,
    #[arg(long)]
    cluster_signing_cert_file: Option<PathBuf>,
    #[arg(long)]
    cluster_signing_key_file: Option<PathBuf>,
    #[arg(long, default_value = "8760h0m0s")]
    cluster_signing_duration: String,
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    #[arg(long)]
    service_account_private_key_file: Option<PathBuf>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    use_service_account_credentials: bool,
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "true")]
    leader_elect: bool,
    #[arg(long, default_value = "15s")]
    leader_elect_lease_duration: String,
    #[arg(long, default_value = "10s")]
    leader_elect_renew_deadline: String,
    #[arg(long, default_value = "2s")]
    leader_elect_retry_period: String,
    #[arg(long, default_value = "leases")]
    leader_elect_resource_lock: String,
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    #[arg(long, default_value = "40s")]
    node_monitor_grace_period: String,
    #[arg(long, default_value = "5s")]
    node_monitor_period: String,
    #[arg(long)]
    service_cluster_ip_range: Option<String>,
    #[arg(long)]
    node_cidr_mask_size: Option<u8>,
    #[arg(long)]
    feature_gates: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    profiling: Option<bool>,
    /// Log verbosity as upstream's `-v`; `BULWARK_LOG` decides what is printed.
    #[arg(short = 'v', long = "v")]
    verbosity: Option<u8>,
}

/// Go's `time.ParseDuration` for the forms flags use: `15s`, `1m30s`, `500ms`, `8760h0m0s`.
pub(crate) fn go_duration(s: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest == "0" {
        return Ok(total);
    }
    if rest.is_empty() {
        bail!("invalid duration {s:?}");
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(digits);
        let value: f64 = num.parse().with_context(|| format!("invalid duration {s:?}"))?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let secs = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
        total = Duration::try_from_secs_f64(value * secs)
            .ok()
            .and_then(|d| total.checked_add(d))
            .with_context(|| format!("invalid duration {s:?}: out of range"))?;
        rest = tail;
    }
    Ok(total)
}

fn settings_from(a: &Args) -> anyhow::Result<controllers::Settings> {
    Ok(controllers::Settings {
        cluster_signing_cert_file: a.cluster_signing_cert_file.clone(),
        cluster_signing_key_file: a.cluster_signing_key_file.clone(),
        cluster_signing_duration: go_duration(&a.cluster_signing_duration)?,
        root_ca_file: a.root_ca_file.clone(),
        service_account_private_key_file: a.service_account_private_key_file.clone(),
        node_monitor_grace_period: go_duration(&a.node_monitor_grace_period)?,
        node_monitor_period: go_duration(&a.node_monitor_period)?,
        cluster_name: a.cluster_name.clone(),
        cluster_cidr: a.cluster_cidr.clone(),
        ..controllers::Settings::default()
    })
}

fn election_from(a: &Args) -> anyhow::Result<client::leader::Config> {
    let config = client::leader::Config {
        lease_duration: go_duration(&a.leader_elect_lease_duration)?,
        renew_deadline: go_duration(&a.leader_elect_renew_deadline)?,
        retry_period: go_duration(&a.leader_elect_retry_period)?,
        release_on_cancel: true,
    };
    config.validate()?;
    Ok(config)
}

/// Upstream's identity: the host name plus a per-process random part.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let random = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .and_then(|u| u128::from_str_radix(&u.trim().replace('-', ""), 16).ok())
        .unwrap_or_else(|| u128::from(std::process::id()));
    client::leader::identity(&host, random)
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let parsed = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kube-controller-manager: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(parsed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-controller-manager: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(a: Args) -> anyhow::Result<()> {
    for (flag, set) in [
        (
            "--authentication-kubeconfig",
            a.authentication_kubeconfig.is_some(),
        ),
        ("--authorization-kubeconfig", a.authorization_kubeconfig.is_some()),
        ("--client-ca-file", a.client_ca_file.is_some()),
        (
            "--requestheader-client-ca-file",
            a.requestheader_client_ca_file.is_some(),
        ),
        ("--allocate-node-cidrs", a.allocate_node_cidrs),
    ] {
        if set {
            tracing::debug!(flag, "flag accepted; bulwark does not act on it");
        }
    }
    let settings = settings_from(&a)?;
    let election = election_from(&a)?;
    let config = client::config_from_kubeconfig(&a.kubeconfig).await?;
    let client = kube::Client::try_from(config.clone())
        .with_context(|| format!("{}: building a client", a.kubeconfig.display()))?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::wait_for_signal().await;
        tracing::info!("signal received, shutting down");
        signal.cancel();
    });
    if a.secure_port != 0 {
        let addr = SocketAddr::new(a.bind_address, a.secure_port);
        client::health::serve(addr, shutdown.clone()).await?;
    }
    let flags = a.controllers.clone();
    let use_accounts = a.use_service_account_credentials;
    let start = move |token: CancellationToken| {
        let ctx = controllers::Context {
            client: client.clone(),
            shutdown: token.clone(),
            settings: Arc::new(settings),
        };
        let accounts = use_accounts.then(|| client::serviceaccount::ServiceAccountClients {
            root: client,
            config,
            namespace: "kube-system".into(),
            shutdown: token,
        });
        async move { controllers::run(ctx, &flags, accounts.as_ref()).await }
    };
    if !a.leader_elect {
        start(shutdown).await?;
        return Ok(());
    }
    let lock = client::leader::LeaseLock {
        namespace: a.leader_elect_resource_namespace.clone(),
        name: a.leader_elect_resource_name.clone(),
        identity: identity(),
    };
    tracing::info!(identity = %lock.identity, "attempting to acquire the leader lease");
    let lease_client = client::from_kubeconfig(&a.kubeconfig).await?;
    let failed = CancellationToken::new();
    let failed_flag = failed.clone();
    client::leader::run(lease_client, lock, election, shutdown, move |leading| {
        let controllers = start(leading);
        async move {
            if let Err(e) = controllers.await {
                tracing::error!(error = %e, "controllers stopped");
                failed_flag.cancel();
            }
        }
    })
    .await?;
    if failed.is_cancelled() {
        bail!("a controller failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_upstream_flags_spell_them() {
        assert_eq!(go_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(go_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(
            go_duration("8760h0m0s").unwrap(),
            Duration::from_secs(365 * 24 * 3600)
        );
        assert!(go_duration("5x").is_err());
        assert!(
            go_duration("99999999999999999999999999h").is_err(),
            "out of range, not a panic"
        );
    }

    #[test]
    fn kubeadm_manifest_flags_parse() {
        let a = Args::try_parse_from([
            "kube-controller-manager",
            "--kubeconfig=/etc/kubernetes/controller-manager.conf",
            "--allocate-node-cidrs=true",
            "--cluster-cidr=10.244.0.0/16",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--leader-elect=true",
            "--use-service-account-credentials=true",
            "--bind-address=127.0.0.1",
            "-v=2",
        ])
        .unwrap();
        assert_eq!(a.controllers, vec!["*", "bootstrapsigner", "tokencleaner"]);
        assert!(a.leader_elect && a.allocate_node_cidrs);
        assert_eq!(a.verbosity, Some(2));
        assert_eq!(election_from(&a).unwrap(), client::leader::Config::default());
    }
}
