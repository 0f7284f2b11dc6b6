//! `kubelet`: the node agent. Today it runs static pods from `--pod-manifest-path` with no API server at all
//! (guide B's "kubelet as a service manager for etcd"); registration, the node lease, pods bound through the API
//! and mirror pods come with the API server.
//!
//! Layout:
//! - [`pod`]: reading manifests into [`pod::DesiredPod`]s (invalid ones reported and skipped), static pod UIDs,
//!   turning a container into a [`pod::ProcessSpec`] (PATH lookup, env, user/group, hostPath mapping below the
//!   node's root).
//! - [`runtime`]: the [`runtime::Runtime`] trait and [`runtime::ProcessRuntime`] (one shim per container, state on
//!   disk so a restarted kubelet adopts what runs).
//! - [`shim`]: the shim process (`bulwark container-shim <dir>`): CRI-format logs, signal forwarding, exit status.
//! - this file: [`Config`], [`Kubelet::sync_once`] (one reconcile pass: start, restart with back-off, stop what is
//!   no longer wanted) and [`run`] (the loop, with a shutdown signal).
//!
//! Containers outlive the kubelet: stopping or killing the kubelet leaves pods running, and the next kubelet on the
//! same root directory picks them up (a lock file keeps two kubelets off one root directory).

pub mod pod;
pub mod runtime;
pub mod shim;

use pod::{ConfigError, DesiredPod, ManifestError};
use runtime::{Attempt, ContainerState, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another kubelet is already running with root directory {0}")]
    Locked(PathBuf),
}

/// Time, injected so back-off can be tested without waiting.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// Host path of the static pod manifest directory, if any.
    pub pod_manifest_path: Option<PathBuf>,
    /// Host path of the kubelet's state (`/var/lib/kubelet` below the node root).
    pub root_dir: PathBuf,
    /// Host path of the process runtime's state (`<root_dir>/bulwark/containers`).
    pub runtime_dir: PathBuf,
    /// Host path of `/var/log/pods` below the node root.
    pub log_dir: PathBuf,
    /// The node's root directory: hostPath volumes are mapped below it.
    pub rootfs: PathBuf,
    /// The program run as each container's shim (bulwark itself).
    pub shim_program: PathBuf,
    /// PATH used to find containers' programs.
    pub path_env: String,
    pub sync_period: Duration,
}

/// The pod record the kubelet keeps for every pod it started (`<root>/pods/<uid>/pod.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PodRecord {
    namespace: String,
    name: String,
    grace_period_secs: u64,
}

/// Restart back-off per container, as upstream: the first restart is immediate, then 10 s doubling up to 5 min;
/// a container that ran for 10 minutes starts over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    restarts: u32,
}

impl Backoff {
    const INITIAL: Duration = Duration::from_secs(10);
    const MAX: Duration = Duration::from_secs(300);
    const RESET_AFTER: Duration = Duration::from_secs(600);

    /// The delay before the next restart of a container that ran for `ran`.
    pub fn next_delay(&mut self, ran: Duration) -> Duration {
        if ran >= Self::RESET_AFTER {
            self.restarts = 0;
        }
        let delay = match self.restarts {
            0 => Duration::ZERO,
            n => Self::INITIAL.saturating_mul(1 << (n - 1).min(8)).min(Self::MAX),
        };
        self.restarts = self.restarts.saturating_add(1);
        delay
    }
}

/// What one pass observed, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub started: Vec<Attempt>,
    pub stopping: Vec<Attempt>,
    pub removed: Vec<Attempt>,
    pub manifest_errors: Vec<ManifestError>,
    /// Containers that cannot start, with the reason shown as their waiting state.
    pub waiting: BTreeMap<(String, String), ConfigError>,
}

