//! `kubeadm`'s command line, with upstream's command and flag names.

use clap::{Args, Parser, Subcommand};
use kubeadm::config::{HostFacts, InitConfig, InitFlags};
use kubeadm::{Layout, certs, etcd, expiration, kubeconfig};
use std::ffi::OsString;
use std::io::Write;
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

// Parsed once per process; boxing the init flags would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run this command in order to set up the Kubernetes control plane
    Init {
        #[command(flatten)]
        args: InitArgs,
        #[command(subcommand)]
        phase: Option<InitSubcommand>,
    },
    /// Run this on any machine you wish to join an existing cluster
    Join(Box<JoinArgs>),
    /// Performs a best effort revert of changes made to this host by 'kubeadm init' or 'kubeadm join'
    Reset {
        /// Reset the node without prompting for confirmation.
        #[arg(short, long)]
        force: bool,
        /// The path to the 'real' host root filesystem
        #[arg(long, default_value = "/")]
        rootfs: PathBuf,
        /// The path to the directory where the certificates are stored
        #[arg(long, default_value = kubeadm::config::DEFAULT_CERT_DIR)]
        cert_dir: String,
        /// A list of checks whose errors will be shown as warnings
        #[arg(long, value_delimiter = ',')]
        ignore_preflight_errors: Vec<String>,
        /// Don't apply any changes; just output what would be done.
        #[arg(long)]
        dry_run: bool,
        /// The kubeconfig file to use when talking to the cluster
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: String,
        /// Cleanup the "/etc/kubernetes/tmp" directory
        #[arg(long)]
        cleanup_tmp_dir: bool,
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
    /// Run pre-flight checks
    Preflight {
        #[command(flatten)]
        args: InitArgs,
    },
    /// Generate all static Pod manifest files necessary to establish the control plane
    ControlPlane {
        /// all, apiserver, controller-manager or scheduler
        #[arg(value_parser = ["all", "apiserver", "controller-manager", "scheduler"])]
        name: String,
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Write kubelet settings and (re)start the kubelet
    KubeletStart {
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Wait for the control plane to start
    WaitControlPlane {
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Upload the kubeadm and kubelet configuration to a ConfigMap
    UploadConfig {
        /// all, kubeadm or kubelet
        #[arg(value_parser = ["all", "kubeadm", "kubelet"], default_value = "all")]
        which: String,
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Upload certificates to kubeadm-certs
    UploadCerts {
        #[command(flatten)]
        args: InitArgs,
    },
    /// Mark a node as a control-plane
    MarkControlPlane {
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Generates bootstrap tokens used to join a node to a cluster
    BootstrapToken {
        #[command(flatten)]
        args: InitArgs,
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
    /// Path to a directory that contains files named "target[suffix][+patchtype].extension" (targets: etcd,
    /// kube-apiserver, kube-controller-manager, kube-scheduler, kubeletconfiguration)
    #[arg(long)]
    patches: Option<PathBuf>,
}

/// `kubeadm init`'s own flags, on top of the configuration flags its phases share.
#[derive(Args, Default)]
struct InitArgs {
    #[command(flatten)]
    flags: ConfigFlags,
    /// Specify range of IP addresses for the pod network
    #[arg(long)]
    pod_network_cidr: Option<String>,
    /// Upload control-plane certificates to the kubeadm-certs Secret
    #[arg(long)]
    upload_certs: bool,
    /// Key used to encrypt the control-plane certificates in the kubeadm-certs Secret (64 hex characters)
    #[arg(long)]
    certificate_key: Option<String>,
    /// List of phases to be skipped
    #[arg(long, value_delimiter = ',')]
    skip_phases: Option<Vec<String>>,
    /// The token to use for establishing bidirectional trust between nodes and control-plane nodes
    #[arg(long)]
    token: Option<String>,
    /// The duration before the token is automatically deleted (e.g. 1s, 2m, 3h); '0' means never expires
    #[arg(long)]
    token_ttl: Option<String>,
    /// A list of checks whose errors will be shown as warnings; 'all' ignores errors from all checks
    #[arg(long, value_delimiter = ',')]
    ignore_preflight_errors: Option<Vec<String>>,
    /// Path to the CRI socket to connect (accepted; bulwark runs pods as host processes)
    #[arg(long)]
    cri_socket: Option<String>,
    /// Choose a container registry to pull control plane images from
    #[arg(long)]
    image_repository: Option<String>,
    /// Don't apply any changes; just output what would be done
    #[arg(long)]
    dry_run: bool,
}

impl InitArgs {
    fn load(&self) -> anyhow::Result<(InitConfig, Layout)> {
        let token_ttl_secs = match &self.token_ttl {
            None => None,
            Some(ttl) => Some(kubeadm::config::parse_duration(ttl).ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid argument {ttl:?} for \"--token-ttl\" flag: time: invalid duration {ttl:?}"
                )
            })?),
        };
        self.flags.load_with(InitFlags {
            pod_network_cidr: self.pod_network_cidr.clone(),
            certificate_key: self.certificate_key.clone(),
            token: self.token.clone(),
            token_ttl_secs,
            cri_socket: self.cri_socket.clone(),
            image_repository: self.image_repository.clone(),
            skip_phases: self.skip_phases.clone(),
            ignore_preflight_errors: self.ignore_preflight_errors.clone(),
            ..InitFlags::default()
        })
    }

    fn options(&self, cfg: &InitConfig) -> anyhow::Result<kubeadm::init::Options> {
        let supervisor = std::env::current_exe()?;
        Ok(kubeadm::init::Options {
            upload_certs: self.upload_certs,
            certificate_key: self
                .certificate_key
                .clone()
                .or_else(|| cfg.node.certificate_key.clone()),
            skip_phases: cfg.node.skip_phases.clone(),
            supervisor,
            hostname: kubeadm::config::HostFacts::detect().hostname,
            path_env: std::env::var("PATH").unwrap_or_default(),
            timeout: std::time::Duration::from_secs(240),
            progress: std::io::IsTerminal::is_terminal(&std::io::stdout()),
        })
    }
}

impl ConfigFlags {
    fn load(&self) -> anyhow::Result<(InitConfig, Layout)> {
        self.load_with(InitFlags::default())
    }

    fn load_with(&self, base: InitFlags) -> anyhow::Result<(InitConfig, Layout)> {
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
            patches: self.patches.clone(),
            ..base
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
    Create {
        /// The token to create; generated when not given
        token: Option<String>,
        /// The duration before the token is automatically deleted (e.g. 1s, 2m, 3h); '0' means never expires
        #[arg(long, default_value = "24h0m0s")]
        ttl: String,
        /// A human friendly description of how this token is used
        #[arg(long)]
        description: Option<String>,
        /// Describes the ways in which this token can be used
        #[arg(long, value_delimiter = ',', default_value = "signing,authentication")]
        usages: Vec<String>,
        /// Extra groups that this token will authenticate as when used for authentication
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "system:bootstrappers:kubeadm:default-node-token"
        )]
        groups: Vec<String>,
        /// Instead of printing only the token, print the full 'kubeadm join' flag needed to join the cluster
        #[arg(long)]
        print_join_command: bool,
        /// Create a new certificate key and print a control-plane join command (with --print-join-command)
        #[arg(long)]
        certificate_key: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List bootstrap tokens on the server
    List {
        /// Output format: text (default), json or yaml
        #[arg(short, long)]
        output: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Delete bootstrap tokens on the server
    Delete {
        /// Tokens or token ids to delete
        #[arg(required = true)]
        tokens: Vec<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
}

/// How the online commands reach the cluster.
#[derive(Args)]
struct ClientFlags {
    /// The kubeconfig file to use when talking to the cluster
    #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
    kubeconfig: PathBuf,
    /// The path to the 'real' host root filesystem
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
}

impl ClientFlags {
    /// Must run inside the runtime that uses the client (it spawns the client's connection worker).
    async fn client(&self) -> anyhow::Result<kube::Client> {
        let path = Layout::new(&self.rootfs).host(&self.kubeconfig);
        Ok(client::from_kubeconfig(&path).await?)
    }
}

/// Runs the async part of a command; kubeadm's commands are short, so a current-thread runtime is enough.
fn block_on<T, E: Into<anyhow::Error>>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(f).map_err(Into::into)
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

/// Runs a command; the first value names the phase for kubeadm's "error execution phase" prefix.
fn run(command: Command) -> (Option<String>, anyhow::Result<()>) {
    let mut stdout = std::io::stdout().lock();
    let now = SystemTime::now();
    match command {
        Command::Init { args, phase: None } => init(&args),
        Command::Init {
            phase: Some(InitSubcommand::Phase { phase }),
            ..
        } => match phase {
            Phase::Preflight { args } => (
                Some("preflight".into()),
                args.load().and_then(|(cfg, layout)| {
                    let host = kubeadm::preflight::Host {
                        layout: &layout,
                        path_env: std::env::var("PATH").unwrap_or_default(),
                    };
                    Ok(kubeadm::preflight::run(&cfg, &host, &mut stdout)?)
                }),
            ),
            Phase::ControlPlane { name, flags } => (
                Some(if name == "all" {
                    "control-plane".into()
                } else {
                    format!("control-plane/{name}")
                }),
                flags.load().and_then(|(cfg, layout)| {
                    Ok(kubeadm::controlplane::run(&cfg, &layout, &name, &mut stdout)?)
                }),
            ),
            Phase::KubeletStart { flags } => (
                Some("kubelet-start".into()),
                flags.load().and_then(|(cfg, layout)| {
                    let hostname = kubeadm::config::HostFacts::detect().hostname;
                    kubeadm::kubelet::write_files(&cfg, &layout, &hostname, &mut stdout)?;
                    kubeadm::kubelet::start(&layout, &std::env::current_exe()?, &mut stdout)?;
                    Ok(())
                }),
            ),
            Phase::WaitControlPlane { flags } => (
                Some("wait-control-plane".into()),
                flags.load().and_then(|(cfg, layout)| {
                    let opts = InitArgs::default().options(&cfg)?;
                    block_on(kubeadm::init::wait_control_plane(
                        &cfg,
                        &layout,
                        &opts,
                        &mut stdout,
                    ))
                }),
            ),
            Phase::UploadConfig { which, flags } => (
                Some(if which == "all" {
                    "upload-config".into()
                } else {
                    format!("upload-config/{which}")
                }),
                flags.load().and_then(|(cfg, layout)| {
                    block_on(async {
                        let client = kubeadm::init::cluster_admin_client(&cfg, &layout, false).await?;
                        kubeadm::online::upload_config(&client, &cfg, &mut stdout).await
                    })
                }),
            ),
            Phase::UploadCerts { args } => (
                Some("upload-certs".into()),
                args.load().and_then(|(cfg, layout)| {
                    if !args.upload_certs {
                        writeln!(stdout, "[upload-certs] Skipping phase. Please see --upload-certs")?;
                        return Ok(());
                    }
                    let key = match &args.certificate_key {
                        Some(k) => pki::CertificateKey::parse(k)?,
                        None => pki::CertificateKey::generate(&mut rand_core()),
                    };
                    block_on(async {
                        let client = kubeadm::init::cluster_admin_client(&cfg, &layout, false).await?;
                        kubeadm::online::upload_certs(&client, &cfg, &layout, &key, &mut stdout).await
                    })
                }),
            ),
            Phase::MarkControlPlane { flags } => (
                Some("mark-control-plane".into()),
                flags.load().and_then(|(cfg, layout)| {
                    block_on(async {
                        let client = kubeadm::init::cluster_admin_client(&cfg, &layout, false).await?;
                        kubeadm::online::mark_control_plane(&client, &cfg, &mut stdout).await
                    })
                }),
            ),
            Phase::BootstrapToken { args } => (
                Some("bootstrap-token".into()),
                args.load().and_then(|(cfg, layout)| {
                    block_on(async {
                        let client = kubeadm::init::cluster_admin_client(&cfg, &layout, false).await?;
                        kubeadm::online::bootstrap_token(&client, &cfg, &layout, &mut stdout)
                            .await
                            .map(|_| ())
                    })
                }),
            ),
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
        Command::Join(args) => join(&args),
        Command::Reset {
            force,
            rootfs,
            cert_dir,
            dry_run,
            ..
        } => (
            Some("reset".into()),
            reset(force, &Layout::new(rootfs), &cert_dir, dry_run),
        ),
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
        TokenCommand::Create {
            token,
            ttl,
            description,
            usages,
            groups,
            print_join_command,
            certificate_key,
            client,
        } => {
            let ttl_secs = kubeadm::config::parse_duration(&ttl).ok_or_else(|| {
                anyhow::anyhow!("invalid argument {ttl:?} for \"--ttl\" flag: time: invalid duration {ttl:?}")
            })?;
            let created = block_on(async {
                let kube = client.client().await?;
                anyhow::Ok(
                    kubeadm::online::token_create(
                        &kube,
                        token.as_deref(),
                        std::time::Duration::from_secs(ttl_secs),
                        description.as_deref(),
                        &usages,
                        &groups,
                    )
                    .await?,
                )
            })?;
            if !print_join_command {
                println!("{created}");
                return Ok(());
            }
            let layout = Layout::new(&client.rootfs);
            let conf = pki::Kubeconfig::read(&layout.host(&client.kubeconfig))?;
            let pin = pki::ca_public_key_pin(&conf.ca_certificate()?)?;
            let endpoint = conf.server()?.trim_start_matches("https://").to_string();
            let mut line =
                format!("kubeadm join {endpoint} --token {created} --discovery-token-ca-cert-hash {pin}");
            if let Some(key) = certificate_key {
                line.push_str(&format!(" --control-plane --certificate-key {key}"));
            }
            println!("{line} ");
            Ok(())
        }
        TokenCommand::List { output, client } => {
            let rows = block_on(async {
                let kube = client.client().await?;
                anyhow::Ok(kubeadm::online::token_list(&kube).await?)
            })?;
            match output.as_deref() {
                None | Some("text") => {
                    println!(
                        "{:<24}{:<8}{:<22}{:<26}{:<35}EXTRA GROUPS",
                        "TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"
                    );
                    let now = k8s_openapi::jiff::Timestamp::now();
                    for row in rows {
                        let (ttl, expires) = match row.expires {
                            Some(at) => {
                                let left = at.duration_since(now).as_secs().max(0);
                                let ttl = if left >= 3600 {
                                    format!("{}h", left / 3600)
                                } else {
                                    format!("{}m", left / 60)
                                };
                                (ttl, at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                            }
                            None => ("<forever>".into(), "<never>".into()),
                        };
                        let description = if row.description.is_empty() {
                            "<none>".into()
                        } else {
                            row.description
                        };
                        println!(
                            "{:<24}{:<8}{:<22}{:<26}{:<35}{}",
                            row.token,
                            ttl,
                            expires,
                            row.usages.join(","),
                            description,
                            row.groups
                        );
                    }
                }
                Some("json") | Some("yaml") => {
                    for row in rows {
                        let doc = serde_json::json!({
                            "kind": "BootstrapToken", "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
                            "token": row.token, "description": row.description, "usages": row.usages,
                            "groups": row.groups.split(',').filter(|g| !g.is_empty()).collect::<Vec<_>>(),
                            "expires": row.expires.map(|e| e.to_string()),
                        });
                        if output.as_deref() == Some("json") {
                            println!("{}", serde_json::to_string_pretty(&doc)?);
                        } else {
                            print!("{}", serde_yaml::to_string(&doc)?);
                        }
                    }
                }
                Some(other) => anyhow::bail!("invalid output format {other:?}: use text, json or yaml"),
            }
            Ok(())
        }
        TokenCommand::Delete { tokens, client } => block_on(async {
            let kube = client.client().await?;
            for token in tokens {
                let id = kubeadm::online::token_delete(&kube, &token).await?;
                println!("bootstrap token {id:?} deleted");
            }
            anyhow::Ok(())
        }),
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

fn init(args: &InitArgs) -> (Option<String>, anyhow::Result<()>) {
    let (cfg, layout) = match args.load() {
        Ok(loaded) => loaded,
        Err(e) => return (None, Err(e)),
    };
    if args.dry_run {
        return (None, dry_run(&cfg));
    }
    let opts = match args.options(&cfg) {
        Ok(o) => o,
        Err(e) => return (None, Err(e)),
    };
    let mut stdout = std::io::stdout().lock();
    match block_on(async {
        Ok::<_, std::convert::Infallible>(kubeadm::init::run(&cfg, &layout, &opts, &mut stdout).await)
    }) {
        Ok(Ok(_)) => (None, Ok(())),
        Ok(Err((phase, e))) => (Some(phase), Err(e.into())),
        Err(e) => (None, Err(e)),
    }
}

#[derive(clap::Args, Debug)]
struct JoinArgs {
    /// The control-plane endpoint (host:port) to discover the cluster from
    endpoint: Option<String>,
    /// Use this token for both discovery-token and tls-bootstrap-token when those values are not provided
    #[arg(long)]
    token: Option<String>,
    /// For token-based discovery, the token used to validate cluster information fetched from the API server
    #[arg(long)]
    discovery_token: Option<String>,
    /// For token-based discovery, validate that the root CA public key matches this hash (format: "<type>:<value>")
    #[arg(long, value_delimiter = ',')]
    discovery_token_ca_cert_hash: Vec<String>,
    /// For token-based discovery, allow joining without --discovery-token-ca-cert-hash pinning
    #[arg(long)]
    discovery_token_unsafe_skip_ca_verification: bool,
    /// For file-based discovery, a file from which to load cluster information
    #[arg(long)]
    discovery_file: Option<String>,
    /// Specify the token used to temporarily authenticate with the Kubernetes Control Plane while joining the node
    #[arg(long)]
    tls_bootstrap_token: Option<String>,
    /// Create a new control plane instance on this node
    #[arg(long)]
    control_plane: bool,
    /// Use this key to decrypt the certificate secrets uploaded by init
    #[arg(long)]
    certificate_key: Option<String>,
    /// If the node should host a new control plane instance, the IP address the API Server will advertise
    #[arg(long)]
    apiserver_advertise_address: Option<String>,
    /// If the node should host a new control plane instance, the port for the API Server to bind to
    #[arg(long)]
    apiserver_bind_port: Option<u16>,
    /// Specify the node name
    #[arg(long)]
    node_name: Option<String>,
    /// Path to a kubeadm configuration file (JoinConfiguration)
    #[arg(long)]
    config: Option<PathBuf>,
    /// Path to the CRI socket to connect
    #[arg(long)]
    cri_socket: Option<String>,
    /// A list of checks whose errors will be shown as warnings
    #[arg(long, value_delimiter = ',')]
    ignore_preflight_errors: Vec<String>,
    /// List of phases to be skipped
    #[arg(long, value_delimiter = ',')]
    skip_phases: Vec<String>,
    /// Path to a directory that contains files named "target[suffix][+patchtype].extension" (targets: etcd,
    /// kube-apiserver, kube-controller-manager, kube-scheduler, kubeletconfiguration)
    #[arg(long)]
    patches: Option<PathBuf>,
    /// The path to the 'real' host root filesystem
    #[arg(long, default_value = "/")]
    rootfs: PathBuf,
}

fn join(args: &JoinArgs) -> (Option<String>, anyhow::Result<()>) {
    let flags = kubeadm::config::JoinFlags {
        endpoint: args.endpoint.clone(),
        token: args.token.clone(),
        discovery_token: args.discovery_token.clone(),
        tls_bootstrap_token: args.tls_bootstrap_token.clone(),
        ca_cert_hashes: args.discovery_token_ca_cert_hash.clone(),
        unsafe_skip_ca_verification: args.discovery_token_unsafe_skip_ca_verification,
        discovery_file: args.discovery_file.clone(),
        control_plane: args.control_plane,
        certificate_key: args.certificate_key.clone(),
        apiserver_advertise_address: args.apiserver_advertise_address.clone(),
        apiserver_bind_port: args.apiserver_bind_port,
        node_name: args.node_name.clone(),
        cri_socket: args.cri_socket.clone(),
        skip_phases: args.skip_phases.clone(),
        ignore_preflight_errors: args.ignore_preflight_errors.clone(),
        patches: args.patches.clone(),
    };
    let jc = match kubeadm::config::load_join(args.config.as_deref(), &flags) {
        Ok(jc) => jc,
        Err(e) => return (None, Err(e.into())),
    };
    let supervisor = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return (None, Err(e.into())),
    };
    let opts = kubeadm::join::Options {
        supervisor,
        host: kubeadm::config::HostFacts::detect(),
        path_env: std::env::var("PATH").unwrap_or_default(),
        timeout: std::time::Duration::from_secs(240),
        progress: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    let layout = Layout::new(&args.rootfs);
    let mut stdout = std::io::stdout().lock();
    match block_on(async {
        Ok::<_, std::convert::Infallible>(kubeadm::join::run(&jc, &layout, &opts, &mut stdout).await)
    }) {
        Ok(Ok(())) => (None, Ok(())),
        Ok(Err((phase, e))) => (Some(phase), Err(e.into())),
        Err(e) => (None, Err(e)),
    }
}

/// `init --dry-run`: everything init would write, generated in a temporary root and listed; nothing started.
fn dry_run(cfg: &InitConfig) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("kubeadm-init-dryrun").tempdir()?;
    let layout = Layout::new(dir.path());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "[dryrun] Would perform the following steps in a temporary directory: {}",
        dir.path().display()
    )?;
    let now = SystemTime::now();
    certs::run(cfg, &layout, "all", now, &mut out)?;
    kubeconfig::run(cfg, &layout, kubeadm::KUBERNETES_DIR, "all", now, &mut out)?;
    etcd::run_local(cfg, &layout, &mut out)?;
    kubeadm::controlplane::run(cfg, &layout, "all", &mut out)?;
    kubeadm::kubelet::write_files(
        cfg,
        &layout,
        &kubeadm::config::HostFacts::detect().hostname,
        &mut out,
    )?;
    for manifest in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let path = layout.host(format!("{}/{manifest}.yaml", etcd::MANIFESTS_DIR));
        if let Ok(text) = std::fs::read_to_string(&path) {
            writeln!(
                out,
                "[dryrun] Would write file \"{}/{manifest}.yaml\" with content:\n{text}",
                etcd::MANIFESTS_DIR
            )?;
        }
    }
    writeln!(
        out,
        "[dryrun] Would start the kubelet, wait for the control plane and upload the configuration; nothing was changed on this host"
    )?;
    Ok(())
}

/// `kubeadm reset`: stops the kubelet and every container it ran, then removes what init or join wrote.
fn reset(force: bool, layout: &Layout, cert_dir: &str, dry_run: bool) -> anyhow::Result<()> {
    use std::io::BufRead;
    if !force {
        print!(
            "[reset] WARNING: Changes made to this host by 'kubeadm init' or 'kubeadm join' will be reverted.\n[reset] Are you sure you want to proceed? [y/N]: "
        );
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("aborted reset operation");
        }
    }
    let etcd_dir =
        etcd_data_dir(layout).unwrap_or_else(|| kubeadm::config::DEFAULT_ETCD_DATA_DIR.to_string());
    if dry_run {
        println!(
            "[dryrun] Would stop the kubelet and its containers and delete /etc/kubernetes, /var/lib/kubelet and {etcd_dir}"
        );
        return Ok(());
    }
    println!("[preflight] Running pre-flight checks");
    // While the local etcd still runs: leave the etcd cluster, so the remaining members keep quorum.
    let mut stdout = std::io::stdout();
    if let Err(e) = block_on(kubeadm::join::remove_etcd_member(layout, cert_dir, &mut stdout)) {
        println!(
            "[reset] WARNING: could not remove this node's etcd member: {e:#}; remove it with `etcdctl member remove` on a healthy member"
        );
    }
    println!("[reset] Stopping the kubelet service");
    kubeadm::daemon::stop(
        &kubeadm::kubelet::pid_file(layout),
        std::time::Duration::from_secs(10),
    )?;
    let runtime_dir = layout.host("/var/lib/kubelet/bulwark/containers");
    let stopped = kubelet::runtime::stop_all(&runtime_dir, std::time::Duration::from_secs(10));
    println!("[reset] Stopped {stopped} containers");
    let data = layout.host(&etcd_dir);
    if data.exists() {
        remove_contents(&data)?;
        println!("[reset] Deleted contents of the etcd data directory: {etcd_dir}");
    }
    let dirs = [
        "/etc/kubernetes/manifests".to_string(),
        "/var/lib/kubelet".to_string(),
        cert_dir.to_string(),
        "/var/log/pods".to_string(),
        "/var/log/bulwark".to_string(),
        "/var/run/bulwark".to_string(),
    ];
    println!("[reset] Deleting contents of directories: [{}]", dirs.join(" "));
    for dir in &dirs {
        let host = layout.host(dir);
        if host.exists() {
            remove_contents(&host)?;
        }
    }
    let files: Vec<String> = [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "bootstrap-kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]
    .iter()
    .map(|f| format!("{}/{f}", kubeadm::KUBERNETES_DIR))
    .collect();
    println!("[reset] Deleting files: [{}]", files.join(" "));
    for file in &files {
        let _ = std::fs::remove_file(layout.host(file));
    }
    println!(
        "\nThe reset process does not clean CNI configuration, iptables or IPVS rules, or your $HOME/.kube/config file."
    );
    Ok(())
}

/// The etcd data directory the local etcd manifest names, if there is one.
fn etcd_data_dir(layout: &Layout) -> Option<String> {
    let text = std::fs::read_to_string(layout.host(format!("{}/etcd.yaml", etcd::MANIFESTS_DIR))).ok()?;
    text.lines().find_map(|l| {
        l.trim()
            .trim_start_matches("- ")
            .strip_prefix("--data-dir=")
            .map(str::to_string)
    })
}

fn remove_contents(dir: &std::path::Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
