//! The container shim: one small process per container, between the kubelet and the container's process, as
//! containerd's shim is. It outlives kubelet restarts, so containers keep running while the kubelet is down, and it
//! is what the kubelet finds again when it starts.
//!
//! It starts the command (working directory, environment, user and group from the spec), writes its output to the
//! log file in the CRI format (`<RFC 3339 nano time> <stdout|stderr> <F|P> <text>`), forwards SIGTERM and SIGINT to
//! the container, and records the exit status in `exit.json` before exiting itself. State lives in the container's
//! state directory: `spec.json` (written by the kubelet), `shim.pid`, `container.pid`, `exit.json`.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Everything the shim needs to start a container; the kubelet writes it as `spec.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimSpec {
    /// Program (already resolved against PATH) and its arguments.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub log_path: PathBuf,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Upstream reports 128 + signal for a signalled process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// RFC 3339.
    pub finished_at: String,
    pub started_at: String,
    /// Set when the process could not be started at all.
    pub error: Option<String>,
}

pub const SPEC_FILE: &str = "spec.json";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const CONTAINER_PID_FILE: &str = "container.pid";
pub const EXIT_FILE: &str = "exit.json";

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Spec {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ShimError + '_ {
    move |source| ShimError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Writes a file atomically, so a reader never sees half of it.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), ShimError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// One CRI log writer shared by the stdout and stderr pumps; lines are written whole under the lock.
struct LogSink {
    file: Mutex<std::fs::File>,
}

impl LogSink {
    fn write_line(&self, stream: &str, line: &[u8], full: bool) {
        let stamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let tag = if full { "F" } else { "P" };
        let mut record = format!("{stamp} {stream} {tag} ").into_bytes();
        record.extend_from_slice(line);
        record.push(b'\n');
        if let Ok(mut file) = self.file.lock() {
            // A full disk must not kill the container; the line is lost, as with any runtime.
            let _ = file.write_all(&record);
        }
    }
}

/// Upstream splits long lines into 16 KiB partial records.
const MAX_LINE: usize = 16 * 1024;

fn pump(reader: impl Read, stream: &'static str, sink: Arc<LogSink>) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let full = buf.last() == Some(&b'\n');
                if full {
                    buf.pop();
                }
                sink.write_line(stream, &buf, full);
            }
        }
    }
}

/// Runs a container described by `<state_dir>/spec.json` to completion. This is the shim process's whole life.
pub fn run(state_dir: &Path) -> Result<ExitStatus, ShimError> {
    use nix::sys::signal::{SigSet, Signal};
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    let spec_path = state_dir.join(SPEC_FILE);
    let text = std::fs::read(&spec_path).map_err(io_err(&spec_path))?;
    let spec: ShimSpec = serde_json::from_slice(&text).map_err(|source| ShimError::Spec {
        path: spec_path,
        source,
    })?;
    write_atomic(
        &state_dir.join(SHIM_PID_FILE),
        std::process::id().to_string().as_bytes(),
    )?;
    if let Some(dir) = spec.log_path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_path)
        .map_err(io_err(&spec.log_path))?;
    let sink = Arc::new(LogSink {
        file: Mutex::new(log),
    });
    let started_at = now_rfc3339();

    let Some((program, args)) = spec.argv.split_first() else {
        return finish(state_dir, &started_at, None, Some("empty command".into()));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    if let Some(gid) = spec.gid {
        command.gid(gid);
    }
    if let Some(uid) = spec.uid {
        command.uid(uid);
    }
    // The child is started before any signal is blocked here, because it inherits this thread's signal mask.
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            sink.write_line(
                "stderr",
                format!("failed to start {program}: {e}").as_bytes(),
                true,
            );
            return finish(
                state_dir,
                &started_at,
                None,
                Some(format!("failed to start {program}: {e}")),
            );
        }
    };
    let child_pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    write_atomic(
        &state_dir.join(CONTAINER_PID_FILE),
        child.id().to_string().as_bytes(),
    )?;

    // From here on, SIGTERM and SIGINT are taken with sigwait and forwarded; SIGUSR1 is how the waiter thread
    // says the child is gone. Threads started below inherit the mask, so only sigwait sees these signals.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGUSR1);
    let _ = signals.thread_block();

    let pumps: Vec<_> = [
        child.stdout.take().map(|out| {
            let sink = sink.clone();
            std::thread::spawn(move || pump(out, "stdout", sink))
        }),
        child.stderr.take().map(|err| {
            let sink = sink.clone();
            std::thread::spawn(move || pump(err, "stderr", sink))
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    let result = Arc::new(Mutex::new(None));
    let waiter = {
        let result = result.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            if let Ok(mut slot) = result.lock() {
                *slot = Some(status);
            }
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGUSR1);
        })
    };
    loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => break,
            Ok(signal) => {
                let _ = nix::sys::signal::kill(child_pid, signal);
            }
            Err(_) => {
                if waiter.is_finished() {
                    break;
                }
            }
        }
    }
    let _ = waiter.join();
    let status = result
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .and_then(Result::ok);
    for pump in pumps {
        let _ = pump.join();
    }
    let exit = status.map(|status| {
        status.code().map(|code| (code, None)).unwrap_or_else(|| {
            let signal = status.signal().unwrap_or(0);
            (128 + signal, Some(signal))
        })
    });
    finish(state_dir, &started_at, exit, None)
}

fn finish(
    state_dir: &Path,
    started_at: &str,
    exit: Option<(i32, Option<i32>)>,
    error: Option<String>,
) -> Result<ExitStatus, ShimError> {
    let (exit_code, signal) = exit.unwrap_or((128, None));
    let status = ExitStatus {
        exit_code,
        signal,
        finished_at: now_rfc3339(),
        started_at: started_at.into(),
        error,
    };
    let json = serde_json::to_vec(&status).map_err(|source| ShimError::Spec {
        path: state_dir.join(EXIT_FILE),
        source,
    })?;
    write_atomic(&state_dir.join(EXIT_FILE), &json)?;
    Ok(status)
}
