//! Daemons without systemd: kubeadm's `kubelet-start` phase normally asks systemd to (re)start `kubelet.service`.
//! Where there is no systemd (containers, CI, this project's test machines) bulwark starts the kubelet itself, as a
//! detached, supervised process: `bulwark supervise --pid-file F --log L -- kubelet ...` restarts the kubelet when
//! it dies (with back-off, as `Restart=always` does) and stops it on SIGTERM. The pid file names the supervisor, so
//! `kubeadm reset` (and a re-run of `kubelet-start`) stop exactly the process bulwark started.
//!
//! Entry points: [`start`], [`stop`], [`running_pid`].

use crate::Error;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The pid recorded in `pid_file`, if that process is alive.
pub fn running_pid(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    (pid > 0 && kill(Pid::from_raw(pid), None).is_ok()).then_some(pid)
}

/// Starts `supervisor` (the bulwark binary) as `supervise --pid-file F --log L -- argv...`, detached in its own
/// process group so that the caller's terminal and exit do not reach it. Any daemon already recorded in `pid_file`
/// is stopped first, as `systemctl restart` would.
pub fn start(supervisor: &Path, argv: &[String], pid_file: &Path, log_file: &Path) -> Result<u32, Error> {
    stop(pid_file, Duration::from_secs(10))?;
    for path in [pid_file, log_file] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .map_err(io(log_file))?;
    let err = log.try_clone().map_err(io(log_file))?;
    let child = std::os::unix::process::CommandExt::process_group(
        Command::new(supervisor)
            .arg("supervise")
            .arg("--pid-file")
            .arg(pid_file)
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err),
        0,
    )
    .spawn()
    .map_err(io(supervisor))?;
    let pid = child.id();
    // The supervisor writes its own pid file; wait for it so callers can rely on it at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running_pid(pid_file) != i32::try_from(pid).ok() {
        if Instant::now() > deadline {
            return Err(Error::Usage(format!(
                "the supervisor (pid {pid}) did not write {}",
                pid_file.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(pid)
}

/// Stops the daemon recorded in `pid_file`: SIGTERM, then SIGKILL after `grace`. Removes the pid file.
pub fn stop(pid_file: &Path, grace: Duration) -> Result<bool, Error> {
    let Some(pid) = running_pid(pid_file) else {
        let _ = std::fs::remove_file(pid_file);
        return Ok(false);
    };
    let pid = Pid::from_raw(pid);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while kill(pid, None).is_ok() && !is_zombie(pid) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(pid_file);
    Ok(true)
}

/// A process that exited but was not reaped (our own child in tests) counts as gone.
fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}
