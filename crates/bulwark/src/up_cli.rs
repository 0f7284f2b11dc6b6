//! `bulwark up` / `bulwark down`: wiring only; the lab is the `lab` crate's.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Worker nodes besides the control-plane nodes [default: 3, or 0 with --single]
    #[arg(long)]
    workers: Option<usize>,
    /// The quick path: one control-plane node that keeps the cluster in its embedded store (no etcd, no load
    /// balancer) and runs workloads itself
    #[arg(long)]
    single: bool,
    /// Lab directory (each node's root, logs, admin.conf) [default: $XDG_DATA_HOME/bulwark/lab or
    /// ~/.local/share/bulwark/lab]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// First three octets of the nodes' loopback addresses: control planes on .1-.3, workers from .11, the
    /// load balancer on .100:6443
    #[arg(long, default_value = "127.0.100")]
    prefix: lab::Prefix,
    /// Keep the lab's directory and processes when `up` fails (to read the logs); `bulwark down` removes them
    #[arg(long)]
    retain: bool,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// Lab directory [default: $XDG_DATA_HOME/bulwark/lab or ~/.local/share/bulwark/lab]
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub fn up(args: UpArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(lab::default_dir);
    let bulwark = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("bulwark up: cannot find this executable: {e}");
            return ExitCode::from(1);
        }
    };
    let plan = lab::Plan {
        dir: dir.clone(),
        prefix: args.prefix,
        workers: args.workers.unwrap_or(if args.single { 0 } else { 3 }),
        single: args.single,
        bulwark,
        timeout: Duration::from_secs(240),
    };
    let mut stdout = std::io::stdout();
    match lab::up(&plan, &mut stdout) {
        Ok(outcome) => {
            let kubeconfig = outcome.kubeconfig.display().to_string();
            println!("To use the cluster:\n\n  export KUBECONFIG={kubeconfig}\n  kubectl get nodes\n");
            // Real kubectl's view when there is one; the lab works without it.
            match std::process::Command::new("kubectl")
                .args(["get", "nodes"])
                .env("KUBECONFIG", &outcome.kubeconfig)
                .status()
            {
                Ok(_) => {}
                Err(_) => {
                    for node in &outcome.nodes {
                        println!("{:<12}{:<8}{}", node.name, "Ready", node.address);
                    }
                }
            }
            println!("\nTear it down with: bulwark down --dir {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bulwark up: {e}");
            if matches!(e, lab::Error::AlreadyUp(_) | lab::Error::NotALab(_)) || args.retain {
                if args.retain {
                    eprintln!(
                        "The lab is kept in {}; remove it with `bulwark down`",
                        dir.display()
                    );
                }
                return ExitCode::from(1);
            }
            eprintln!("Removing the partial lab (pass --retain to keep it)");
            if let Err(e) = lab::down(&dir, &mut stdout) {
                eprintln!("bulwark down: {e}");
            }
            ExitCode::from(1)
        }
    }
}

pub fn down(args: DownArgs) -> ExitCode {
    let dir = args.dir.unwrap_or_else(lab::default_dir);
    match lab::down(&dir, &mut std::io::stdout()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulwark down: {e}");
            ExitCode::from(1)
        }
    }
}
