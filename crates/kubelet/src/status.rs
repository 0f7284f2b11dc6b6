//! Pod status as upstream's kubelet computes it, from what the runtime and the probes observed: container states
//! (waiting / running / terminated with reason, exit code and times), restart counts, last states, readiness,
//! the pod phase and the PodScheduled / PodReadyToStartContainers / Initialized / ContainersReady / Ready
//! conditions. Pure functions: the kubelet gathers [`ContainerObservation`]s, [`pod_status`] turns them into a
//! `PodStatus`.

use crate::pod::DesiredPod;
use crate::shim::ExitStatus;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// What is known about one container of a pod at the end of a pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerObservation {
    pub name: String,
    pub image: String,
    /// Attempt number of the latest run (the restart count), if it was ever started.
    pub attempt: Option<u32>,
    /// `Some(started_at)` while running.
    pub running: Option<String>,
    /// How the latest run ended, if it did.
    pub exited: Option<ExitStatus>,
    /// How the run before the latest ended.
    pub previous: Option<ExitStatus>,
    /// Why the container cannot start (`CreateContainerConfigError`, ...).
    pub config_error: Option<(String, String)>,
    /// Set while an exited container waits for its restart back-off.
    pub back_off: Option<String>,
    /// Whether the latest exit is final under the restart policy.
    pub exit_is_final: bool,
    pub ready: bool,
    pub started: bool,
}

fn parse_time(text: &str) -> Option<Time> {
    text.parse::<Timestamp>().ok().map(Time)
}

fn terminated(status: &ExitStatus, container_id: Option<String>) -> ContainerState {
    let reason = if status.error.is_some() {
        "StartError"
    } else if status.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: status.exit_code,
            signal: status.signal,
            reason: Some(reason.into()),
            message: status.error.clone(),
            started_at: parse_time(&status.started_at),
            finished_at: parse_time(&status.finished_at),
            container_id,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

/// `bulwark://<pod-uid>/<container>/<attempt>`: names the runtime's state directory, as `containerd://<id>` does.
pub fn container_id(pod_uid: &str, container: &str, attempt: u32) -> String {
    format!("bulwark://{pod_uid}/{container}/{attempt}")
}

pub fn container_status(pod_uid: &str, obs: &ContainerObservation) -> ContainerStatus {
    let id = obs.attempt.map(|n| container_id(pod_uid, &obs.name, n));
    let state = match (&obs.running, &obs.exited) {
        (Some(started), _) => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: parse_time(started),
            }),
            ..Default::default()
        },
        (None, Some(exit)) if obs.exit_is_final => terminated(exit, id.clone()),
        (None, Some(_)) => waiting("CrashLoopBackOff", obs.back_off.clone()),
        (None, None) => match &obs.config_error {
            Some((reason, message)) => waiting(reason, Some(message.clone())),
            None => waiting("ContainerCreating", None),
        },
    };
    // The last state is the run before the current one: the exited latest run while it waits to restart.
    let last = match (&obs.running, &obs.exited) {
        (None, Some(exit)) if !obs.exit_is_final => Some(exit),
        _ => obs.previous.as_ref(),
    };
    let last_id = obs.attempt.and_then(|n| {
        let n = if obs.running.is_none() && !obs.exit_is_final {
            n
        } else {
            n.checked_sub(1)?
        };
        Some(container_id(pod_uid, &obs.name, n))
    });
    ContainerStatus {
        name: obs.name.clone(),
        image: obs.image.clone(),
        image_id: String::new(),
        container_id: id,
        ready: obs.ready && obs.running.is_some(),
        started: Some(obs.started && obs.running.is_some()),
        restart_count: obs.attempt.and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
        state: Some(state),
        last_state: Some(last.map(|e| terminated(e, last_id)).unwrap_or_default()),
        ..Default::default()
    }
}

