//! Faults on a `bulwark up` lab, shared by the scenario tests and the `up` bench (which includes this file by
//! path): the processes of one node (to kill a "host"), and a client that writes continuously and records which
//! writes were acknowledged and when, to measure unavailability and to check that nothing acknowledged is lost.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` runs (a zombie does not).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose command line names `dir` (a lab, or one node's root in it), and all their descendants
/// (the load balancer behind its supervisor, the containers behind their shims).
pub fn processes_under(dir: &Path) -> BTreeSet<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut found: BTreeSet<u32> = all
        .iter()
        .copied()
        .filter(|pid| cmdline(*pid).iter().any(|a| a.contains(&needle)))
        .collect();
    loop {
        let more: Vec<u32> = all
            .iter()
            .copied()
            .filter(|pid| !found.contains(pid) && parent_of(*pid).is_some_and(|p| found.contains(&p)))
            .collect();
        if more.is_empty() {
            return found;
        }
        found.extend(more);
    }
}

/// The process of `dir` whose program is `program` (such as `etcd`).
pub fn program_under(dir: &Path, program: &str) -> Option<u32> {
    processes_under(dir).into_iter().find(|pid| {
        cmdline(*pid)
            .first()
            .is_some_and(|argv0| Path::new(argv0).file_name().is_some_and(|n| n == program))
    })
}

/// Sends `signal` to every process of `pids` at once, as a dying host would lose them.
pub fn signal(pids: &BTreeSet<u32>, signal: nix::sys::signal::Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), signal);
    }
}

/// What a continuous writer saw.
#[derive(Debug, Default)]
pub struct Writes {
    /// Names of the acknowledged objects, with the time each acknowledgement arrived.
    pub acked: Vec<(String, Instant)>,
    pub failed: usize,
    pub started: Option<Instant>,
}

impl Writes {
    /// The longest time without an acknowledged write, counted from `since` (the fault) to the last write.
    pub fn longest_gap_after(&self, since: Instant) -> Duration {
        let mut last = since;
        let mut longest = Duration::ZERO;
        for (_, at) in self.acked.iter().filter(|(_, at)| *at >= since) {
            longest = longest.max(at.duration_since(last));
            last = *at;
        }
        longest
    }
}

/// Creates ConfigMaps `<prefix>-0`, `<prefix>-1`, ... in `namespace` one after another until `stop`, each with a
/// 2 s deadline, through one long-lived client (so it also pays for reconnecting, as real clients do).
pub async fn write_until(
    client: kube::Client,
    namespace: &str,
    prefix: &str,
    stop: CancellationToken,
) -> Writes {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let mut writes = Writes {
        started: Some(Instant::now()),
        ..Writes::default()
    };
    let mut i = 0usize;
    while !stop.is_cancelled() {
        let name = format!("{prefix}-{i}");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.clone());
        cm.data = Some([("i".to_string(), i.to_string())].into());
        match tokio::time::timeout(Duration::from_secs(2), api.create(&PostParams::default(), &cm)).await {
            Ok(Ok(_)) => {
                writes.acked.push((name, Instant::now()));
                i += 1;
            }
            // A create that timed out may still have been applied: retry the same name, so a later 409 counts
            // as the acknowledgement it is.
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => {
                writes.acked.push((name, Instant::now()));
                i += 1;
            }
            _ => {
                writes.failed += 1;
                // Pace retries against a down endpoint; this is not waiting for a state.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    writes
}

/// The names of the ConfigMaps in `namespace`, or `None` when the list failed (a connection cut by a fault).
pub async fn configmap_names(client: kube::Client, namespace: &str) -> Option<BTreeSet<String>> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let list = api.list(&Default::default()).await.ok()?;
    Some(list.items.into_iter().filter_map(|c| c.metadata.name).collect())
}
