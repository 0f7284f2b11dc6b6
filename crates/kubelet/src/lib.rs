//! `kubelet`: the node agent. It runs static pods from `--pod-manifest-path` with or without an API server (guide
//! B's "kubelet as a service manager for etcd"), and, given a kubeconfig, registers its Node, renews its Lease,
//! runs the pods bound to it, reports their status, keeps mirror pods for its static pods and serves logs.
//!
//! Layout:
//! - [`pod`]: reading manifests into [`pod::DesiredPod`]s (invalid ones reported and skipped), static pod UIDs,
//!   pods from the API, turning a container into a [`pod::ProcessSpec`] (PATH lookup, env, user/group, hostPath
//!   mapping below the node's root).
//! - [`runtime`]: the [`runtime::Runtime`] trait and [`runtime::ProcessRuntime`] (one shim per container, state on
//!   disk so a restarted kubelet adopts what runs).
//! - [`shim`]: the shim process (`bulwark container-shim <dir>`): CRI-format logs, signal forwarding, exit status.
//! - [`status`]: pod status (phase, conditions, container states) from what the runtime and probes observed.
//! - [`ipam`]: an address of its own for each pod that is not `hostNetwork`, from a pod CIDR inside 127.0.0.0/8.
//! - [`probe`]: exec / httpGet / tcpSocket probe workers (readiness, liveness, startup).
//! - [`node`]: Node registration, node status, the node Lease. [`api`]: the pod watch, pod status reports, mirror
//!   pods, finishing graceful deletions. [`bootstrap`]: TLS bootstrap through a CertificateSigningRequest.
//!   [`rotation`]: renewing the client certificate before it expires, and clients that follow it.
//! - [`apilb`]: the client-side load balancer over the API servers that the kubelet's client talks through.
//! - [`volumes`]: projected service-account volumes (bound token, CA, namespace) for API pods.
//! - [`server`]: the HTTPS server on `--port` (`/healthz`, `/containerLogs/...`) and plain `/healthz` on
//!   `--healthz-port`. [`config`]: the `KubeletConfiguration` file.
//! - this file: [`Config`], [`Kubelet::sync_once`] (one reconcile pass: start, restart with back-off, probe, stop
//!   what is no longer wanted, compute statuses) and [`run`] (the loop, with a shutdown signal).
//!
//! Containers outlive the kubelet: stopping or killing the kubelet leaves pods running, and the next kubelet on the
//! same root directory picks them up (a lock file keeps two kubelets off one root directory). Pods that came from
//! the API are left alone until the first list of the pod watch is in, so a restart never stops them by mistake.

pub mod api;
pub mod apilb;
pub mod bootstrap;
pub mod config;
pub mod ipam;
pub mod node;
pub mod pod;
pub mod probe;
pub mod rotation;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod status;
pub mod volumes;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use pod::{ConfigError, DesiredPod, ManifestError};
use runtime::{Attempt, ContainerState, Runtime};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
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
    /// The node's IP: hostIP, and podIP of host-network pods (of every pod without `pod_cidr`).
    pub node_ip: String,
    /// Where pods that are not `hostNetwork` take their own address from (`--pod-cidr`).
    pub pod_cidr: Option<ipam::PodCidr>,
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
    /// The API server the kubelet talks to (host, port): what API pods get as `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub api_server: Option<(String, u16)>,
}

impl Config {
    fn node_context(&self) -> pod::NodeContext<'_> {
        pod::NodeContext {
            rootfs: &self.rootfs,
            root_dir: &self.root_dir,
            path_env: &self.path_env,
            api_server: self.api_server.as_ref().map(|(h, p)| (h.as_str(), *p)),
        }
    }
}

const SOURCE_FILE: &str = "file";
const SOURCE_API: &str = "api";

