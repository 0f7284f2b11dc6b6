//! `kubelet`'s command line, with upstream's flag names. Flags win over the `--config` file, as upstream. Every
//! path (flags, the config file's paths, files a kubeconfig names) lives below `--rootfs`.
//!
//! Without `--kubeconfig` the kubelet runs static pods only. With it (after TLS bootstrap through
//! `--bootstrap-kubeconfig` if the file is missing) it also registers the Node, renews its Lease, runs the pods
//! bound to it and keeps mirror pods; static pods run from the start either way, so a control plane made of static
//! pods comes up before the API it serves.
//!
//! With `rotateCertificates: true` (kubeadm's default) or `--rotate-certificates` the client certificate is renewed
//! before it expires (`kubelet::rotation`) and every client follows it without a restart.
//!
//! The API client talks through the client-side load balancer of `kubelet::apilb` unless
//! `--client-load-balancer=false`.

use clap::Parser;
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    /// The port of the localhost healthz endpoint (0 disables it)
    #[arg(long)]
    healthz_port: Option<u16>,
    /// IP address of the node
    #[arg(long)]
    node_ip: Option<String>,
    /// The CIDR pods that are not hostNetwork take their own addresses from; bulwark requires a range inside
    /// 127.0.0.0/8, whose addresses all reach the loopback interface (without it, pods share the node's address)
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Register the node with the given list of taints
    #[arg(long)]
    register_with_taints: Option<String>,
    /// Labels to add when registering the node in the cluster
    #[arg(long)]
    node_labels: Option<String>,
    /// The file with the x509 certificate for HTTPS
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// The file with the x509 private key matching --tls-cert-file
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// A file with the certificate authorities that sign clients of the kubelet's server
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Auto rotate the kubelet client certificates by requesting new certificates from the kube-apiserver when the
    /// certificate expiration approaches
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    rotate_certificates: Option<bool>,
    /// Talk to the API servers through a client-side load balancer over every server the `kubernetes` Endpoints
    /// list, so the node survives the loss of the one its kubeconfig names (bulwark; upstream has no such flag)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    client_load_balancer: bool,
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
    #[arg(long, hide = true)]
    runtime_request_timeout: Option<String>,
    #[arg(long, hide = true)]
    image_service_endpoint: Option<String>,
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

/// The IP the kernel would use towards the outside world (no packet is sent), or loopback.
fn default_ip() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// Everything settled from flags and the config file.
struct Settings {
    node: kubelet::node::NodeConfig,
    address: IpAddr,
    healthz: Option<SocketAddr>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    anonymous: bool,
    manifest_path: Option<PathBuf>,
    sync_period: Duration,
    pod_cidr: Option<kubelet::ipam::PodCidr>,
    client_load_balancer: bool,
    rotate_certificates: bool,
}

