//! `kubeadm init`: every phase upstream runs, in upstream's order, each skippable with `--skip-phases`, ending with
//! kubeadm's summary and join commands.
//!
//! Entry points: [`PHASES`], [`Options`], [`run`]; [`wait_control_plane`] and [`admin_client`] are shared with the
//! single-phase commands.

use crate::config::InitConfig;
use crate::controlplane::{CONTROLLER_MANAGER_PORT, SCHEDULER_PORT};
use crate::etcd::MANIFESTS_DIR;
use crate::{
    Error, KUBERNETES_DIR, Layout, certs, controlplane, etcd, kubeconfig, kubelet, online, preflight, say,
};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// The phases of `kubeadm init`, in order, as `--skip-phases` names them.
pub const PHASES: &[&str] = &[
    "preflight",
    "certs",
    "kubeconfig",
    "etcd",
    "control-plane",
    "kubelet-start",
    "wait-control-plane",
    "upload-config",
    "upload-certs",
    "mark-control-plane",
    "bootstrap-token",
    "kubelet-finalize",
    "addon",
    "show-join-command",
];

/// What `init` needs beyond the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub upload_certs: bool,
    pub certificate_key: Option<String>,
    pub skip_phases: Vec<String>,
    /// The bulwark binary, which supervises the kubelet daemon.
    pub supervisor: PathBuf,
    pub hostname: String,
    /// `PATH` to look for components in (preflight).
    pub path_env: String,
    /// How long to wait for the control plane (upstream: 4 minutes).
    pub timeout: Duration,
    /// Show a spinner while waiting (a terminal is attached).
    pub progress: bool,
}

/// What a finished `init` produced, for its summary.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub tokens: Vec<pki::BootstrapToken>,
    pub certificate_key: Option<String>,
    pub ca_pin: String,
}

fn skipped(opts: &Options, phase: &str) -> bool {
    opts.skip_phases
        .iter()
        .any(|s| s == phase || phase.starts_with(&format!("{s}/")))
}

/// A client for this node's API server with the admin credentials (`admin.conf`), addressed at the local
/// advertise address (the control-plane endpoint may be a load balancer that does not know this node yet).
pub async fn admin_client(cfg: &InitConfig, layout: &Layout, local: bool) -> Result<kube::Client, Error> {
    kubeconfig_client(cfg, layout, "admin.conf", local).await
}

/// [`admin_client`], after making sure `admin.conf`'s group `kubeadm:cluster-admins` is bound to `cluster-admin`:
/// the binding is created with `super-admin.conf` (group `system:masters`) when admin.conf may not yet create it,
/// as kubeadm 1.29+ does before its first API call.
pub async fn cluster_admin_client(
    cfg: &InitConfig,
    layout: &Layout,
    local: bool,
) -> Result<kube::Client, Error> {
    let admin = admin_client(cfg, layout, local).await?;
    match online::ensure_admin_binding(&admin).await {
        Err(Error::Api { error, .. }) if matches!(&*error, kube::Error::Api(s) if s.code == 403) => {
            let super_admin = kubeconfig_client(cfg, layout, "super-admin.conf", local).await?;
            online::ensure_admin_binding(&super_admin).await?;
        }
        other => other?,
    }
    Ok(admin)
}

async fn kubeconfig_client(
    cfg: &InitConfig,
    layout: &Layout,
    file: &str,
    local: bool,
) -> Result<kube::Client, Error> {
    let path = layout.host(format!("{KUBERNETES_DIR}/{file}"));
    let mut config = client::config_from_kubeconfig(&path).await?;
    if local {
        config.cluster_url = cfg
            .local_url()
            .parse()
            .map_err(|e| Error::Usage(format!("invalid API server URL {}: {e}", cfg.local_url())))?;
    }
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).map_err(|source| Error::Api {
        what: "building a client".into(),
        error: Box::new(source),
    })
}

async fn tcp_ready(host: &str, port: u16) -> bool {
    tokio::net::TcpStream::connect((host, port)).await.is_ok()
}

