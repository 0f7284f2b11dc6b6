//! `kubefedctl`: upstream kubefedctl 0.7's `join`, `unjoin`, `enable`, `disable` and `federate` with their flags,
//! and bulwark's `install` (the control plane, where upstream uses a Helm chart); wiring only, the behaviour is
//! `federation::kubefedctl`'s.
//!
//! As upstream, results go to stdout, `--v=N` progress and warnings to stderr in klog's format, and a failure is
//! one `F... ] Error: ...` line with exit status 255.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use federation::kubefedctl::{
    self as fed, Console, DEFAULT_NAMESPACE, DisableOptions, EnableOptions, FederateOptions, InstallOptions,
    JoinOptions, Kubeconfig, Severity, UnjoinOptions,
};

#[derive(Parser)]
#[command(
    name = "kubefedctl",
    about = "kubefedctl controls a Kubernetes Cluster Federation",
    long_about = "kubefedctl controls a Kubernetes Cluster Federation (KubeFed), as upstream kubefedctl 0.7.",
    version = "v0.7.0-bulwark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Number for the log level verbosity (klog); 2 shows each step
    #[arg(
        short = 'v',
        long = "v",
        global = true,
        default_value_t = 0,
        value_name = "LEVEL"
    )]
    verbosity: u32,
}

/// Flags every subcommand takes, as upstream's GlobalSubcommandOptions.
#[derive(clap::Args)]
struct Global {
    /// Path to the kubeconfig file to use for CLI requests ($KUBECONFIG or ~/.kube/config if unset)
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Host cluster context (the current context if unset)
    #[arg(long)]
    host_cluster_context: Option<String>,
    /// Namespace in the host cluster where the KubeFed system components are installed
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    kubefed_namespace: String,
}

#[derive(clap::Args)]
struct JoinOpts {
    /// Name of the cluster's context in the local kubeconfig (the cluster name if unset)
    #[arg(long)]
    cluster_context: Option<String>,
    /// Name used for the host cluster in resource names created in the member (the host context's name if unset);
    /// required when that name contains "/" or ":"
    #[arg(long)]
    host_cluster_name: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Register a cluster with a KubeFed control plane
    #[command(after_help = "Example: kubefedctl join member1 --host-cluster-context fedhost --v=2")]
    Join {
        /// Cluster name (an RFC 1123 subdomain)
        cluster_name: String,
        #[command(flatten)]
        global: Global,
        #[command(flatten)]
        join: JoinOpts,
        /// Name of the host Secret holding the cluster's credentials (generated from the cluster name if unset)
        #[arg(long)]
        secret_name: Option<String>,
        /// Fail on objects an earlier join left instead of updating them (--error-on-existing=false updates)
        #[arg(long, num_args = 0..=1, default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
        error_on_existing: bool,
    },
    /// Remove the registration of a cluster from a KubeFed control plane
    #[command(after_help = "Example: kubefedctl unjoin member1 --host-cluster-context fedhost")]
    Unjoin {
        cluster_name: String,
        #[command(flatten)]
        global: Global,
        #[command(flatten)]
        join: JoinOpts,
        /// Delete the host's KubeFedCluster and Secret even if the member's objects cannot be removed
        #[arg(long)]
        force: bool,
    },
    /// Enables propagation of a Kubernetes API type
    #[command(after_help = "Example: kubefedctl enable deployments.apps --host-cluster-context fedhost")]
    Enable {
        /// The type: plural, kind, short name or group-qualified plural (deployments.apps)
        type_name: String,
        #[command(flatten)]
        global: Global,
        /// Print the resources instead of creating them; only "yaml"
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Disables propagation of a Kubernetes API type
    #[command(after_help = "Example: kubefedctl disable deployments.apps --delete-crd")]
    Disable {
        type_name: String,
        #[command(flatten)]
        global: Global,
        /// Also remove the Federated<Kind> CRD added by 'enable'
        #[arg(long)]
        delete_crd: bool,
    },
    /// Install the KubeFed control plane in the host cluster (bulwark's; upstream uses its Helm chart)
    #[command(
        after_help = "Example: kubefedctl install --host-cluster-context fedhost --cluster-health-check-period 2s\n\n\
                      Creates the KubeFed CRDs, the namespace, the KubeFedConfig \"kubefed\", ServiceAccount \
                      kubefed-controller with ClusterRole kubefed-role, and Deployment kubefed-controller-manager whose \
                      pods run the kubefed-controller-manager personality with their service account's token. \
                      Run again to update them."
    )]
    Install {
        #[command(flatten)]
        global: Global,
        /// Controller-manager pods (leader-elected: one works, the others stand by)
        #[arg(long, default_value_t = 2)]
        replicas: i32,
        /// The program the pods run, found on the node's PATH
        #[arg(long, default_value = "kubefed-controller-manager")]
        command: String,
        /// KubeFedConfig spec.clusterHealthCheck.period (a Go duration)
        #[arg(long, default_value = "10s")]
        cluster_health_check_period: String,
        /// KubeFedConfig spec.clusterHealthCheck.timeout (a Go duration)
        #[arg(long, default_value = "3s")]
        cluster_health_check_timeout: String,
        /// KubeFedConfig spec.clusterHealthCheck.failureThreshold
        #[arg(long, default_value_t = 3)]
        cluster_health_check_failure_threshold: u32,
        /// KubeFedConfig spec.clusterHealthCheck.successThreshold
        #[arg(long, default_value_t = 1)]
        cluster_health_check_success_threshold: u32,
        /// Print the objects instead of creating them; only "yaml"
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
    /// Federate creates a federated resource from a kubernetes resource
    #[command(
        after_help = "Example: kubefedctl federate deployment web -n demo --host-cluster-context fedhost"
    )]
    Federate {
        /// The type of the resource (plural, kind, short name or group-qualified plural)
        type_name: String,
        /// The resource's name
        resource_name: String,
        #[command(flatten)]
        global: Global,
        /// The namespace of the resource to federate (the context's namespace, else "default", if unset)
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Enable federation of the resource's type first if it is not enabled
        #[arg(short = 't', long)]
        enable_type: bool,
        /// Print the federated resource instead of creating it; only "yaml"
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let console = Console::stdio(cli.verbosity);
    match run(cli.command, &console) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            console.log(Severity::Fatal, 0, file!(), line!(), format_args!("Error: {e}"));
            ExitCode::from(255)
        }
    }
}