/// Upstream's phase rule: Pending while a container has never run, Running while one runs (or will be
/// restarted), Succeeded / Failed once every container stopped for good.
pub fn phase(restart_policy: &str, containers: &[ContainerObservation]) -> &'static str {
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        if c.running.is_some() {
            running += 1;
        } else if let Some(exit) = &c.exited {
            stopped += 1;
            if exit.exit_code == 0 {
                succeeded += 1;
            }
        } else {
            pending += 1;
        }
    }
    if pending > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == "Always" {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == "Never" || containers.iter().all(|c| c.exit_is_final) {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

fn pod_condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.filter(|_| !ok).map(str::to_string),
        last_transition_time: Some(transition),
        ..Default::default()
    }
}

/// The whole status of `pod`. `host_ip` is the node's IP, `pod_ip` the pod's (the node's for host-network pods).
pub fn pod_status(
    pod: &DesiredPod,
    containers: &[ContainerObservation],
    host_ip: &str,
    pod_ip: &str,
    start_time: Option<&str>,
    previous: Option<&PodStatus>,
    now: Timestamp,
) -> PodStatus {
    let statuses: Vec<ContainerStatus> = containers.iter().map(|c| container_status(&pod.uid, c)).collect();
    let phase = phase(pod.restart_policy(), containers);
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let not_ready = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let ready_reason = Some(not_ready);
    let conditions = vec![
        pod_condition("PodReadyToStartContainers", true, None, previous, now),
        pod_condition("Initialized", true, None, previous, now),
        pod_condition("Ready", all_ready, ready_reason, previous, now),
        pod_condition("ContainersReady", all_ready, ready_reason, previous, now),
        pod_condition("PodScheduled", true, None, previous, now),
    ];
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        container_statuses: Some(statuses),
        host_ip: Some(host_ip.into()),
        host_ips: Some(vec![HostIP { ip: host_ip.into() }]),
        pod_ip: Some(pod_ip.into()),
        pod_ips: Some(vec![PodIP { ip: pod_ip.into() }]),
        start_time: start_time.and_then(parse_time),
        qos_class: Some(qos_class(pod).into()),
        ..Default::default()
    }
}

/// BestEffort without requests or limits, Guaranteed when every container's limits equal its requests for cpu
/// and memory, Burstable otherwise.
pub fn qos_class(pod: &DesiredPod) -> &'static str {
    let containers = pod.containers();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let resources = c.resources.clone().unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        for r in ["cpu", "memory"] {
            match (limits.get(r), requests.get(r)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus {
            exit_code: code,
            signal: None,
            finished_at: "2024-01-01T00:00:05Z".into(),
            started_at: "2024-01-01T00:00:00Z".into(),
            error: None,
        }
    }

    #[test]
    fn a_crashing_container_waits_in_crash_loop_back_off_with_its_last_exit_and_restart_count() {
        let obs = ContainerObservation {
            name: "c".into(),
            attempt: Some(2),
            exited: Some(exit(1)),
            previous: Some(exit(1)),
            back_off: Some("back-off 20s restarting failed container".into()),
            ..Default::default()
        };
        let s = container_status("u", &obs);
        assert_eq!(s.restart_count, 2);
        let w = s.state.unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = s.last_state.unwrap().terminated.unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert!(!s.ready);
        assert_eq!(phase("Always", &[obs]), "Running");
    }

    #[test]
    fn phases_follow_upstream_for_each_restart_policy() {
        let never_ran = ContainerObservation::default();
        let running = ContainerObservation {
            running: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let done = |code| ContainerObservation {
            exited: Some(exit(code)),
            exit_is_final: true,
            ..Default::default()
        };
        assert_eq!(phase("Always", &[never_ran.clone(), running.clone()]), "Pending");
        assert_eq!(phase("Always", &[running]), "Running");
        assert_eq!(phase("Never", &[done(0), done(0)]), "Succeeded");
        assert_eq!(phase("Never", &[done(0), done(2)]), "Failed");
        assert_eq!(phase("OnFailure", &[done(0)]), "Succeeded");
    }

    #[test]
    fn a_container_without_a_command_waits_with_its_config_error() {
        let obs = ContainerObservation {
            name: "c".into(),
            config_error: Some(("CreateContainerConfigError".into(), "no command".into())),
            ..Default::default()
        };
        let w = container_status("u", &obs).state.unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("CreateContainerConfigError"));
        assert_eq!(w.message.as_deref(), Some("no command"));
    }
}
