//! `kubelet`'s command line, with upstream's flag names.

use clap::Parser;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "kubelet", about = "kubelet: the bulwark node agent", version = kubeadm::config::KUBERNETES_VERSION)]
struct Kubelet {
    /// Path to the directory containing static pod files to run
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Directory path for managing kubelet files
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// The node's root directory: every path above, and hostPath volumes, live below it (bulwark; several nodes can
    /// share one machine)
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
    /// If non-empty, will use this string as identification instead of the actual hostname
    #[arg(long)]
    hostname_override: Option<String>,
    /// Path to a kubeconfig file specifying how to connect to the API server
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Path to a kubeconfig file used to get client certificates for the kubelet
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// The kubelet will load its initial configuration from this file
    #[arg(long)]
    config: Option<PathBuf>,
    /// The IP address for the kubelet to serve on
    #[arg(long)]
    address: Option<String>,
    /// The port for the kubelet to serve on
    #[arg(long)]
    port: Option<u16>,
    /// IP address of the node
    #[arg(long)]
    node_ip: Option<String>,
    /// Register the node with the given list of taints
    #[arg(long)]
    register_with_taints: Option<String>,
    /// Labels to add when registering the node in the cluster
    #[arg(long)]
    node_labels: Option<String>,
    /// Accepted for compatibility with kubeadm's and the guides' kubelet command lines; bulwark has no use for them.
    #[arg(long, hide = true)]
    allow_privileged: Option<String>,
    #[arg(long, hide = true)]
    container_runtime_endpoint: Option<String>,
    #[arg(long, hide = true)]
    pod_infra_container_image: Option<String>,
    #[arg(long, hide = true)]
    cgroup_driver: Option<String>,
    #[arg(long, hide = true)]
    fail_swap_on: Option<String>,
    #[arg(short, long = "v", hide = true)]
    verbosity: Option<String>,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Kubelet::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubelet: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Kubelet) -> anyhow::Result<()> {
    use anyhow::Context;
    if cli.kubeconfig.is_some() || cli.bootstrap_kubeconfig.is_some() {
        tracing::warn!("talking to an API server is not built yet in this kubelet; running static pods only");
    }
    let layout = kubeadm::Layout::new(&cli.rootfs);
    let node_name = cli
        .hostname_override
        .clone()
        .unwrap_or_else(|| kubeadm::config::HostFacts::detect().hostname)
        .to_lowercase();
    let root_dir = layout.host(&cli.root_dir);
    let config = kubelet::Config {
        node_name,
        pod_manifest_path: cli.pod_manifest_path.as_ref().map(|p| layout.host(p)),
        runtime_dir: root_dir.join("bulwark/containers"),
        root_dir,
        log_dir: layout.host("/var/log/pods"),
        rootfs: cli.rootfs.clone(),
        shim_program: std::env::current_exe()
            .context("cannot find this executable for the container shim")?,
        path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        sync_period: Duration::from_secs(1),
    };
    let runtime = Arc::new(kubelet::runtime::ProcessRuntime::new(
        &config.runtime_dir,
        &config.shim_program,
    ));
    let kubelet = kubelet::Kubelet::new(config, runtime, Arc::new(kubelet::SystemClock))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            if let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                signals.cancel();
            }
        });
        kubelet::run(kubelet, shutdown).await
    })?;
    Ok(())
}

/// `bulwark container-shim <state-dir>`: the per-container shim the kubelet starts.
pub fn shim(dir: PathBuf) -> ExitCode {
    match kubelet::shim::run(&dir) {
        Ok(status) => ExitCode::from(u8::try_from(status.exit_code.clamp(0, 255)).unwrap_or(1)),
        Err(e) => {
            eprintln!("container-shim: {e}");
            ExitCode::from(1)
        }
    }
}
