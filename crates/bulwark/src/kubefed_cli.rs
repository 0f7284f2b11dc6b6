//! `bulwark kubefed-controller-manager`: the federation control plane of a host cluster (see the `federation`
//! crate). One command installs what is missing (CRDs, namespace, type configs) and runs the controllers,
//! leader-elected on a Lease in the KubeFed namespace so that several copies can run.
//!
//! The host is `--kubeconfig`, else the pod's own service account when run as a pod (`KUBERNETES_SERVICE_HOST`
//! set, see [`client::in_cluster_config`]; `kubefedctl install` deploys it so), else `$KUBECONFIG` or
//! `~/.kube/config`. Health-check settings come from the KubeFedConfig `kubefed` (`spec.clusterHealthCheck`, as
//! upstream), the `--cluster-health-check-*` flags overriding it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

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
    /// Seconds between member health probes (overrides the KubeFedConfig's `clusterHealthCheck.period`; 10).
    #[arg(long)]
    cluster_health_check_period: Option<u64>,
    /// Consecutive failed probes that make a member offline (overrides `failureThreshold`; 3).
    #[arg(long)]
    cluster_health_check_failure_threshold: Option<u32>,
    /// Consecutive good probes that bring it back (overrides `successThreshold`; 1).
    #[arg(long)]
    cluster_health_check_success_threshold: Option<u32>,
    /// Seconds a probe may take (overrides `timeout`; 3).
    #[arg(long)]
    cluster_health_check_timeout: Option<u64>,
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

/// The host's client configuration: `--kubeconfig`, else in-cluster, else the usual kubeconfig files.
async fn host_config(cli: &Cli) -> anyhow::Result<kube::Config> {
    if cli.kubeconfig.is_none()
        && let Some(config) = client::in_cluster_config().await?
    {
        tracing::info!(server = %config.cluster_url, "using the pod's service account");
        return Ok(config);
    }
    let path = kubeconfig_path(cli.kubeconfig.clone())?;
    let file =
        kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let options = kube::config::KubeConfigOptions {
        context: cli.context.clone(),
        ..Default::default()
    };
    kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .with_context(|| format!("{}: context {:?}", path.display(), cli.context))
}