fn settle(cli: &Kubelet, layout: &kubeadm::Layout) -> anyhow::Result<Settings> {
    use anyhow::Context;
    let file = match &cli.config {
        Some(path) => kubelet::config::KubeletConfiguration::read(&layout.host(path))?,
        None => Default::default(),
    };
    for (flag, value) in [
        ("container-runtime-endpoint", &cli.container_runtime_endpoint),
        ("pod-infra-container-image", &cli.pod_infra_container_image),
        ("cgroup-driver", &cli.cgroup_driver),
        ("allow-privileged", &cli.allow_privileged),
        ("fail-swap-on", &cli.fail_swap_on),
        ("runtime-request-timeout", &cli.runtime_request_timeout),
        ("image-service-endpoint", &cli.image_service_endpoint),
    ] {
        if let Some(v) = value {
            tracing::debug!(flag, value = %v, "ignoring a flag the process runtime has no use for");
        }
    }
    let name = cli
        .hostname_override
        .clone()
        .unwrap_or_else(|| kubeadm::config::HostFacts::detect().hostname)
        .to_lowercase();
    let ip = cli.node_ip.clone().unwrap_or_else(default_ip);
    ip.parse::<IpAddr>()
        .with_context(|| format!("--node-ip {ip:?} is not an IP address"))?;
    let address: IpAddr = cli
        .address
        .clone()
        .or(file.address.clone())
        .unwrap_or_else(|| "0.0.0.0".into())
        .parse()
        .context("--address is not an IP address")?;
    let port = cli.port.or(file.port).unwrap_or(10250);
    let healthz_port = cli.healthz_port.or(file.healthz_port).unwrap_or(10248);
    let healthz_ip: IpAddr = file
        .healthz_bind_address
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into())
        .parse()
        .context("healthzBindAddress is not an IP address")?;
    let labels = match &cli.node_labels {
        Some(text) => kubelet::node::parse_labels(text).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    let taints = match &cli.register_with_taints {
        Some(text) => kubelet::node::parse_taints(text).map_err(anyhow::Error::msg)?,
        None => file.register_with_taints.clone(),
    };
    // Zero means "the default" in the configuration file, as kubeadm writes it.
    let duration = |v: &Option<String>, default: Duration| {
        v.as_deref()
            .and_then(kubelet::config::parse_duration)
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    Ok(Settings {
        node: kubelet::node::NodeConfig {
            name,
            ip,
            labels,
            taints,
            kubelet_port: port,
            max_pods: file.max_pods.unwrap_or(110),
            status_update_frequency: duration(&file.node_status_update_frequency, Duration::from_secs(10)),
            lease_duration_seconds: file.node_lease_duration_seconds.filter(|d| *d > 0).unwrap_or(40),
        },
        address,
        healthz: (healthz_port != 0).then_some(SocketAddr::new(healthz_ip, healthz_port)),
        tls_cert_file: cli
            .tls_cert_file
            .clone()
            .or(file.tls_cert_file.clone().map(PathBuf::from))
            .map(|p| layout.host(p)),
        tls_key_file: cli
            .tls_private_key_file
            .clone()
            .or(file.tls_private_key_file.clone().map(PathBuf::from))
            .map(|p| layout.host(p)),
        client_ca_file: cli
            .client_ca_file
            .clone()
            .or(file.authentication.x509.client_ca_file.clone().map(PathBuf::from))
            .map(|p| layout.host(p)),
        anonymous: file.authentication.anonymous.enabled.unwrap_or(false),
        manifest_path: cli
            .pod_manifest_path
            .clone()
            .or(file.static_pod_path.clone().map(PathBuf::from))
            .map(|p| layout.host(p)),
        sync_period: duration(&file.sync_frequency, Duration::from_secs(1)).min(Duration::from_secs(1)),
        pod_cidr: cli
            .pod_cidr
            .clone()
            .or(file.pod_cidr.clone())
            .filter(|c| !c.is_empty())
            .map(|c| kubelet::ipam::PodCidr::parse(&c))
            .transpose()?,
        client_load_balancer: cli.client_load_balancer,
        rotate_certificates: cli
            .rotate_certificates
            .or(file.rotate_certificates)
            .unwrap_or(false),
    })
}

fn run(cli: Kubelet) -> anyhow::Result<()> {
    use anyhow::Context;
    let layout = kubeadm::Layout::new(&cli.rootfs);
    let settings = settle(&cli, &layout)?;
    let root_dir = layout.host(&cli.root_dir);
    // The kubeconfig may only come with TLS bootstrap; the bootstrap kubeconfig names the same API server.
    let api_server = [&cli.kubeconfig, &cli.bootstrap_kubeconfig]
        .into_iter()
        .flatten()
        .find_map(|k| pki::Kubeconfig::read(&layout.host(k)).ok())
        .and_then(|k| k.server().ok().and_then(kubelet::apilb::host_port));
    let config = kubelet::Config {
        node_name: settings.node.name.clone(),
        node_ip: settings.node.ip.clone(),
        pod_cidr: settings.pod_cidr,
        pod_manifest_path: settings.manifest_path.clone(),
        runtime_dir: root_dir.join("bulwark/containers"),
        root_dir: root_dir.clone(),
        log_dir: layout.host("/var/log/pods"),
        rootfs: cli.rootfs.clone(),
        shim_program: std::env::current_exe()
            .context("cannot find this executable for the container shim")?,
        path_env: std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        sync_period: settings.sync_period,
        api_server,
    };
    let runtime = Arc::new(kubelet::runtime::ProcessRuntime::new(
        &config.runtime_dir,
        &config.shim_program,
    ));
    let mut kubelet = kubelet::Kubelet::new(config.clone(), runtime, Arc::new(kubelet::SystemClock))?;
    let api_pods = Arc::new(kubelet::api::ApiPods::default());
    if cli.kubeconfig.is_some() {
        kubelet = kubelet.with_api_pods(api_pods.clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let shutdown = crate::shutdown_on_signal();
        if let Some(addr) = settings.healthz {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = kubelet::server::serve_healthz(addr, shutdown).await {
                    tracing::warn!(error = %e, "no healthz endpoint");
                }
            });
        }
        let (api_tx, api_rx) = tokio::sync::oneshot::channel();
        {
            let shutdown = shutdown.clone();
            let cli_kubeconfig = cli.kubeconfig.clone().map(|p| layout.host(p));
            let bootstrap = cli.bootstrap_kubeconfig.clone().map(|p| layout.host(p));
            tokio::spawn(async move {
                if let Err(e) = start_api(
                    settings,
                    config,
                    cli_kubeconfig,
                    bootstrap,
                    layout,
                    api_pods,
                    api_tx,
                    shutdown.clone(),
                )
                .await
                {
                    tracing::error!(error = %format!("{e:#}"), "the API side of the kubelet did not start; running static pods only");
                }
            });
        }
        kubelet::run(kubelet, Some(api_rx), shutdown).await
    })?;
    Ok(())
}

