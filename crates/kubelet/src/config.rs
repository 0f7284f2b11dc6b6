//! The kubelet's configuration file (`--config`): `KubeletConfiguration` of `kubelet.config.k8s.io/v1beta1`, as
//! kubeadm writes it to `/var/lib/kubelet/config.yaml`. Only the fields bulwark acts on are read; unknown ones
//! (cgroupDriver, eviction thresholds, ...) are accepted and ignored, as a newer kubelet's fields would be.
//!
//! Entry points: [`KubeletConfiguration::read`], [`parse_duration`].

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    pub static_pod_path: Option<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub healthz_port: Option<u16>,
    pub healthz_bind_address: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub authentication: Authentication,
    pub authorization: Authorization,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<String>,
    pub cluster_domain: Option<String>,
    pub node_status_update_frequency: Option<String>,
    pub node_lease_duration_seconds: Option<i32>,
    pub sync_frequency: Option<String>,
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub max_pods: Option<i64>,
    /// Upstream's standalone-mode pod CIDR; here the loopback range pods take their own addresses from.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    pub cgroup_driver: Option<String>,
    /// Renew the client certificate before it expires (upstream's default is false; kubeadm writes true).
    pub rotate_certificates: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Authentication {
    pub x509: X509,
    pub anonymous: Anonymous,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct X509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Anonymous {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Authorization {
    pub mode: Option<String>,
}

impl KubeletConfiguration {
    pub fn read(path: &Path) -> Result<KubeletConfiguration, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigFileError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    pub fn parse(text: &str) -> Result<KubeletConfiguration, String> {
        let config: KubeletConfiguration = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if config.kind != "KubeletConfiguration" {
            return Err(format!("kind {:?} is not KubeletConfiguration", config.kind));
        }
        if !config.api_version.starts_with("kubelet.config.k8s.io/") {
            return Err(format!(
                "apiVersion {:?} is not kubelet.config.k8s.io/v1beta1",
                config.api_version
            ));
        }
        for field in [&config.node_status_update_frequency, &config.sync_frequency]
            .into_iter()
            .flatten()
        {
            parse_duration(field).ok_or_else(|| format!("invalid duration {field:?}"))?;
        }
        Ok(config)
    }
}

/// Parses Go's duration syntax as the configuration file uses it (`10s`, `1m0s`, `500ms`, `1h30m`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|n| *n > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * seconds).ok()?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_the_configuration_writes_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("10"), None);
    }

    #[test]
    fn a_kubeadm_style_configuration_is_read_and_unknown_fields_are_ignored() {
        let config = KubeletConfiguration::parse(
            r#"
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 0s}
  x509: {clientCAFile: /etc/kubernetes/pki/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: systemd
clusterDNS: [10.96.0.10]
clusterDomain: cluster.local
staticPodPath: /etc/kubernetes/manifests
nodeStatusUpdateFrequency: 10s
rotateCertificates: true
evictionHard: {memory.available: 100Mi}
"#,
        )
        .unwrap();
        assert_eq!(
            config.static_pod_path.as_deref(),
            Some("/etc/kubernetes/manifests")
        );
        assert_eq!(
            config.authentication.x509.client_ca_file.as_deref(),
            Some("/etc/kubernetes/pki/ca.crt")
        );
        assert_eq!(config.cluster_dns, ["10.96.0.10"]);
        assert_eq!(config.authentication.anonymous.enabled, Some(false));
        assert_eq!(config.rotate_certificates, Some(true));
        assert!(KubeletConfiguration::parse("apiVersion: v1\nkind: Pod\n").is_err());
    }
}
