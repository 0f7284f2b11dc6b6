//! `kubeadm`'s command line, with upstream's command and flag names.

use clap::{Args, Parser, Subcommand};
use kubeadm::config::{HostFacts, InitConfig, InitFlags};
use kubeadm::{Layout, certs, etcd, expiration, kubeconfig};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

const COMMANDS: &[&str] = &[
    "init",
    "join",
    "reset",
    "token",
    "certs",
    "alpha",
    "config",
    "upgrade",
    "version",
    "kubeconfig",
];

pub fn is_kubeadm_command(name: &str) -> bool {
    COMMANDS.contains(&name)
}

#[derive(Parser)]
#[command(name = "kubeadm", about = "kubeadm: easily bootstrap a secure Kubernetes cluster (bulwark)", version = kubeadm::config::KUBERNETES_VERSION)]
struct Kubeadm {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run this command in order to set up the Kubernetes control plane
    Init {
        #[command(subcommand)]
        phase: Option<InitSubcommand>,
    },
    /// Run this on any machine you wish to join an existing cluster
    #[command(disable_help_flag = true)]
    Join {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Performs a best effort revert of changes made to this host by 'kubeadm init' or 'kubeadm join'
    #[command(disable_help_flag = true)]
    Reset {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Commands related to handling kubernetes certificates
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Manage bootstrap tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Kubeadm experimental sub-commands
    Alpha {
        #[command(subcommand)]
        command: AlphaCommand,
    },
    /// Print the version of kubeadm
    Version {
        /// Output format; available options are 'yaml', 'json' and 'short'
        #[arg(short, long)]
        output: Option<String>,
    },
}

#[derive(Subcommand)]
enum InitSubcommand {
    /// Use this command to invoke single phase of the init workflow
    Phase {
        #[command(subcommand)]
        phase: Phase,
    },
}

#[derive(Subcommand)]
enum Phase {
    /// Certificate generation
    Certs {
        /// Which certificate: all, ca, apiserver, apiserver-kubelet-client, front-proxy-ca, front-proxy-client,
        /// etcd-ca, etcd-server, etcd-peer, etcd-healthcheck-client, apiserver-etcd-client, sa
        #[arg(value_parser = cert_phase_names())]
        name: String,
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Generate all kubeconfig files necessary to establish the control plane and the admin kubeconfig file
    Kubeconfig {
        /// Which file: all, admin, super-admin, kubelet, controller-manager, scheduler
        #[arg(value_parser = ["all", "admin", "super-admin", "kubelet", "controller-manager", "scheduler"])]
        name: String,
        #[command(flatten)]
        flags: ConfigFlags,
        /// The path where to save the kubeconfig file
        #[arg(long, default_value = kubeadm::KUBERNETES_DIR)]
        kubeconfig_dir: String,
    },
    /// Generate static Pod manifest file for local etcd
    Etcd {
        /// Only `local` exists: the static Pod manifest for a local, single-node etcd member
        #[arg(value_parser = ["local"])]
        which: String,
        #[command(flatten)]
        flags: ConfigFlags,
    },
}

fn cert_phase_names() -> Vec<&'static str> {
    std::iter::once("all")
        .chain(certs::CERTS.iter().map(|c| c.name))
        .collect()
}

/// The configuration flags shared by init phases (upstream's names; each is optional so that mixing with
/// `--config` can be detected).
#[derive(Args, Default)]
struct ConfigFlags {
    /// Path to a kubeadm configuration file
    #[arg(long)]
    config: Option<PathBuf>,
    /// The path where to save and store the certificates [default: /etc/kubernetes/pki]
    #[arg(long)]
    cert_dir: Option<String>,
    /// The path to the 'real' host root filesystem
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
    /// The IP address the API Server will advertise it's listening on
    #[arg(long)]
    apiserver_advertise_address: Option<String>,
    /// Port for the API Server to bind to [default: 6443]
    #[arg(long)]
    apiserver_bind_port: Option<u16>,
    /// Optional extra Subject Alternative Names (SANs) to use for the API Server serving certificate
    #[arg(long, value_delimiter = ',')]
    apiserver_cert_extra_sans: Option<Vec<String>>,
    /// Specify a stable IP address or DNS name for the control plane
    #[arg(long)]
    control_plane_endpoint: Option<String>,
    /// Use alternative range of IP address for service VIPs [default: 10.96.0.0/12]
    #[arg(long)]
    service_cidr: Option<String>,
    /// Use alternative domain for services, e.g. "myorg.internal" [default: cluster.local]
    #[arg(long)]
    service_dns_domain: Option<String>,
    /// Specify the node name
    #[arg(long)]
    node_name: Option<String>,
    /// Choose a specific Kubernetes version for the control plane
    #[arg(long)]
    kubernetes_version: Option<String>,
}

impl ConfigFlags {
    fn load(&self) -> anyhow::Result<(InitConfig, Layout)> {
        let flags = InitFlags {
            apiserver_advertise_address: self.apiserver_advertise_address.clone(),
            apiserver_bind_port: self.apiserver_bind_port,
            apiserver_cert_extra_sans: self.apiserver_cert_extra_sans.clone(),
            cert_dir: self.cert_dir.clone(),
            control_plane_endpoint: self.control_plane_endpoint.clone(),
            service_cidr: self.service_cidr.clone(),
            service_dns_domain: self.service_dns_domain.clone(),
            node_name: self.node_name.clone(),
            kubernetes_version: self.kubernetes_version.clone(),
            ..Default::default()
        };
        let cfg = kubeadm::config::load_init(self.config.as_deref(), &flags, &HostFacts::detect())?;
        for warning in &cfg.warnings {
            eprintln!("W[config] {warning}");
        }
        Ok((cfg, Layout::new(&self.rootfs)))
    }
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Generate certificate keys
    CertificateKey,
    /// Check certificates expiration for a Kubernetes cluster
    CheckExpiration {
        #[command(flatten)]
        flags: ConfigFlags,
        /// The path where to save the kubeconfig file
        #[arg(long, default_value = kubeadm::KUBERNETES_DIR)]
        kubeconfig_dir: String,
    },
    /// Renew certificates for a Kubernetes cluster
    Renew {
        /// all, or one of: admin.conf, apiserver, apiserver-etcd-client, apiserver-kubelet-client,
        /// controller-manager.conf, etcd-healthcheck-client, etcd-peer, etcd-server, front-proxy-client,
        /// scheduler.conf, super-admin.conf
        name: String,
        #[command(flatten)]
        flags: ConfigFlags,
        /// The path where to save the kubeconfig file
        #[arg(long, default_value = kubeadm::KUBERNETES_DIR)]
        kubeconfig_dir: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Generate and print a bootstrap token, but do not create it on the server
    Generate,
    /// Create bootstrap tokens on the server
    #[command(disable_help_flag = true)]
    Create {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// List bootstrap tokens on the server
    #[command(disable_help_flag = true)]
    List {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Delete bootstrap tokens on the server
    #[command(disable_help_flag = true)]
    Delete {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AlphaCommand {
    /// Commands related to handling kubernetes certificates (older spelling of `kubeadm certs`)
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Kubeadm::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let (context, result) = run(cli.command);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match context {
                Some(phase) => eprintln!("error execution phase {phase}: {e:#}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(1)
        }
    }
}

fn not_built(what: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "kubeadm {what} is not built yet in bulwark {}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs a command; the first value names the phase for kubeadm's "error execution phase" prefix.
fn run(command: Command) -> (Option<String>, anyhow::Result<()>) {
    let mut stdout = std::io::stdout().lock();
    let now = SystemTime::now();
    match command {
        Command::Init { phase: None } => (None, not_built("init (the full workflow)")),
        Command::Init {
            phase: Some(InitSubcommand::Phase { phase }),
        } => match phase {
            Phase::Certs { name, flags } => {
                let context = if name == "all" {
                    "certs".to_string()
                } else {
                    format!("certs/{name}")
                };
                (
                    Some(context),
                    flags
                        .load()
                        .and_then(|(cfg, layout)| Ok(certs::run(&cfg, &layout, &name, now, &mut stdout)?)),
                )
            }
            Phase::Kubeconfig {
                name,
                flags,
                kubeconfig_dir,
            } => {
                let context = if name == "all" {
                    "kubeconfig".to_string()
                } else {
                    format!("kubeconfig/{name}")
                };
                (
                    Some(context),
                    flags.load().and_then(|(cfg, layout)| {
                        Ok(kubeconfig::run(
                            &cfg,
                            &layout,
                            &kubeconfig_dir,
                            &name,
                            now,
                            &mut stdout,
                        )?)
                    }),
                )
            }
            Phase::Etcd { which, flags } => (
                Some(format!("etcd/{which}")),
                flags
                    .load()
                    .and_then(|(cfg, layout)| Ok(etcd::run_local(&cfg, &layout, &mut stdout)?)),
            ),
        },
        Command::Join { .. } => (None, not_built("join")),
        Command::Reset { .. } => (None, not_built("reset")),
        Command::Certs { command }
        | Command::Alpha {
            command: AlphaCommand::Certs { command },
        } => (None, certs_command(command, now, &mut stdout)),
        Command::Token { command } => (None, token_command(command)),
        Command::Version { output } => (None, version(output.as_deref())),
    }
}

fn certs_command(command: CertsCommand, now: SystemTime, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    match command {
        CertsCommand::CertificateKey => {
            writeln!(
                out,
                "{}",
                pki::CertificateKey::generate(&mut rand_core()).to_hex()
            )?;
            Ok(())
        }
        CertsCommand::CheckExpiration {
            flags,
            kubeconfig_dir,
        } => {
            let (cfg, layout) = flags.load()?;
            Ok(expiration::check_expiration(
                &cfg,
                &layout,
                &kubeconfig_dir,
                now,
                out,
            )?)
        }
        CertsCommand::Renew {
            name,
            flags,
            kubeconfig_dir,
        } => {
            let (cfg, layout) = flags.load()?;
            Ok(expiration::renew(
                &cfg,
                &layout,
                &kubeconfig_dir,
                &name,
                now,
                out,
            )?)
        }
    }
}

fn rand_core() -> pki::OsRng {
    pki::OsRng
}

fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Generate => {
            println!("{}", pki::BootstrapToken::generate(&mut rand_core()));
            Ok(())
        }
        TokenCommand::Create { .. } => not_built("token create"),
        TokenCommand::List { .. } => not_built("token list"),
        TokenCommand::Delete { .. } => not_built("token delete"),
    }
}

fn version(output: Option<&str>) -> anyhow::Result<()> {
    let git_version = kubeadm::config::KUBERNETES_VERSION;
    let (major, minor) = {
        let mut parts = git_version.trim_start_matches('v').split('.');
        (
            parts.next().unwrap_or("1").to_string(),
            parts.next().unwrap_or("0").to_string(),
        )
    };
    match output {
        None => println!(
            "kubeadm version: &version.Info{{Major:\"{major}\", Minor:\"{minor}\", GitVersion:\"{git_version}\", GitCommit:\"bulwark-{}\", GitTreeState:\"clean\", Platform:\"linux/amd64\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        Some("short") => println!("{git_version}"),
        Some("json") => println!(
            "{{\n  \"clientVersion\": {{\n    \"major\": \"{major}\",\n    \"minor\": \"{minor}\",\n    \"gitVersion\": \"{git_version}\",\n    \"platform\": \"linux/amd64\"\n  }}\n}}"
        ),
        Some("yaml") => println!(
            "clientVersion:\n  gitVersion: {git_version}\n  major: \"{major}\"\n  minor: \"{minor}\"\n  platform: linux/amd64"
        ),
        Some(other) => {
            anyhow::bail!("invalid output format: {other}; available options are 'yaml', 'json' and 'short'")
        }
    }
    Ok(())
}
