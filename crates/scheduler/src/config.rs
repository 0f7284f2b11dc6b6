//! `--config`: the `KubeSchedulerConfiguration` file (`kubescheduler.config.k8s.io/v1`, older betas accepted), and
//! Go-style durations (`15s`, `1m30s`, `500ms`) as its fields and upstream's flags spell them.
//!
//! Honoured: `clientConnection.kubeconfig`, `leaderElection.*`, `percentageOfNodesToScore`, `profiles[].schedulerName`.
//! Other fields are accepted and ignored (plugin configuration is upstream's default profile).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid duration {0:?}")]
    Duration(String),
    #[error("decoding the scheduler configuration: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    Kind { kind: String, api_version: String },
}

pub const API_VERSIONS: &[&str] = &[
    "kubescheduler.config.k8s.io/v1",
    "kubescheduler.config.k8s.io/v1beta3",
    "kubescheduler.config.k8s.io/v1beta2",
    "kubescheduler.config.k8s.io/v1beta1",
];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeSchedulerConfiguration {
    pub api_version: String,
    pub kind: String,
    pub client_connection: ClientConnection,
    pub leader_election: LeaderElection,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientConnection {
    pub kubeconfig: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LeaderElection {
    pub leader_elect: Option<bool>,
    pub lease_duration: Option<String>,
    pub renew_deadline: Option<String>,
    pub retry_period: Option<String>,
    pub resource_name: Option<String>,
    pub resource_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Profile {
    pub scheduler_name: Option<String>,
}

impl KubeSchedulerConfiguration {
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let cfg: KubeSchedulerConfiguration = serde_yaml::from_str(text)?;
        if cfg.kind != "KubeSchedulerConfiguration" || !API_VERSIONS.contains(&cfg.api_version.as_str()) {
            return Err(Error::Kind {
                kind: cfg.kind,
                api_version: cfg.api_version,
            });
        }
        Ok(cfg)
    }

    /// The scheduler names the profiles serve (`default-scheduler` when none is named).
    pub fn scheduler_names(&self) -> Vec<String> {
        let names: Vec<String> = self
            .profiles
            .iter()
            .filter_map(|p| p.scheduler_name.clone())
            .collect();
        if names.is_empty() {
            vec![crate::DEFAULT_SCHEDULER.into()]
        } else {
            names
        }
    }
}

/// Parses a Go `time.Duration` string (`300ms`, `1.5s`, `2m`, `1h30m`; a bare `0` too).
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let bad = || Error::Duration(s.to_string());
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("15s").ok(), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms").ok(), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h").ok(), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0").ok(), Some(Duration::ZERO));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn a_scheduler_configuration_gives_kubeconfig_leader_election_and_profiles() {
        let cfg = KubeSchedulerConfiguration::from_yaml(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
             clientConnection:\n  kubeconfig: /etc/kubernetes/scheduler.conf\n  qps: 100\n\
             leaderElection:\n  leaderElect: false\n  leaseDuration: 5s\n\
             profiles:\n- schedulerName: default-scheduler\n- schedulerName: batch\n  plugins: {}\n",
        );
        let cfg = cfg.map_err(|e| e.to_string());
        let Ok(cfg) = cfg else {
            return assert!(cfg.is_ok(), "{cfg:?}");
        };
        assert_eq!(cfg.client_connection.kubeconfig, "/etc/kubernetes/scheduler.conf");
        assert_eq!(cfg.leader_election.leader_elect, Some(false));
        assert_eq!(cfg.leader_election.lease_duration.as_deref(), Some("5s"));
        assert_eq!(cfg.scheduler_names(), ["default-scheduler", "batch"]);
    }

    #[test]
    fn other_kinds_are_refused_with_upstreams_words() {
        let err = KubeSchedulerConfiguration::from_yaml("apiVersion: v1\nkind: ConfigMap\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("no kind \"ConfigMap\" is registered for version \"v1\"")
        );
    }
}