/// TLS bootstrap if needed, the HTTPS server, registration, lease, status and the pod watch; hands the pass-by-pass
/// API side to the reconcile loop through `api_tx`.
#[allow(clippy::too_many_arguments)]
async fn start_api(
    settings: Settings,
    config: kubelet::Config,
    kubeconfig: Option<PathBuf>,
    bootstrap: Option<PathBuf>,
    layout: kubeadm::Layout,
    api_pods: Arc<kubelet::api::ApiPods>,
    api_tx: tokio::sync::oneshot::Sender<kubelet::api::ApiSync>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pki_dir = config.root_dir.join("pki");
    if let (Some(kubeconfig), Some(bootstrap)) = (&kubeconfig, &bootstrap)
        && !kubelet::bootstrap::kubeconfig_still_valid(kubeconfig, std::time::SystemTime::now())
    {
        tracing::info!(bootstrap = %bootstrap.display(), "no kubeconfig, or its certificate expired: TLS bootstrap");
        kubelet::bootstrap::bootstrap(bootstrap, kubeconfig, &pki_dir, &settings.node.name, &shutdown)
            .await?;
    }
    // The server authenticates the API server against the cluster CA: the configured one, else the kubeconfig's.
    let client_ca_pem = match (&settings.client_ca_file, &kubeconfig) {
        (Some(file), _) => Some(std::fs::read_to_string(file)?),
        (None, Some(k)) => pki::Kubeconfig::read(k)
            .ok()
            .and_then(|k| k.ca_certificate().ok())
            .map(|c| c.pem().to_string()),
        (None, None) => None,
    };
    let (cert_file, key_file) = match (&settings.tls_cert_file, &settings.tls_key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => kubelet::server::ensure_serving_cert(&pki_dir, &settings.node.name, &settings.node.ip)?,
    };
    let server = kubelet::server::ServerConfig {
        addr: SocketAddr::new(settings.address, settings.node.kubelet_port),
        cert_file,
        key_file,
        client_ca_pem,
        anonymous: settings.anonymous,
        log_dir: config.log_dir.clone(),
    };
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = kubelet::server::serve(server, shutdown).await {
                tracing::warn!(error = %e, "the kubelet server is not serving");
            }
        });
    }
    let Some(kubeconfig) = kubeconfig else {
        return Ok(());
    };
    let client_config = kubelet::bootstrap::config_below_root(&kubeconfig, layout.rootfs()).await?;
    let certificate = if settings.rotate_certificates {
        // A kubeconfig with a token has nothing to rotate; the kubelet still talks to the API with it.
        current_certificate(&client_config, &kubeconfig, &pki_dir)
            .inspect_err(|e| tracing::warn!(error = %format!("{e:#}"), "no client certificate to rotate"))
            .ok()
    } else {
        None
    };
    let build = |config: kube::Config| -> anyhow::Result<kube::Client> {
        Ok(match &certificate {
            Some(cert) => kubelet::rotation::client(&config, cert)?,
            None => kube::Client::try_from(config)?,
        })
    };
    let (client, balancer) = if settings.client_load_balancer {
        client_through_balancer(client_config, build, &shutdown).await?
    } else {
        (build(client_config)?, None)
    };
    if let Some(certificate) = certificate {
        let rotation = kubelet::rotation::Rotation {
            node: settings.node.name.clone(),
            pki_dir: pki_dir.clone(),
            kubeconfig: Some(kubeconfig.clone()),
            clock: Arc::new(kubelet::SystemClock),
            jitter: Arc::new(kubelet::rotation::random_jitter),
        };
        tokio::spawn(rotation.run(client.clone(), certificate, shutdown.clone()));
    }
    if let Some(balancer) = balancer {
        tokio::spawn(balancer.follow_endpoints(
            client.clone(),
            kubelet::apilb::ENDPOINTS_PERIOD,
            shutdown.clone(),
        ));
    }
    tokio::spawn(kubelet::api::watch_pods(
        client.clone(),
        settings.node.name.clone(),
        api_pods,
        shutdown.clone(),
    ));
    let node_uid = Arc::new(OnceLock::new());
    let _ = api_tx.send(kubelet::api::ApiSync::new(
        client.clone(),
        settings.node.name.clone(),
        node_uid.clone(),
        config.root_dir.clone(),
    ));
    let facts = kubelet::node::HostFacts::detect();
    let mut pause = Duration::from_millis(200);
    let uid = loop {
        match kubelet::node::register(&client, &settings.node, &facts).await {
            Ok(uid) => break uid,
            Err(e) => {
                tracing::warn!(node = %settings.node.name, error = %e, "cannot register the node; retrying")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(7));
    };
    tracing::info!(node = %settings.node.name, "node registered");
    let _ = node_uid.set(uid.clone());
    tokio::spawn(kubelet::node::run_lease(
        client.clone(),
        settings.node.clone(),
        uid,
        shutdown.clone(),
    ));
    tokio::spawn(kubelet::node::run_status(client, settings.node, facts, shutdown));
    Ok(())
}

