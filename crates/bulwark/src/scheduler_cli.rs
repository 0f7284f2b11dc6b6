//! `kube-scheduler`: flags as upstream, wiring only.
//!
//! Precedence as upstream: with `--config`, the file gives the client connection and leader election, and only the
//! leader election flags given explicitly override it; without it, the flags (and their upstream defaults) apply.
//! Health checks are served over HTTPS with an in-memory self-signed certificate on `--bind-address:--secure-port`
//! (`--secure-port=0` disables them). `-v` is accepted; verbosity comes from `BULWARK_LOG`.

use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Parser};
use scheduler::config::{KubeSchedulerConfiguration, parse_duration};

#[derive(Parser)]
#[command(name = "kube-scheduler", about = "kube-scheduler: the bulwark pod scheduler", version = kubeadm::config::KUBERNETES_VERSION)]
struct Cli {
    /// The path to the configuration file (KubeSchedulerConfiguration)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Path to kubeconfig file with authorization and master location information (ignored when --config names one)
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig file pointing at the 'core' kubernetes server with enough rights to create tokenreviews
    #[arg(long)]
    authentication_kubeconfig: Option<PathBuf>,
    /// kubeconfig file pointing at the 'core' kubernetes server with enough rights to create subjectaccessreviews
    #[arg(long)]
    authorization_kubeconfig: Option<PathBuf>,
    /// The IP address on which to listen for the --secure-port port
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The port on which to serve HTTPS health checks; 0 disables it
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    /// Start a leader election client and gain leadership before executing the main loop
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    leader_elect: Option<bool>,
    /// The duration that non-leader candidates will wait after observing a leadership renewal before attempting to acquire leadership
    #[arg(long)]
    leader_elect_lease_duration: Option<String>,
    /// The interval between attempts by the acting master to renew a leadership slot before it stops leading
    #[arg(long)]
    leader_elect_renew_deadline: Option<String>,
    /// The duration the clients should wait between attempting acquisition and renewal of a leadership
    #[arg(long)]
    leader_elect_retry_period: Option<String>,
    /// The namespace of resource object that is used for locking during leader election
    #[arg(long)]
    leader_elect_resource_namespace: Option<String>,
    /// The name of resource object that is used for locking during leader election
    #[arg(long)]
    leader_elect_resource_name: Option<String>,
    /// The type of resource object that is used for locking during leader election (only "leases")
    #[arg(long, hide = true)]
    leader_elect_resource_lock: Option<String>,
    /// Deprecated insecure port; accepted for older kubeadm manifests (`--port=0`)
    #[arg(long, hide = true)]
    port: Option<u16>,
    /// Log level verbosity (accepted; bulwark reads BULWARK_LOG)
    #[arg(short = 'v', long = "v")]
    verbosity: Option<String>,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kube-scheduler: {e:#}");
            ExitCode::from(1)
        }
    }
}

struct Settings {
    kubeconfig: PathBuf,
    leader_elect: bool,
    leader: client::leader::Config,
    namespace: String,
    name: String,
    scheduler: scheduler::Config,
}

fn duration(flag: &Option<String>, file: &Option<String>, default: Duration) -> anyhow::Result<Duration> {
    match flag.as_ref().or(file.as_ref()) {
        Some(s) => Ok(parse_duration(s)?),
        None => Ok(default),
    }
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let file = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            KubeSchedulerConfiguration::from_yaml(&text).with_context(|| format!("{}", path.display()))?
        }
        None => KubeSchedulerConfiguration::default(),
    };
    let kubeconfig = Some(file.client_connection.kubeconfig.clone())
        .filter(|k| !k.is_empty())
        .map(PathBuf::from)
        .or_else(|| cli.kubeconfig.clone())
        .context("no kubeconfig: pass --kubeconfig or set clientConnection.kubeconfig in --config")?;
    let le = &file.leader_election;
    let defaults = client::leader::Config::default();
    let leader = client::leader::Config {
        lease_duration: duration(
            &cli.leader_elect_lease_duration,
            &le.lease_duration,
            defaults.lease_duration,
        )?,
        renew_deadline: duration(
            &cli.leader_elect_renew_deadline,
            &le.renew_deadline,
            defaults.renew_deadline,
        )?,
        retry_period: duration(
            &cli.leader_elect_retry_period,
            &le.retry_period,
            defaults.retry_period,
        )?,
        release_on_cancel: true,
    };
    if let Some(lock) = &cli.leader_elect_resource_lock
        && lock != "leases"
    {
        bail!("--leader-elect-resource-lock={lock}: only \"leases\" is supported");
    }
    let mut random = std::collections::hash_map::RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    let mut random2 = std::collections::hash_map::RandomState::new().build_hasher();
    random2.write_u64(random.finish());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let identity = client::leader::identity(
        &hostname,
        (u128::from(random.finish()) << 64) | u128::from(random2.finish()),
    );
    Ok(Settings {
        kubeconfig,
        leader_elect: cli.leader_elect.or(le.leader_elect).unwrap_or(true),
        leader,
        namespace: cli
            .leader_elect_resource_namespace
            .clone()
            .or(le.resource_namespace.clone())
            .unwrap_or_else(|| "kube-system".into()),
        name: cli
            .leader_elect_resource_name
            .clone()
            .or(le.resource_name.clone())
            .unwrap_or_else(|| "kube-scheduler".into()),
        scheduler: scheduler::Config {
            scheduler_names: file.scheduler_names(),
            percentage_of_nodes_to_score: file.percentage_of_nodes_to_score.unwrap_or(0),
            seed: random2.finish(),
            identity,
            ..scheduler::Config::default()
        },
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let s = settings(&cli)?;
    if s.leader_elect {
        s.leader.validate()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = crate::shutdown_on_signal();
        if cli.secure_port != 0 {
            client::health::serve(SocketAddr::new(cli.bind_address, cli.secure_port), shutdown.clone()).await?;
        }
        let client = client::from_kubeconfig(&s.kubeconfig).await?;
        let config = s.scheduler;
        if !s.leader_elect {
            scheduler::run(client, config, shutdown).await;
            return Ok(());
        }
        let lock = client::leader::LeaseLock {
            namespace: s.namespace,
            name: s.name,
            identity: config.identity.clone(),
        };
        tracing::info!(identity = %lock.identity, "attempting to acquire leader lease {}/{}", lock.namespace, lock.name);
        let worker = client.clone();
        client::leader::run(client, lock, s.leader, shutdown, move |leading| scheduler::run(worker, config, leading))
            .await
            .context("leaderelection lost")?;
        Ok(())
    })
}
