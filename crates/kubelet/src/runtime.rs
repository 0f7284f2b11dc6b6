//! The `Runtime` trait and the process runtime behind it: each container is a host process watched by a shim
//! (see [`crate::shim`]). State is files under one directory per container attempt, so a restarted kubelet finds
//! what is running and adopts it instead of starting it twice.
//!
//! Layout of the state root: `<root>/<pod-uid>/<container>/<attempt>/{spec.json, shim.pid, container.pid,
//! exit.json}`. The attempt number is the container's restart count.

use crate::pod::ProcessSpec;
use crate::shim::{self, ExitStatus, ShimSpec};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One run of one container of one pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt {
    pub pod_uid: String,
    pub container: String,
    pub number: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running {
        pid: Option<i32>,
        started_at: Option<String>,
    },
    Exited(ExitStatus),
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Shim(#[from] shim::ShimError),
    #[error("cannot start the container shim {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the kubelet runs containers. The process runtime is the one implementation today; a runc/containerd one
/// can follow behind the same trait.
pub trait Runtime: Send + Sync {
    fn start(&self, attempt: &Attempt, spec: &ProcessSpec, log_path: &Path) -> Result<(), RuntimeError>;
    fn state(&self, attempt: &Attempt) -> ContainerState;
    /// Asks the container to stop (SIGTERM through the shim) or stops it at once (SIGKILL to the process).
    fn stop(&self, attempt: &Attempt, force: bool);
    /// Every attempt the runtime knows, running or exited.
    fn list(&self) -> Vec<Attempt>;
    /// Forgets an exited attempt.
    fn remove(&self, attempt: &Attempt);
}

pub struct ProcessRuntime {
    root: PathBuf,
    /// The program that acts as the shim (bulwark itself, `container-shim <state-dir>`).
    shim_program: PathBuf,
}

impl ProcessRuntime {
    pub fn new(root: impl Into<PathBuf>, shim_program: impl Into<PathBuf>) -> ProcessRuntime {
        ProcessRuntime {
            root: root.into(),
            shim_program: shim_program.into(),
        }
    }

    fn dir(&self, attempt: &Attempt) -> PathBuf {
        self.root
            .join(&attempt.pod_uid)
            .join(&attempt.container)
            .join(attempt.number.to_string())
    }

    fn read_pid(dir: &Path, file: &str) -> Option<i32> {
        std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    /// Whether `pid` is the shim of `dir`: its command line names the state directory, so a recycled pid
    /// belonging to another process is not mistaken for it.
    fn shim_alive(dir: &Path, pid: i32) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let dir = dir.as_os_str().as_encoded_bytes();
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or_default()
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false);
        running && cmdline.split(|b| *b == 0).any(|arg| arg == dir)
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, attempt: &Attempt, spec: &ProcessSpec, log_path: &Path) -> Result<(), RuntimeError> {
        let dir = self.dir(attempt);
        std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io {
            path: dir.clone(),
            source,
        })?;
        let shim_spec = ShimSpec {
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            working_dir: spec.working_dir.clone(),
            uid: spec.uid,
            gid: spec.gid,
            log_path: log_path.to_path_buf(),
        };
        let json = serde_json::to_vec_pretty(&shim_spec).map_err(|source| shim::ShimError::Spec {
            path: dir.join(shim::SPEC_FILE),
            source,
        })?;
        shim::write_atomic(&dir.join(shim::SPEC_FILE), &json)?;
        let mut child = Command::new(&self.shim_program)
            .arg("container-shim")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: signals aimed at the kubelet's group must not reach the containers.
            .process_group(0)
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                program: self.shim_program.clone(),
                source,
            })?;
        // Reap the shim when it exits while this kubelet lives; after a restart, init reaps it instead.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    fn state(&self, attempt: &Attempt) -> ContainerState {
        let dir = self.dir(attempt);
        if let Ok(text) = std::fs::read(dir.join(shim::EXIT_FILE))
            && let Ok(status) = serde_json::from_slice::<ExitStatus>(&text)
        {
            return ContainerState::Exited(status);
        }
        let pid = Self::read_pid(&dir, shim::CONTAINER_PID_FILE);
        match Self::read_pid(&dir, shim::SHIM_PID_FILE) {
            Some(shim_pid) if Self::shim_alive(&dir, shim_pid) => ContainerState::Running {
                pid,
                // The shim writes the container's pid right after starting it.
                started_at: modified_rfc3339(&dir.join(shim::CONTAINER_PID_FILE)),
            },
            // Just started: the shim has not written its pid yet.
            None if dir.join(shim::SPEC_FILE).exists() && pid.is_none() && recently_created(&dir) => {
                ContainerState::Running {
                    pid: None,
                    started_at: None,
                }
            }
            _ => {
                // The shim is gone without recording an exit (it was killed): make sure the container went with it.
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                ContainerState::Exited(ExitStatus {
                    exit_code: 137,
                    signal: Some(9),
                    finished_at: shim::now_rfc3339(),
                    started_at: String::new(),
                    error: Some("the container shim disappeared".into()),
                })
            }
        }
    }

    fn stop(&self, attempt: &Attempt, force: bool) {
        let dir = self.dir(attempt);
        if force {
            if let Some(pid) = Self::read_pid(&dir, shim::CONTAINER_PID_FILE) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        } else if let Some(shim_pid) = Self::read_pid(&dir, shim::SHIM_PID_FILE)
            && Self::shim_alive(&dir, shim_pid)
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(shim_pid), Signal::SIGTERM);
        }
    }

    fn list(&self) -> Vec<Attempt> {
        let mut out = Vec::new();
        let subdirs = |p: &Path| -> Vec<(String, PathBuf)> {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                        .collect()
                })
                .unwrap_or_default()
        };
        for (pod_uid, pod_dir) in subdirs(&self.root) {
            for (container, container_dir) in subdirs(&pod_dir) {
                for (number, _) in subdirs(&container_dir) {
                    if let Ok(number) = number.parse() {
                        out.push(Attempt {
                            pod_uid: pod_uid.clone(),
                            container: container.clone(),
                            number,
                        });
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn remove(&self, attempt: &Attempt) {
        let dir = self.dir(attempt);
        let _ = std::fs::remove_dir_all(&dir);
        // Drop empty parents so a removed pod leaves nothing behind.
        for parent in dir.ancestors().skip(1).take(2) {
            if std::fs::remove_dir(parent).is_err() {
                break;
            }
        }
    }
}

fn modified_rfc3339(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    time::OffsetDateTime::from(modified)
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A state directory younger than a few seconds may belong to a shim that has not written its pid yet.
fn recently_created(dir: &Path) -> bool {
    std::fs::metadata(dir.join(shim::SPEC_FILE))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() < 5)
}

/// Stops every container the process runtime under `runtime_dir` knows (SIGTERM, SIGKILL after `grace`) and
/// removes its state; returns how many there were. For `kubeadm reset` and `bulwark down`, once the kubelet is
/// gone (a running kubelet would start them again).
pub fn stop_all(runtime_dir: &Path, grace: std::time::Duration) -> usize {
    let runtime = ProcessRuntime::new(runtime_dir, "bulwark");
    let attempts = runtime.list();
    for attempt in &attempts {
        runtime.stop(attempt, false);
    }
    let deadline = std::time::Instant::now() + grace;
    let running = |a| matches!(runtime.state(a), ContainerState::Running { .. });
    while attempts.iter().any(running) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for attempt in &attempts {
        if running(attempt) {
            runtime.stop(attempt, true);
        }
        runtime.remove(attempt);
    }
    attempts.len()
}
