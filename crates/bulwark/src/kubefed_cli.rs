//! `bulwark kubefed-controller-manager`: the federation control plane of a host cluster (see the `federation`
//! crate). One command installs what is missing (CRDs, namespace, type configs) and runs the controllers,
//! leader-elected on a Lease in the KubeFed namespace so that several copies can run.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "kubefed-controller-manager",
    about = "Runs the KubeFed controllers (cluster health, replica scheduling, propagation) against a host cluster"
)]
struct Cli {
    /// Kubeconfig of the host cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// Namespace of the federation control plane.
    #[arg(long, default_value = "kube-federation-system")]
    kubefed_namespace: String,
    /// Run only while holding the `kubefed-controller-manager` Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Seconds between member health probes.
    #[arg(long, default_value_t = 10)]
    cluster_health_check_period: u64,
    /// Consecutive failed probes that make a member offline.
    #[arg(long, default_value_t = 3)]
    cluster_health_check_failure_threshold: u32,
    /// Consecutive good probes that bring it back.
    #[arg(long, default_value_t = 1)]
    cluster_health_check_success_threshold: u32,
    /// Seconds a probe may take.
    #[arg(long, default_value_t = 3)]
    cluster_health_check_timeout: u64,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubefed-controller-manager: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn kubeconfig_path(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").context("no --kubeconfig, no $KUBECONFIG and no $HOME")?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let path = kubeconfig_path(cli.kubeconfig.clone())?;
    let mut opts = federation::controller::Options::new(&cli.kubefed_namespace);
    opts.health_period = Duration::from_secs(cli.cluster_health_check_period.max(1));
    opts.probe_timeout = Duration::from_secs(cli.cluster_health_check_timeout.max(1));
    opts.failure_threshold = cli.cluster_health_check_failure_threshold.max(1);
    opts.success_threshold = cli.cluster_health_check_success_threshold.max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = crate::shutdown_on_signal();
        let file = kube::config::Kubeconfig::read_from(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let options = kube::config::KubeConfigOptions {
            context: cli.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .with_context(|| format!("{}: context {:?}", path.display(), cli.context))?;
        let host = kube::Client::try_from(config)?;
        if !cli.leader_elect {
            federation::controller::run(host, opts, shutdown).await?;
            return Ok(());
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let random = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            u128::from(h.finish())
        };
        let lock = client::leader::LeaseLock {
            namespace: cli.kubefed_namespace.clone(),
            name: "kubefed-controller-manager".into(),
            identity: client::leader::identity(&hostname, random),
        };
        // The Lease lives in the KubeFed namespace, which must exist before anyone can contend for it.
        federation::controller::install(&host, &cli.kubefed_namespace).await?;
        let worker = host.clone();
        client::leader::run(
            host,
            lock,
            client::leader::Config::default(),
            shutdown,
            move |leading| async move {
                if let Err(e) = federation::controller::run(worker, opts, leading).await {
                    tracing::error!(error = %e, "controllers stopped");
                }
            },
        )
        .await
        .context("leaderelection lost")?;
        Ok(())
    })
}