/// Applies a KubeFedConfig's `spec.clusterHealthCheck` (Go durations and counts, upstream's field names).
fn apply_health_config(opts: &mut federation::controller::Options, spec: &Value) -> anyhow::Result<()> {
    let check = &spec["clusterHealthCheck"];
    let duration = |field: &str| -> anyhow::Result<Option<Duration>> {
        match check[field].as_str() {
            Some(s) => crate::controller_manager_cli::go_duration(s)
                .map(Some)
                .with_context(|| format!("KubeFedConfig spec.clusterHealthCheck.{field}")),
            None => Ok(None),
        }
    };
    let count = |field: &str| {
        check[field]
            .as_u64()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    if let Some(d) = duration("period")? {
        opts.health_period = d;
    }
    if let Some(d) = duration("timeout")? {
        opts.probe_timeout = d;
    }
    if let Some(n) = count("failureThreshold") {
        opts.failure_threshold = n;
    }
    if let Some(n) = count("successThreshold") {
        opts.success_threshold = n;
    }
    Ok(())
}

/// The flags, where given, over what the KubeFedConfig said; nothing below one (a zero period would spin).
fn apply_health_flags(opts: &mut federation::controller::Options, cli: &Cli) {
    if let Some(s) = cli.cluster_health_check_period {
        opts.health_period = Duration::from_secs(s);
    }
    if let Some(s) = cli.cluster_health_check_timeout {
        opts.probe_timeout = Duration::from_secs(s);
    }
    if let Some(n) = cli.cluster_health_check_failure_threshold {
        opts.failure_threshold = n;
    }
    if let Some(n) = cli.cluster_health_check_success_threshold {
        opts.success_threshold = n;
    }
    opts.health_period = opts.health_period.max(Duration::from_millis(100));
    opts.probe_timeout = opts.probe_timeout.max(Duration::from_millis(100));
    opts.failure_threshold = opts.failure_threshold.max(1);
    opts.success_threshold = opts.success_threshold.max(1);
}

/// Upstream's settings: the KubeFedConfig `kubefed` of the KubeFed namespace, when there is one.
async fn kubefed_config(host: &kube::Client, namespace: &str) -> anyhow::Result<Option<Value>> {
    use kube::api::{Api, DynamicObject};
    use kube::core::{ApiResource, GroupVersionKind};
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            federation::crds::CORE_GROUP,
            federation::crds::VERSION,
            "KubeFedConfig",
        ),
        "kubefedconfigs",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(host.clone(), namespace, &ar);
    let found = api
        .get_opt(federation::kubefedctl::KUBEFED_CONFIG_NAME)
        .await
        .with_context(|| format!("reading KubeFedConfig {namespace}/kubefed"))?;
    Ok(found.map(|o| o.data["spec"].clone()))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut opts = federation::controller::Options::new(&cli.kubefed_namespace);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let shutdown = crate::shutdown_on_signal();
        let host = kube::Client::try_from(host_config(&cli).await?)?;
        // The KubeFedConfig CRD and the Lease's namespace must exist before they are read or contended for.
        federation::controller::install(&host, &cli.kubefed_namespace).await?;
        if let Some(spec) = kubefed_config(&host, &cli.kubefed_namespace).await? {
            apply_health_config(&mut opts, &spec)?;
        }
        apply_health_flags(&mut opts, &cli);
        tracing::info!(period = ?opts.health_period, timeout = ?opts.probe_timeout,
            failure_threshold = opts.failure_threshold, success_threshold = opts.success_threshold,
            "cluster health checks");
        if !cli.leader_elect {
            federation::controller::run(host, opts, shutdown).await?;
            return Ok(());
        }
        // In a pod HOSTNAME is the pod's name, which tells the Lease holder apart better than the host's name.
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_else(|| "localhost".into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kubefed-controller-manager").chain(args.iter().copied()))
            .unwrap()
    }

    #[test]
    fn health_checks_follow_the_kubefed_config_and_flags_override_it() {
        let spec = json!({"clusterHealthCheck":
            {"period": "1m30s", "timeout": "500ms", "failureThreshold": 5, "successThreshold": 2}});
        let mut opts = federation::controller::Options::new("kube-federation-system");
        apply_health_config(&mut opts, &spec).unwrap();
        apply_health_flags(&mut opts, &cli(&[]));
        assert_eq!(opts.health_period, Duration::from_secs(90));
        assert_eq!(opts.probe_timeout, Duration::from_millis(500));
        assert_eq!((opts.failure_threshold, opts.success_threshold), (5, 2));

        apply_health_flags(
            &mut opts,
            &cli(&[
                "--cluster-health-check-period=2",
                "--cluster-health-check-failure-threshold=1",
            ]),
        );
        assert_eq!(opts.health_period, Duration::from_secs(2));
        assert_eq!(opts.probe_timeout, Duration::from_millis(500));
        assert_eq!((opts.failure_threshold, opts.success_threshold), (1, 2));
    }

    #[test]
    fn without_a_kubefed_config_the_defaults_are_upstreams_and_bad_durations_are_refused() {
        let mut opts = federation::controller::Options::new("kube-federation-system");
        apply_health_config(&mut opts, &json!({"scope": "Cluster"})).unwrap();
        apply_health_flags(&mut opts, &cli(&[]));
        assert_eq!(opts.health_period, Duration::from_secs(10));
        assert_eq!(opts.probe_timeout, Duration::from_secs(3));
        assert_eq!((opts.failure_threshold, opts.success_threshold), (3, 1));
        let bad = apply_health_config(
            &mut opts,
            &json!({"clusterHealthCheck": {"period": "10 seconds"}}),
        );
        assert!(format!("{:#}", bad.unwrap_err()).contains("clusterHealthCheck.period"));
    }
}
