//! The `bulwark` multi-call binary. It only parses arguments and wires the library crates together.
//!
//! It dispatches on the name it was invoked as (`kubeadm`, `kubelet`, `kube-apiserver`, ... as symlinks made by
//! `bulwark install`) and otherwise on its first argument (`bulwark kubeadm init ...`, `bulwark init ...`).

mod apiserver_cli;
mod controller_manager_cli;
mod kubeadm_cli;
mod kubefed_cli;
mod kubefedctl_cli;
mod kubelet_cli;
mod lb_cli;
mod scheduler_cli;
mod supervise;
mod up_cli;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// The API server's hot path allocates many small JSON maps; glibc's allocator spent a quarter of its CPU there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Names bulwark answers to, in the order `install` lists them.
pub const PERSONALITIES: &[&str] = &[
    "kubeadm",
    "kubelet",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubefedctl",
    "kubefed-controller-manager",
];

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Leader election is logged by default, as upstream's components do at their default verbosity:
            // operators (and tests) find the leader from the logs.
            tracing_subscriber::EnvFilter::try_from_env("BULWARK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,client::leader=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let invoked = args
        .first()
        .and_then(|a| Path::new(a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let personality = if PERSONALITIES.contains(&invoked.as_str()) {
        invoked
    } else {
        match args.get(1).map(|a| a.to_string_lossy().into_owned()) {
            Some(first) if PERSONALITIES.contains(&first.as_str()) => {
                args.remove(0);
                first
            }
            _ => return bulwark_command(args),
        }
    };
    match personality.as_str() {
        "kubeadm" => kubeadm_cli::main(args),
        "kube-apiserver" => apiserver_cli::main(args),
        "kubelet" => kubelet_cli::main(args),
        "kube-controller-manager" => controller_manager_cli::main(args),
        "kube-scheduler" => scheduler_cli::main(args),
        "kubefed-controller-manager" => kubefed_cli::main(args),
        "kubefedctl" => kubefedctl_cli::main(args),
        other => not_built(other),
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C where the handlers cannot be installed): how every long-running personality
/// learns to stop.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A shutdown token cancelled by SIGTERM or SIGINT. Call inside the runtime.
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let signals = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signals.cancel();
    });
    token
}

fn not_built(personality: &str) -> ExitCode {
    eprintln!(
        "{personality}: this personality is not built yet in bulwark {}; nothing was started",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(1)
}

#[derive(clap::Parser)]
#[command(
    name = "bulwark",
    version,
    about = "bulwark: a highly available, Kubernetes-compatible cluster in one binary"
)]
struct Bulwark {
    #[command(subcommand)]
    command: BulwarkCommand,
}

#[derive(clap::Subcommand)]
enum BulwarkCommand {
    /// Put the personalities (kubeadm, kubelet, kube-apiserver, ...) on PATH as symlinks to this binary.
    Install {
        /// Directory to write the symlinks into.
        #[arg(long, default_value = "/usr/local/bin")]
        dir: PathBuf,
        /// Replace existing files that are not symlinks.
        #[arg(long)]
        force: bool,
    },
    /// TCP load balancer for the API servers.
    Lb(lb_cli::LbArgs),
    /// Bring up a local HA lab on this machine, without root: 3 control-plane nodes, N workers and the load
    /// balancer on loopback addresses.
    Up(up_cli::UpArgs),
    /// Tear down the local HA lab: stop every process it started and remove its directory.
    Down(up_cli::DownArgs),
    /// The per-container shim the kubelet starts (internal).
    #[command(hide = true)]
    ContainerShim { dir: PathBuf },
    /// Keeps a daemon running where there is no systemd (internal; kubeadm starts the kubelet with it).
    #[command(hide = true)]
    Supervise {
        #[arg(long)]
        pid_file: PathBuf,
        #[arg(last = true, required = true)]
        argv: Vec<OsString>,
    },
}

/// `bulwark <command>`: bulwark's own commands, or kubeadm's (`bulwark init ...` is `kubeadm init ...`).
fn bulwark_command(args: Vec<OsString>) -> ExitCode {
    use clap::Parser;
    let first = args
        .get(1)
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    if kubeadm_cli::is_kubeadm_command(&first) {
        return kubeadm_cli::main(args);
    }
    let cli = match Bulwark::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        BulwarkCommand::Install { dir, force } => match install(&dir, force) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bulwark install: {e:#}");
                ExitCode::from(1)
            }
        },
        BulwarkCommand::Lb(args) => lb_cli::main(args),
        BulwarkCommand::Up(args) => up_cli::up(args),
        BulwarkCommand::Down(args) => up_cli::down(args),
        BulwarkCommand::ContainerShim { dir } => kubelet_cli::shim(dir),
        BulwarkCommand::Supervise { pid_file, argv } => supervise::main(&pid_file, &argv),
    }
}

fn install(dir: &Path, force: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let exe = exe.canonicalize().with_context(|| format!("{}", exe.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    for name in PERSONALITIES {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() || force => {
                std::fs::remove_file(&link).with_context(|| format!("{}", link.display()))?
            }
            Ok(_) => anyhow::bail!(
                "{} exists and is not a symlink; pass --force to replace it",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&exe, &link).with_context(|| format!("{}", link.display()))?;
        println!("{} -> {}", link.display(), exe.display());
    }
    Ok(())
}