fn yaml_output(output: Option<&str>) -> Result<bool, federation::Error> {
    match output {
        None | Some("") => Ok(false),
        Some("yaml") => Ok(true),
        Some(other) => Err(federation::Error::Usage(format!(
            "Invalid value for --output: {other}"
        ))),
    }
}

fn run(command: Command, console: &Console) -> Result<(), federation::Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(federation::Error::Output)?;
    rt.block_on(async move {
        match command {
            Command::Join {
                cluster_name,
                global,
                join,
                secret_name,
                error_on_existing,
            } => {
                let kubeconfig = Kubeconfig::load(global.kubeconfig.as_deref())?;
                let opts = JoinOptions {
                    cluster_context: join.cluster_context,
                    host_cluster_context: global.host_cluster_context,
                    host_cluster_name: join.host_cluster_name,
                    kubefed_namespace: global.kubefed_namespace,
                    secret_name,
                    error_on_existing,
                    ..JoinOptions::new(&cluster_name)
                };
                fed::join(&kubeconfig, &opts, console).await.map(drop)
            }
            Command::Unjoin {
                cluster_name,
                global,
                join,
                force,
            } => {
                let kubeconfig = Kubeconfig::load(global.kubeconfig.as_deref())?;
                let opts = UnjoinOptions {
                    cluster_context: join.cluster_context,
                    host_cluster_context: global.host_cluster_context,
                    host_cluster_name: join.host_cluster_name,
                    kubefed_namespace: global.kubefed_namespace,
                    force,
                    ..UnjoinOptions::new(&cluster_name)
                };
                fed::unjoin(&kubeconfig, &opts, console).await
            }
            Command::Enable {
                type_name,
                global,
                output,
            } => {
                let output_yaml = yaml_output(output.as_deref())?;
                let kubeconfig = Kubeconfig::load(global.kubeconfig.as_deref())?;
                let opts = EnableOptions {
                    host_cluster_context: global.host_cluster_context,
                    kubefed_namespace: global.kubefed_namespace,
                    output_yaml,
                    ..EnableOptions::new(&type_name)
                };
                fed::enable(&kubeconfig, &opts, console).await
            }
            Command::Disable {
                type_name,
                global,
                delete_crd,
            } => {
                let kubeconfig = Kubeconfig::load(global.kubeconfig.as_deref())?;
                let opts = DisableOptions {
                    host_cluster_context: global.host_cluster_context,
                    kubefed_namespace: global.kubefed_namespace,
                    delete_crd,
                    ..DisableOptions::new(&type_name)
                };
                fed::disable(&kubeconfig, &opts, console).await
            }
            Command::Install {
                global,
                replicas,
                command,
                cluster_health_check_period,
                cluster_health_check_timeout,
                cluster_health_check_failure_threshold,
                cluster_health_check_success_threshold,
                output,
            } => {
                let output_yaml = yaml_output(output.as_deref())?;
                // The controller-manager reads these at startup: refuse what it would refuse.
                for (flag, value) in [
                    ("--cluster-health-check-period", &cluster_health_check_period),
                    ("--cluster-health-check-timeout", &cluster_health_check_timeout),
                ] {
                    crate::controller_manager_cli::go_duration(value)
                        .map_err(|e| federation::Error::Usage(format!("invalid value for {flag}: {e}")))?;
                }
                let opts = InstallOptions {
                    host_cluster_context: global.host_cluster_context,
                    kubefed_namespace: global.kubefed_namespace,
                    replicas,
                    command,
                    health_period: cluster_health_check_period,
                    health_timeout: cluster_health_check_timeout,
                    health_failure_threshold: cluster_health_check_failure_threshold,
                    health_success_threshold: cluster_health_check_success_threshold,
                    output_yaml,
                    ..InstallOptions::default()
                };
                // -o yaml needs no cluster, so no kubeconfig either.
                let kubeconfig = if output_yaml {
                    Kubeconfig::from_yaml("{}", "none")?
                } else {
                    Kubeconfig::load(global.kubeconfig.as_deref())?
                };
                fed::install(&kubeconfig, &opts, console).await
            }
            Command::Federate {
                type_name,
                resource_name,
                global,
                namespace,
                enable_type,
                output,
            } => {
                let output_yaml = yaml_output(output.as_deref())?;
                let kubeconfig = Kubeconfig::load(global.kubeconfig.as_deref())?;
                let opts = FederateOptions {
                    namespace,
                    host_cluster_context: global.host_cluster_context,
                    kubefed_namespace: global.kubefed_namespace,
                    enable_type,
                    output_yaml,
                    ..FederateOptions::new(&type_name, &resource_name)
                };
                fed::federate(&kubeconfig, &opts, console).await
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubefedctl").chain(args.iter().copied()))
    }

    #[test]
    fn guide_cs_join_line_parses_with_upstreams_defaults() {
        let cli = parse(&[
            "join",
            "member1",
            "--v=2",
            "--host-cluster-context",
            "fedhost",
            "--kubefed-namespace=kube-federation-system",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.verbosity, 2);
        let Command::Join {
            cluster_name,
            global,
            join,
            error_on_existing,
            ..
        } = cli.command
        else {
            panic!("not a join")
        };
        assert_eq!(cluster_name, "member1");
        assert_eq!(global.host_cluster_context.as_deref(), Some("fedhost"));
        assert!(join.cluster_context.is_none());
        assert!(error_on_existing);
        let cli =
            parse(&["join", "m", "--error-on-existing=false", "-v", "3"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.verbosity, 3);
        assert!(matches!(
            cli.command,
            Command::Join {
                error_on_existing: false,
                ..
            }
        ));
    }

    #[test]
    fn federate_takes_kubectls_short_flags() {
        let cli = parse(&["federate", "deploy", "web", "-n", "demo", "-t", "-o", "yaml"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Command::Federate {
            namespace,
            enable_type,
            output,
            ..
        } = cli.command
        else {
            panic!("not a federate")
        };
        assert_eq!(namespace.as_deref(), Some("demo"));
        assert!(enable_type);
        assert!(yaml_output(output.as_deref()).unwrap_or(false));
        assert!(yaml_output(Some("json")).is_err());
    }
}