pub(crate) async fn kubelet_healthy(layout: &Layout) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if crate::daemon::running_pid(&kubelet::pid_file(layout)).is_none() {
        return false;
    }
    let (host, port) = kubelet::healthz_endpoint(layout);
    let Ok(mut s) = tokio::net::TcpStream::connect((host.as_str(), port)).await else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.0 200")
}

/// `wait-control-plane`: the kubelet first, then each component, reporting how long each took.
pub async fn wait_control_plane(
    cfg: &InitConfig,
    layout: &Layout,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let limit = format_duration(opts.timeout);
    say(
        out,
        format_args!(
            "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory {MANIFESTS_DIR:?}"
        ),
    )?;
    let (kubelet_host, kubelet_port) = kubelet::healthz_endpoint(layout);
    say(
        out,
        format_args!(
            "[kubelet-check] Waiting for a healthy kubelet at http://{}/healthz. This can take up to {limit}",
            crate::config::join_host_port(&kubelet_host, kubelet_port)
        ),
    )?;
    let start = Instant::now();
    let spinner = opts.progress.then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let deadline = start + opts.timeout;
    while !kubelet_healthy(layout).await {
        if Instant::now() > deadline {
            return Err(Error::Usage(format!(
                "timed out after {limit} waiting for the kubelet; see its log in {}",
                kubelet::LOG_FILE
            )));
        }
        if let Some(s) = &spinner {
            s.set_message("waiting for the kubelet");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(
        out,
        format_args!(
            "[kubelet-check] The kubelet is healthy after {}",
            format_duration(start.elapsed())
        ),
    )?;
    say(
        out,
        format_args!(
            "[control-plane-check] Waiting for healthy control plane components. This can take up to {limit}"
        ),
    )?;
    say(
        out,
        format_args!(
            "[control-plane-check] Checking kube-apiserver at {}/livez",
            cfg.local_url()
        ),
    )?;
    // The addresses the manifests on disk give, patches included, as upstream's check reads them.
    let (cm_host, cm_port) = controlplane::health_endpoint_on_disk(
        layout,
        controlplane::CONTROLLER_MANAGER,
        CONTROLLER_MANAGER_PORT,
    );
    let (sched_host, sched_port) =
        controlplane::health_endpoint_on_disk(layout, controlplane::SCHEDULER, SCHEDULER_PORT);
    say(
        out,
        format_args!(
            "[control-plane-check] Checking kube-controller-manager at https://{}/healthz",
            crate::config::join_host_port(&cm_host, cm_port)
        ),
    )?;
    say(
        out,
        format_args!(
            "[control-plane-check] Checking kube-scheduler at https://{}/livez",
            crate::config::join_host_port(&sched_host, sched_port)
        ),
    )?;
    let client = admin_client(cfg, layout, true).await?;
    let mut pending: Vec<&str> = vec!["kube-controller-manager", "kube-scheduler", "kube-apiserver"];
    while !pending.is_empty() {
        let mut still = Vec::new();
        for component in pending {
            let healthy = match component {
                "kube-apiserver" => client.apiserver_version().await.is_ok(),
                "kube-controller-manager" => tcp_ready(&cm_host, cm_port).await,
                _ => tcp_ready(&sched_host, sched_port).await,
            };
            if healthy {
                say(
                    out,
                    format_args!(
                        "[control-plane-check] {component} is healthy after {}",
                        format_duration(start.elapsed())
                    ),
                )?;
            } else {
                still.push(component);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Usage(format!(
                "timed out after {limit} waiting for {}; see `kubectl -n kube-system logs` or the container logs in /var/log/pods",
                pending.join(", ")
            )));
        }
        if let Some(s) = &spinner {
            s.set_message(format!("waiting for {}", pending.join(", ")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    Ok(())
}

/// Go's duration spelling, as kubeadm prints it (`4m0s`, `1.2s`).
fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        let ms = d.as_millis();
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            let secs = format!("{:.3}", d.as_secs_f64());
            format!("{}s", secs.trim_end_matches('0'))
        }
    }
}

/// Runs `kubeadm init`.
pub async fn run(
    cfg: &InitConfig,
    layout: &Layout,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Outcome, (String, Error)> {
    let phase = |name: &str| name.to_string();
    let now = SystemTime::now();
    say(
        out,
        format_args!(
            "[init] Using Kubernetes version: {}",
            cfg.cluster.kubernetes_version
        ),
    )
    .map_err(|e| (phase("init"), e))?;
    macro_rules! step {
        ($name:expr, $body:expr) => {
            if !skipped(opts, $name) {
                $body.map_err(|e| (phase($name), e))?;
            }
        };
    }
    step!(
        "preflight",
        preflight::run(
            cfg,
            &preflight::Host {
                layout,
                path_env: opts.path_env.clone()
            },
            out
        )
    );
    step!("certs", certs::run(cfg, layout, "all", now, out));
    step!(
        "kubeconfig",
        kubeconfig::run(cfg, layout, KUBERNETES_DIR, "all", now, out)
    );
    step!("etcd", etcd::run_local(cfg, layout, out));
    step!("control-plane", controlplane::run(cfg, layout, "all", out));
    step!(
        "kubelet-start",
        kubelet::write_files(cfg, layout, &opts.hostname, out).and_then(|()| kubelet::start(
            layout,
            &opts.supervisor,
            out
        ))
    );
    step!(
        "wait-control-plane",
        wait_control_plane(cfg, layout, opts, out).await
    );
    let client = cluster_admin_client(cfg, layout, true)
        .await
        .map_err(|e| (phase("upload-config"), e))?;
    step!("upload-config", online::upload_config(&client, cfg, out).await);
    let mut certificate_key = None;
    if opts.upload_certs && !skipped(opts, "upload-certs") {
        let key = match &opts.certificate_key {
            Some(text) => pki::CertificateKey::parse(text).map_err(|e| (phase("upload-certs"), e.into()))?,
            None => pki::CertificateKey::generate(&mut pki::OsRng),
        };
        online::upload_certs(&client, cfg, layout, &key, out)
            .await
            .map_err(|e| (phase("upload-certs"), e))?;
        certificate_key = Some(key.to_hex());
    } else if !skipped(opts, "upload-certs") {
        say(
            out,
            format_args!("[upload-certs] Skipping phase. Please see --upload-certs"),
        )
        .map_err(|e| (phase("upload-certs"), e))?;
    }
    step!(
        "mark-control-plane",
        online::mark_control_plane(&client, cfg, out).await
    );
    let mut tokens = Vec::new();
    if !skipped(opts, "bootstrap-token") {
        tokens = online::bootstrap_token(&client, cfg, layout, out)
            .await
            .map_err(|e| (phase("bootstrap-token"), e))?;
    }
    step!(
        "kubelet-finalize",
        say(
            out,
            format_args!(
                "[kubelet-finalize] Updating \"/etc/kubernetes/kubelet.conf\" to point to a rotatable kubelet client certificate and key"
            )
        )
    );
    step!(
        "addon",
        say(
            out,
            format_args!(
                "[addons] Skipped CoreDNS and kube-proxy: bulwark runs pods as host processes, with the host's network and DNS"
            )
        )
    );
    let ca_path = layout.host(format!(
        "{}/ca.crt",
        cfg.cluster.certificates_dir.trim_end_matches('/')
    ));
    let ca = pki::read_cert(&ca_path).map_err(|e| (phase("show-join-command"), e.into()))?;
    let ca_pin = pki::ca_public_key_pin(&ca).map_err(|e| (phase("show-join-command"), e.into()))?;
    let outcome = Outcome {
        tokens,
        certificate_key,
        ca_pin,
    };
    if !skipped(opts, "show-join-command") {
        summary(cfg, &outcome, out).map_err(|e| (phase("show-join-command"), e))?;
    }
    Ok(outcome)
}

/// The join command line for this cluster with `token`.
pub fn join_command(cfg: &InitConfig, token: &str, ca_pin: &str) -> String {
    let endpoint = cfg.control_plane_url().trim_start_matches("https://").to_string();
    format!("kubeadm join {endpoint} --token {token} \\\n\t--discovery-token-ca-cert-hash {ca_pin}")
}

/// kubeadm's closing message.
pub fn summary(cfg: &InitConfig, outcome: &Outcome, out: &mut dyn Write) -> Result<(), Error> {
    let token = outcome
        .tokens
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "<value withheld>".into());
    let join = join_command(cfg, &token, &outcome.ca_pin);
    say(
        out,
        format_args!(
            "\nYour Kubernetes control-plane has initialized successfully!\n\n\
To start using your cluster, you need to run the following as a regular user:\n\n  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\n\
Alternatively, if you are the root user, you can run:\n\n  export KUBECONFIG=/etc/kubernetes/admin.conf\n\n\
You should now deploy a pod network to the cluster.\nRun \"kubectl apply -f [podnetwork].yaml\" with one of the options listed at:\n  https://kubernetes.io/docs/concepts/cluster-administration/addons/\n"
        ),
    )?;
    if cfg.cluster.control_plane_endpoint.is_some() {
        match &outcome.certificate_key {
            Some(key) => say(
                out,
                format_args!(
                    "You can now join any number of control-plane nodes running the following command on each as root:\n\n  {join} \\\n\t--control-plane --certificate-key {key}\n\n\
Please note that the certificate-key gives access to cluster sensitive data, keep it secret!\n\
As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use\n\
\"kubeadm init phase upload-certs --upload-certs\" to load new ones afterwards.\n"
                ),
            )?,
            None => say(
                out,
                format_args!(
                    "You can now join any number of control-plane nodes by copying certificate authorities\n\
and service account keys on each node and then running the following as root:\n\n  {join} \\\n\t--control-plane \n"
                ),
            )?,
        }
    }
    say(
        out,
        format_args!(
            "Then you can join any number of worker nodes by running the following on each as root:\n\n{join} "
        ),
    )
}

/// Where `init` leaves its files, for `reset` to remove.
pub fn written_paths(cfg: &InitConfig) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = [
        format!("{KUBERNETES_DIR}/manifests"),
        format!("{KUBERNETES_DIR}/pki"),
        format!("{KUBERNETES_DIR}/admin.conf"),
        format!("{KUBERNETES_DIR}/super-admin.conf"),
        format!("{KUBERNETES_DIR}/kubelet.conf"),
        format!("{KUBERNETES_DIR}/bootstrap-kubelet.conf"),
        format!("{KUBERNETES_DIR}/controller-manager.conf"),
        format!("{KUBERNETES_DIR}/scheduler.conf"),
        "/var/lib/kubelet".into(),
        "/var/log/pods".into(),
        "/var/log/bulwark".into(),
        "/var/run/bulwark".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect();
    match &cfg.cluster.etcd {
        crate::config::Etcd::Local(local) => paths.push(PathBuf::from(&local.data_dir)),
        crate::config::Etcd::Embedded => paths.push(crate::controlplane::EMBEDDED_STORE_DIR.into()),
        crate::config::Etcd::External(_) => {}
    }
    if cfg.cluster.certificates_dir != crate::config::DEFAULT_CERT_DIR {
        paths.push(PathBuf::from(&cfg.cluster.certificates_dir));
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(format_duration(Duration::from_secs(240)), "4m0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn skip_phases_accepts_a_phase_or_its_parent() {
        let opts = |s: &[&str]| Options {
            upload_certs: false,
            certificate_key: None,
            skip_phases: s.iter().map(|s| s.to_string()).collect(),
            supervisor: PathBuf::new(),
            hostname: String::new(),
            path_env: String::new(),
            timeout: Duration::ZERO,
            progress: false,
        };
        assert!(skipped(&opts(&["addon"]), "addon"));
        assert!(!skipped(&opts(&["addon"]), "etcd"));
        assert!(skipped(&opts(&["preflight", "addon"]), "preflight"));
    }
}