pub struct Kubelet {
    config: Config,
    runtime: Arc<dyn Runtime>,
    clock: Arc<dyn Clock>,
    backoff: BTreeMap<(String, String), Backoff>,
    /// When an exited container may be restarted.
    restart_at: BTreeMap<Attempt, SystemTime>,
    /// Attempts asked to stop, and when they get SIGKILL.
    kill_at: BTreeMap<Attempt, SystemTime>,
    reported: BTreeSet<(PathBuf, String)>,
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Kubelet {
    /// Takes the root directory's lock; fails if another kubelet holds it.
    pub fn new(
        config: Config,
        runtime: Arc<dyn Runtime>,
        clock: Arc<dyn Clock>,
    ) -> Result<Kubelet, KubeletError> {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| KubeletError::Io { path, source }
        };
        std::fs::create_dir_all(&config.root_dir).map_err(io(&config.root_dir))?;
        let lock_path = config.root_dir.join("kubelet.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| KubeletError::Locked(config.root_dir.clone()))?;
        Ok(Kubelet {
            config,
            runtime,
            clock,
            backoff: BTreeMap::new(),
            restart_at: BTreeMap::new(),
            kill_at: BTreeMap::new(),
            reported: BTreeSet::new(),
            _lock: Some(lock),
        })
    }

    fn record_path(&self, uid: &str) -> PathBuf {
        self.config.root_dir.join("pods").join(uid).join("pod.json")
    }

    fn read_record(&self, uid: &str) -> Option<PodRecord> {
        serde_json::from_slice(&std::fs::read(self.record_path(uid)).ok()?).ok()
    }

    fn log_path(&self, pod: &DesiredPod, container: &str, attempt: u32) -> PathBuf {
        self.config
            .log_dir
            .join(pod.log_dir_name())
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// One reconcile pass.
    pub fn sync_once(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let (desired, errors) = match &self.config.pod_manifest_path {
            Some(dir) => pod::read_manifests(dir, &self.config.node_name),
            None => (Vec::new(), Vec::new()),
        };
        for error in &errors {
            if self.reported.insert((error.path.clone(), error.reason.clone())) {
                tracing::warn!(manifest = %error.path.display(), reason = %error.reason, "skipping static pod manifest");
            }
        }
        report.manifest_errors = errors;
        let now = self.clock.now();
        let wanted: BTreeSet<&str> = desired.iter().map(|p| p.uid.as_str()).collect();

        // Group what the runtime knows: latest attempt per (pod, container).
        let mut latest: BTreeMap<(String, String), Attempt> = BTreeMap::new();
        let all = self.runtime.list();
        for attempt in &all {
            let key = (attempt.pod_uid.clone(), attempt.container.clone());
            if latest.get(&key).is_none_or(|a| a.number < attempt.number) {
                latest.insert(key, attempt.clone());
            }
        }

        // Stop and clean up what is no longer wanted; remember which pod names are still shutting down.
        let mut shutting_down: BTreeSet<(String, String)> = BTreeSet::new();
        let mut unwanted_pods: BTreeSet<String> = BTreeSet::new();
        for attempt in &all {
            if wanted.contains(attempt.pod_uid.as_str()) {
                continue;
            }
            unwanted_pods.insert(attempt.pod_uid.clone());
            let record = self.read_record(&attempt.pod_uid);
            match self.runtime.state(attempt) {
                ContainerState::Running { .. } => {
                    if let Some(r) = &record {
                        shutting_down.insert((r.namespace.clone(), r.name.clone()));
                    }
                    match self.kill_at.get(attempt) {
                        None => {
                            let grace = record.as_ref().map(|r| r.grace_period_secs).unwrap_or(30);
                            tracing::info!(pod = %attempt.pod_uid, container = %attempt.container, "stopping container");
                            self.runtime.stop(attempt, false);
                            self.kill_at
                                .insert(attempt.clone(), now + Duration::from_secs(grace));
                            report.stopping.push(attempt.clone());
                        }
                        Some(deadline) if now >= *deadline => self.runtime.stop(attempt, true),
                        Some(_) => {}
                    }
                }
                ContainerState::Exited(_) => {
                    self.runtime.remove(attempt);
                    self.kill_at.remove(attempt);
                    report.removed.push(attempt.clone());
                }
            }
        }
        let remaining: BTreeSet<String> = if unwanted_pods.is_empty() {
            BTreeSet::new()
        } else {
            self.runtime.list().into_iter().map(|a| a.pod_uid).collect()
        };
        for uid in unwanted_pods {
            if !remaining.contains(&uid) {
                let _ = std::fs::remove_dir_all(self.config.root_dir.join("pods").join(&uid));
                self.backoff.retain(|(u, _), _| *u != uid);
            }
        }

        for pod in &desired {
            if shutting_down.contains(&(pod.namespace.clone(), pod.name.clone())) {
                // The previous version of this static pod still runs; its ports and files are not free yet.
                continue;
            }
            let record = PodRecord {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                grace_period_secs: pod.grace_period_secs(),
            };
            if self.read_record(&pod.uid).as_ref() != Some(&record) {
                let path = self.record_path(&pod.uid);
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Ok(json) = serde_json::to_vec_pretty(&record) {
                    let _ = shim::write_atomic(&path, &json);
                }
            }
            for container in pod.containers() {
                let key = (pod.uid.clone(), container.name.clone());
                let next = match latest.get(&key) {
                    None => Some(0),
                    Some(attempt) => match self.runtime.state(attempt) {
                        ContainerState::Running { .. } => None,
                        ContainerState::Exited(status) => {
                            let restart = match pod.restart_policy() {
                                "Never" => false,
                                "OnFailure" => status.exit_code != 0,
                                _ => true,
                            };
                            if !restart {
                                None
                            } else {
                                let due = *self.restart_at.entry(attempt.clone()).or_insert_with(|| {
                                    let ran = ran_for(&status.started_at, &status.finished_at);
                                    now + self.backoff.entry(key.clone()).or_default().next_delay(ran)
                                });
                                (now >= due).then_some(attempt.number + 1)
                            }
                        }
                    },
                };
                let Some(number) = next else { continue };
                match pod::process_spec(pod, container, &self.config.rootfs, &self.config.path_env) {
                    Err(reason) => {
                        report.waiting.insert(key, reason);
                    }
                    Ok(spec) => {
                        let attempt = Attempt {
                            pod_uid: pod.uid.clone(),
                            container: container.name.clone(),
                            number,
                        };
                        let log = self.log_path(pod, &container.name, number);
                        match self.runtime.start(&attempt, &spec, &log) {
                            Ok(()) => {
                                tracing::info!(pod = %pod.name, container = %container.name, restart = number, "started container");
                                // Keep the previous attempt for `kubectl logs --previous`; drop older ones.
                                if number >= 2 {
                                    let old = Attempt {
                                        number: number - 2,
                                        ..attempt.clone()
                                    };
                                    self.runtime.remove(&old);
                                    self.restart_at.remove(&old);
                                }
                                report.started.push(attempt);
                            }
                            Err(e) => {
                                tracing::warn!(pod = %pod.name, container = %container.name, error = %e, "cannot start container");
                            }
                        }
                    }
                }
            }
        }
        report
    }
}

fn ran_for(started: &str, finished: &str) -> Duration {
    let parse = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok();
    match (parse(started), parse(finished)) {
        (Some(a), Some(b)) if b > a => Duration::try_from(b - a).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// Runs reconcile passes every `sync_period` until `shutdown` fires. Containers are left running on shutdown.
pub async fn run(mut kubelet: Kubelet, shutdown: CancellationToken) -> Result<(), KubeletError> {
    let period = kubelet.config.sync_period;
    loop {
        let span = tracing::info_span!("sync", node = %kubelet.config.node_name);
        let _ = span.in_scope(|| kubelet.sync_once());
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_immediate_to_five_minutes_and_reset_after_a_long_run() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..8)
            .map(|_| b.next_delay(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.next_delay(Duration::from_secs(601)), Duration::ZERO);
        assert_eq!(b.next_delay(Duration::from_secs(1)), Duration::from_secs(10));
    }
}