/// A client that talks through a client-side load balancer started for it, or straight to the configured server
/// if the balancer cannot start (the server's name does not resolve yet, say).
async fn client_through_balancer(
    config: kube::Config,
    build: impl Fn(kube::Config) -> anyhow::Result<kube::Client>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(kube::Client, Option<kubelet::apilb::ApiLoadBalancer>)> {
    let url = config.cluster_url.to_string();
    let routed = kubelet::apilb::ApiLoadBalancer::start(&url, shutdown.clone())
        .await
        .and_then(|balancer| balancer.route(config.clone()).map(|c| (c, balancer)));
    match routed {
        Ok((routed, balancer)) => {
            tracing::info!(server = %url, local = %balancer.local_addr(), "talking to the API servers through the client-side load balancer");
            Ok((build(routed)?, Some(balancer)))
        }
        Err(e) => {
            tracing::warn!(server = %url, error = %e, "no client-side load balancer: talking to the configured API server only");
            Ok((build(config)?, None))
        }
    }
}

/// The client certificate rotation starts from: the newest one stored in `<root-dir>/pki` while it is valid (as
/// upstream's certificate store), else the kubeconfig's.
fn current_certificate(
    config: &kube::Config,
    kubeconfig: &std::path::Path,
    pki_dir: &std::path::Path,
) -> anyhow::Result<kubelet::rotation::ClientCertificate> {
    let stored = pki_dir.join(kubelet::bootstrap::CLIENT_PEM);
    if let Ok(cert) = kubelet::rotation::ClientCertificate::from_pem_file(&stored)
        && cert
            .certificate()
            .info()
            .is_ok_and(|i| i.not_after > std::time::SystemTime::now())
    {
        return Ok(cert);
    }
    let obtained = std::fs::metadata(kubeconfig)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    Ok(kubelet::rotation::ClientCertificate::from_config(
        config, obtained,
    )?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: &str, flags: &[&str]) -> Settings {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("config.yaml"), config).unwrap();
        let mut args = vec![
            "kubelet".to_string(),
            "--config=/config.yaml".into(),
            "--hostname-override=n1".into(),
            "--node-ip=127.0.0.1".into(),
            format!("--rootfs={}", root.path().display()),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let cli = Kubelet::try_parse_from(args).unwrap();
        settle(&cli, &kubeadm::Layout::new(&cli.rootfs)).unwrap()
    }

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    #[test]
    fn certificate_rotation_follows_the_configuration_file_and_the_flag_wins() {
        assert!(
            !settings(HEAD, &[]).rotate_certificates,
            "upstream's default is off"
        );
        let on = format!("{HEAD}rotateCertificates: true\n");
        assert!(settings(&on, &[]).rotate_certificates);
        assert!(!settings(&on, &["--rotate-certificates=false"]).rotate_certificates);
        assert!(settings(HEAD, &["--rotate-certificates"]).rotate_certificates);
    }
}