/// The pod record the kubelet keeps for every pod it started (`<root>/pods/<uid>/pod.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct PodRecord {
    namespace: String,
    name: String,
    grace_period_secs: u64,
    /// `file` (static pod) or `api`; records written before the API existed are static pods.
    #[serde(default = "source_file")]
    source: String,
    /// When the kubelet first took the pod on (the pod's `startTime`).
    #[serde(default)]
    start_time: Option<String>,
    /// The pod's own address from the pod CIDR, kept for the pod's life so a restarted kubelet reports the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod_ip: Option<String>,
}

fn source_file() -> String {
    SOURCE_FILE.into()
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

/// A pod the kubelet runs, with its status as of the last pass.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub pod: DesiredPod,
    pub status: PodStatus,
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
    api_pods: Option<Arc<api::ApiPods>>,
    prober: Arc<probe::Prober>,
    /// Per pod UID, as of the last pass.
    views: BTreeMap<String, PodView>,
    /// Terminating API pods whose containers are all gone, to be deleted for good.
    finished: Vec<Pod>,
    /// Addresses handed out from the pod CIDR, per pod UID (mirrors the records on disk).
    pod_ips: BTreeMap<String, Ipv4Addr>,
    _lock: Option<nix::fcntl::Flock<std::fs::File>>,
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn to_timestamp(t: SystemTime) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::try_from(t).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
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
        let pod_ips = recorded_pod_ips(&config.root_dir.join("pods"));
        Ok(Kubelet {
            config,
            runtime,
            clock,
            backoff: BTreeMap::new(),
            restart_at: BTreeMap::new(),
            kill_at: BTreeMap::new(),
            reported: BTreeSet::new(),
            api_pods: None,
            prober: Arc::new(probe::Prober::default()),
            views: BTreeMap::new(),
            finished: Vec::new(),
            pod_ips,
            _lock: Some(lock),
        })
    }

    /// Runs the pods bound to this node as the watch feeding `pods` sees them, besides the static pods.
    pub fn with_api_pods(mut self, pods: Arc<api::ApiPods>) -> Kubelet {
        self.api_pods = Some(pods);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pods run by this kubelet and their statuses, as of the last pass.
    pub fn views(&self) -> Vec<PodView> {
        self.views.values().cloned().collect()
    }

    /// Terminating API pods whose containers are gone, as of the last pass.
    pub fn finished(&self) -> &[Pod] {
        &self.finished
    }

    fn record_path(&self, uid: &str) -> PathBuf {
        self.config.root_dir.join("pods").join(uid).join("pod.json")
    }

    fn read_record(&self, uid: &str) -> Option<PodRecord> {
        serde_json::from_slice(&std::fs::read(self.record_path(uid)).ok()?).ok()
    }

    fn write_record(&self, uid: &str, record: &PodRecord) {
        let path = self.record_path(uid);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(json) = serde_json::to_vec_pretty(record) {
            let _ = shim::write_atomic(&path, &json);
        }
    }

    /// The address `pod` has: the node's for host-network pods or without a pod CIDR, else its own.
    fn pod_ip(&self, pod: &DesiredPod) -> String {
        match self.pod_ips.get(&pod.uid) {
            Some(ip) if !pod.host_network() => ip.to_string(),
            _ => self.config.node_ip.clone(),
        }
    }

    /// Keeps the address recorded for `pod`, or hands out a free one; `None` when the pod CIDR is full.
    fn assign_pod_ip(&mut self, pod: &DesiredPod, recorded: Option<&str>) -> Option<Option<String>> {
        let Some(cidr) = self.config.pod_cidr.filter(|_| !pod.host_network()) else {
            return Some(None);
        };
        let kept = recorded
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| cidr.contains(*ip))
            .or_else(|| self.pod_ips.get(&pod.uid).copied());
        let ip = match kept {
            Some(ip) => ip,
            None => {
                let used: BTreeSet<Ipv4Addr> = self.pod_ips.values().copied().collect();
                let ip = cidr.allocate(&used, self.config.node_ip.parse().ok())?;
                tracing::info!(pod = %pod.name, namespace = %pod.namespace, ip = %ip, "assigned pod IP");
                ip
            }
        };
        self.pod_ips.insert(pod.uid.clone(), ip);
        Some(Some(ip.to_string()))
    }

    fn facts(&self, pod: &DesiredPod) -> pod::PodFacts {
        pod::PodFacts {
            node_name: self.config.node_name.clone(),
            host_ip: self.config.node_ip.clone(),
            pod_ip: self.pod_ip(pod),
        }
    }

    fn forget_pod(&mut self, uid: &str) {
        let _ = std::fs::remove_dir_all(self.config.root_dir.join("pods").join(uid));
        self.backoff.retain(|(u, _), _| u != uid);
        self.pod_ips.remove(uid);
    }

    fn log_path(&self, pod: &DesiredPod, container: &str, attempt: u32) -> PathBuf {
        self.config
            .log_dir
            .join(pod.log_dir_name())
            .join(container)
            .join(format!("{attempt}.log"))
    }

    fn restart_wanted(pod: &DesiredPod, exit_code: i32) -> bool {
        match pod.restart_policy() {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => true,
        }
    }

    /// Asks a running attempt to stop, then kills it once `grace` has passed.
    fn stop_with_grace(&mut self, attempt: &Attempt, grace: u64, now: SystemTime) -> bool {
        match self.kill_at.get(attempt) {
            None => {
                self.runtime.stop(attempt, false);
                self.kill_at
                    .insert(attempt.clone(), now + Duration::from_secs(grace));
                true
            }
            Some(deadline) if now >= *deadline => {
                self.runtime.stop(attempt, true);
                false
            }
            Some(_) => false,
        }
    }

    /// One reconcile pass.
    pub fn sync_once(&mut self) -> SyncReport {
        let mut report = SyncReport::default();
        let (mut desired, errors) = match &self.config.pod_manifest_path {
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

        // Pods from the API: running ones are wanted; terminating ones are stopped with their deletion grace period.
        let snapshot = self.api_pods.as_ref().and_then(|a| a.snapshot());
        let api_synced = snapshot.is_some();
        let mut terminating: BTreeMap<String, (Pod, u64)> = BTreeMap::new();
        for p in snapshot.iter().flatten() {
            let bound_here =
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.config.node_name.as_str());
            if api::is_mirror(p) || !bound_here {
                continue;
            }
            let Some(d) = DesiredPod::from_api(p) else {
                continue;
            };
            if p.metadata.deletion_timestamp.is_some() {
                let grace = p
                    .metadata
                    .deletion_grace_period_seconds
                    .and_then(|g| u64::try_from(g).ok())
                    .unwrap_or_else(|| d.grace_period_secs());
                terminating.insert(d.uid.clone(), (p.clone(), grace));
                continue;
            }
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            desired.push(d);
        }
        let wanted: BTreeSet<&str> = desired.iter().map(|p| p.uid.as_str()).collect();

        // Group what the runtime knows: latest attempt per (pod, container).
        let all = self.runtime.list();
        let latest = latest_attempts(&all);

        // Stop and clean up what is no longer wanted; remember which pod names are still shutting down.
        let mut shutting_down: BTreeSet<(String, String)> = BTreeSet::new();
        let mut unwanted_pods: BTreeSet<String> = BTreeSet::new();
        for attempt in &all {
            if wanted.contains(attempt.pod_uid.as_str()) {
                continue;
            }
            let record = self.read_record(&attempt.pod_uid);
            if !api_synced && record.as_ref().is_some_and(|r| r.source == SOURCE_API) {
                // Not listed yet is not deleted: wait for the pod watch before touching API pods.
                continue;
            }
            unwanted_pods.insert(attempt.pod_uid.clone());
            match self.runtime.state(attempt) {
                ContainerState::Running { .. } => {
                    if let Some(r) = &record {
                        shutting_down.insert((r.namespace.clone(), r.name.clone()));
                    }
                    let grace = terminating
                        .get(&attempt.pod_uid)
                        .map(|(_, g)| *g)
                        .or(record.as_ref().map(|r| r.grace_period_secs))
                        .unwrap_or(30);
                    if self.stop_with_grace(attempt, grace, now) {
                        tracing::info!(pod = %attempt.pod_uid, container = %attempt.container, grace, "stopping container");
                        report.stopping.push(attempt.clone());
                    }
                }
                ContainerState::Exited(_) => {
                    self.runtime.remove(attempt);
                    self.kill_at.remove(attempt);
                    self.restart_at.remove(attempt);
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
                self.forget_pod(&uid);
            }
        }
        // Pods that went before any container of theirs started (one that cannot start, say) have no attempt to
        // clean up above; their records and addresses go too.
        let running: BTreeSet<String> = all.iter().map(|a| a.pod_uid.clone()).collect();
        let idle: Vec<String> = self
            .pod_ips
            .keys()
            .filter(|uid| !wanted.contains(uid.as_str()) && !running.contains(*uid))
            .filter(|uid| api_synced || self.read_record(uid).is_some_and(|r| r.source == SOURCE_FILE))
            .cloned()
            .collect();
        for uid in idle {
            self.forget_pod(&uid);
        }

        for pod in &desired {
            if shutting_down.contains(&(pod.namespace.clone(), pod.name.clone())) {
                // The previous version of this static pod still runs; its ports and files are not free yet.
                continue;
            }
            let existing = self.read_record(&pod.uid);
            let Some(pod_ip) = self.assign_pod_ip(pod, existing.as_ref().and_then(|r| r.pod_ip.as_deref()))
            else {
                for container in pod.containers() {
                    report.waiting.insert(
                        (pod.uid.clone(), container.name.clone()),
                        ConfigError {
                            reason: "ContainerCreating",
                            message: format!(
                                "no free address left in the pod CIDR {}",
                                self.config.pod_cidr.map(|c| c.to_string()).unwrap_or_default()
                            ),
                        },
                    );
                }
                continue;
            };
            let record = PodRecord {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                grace_period_secs: pod.grace_period_secs(),
                source: if pod.static_pod { SOURCE_FILE } else { SOURCE_API }.into(),
                start_time: existing
                    .as_ref()
                    .and_then(|r| r.start_time.clone())
                    .or_else(|| Some(rfc3339(now))),
                pod_ip,
            };
            let facts = self.facts(pod);
            if existing.as_ref() != Some(&record) {
                self.write_record(&pod.uid, &record);
            }
            for container in pod.containers() {
                let key = (pod.uid.clone(), container.name.clone());
                let next = match latest.get(&key) {
                    None => Some(0),
                    Some(attempt) => match self.runtime.state(attempt) {
                        ContainerState::Running { .. } => {
                            let spec = pod::process_spec(pod, container, &self.config.node_context(), &facts);
                            // Probes without a host go to the pod's address, as upstream's.
                            self.prober.ensure(
                                attempt,
                                &probe::Target {
                                    host: facts.pod_ip.clone(),
                                    env: spec.map(|s| s.env).unwrap_or_default(),
                                    container: container.clone(),
                                },
                            );
                            let failed = self.prober.results(attempt).is_some_and(|r| r.liveness_failed);
                            if failed && self.stop_with_grace(attempt, pod.grace_period_secs(), now) {
                                tracing::info!(pod = %pod.name, container = %container.name, "liveness probe failed; restarting container");
                                report.stopping.push(attempt.clone());
                            }
                            None
                        }
                        ContainerState::Exited(status) => {
                            if !Self::restart_wanted(pod, status.exit_code) {
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
                // A pod's volumes come before its containers, as upstream: no token yet, no start.
                if !pod.static_pod
                    && let Err(message) = volumes::ready(&self.config.root_dir, &pod.pod)
                {
                    report.waiting.insert(
                        key,
                        ConfigError {
                            reason: "ContainerCreating",
                            message,
                        },
                    );
                    continue;
                }
                match pod::process_spec(pod, container, &self.config.node_context(), &facts) {
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
                                if let Some(prev) = number.checked_sub(1) {
                                    self.kill_at.remove(&Attempt {
                                        number: prev,
                                        ..attempt.clone()
                                    });
                                }
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
        self.observe(&desired, &terminating, &report, now);
        report
    }

    /// After a pass: pod statuses, probe workers of what runs, terminating pods that are done.
    fn observe(
        &mut self,
        desired: &[DesiredPod],
        terminating: &BTreeMap<String, (Pod, u64)>,
        report: &SyncReport,
        now: SystemTime,
    ) {
        let all = self.runtime.list();
        let latest = latest_attempts(&all);
        let mut live = BTreeSet::new();
        let mut views = BTreeMap::new();
        for pod in desired {
            let mut observations = Vec::new();
            for container in pod.containers() {
                let key = (pod.uid.clone(), container.name.clone());
                let mut obs = status::ContainerObservation {
                    name: container.name.clone(),
                    image: container.image.clone().unwrap_or_default(),
                    config_error: report
                        .waiting
                        .get(&key)
                        .map(|e| (e.reason.to_string(), e.message.clone())),
                    ..Default::default()
                };
                if let Some(attempt) = latest.get(&key) {
                    obs.attempt = Some(attempt.number);
                    match self.runtime.state(attempt) {
                        ContainerState::Running { started_at, .. } => {
                            live.insert(attempt.clone());
                            obs.running = Some(started_at.unwrap_or_else(|| rfc3339(now)));
                            // Before its probe workers report (a container started in this very pass has none
                            // yet), a container with a readiness or startup probe is not ready or started, as
                            // upstream: else a new pod would be Ready for a moment and a rollout would count it.
                            let results = self.prober.results(attempt);
                            obs.ready = results.map_or(container.readiness_probe.is_none(), |r| r.ready);
                            obs.started = results.map_or(container.startup_probe.is_none(), |r| r.started);
                        }
                        ContainerState::Exited(exit) => {
                            obs.exit_is_final = !Self::restart_wanted(pod, exit.exit_code);
                            if let Some(due) = self.restart_at.get(attempt).filter(|due| **due > now) {
                                let wait = due.duration_since(now).unwrap_or_default().as_secs().max(1);
                                obs.back_off = Some(format!(
                                    "back-off {wait}s restarting failed container={} pod={}_{}({})",
                                    container.name, pod.name, pod.namespace, pod.uid
                                ));
                            }
                            obs.exited = Some(exit);
                        }
                    }
                    if let Some(prev) = attempt.number.checked_sub(1)
                        && let ContainerState::Exited(exit) = self.runtime.state(&Attempt {
                            number: prev,
                            ..attempt.clone()
                        })
                    {
                        obs.previous = Some(exit);
                    }
                }
                observations.push(obs);
            }
            let start_time = self.read_record(&pod.uid).and_then(|r| r.start_time);
            let previous = self.views.get(&pod.uid).map(|v| &v.status);
            let status = status::pod_status(
                pod,
                &observations,
                &self.config.node_ip,
                &self.pod_ip(pod),
                start_time.as_deref(),
                previous,
                to_timestamp(now),
            );
            views.insert(
                pod.uid.clone(),
                PodView {
                    pod: pod.clone(),
                    status,
                },
            );
        }
        self.prober.retain(&live);
        self.views = views;
        let present: BTreeSet<&str> = all.iter().map(|a| a.pod_uid.as_str()).collect();
        self.finished = terminating
            .iter()
            .filter(|(uid, _)| !present.contains(uid.as_str()))
            .map(|(_, (pod, _))| pod.clone())
            .collect();
    }
}

/// The pod CIDR addresses recorded by an earlier kubelet on this root directory, per pod UID.
fn recorded_pod_ips(pods_dir: &std::path::Path) -> BTreeMap<String, Ipv4Addr> {
    let mut ips = BTreeMap::new();
    for entry in std::fs::read_dir(pods_dir).into_iter().flatten().flatten() {
        let record: Option<PodRecord> = std::fs::read(entry.path().join("pod.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(ip) = record.and_then(|r| r.pod_ip).and_then(|ip| ip.parse().ok()) {
            ips.insert(entry.file_name().to_string_lossy().into_owned(), ip);
        }
    }
    ips
}

fn latest_attempts(all: &[Attempt]) -> BTreeMap<(String, String), Attempt> {
    let mut latest: BTreeMap<(String, String), Attempt> = BTreeMap::new();
    for attempt in all {
        let key = (attempt.pod_uid.clone(), attempt.container.clone());
        if latest.get(&key).is_none_or(|a| a.number < attempt.number) {
            latest.insert(key, attempt.clone());
        }
    }
    latest
}

fn ran_for(started: &str, finished: &str) -> Duration {
    let parse = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok();
    match (parse(started), parse(finished)) {
        (Some(a), Some(b)) if b > a => Duration::try_from(b - a).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// Runs reconcile passes every `sync_period` (sooner when the pod watch saw a change) until `shutdown` fires; once
/// `api_rx` delivers the API side, each pass is followed by the API side (statuses, mirror pods, deletions). Containers are left running on
/// shutdown.
pub async fn run(
    mut kubelet: Kubelet,
    mut api_rx: Option<tokio::sync::oneshot::Receiver<api::ApiSync>>,
    shutdown: CancellationToken,
) -> Result<(), KubeletError> {
    let period = kubelet.config.sync_period;
    let pods = kubelet.api_pods.clone();
    // The API side arrives once the client exists (after TLS bootstrap, perhaps); static pods run meanwhile.
    let mut api: Option<api::ApiSync> = None;
    loop {
        if let Some(rx) = api_rx.as_mut() {
            match rx.try_recv() {
                Ok(sync) => {
                    api = Some(sync);
                    api_rx = None;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => api_rx = None,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
        }
        let span = tracing::info_span!("sync", node = %kubelet.config.node_name);
        let _ = span.in_scope(|| kubelet.sync_once());
        if let (Some(api), Some(bound)) = (api.as_mut(), pods.as_ref().and_then(|p| p.snapshot()))
            && api.sync(&kubelet.views(), kubelet.finished(), &bound).await
        {
            // Volumes just written: start those containers now rather than a period later.
            continue;
        }
        let changed = async {
            match &pods {
                Some(p) => p.changed.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                kubelet.prober.stop_all();
                return Ok(());
            }
            _ = tokio::time::sleep(period) => {}
            _ = changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pod::ProcessSpec;
    use runtime::RuntimeError;
    use std::sync::Mutex;

    /// A runtime that only remembers: every started attempt runs until stopped.
    #[derive(Default)]
    struct FakeRuntime {
        running: Mutex<BTreeMap<Attempt, ProcessSpec>>,
    }

    impl Runtime for FakeRuntime {
        fn start(
            &self,
            attempt: &Attempt,
            spec: &ProcessSpec,
            _log: &std::path::Path,
        ) -> Result<(), RuntimeError> {
            self.running.lock().unwrap().insert(attempt.clone(), spec.clone());
            Ok(())
        }
        fn state(&self, _attempt: &Attempt) -> ContainerState {
            ContainerState::Running {
                pid: Some(1),
                started_at: None,
            }
        }
        fn stop(&self, attempt: &Attempt, _force: bool) {
            self.running.lock().unwrap().remove(attempt);
        }
        fn list(&self) -> Vec<Attempt> {
            self.running.lock().unwrap().keys().cloned().collect()
        }
        fn remove(&self, attempt: &Attempt) {
            self.running.lock().unwrap().remove(attempt);
        }
    }

    fn config(root: &std::path::Path, pod_cidr: Option<&str>) -> Config {
        Config {
            node_name: "n1".into(),
            node_ip: "127.50.0.1".into(),
            pod_cidr: pod_cidr.map(|c| ipam::PodCidr::parse(c).unwrap()),
            pod_manifest_path: Some(root.join("manifests")),
            root_dir: root.join("var/lib/kubelet"),
            runtime_dir: root.join("var/lib/kubelet/bulwark/containers"),
            log_dir: root.join("var/log/pods"),
            rootfs: root.to_path_buf(),
            shim_program: PathBuf::from("/bin/true"),
            path_env: "/usr/bin:/bin".into(),
            sync_period: Duration::from_secs(1),
            api_server: None,
        }
    }

    fn manifest(root: &std::path::Path, name: &str, extra_spec: &str, extra_container: &str) {
        std::fs::create_dir_all(root.join("manifests")).unwrap();
        std::fs::write(
            root.join("manifests").join(format!("{name}.yaml")),
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra_spec}  containers:\n  - name: c\n    command: [sleep, '1000']\n{extra_container}"
            ),
        )
        .unwrap();
    }

    fn pod_ips(kubelet: &Kubelet) -> BTreeMap<String, String> {
        kubelet
            .views()
            .into_iter()
            .map(|v| (v.pod.name.clone(), v.status.pod_ip.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn a_container_just_started_with_a_readiness_probe_is_not_ready_until_the_probe_says_so() {
        let root = tempfile::tempdir().unwrap();
        manifest(
            root.path(),
            "probed",
            "",
            "    readinessProbe: {tcpSocket: {port: 1}}\n",
        );
        manifest(root.path(), "plain", "", "");
        let runtime = Arc::new(FakeRuntime::default());
        let mut kubelet = Kubelet::new(config(root.path(), None), runtime, Arc::new(SystemClock)).unwrap();
        let report = kubelet.sync_once();
        assert_eq!(report.started.len(), 2);
        let ready: BTreeMap<String, bool> = kubelet
            .views()
            .into_iter()
            .map(|v| (v.pod.name.clone(), v.status.container_statuses.unwrap()[0].ready))
            .collect();
        assert_eq!(
            ready,
            BTreeMap::from([("plain-n1".into(), true), ("probed-n1".into(), false)])
        );
    }

    #[test]
    fn pods_get_their_own_address_from_the_pod_cidr_and_keep_it_across_kubelet_restarts() {
        let root = tempfile::tempdir().unwrap();
        manifest(root.path(), "a", "", "");
        manifest(root.path(), "b", "", "");
        manifest(root.path(), "host", "  hostNetwork: true\n", "");
        let runtime = Arc::new(FakeRuntime::default());
        let cfg = config(root.path(), Some("127.50.1.0/24"));
        let mut kubelet = Kubelet::new(cfg.clone(), runtime.clone(), Arc::new(SystemClock)).unwrap();
        kubelet.sync_once();
        let first = pod_ips(&kubelet);
        assert_eq!(
            first,
            BTreeMap::from([
                ("a-n1".into(), "127.50.1.1".into()),
                ("b-n1".into(), "127.50.1.2".into()),
                ("host-n1".into(), "127.50.0.1".into()),
            ])
        );
        let env_of = |name: &str| {
            runtime
                .running
                .lock()
                .unwrap()
                .values()
                .find(|s| s.env.iter().any(|(k, v)| k == "HOSTNAME" && v == name))
                .cloned()
                .unwrap()
        };
        assert!(env_of("a-n1").argv.iter().any(|a| a == "1000"));

        // A new kubelet on the same root reports the same addresses; a removed pod's address goes to the next pod.
        drop(kubelet);
        std::fs::remove_file(root.path().join("manifests/a.yaml")).unwrap();
        let mut kubelet = Kubelet::new(cfg, runtime, Arc::new(SystemClock)).unwrap();
        kubelet.sync_once();
        assert_eq!(pod_ips(&kubelet)["b-n1"], "127.50.1.2");
        manifest(root.path(), "c", "", "");
        kubelet.sync_once();
        assert_eq!(pod_ips(&kubelet)["c-n1"], "127.50.1.1");
    }

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
