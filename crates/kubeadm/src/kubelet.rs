//! `kubeadm init phase kubelet-start`: writes the kubelet's configuration where kubeadm does
//! (`/var/lib/kubelet/config.yaml`, a `KubeletConfiguration`; `/var/lib/kubelet/kubeadm-flags.env`, the per-node
//! flags) and (re)starts the kubelet: through systemd where it runs, otherwise as a supervised daemon of bulwark's
//! (see [`crate::daemon`]).
//!
//! Entry points: [`config_yaml`] (also uploaded as the `kubelet-config` ConfigMap), [`flags`], [`write_files`],
//! [`start`].

use crate::config::InitConfig;
use crate::etcd::MANIFESTS_DIR;
use crate::{Error, Layout, daemon, say};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "/var/lib/kubelet/config.yaml";
pub const FLAGS_FILE: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
pub const PID_FILE: &str = "/var/run/bulwark/kubelet.pid";
pub const LOG_FILE: &str = "/var/log/bulwark/kubelet.log";
pub const HEALTHZ_PORT: u16 = 10248;

/// The cluster-wide kubelet configuration, as kubeadm writes it (the fields that matter without a container
/// runtime; the rest keep the kubelet's defaults).
pub fn config_yaml(cfg: &InitConfig) -> String {
    let dns = crate::config::first_service_ip(&cfg.cluster.service_subnet)
        .and_then(|ip| match ip {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                Some(std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3].saturating_add(9)).to_string())
            }
            std::net::IpAddr::V6(_) => None,
        })
        .unwrap_or_else(|| "10.96.0.10".into());
    let pki = cfg.cluster.certificates_dir.trim_end_matches('/');
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: {pki}/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- {dns}
clusterDomain: {domain}
containerRuntimeEndpoint: \"\"
cpuManagerReconcilePeriod: 0s
crashLoopBackOff: {{}}
evictionPressureTransitionPeriod: 0s
fileCheckFrequency: 0s
healthzBindAddress: 127.0.0.1
healthzPort: {HEALTHZ_PORT}
httpCheckFrequency: 0s
imageMaximumGCAge: 0s
imageMinimumGCAge: 0s
kind: KubeletConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: \"0\"
    text:
      infoBufferSize: \"0\"
  verbosity: 0
memorySwap: {{}}
nodeStatusReportFrequency: 0s
nodeStatusUpdateFrequency: 0s
rotateCertificates: true
runtimeRequestTimeout: 0s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
staticPodPath: {MANIFESTS_DIR}
streamingConnectionIdleTimeout: 0s
syncFrequency: 0s
volumeStatsAggPeriod: 0s
",
        domain = cfg.cluster.dns_domain,
    )
}

/// Where the kubelet's healthz endpoint is, from its configuration on disk (patches included): its
/// `healthzBindAddress` (loopback when unset or a wildcard) and `healthzPort`.
pub fn healthz_endpoint(layout: &Layout) -> (String, u16) {
    let config: serde_yaml::Value = std::fs::read_to_string(layout.host(CONFIG_FILE))
        .ok()
        .and_then(|text| serde_yaml::from_str(&text).ok())
        .unwrap_or_default();
    let host = match config["healthzBindAddress"]
        .as_str()
        .map(str::parse::<std::net::IpAddr>)
    {
        Some(Ok(ip)) if !ip.is_unspecified() => ip.to_string(),
        _ => "127.0.0.1".to_string(),
    };
    let port = config["healthzPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(HEALTHZ_PORT);
    (host, port)
}

/// The per-node flags kubeadm puts in `kubeadm-flags.env`.
pub fn flags(cfg: &InitConfig, hostname: &str) -> Vec<String> {
    let mut flags = vec![format!("--node-ip={}", cfg.node.advertise_address)];
    if !cfg.node.name.eq_ignore_ascii_case(hostname) {
        flags.push(format!("--hostname-override={}", cfg.node.name));
    }
    for (name, value) in &cfg.node.kubelet_extra_args {
        flags.retain(|f| !f.starts_with(&format!("--{name}=")));
        flags.push(format!("--{name}={value}"));
    }
    flags
}

/// Writes `config.yaml` and `kubeadm-flags.env`.
pub fn write_files(
    cfg: &InitConfig,
    layout: &Layout,
    hostname: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    say(
        out,
        format_args!("[kubelet-start] Writing kubelet environment file with flags to file {FLAGS_FILE:?}"),
    )?;
    let env = format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", flags(cfg, hostname).join(" "));
    pki::write_public(&layout.host(FLAGS_FILE), env.as_bytes())?;
    say(
        out,
        format_args!("[kubelet-start] Writing kubelet configuration to file {CONFIG_FILE:?}"),
    )?;
    let config = crate::patches::apply(
        cfg.node.patches_dir.as_deref(),
        crate::patches::KUBELET_CONFIGURATION,
        &config_yaml(cfg),
        out,
    )?;
    pki::write_public(&layout.host(CONFIG_FILE), config.as_bytes())?;
    Ok(())
}

/// The kubelet's command line as the systemd drop-in composes it (`kubelet $KUBELET_KUBECONFIG_ARGS
/// $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS`), plus bulwark's `--rootfs` when the root is not `/`.
pub fn command(layout: &Layout, kubeadm_flags: &[String]) -> Vec<String> {
    let mut argv = vec![
        "kubelet".to_string(),
        format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
        format!("--kubeconfig={KUBECONFIG}"),
        format!("--config={CONFIG_FILE}"),
    ];
    argv.extend(kubeadm_flags.iter().cloned());
    if layout.rootfs() != Path::new("/") {
        argv.push(format!("--rootfs={}", layout.rootfs().display()));
    }
    argv
}

/// Reads the flags back from `kubeadm-flags.env` (so a restart uses what is on disk, as systemd would).
pub fn read_flags(layout: &Layout) -> Result<Vec<String>, Error> {
    let path = layout.host(FLAGS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("KUBELET_KUBEADM_ARGS="))
        .map(|v| {
            v.trim()
                .trim_matches('"')
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default())
}

/// Starts (or restarts) the kubelet daemon under `supervisor` (the bulwark binary).
pub fn start(layout: &Layout, supervisor: &Path, out: &mut dyn Write) -> Result<u32, Error> {
    say(out, format_args!("[kubelet-start] Starting the kubelet"))?;
    let argv = command(layout, &read_flags(layout)?);
    daemon::start(supervisor, &argv, &pid_file(layout), &layout.host(LOG_FILE))
}

pub fn pid_file(layout: &Layout) -> PathBuf {
    layout.host(PID_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostFacts, InitFlags, load_init};

    #[test]
    fn the_node_name_differing_from_the_hostname_becomes_a_hostname_override() {
        let host = HostFacts {
            hostname: "box".into(),
            default_address: Some("10.0.0.6".parse().unwrap()),
        };
        let cfg = load_init(
            None,
            &InitFlags {
                node_name: Some("cp-1".into()),
                ..InitFlags::default()
            },
            &host,
        )
        .unwrap();
        assert_eq!(
            flags(&cfg, "box"),
            vec!["--node-ip=10.0.0.6", "--hostname-override=cp-1"]
        );
        assert!(config_yaml(&cfg).contains("clusterDNS:\n- 10.96.0.10\n"));
        assert!(config_yaml(&cfg).contains("staticPodPath: /etc/kubernetes/manifests"));
    }
}
