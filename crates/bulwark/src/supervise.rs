//! `bulwark supervise` (internal): keeps one daemon running where there is no systemd, as `Restart=always` would.
//! kubeadm's `kubelet-start` starts the kubelet under it; `kubeadm reset` stops it through its pid file.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Runs `argv` until SIGTERM/SIGINT, restarting it when it exits (back-off 1 s doubling to 10 s, reset after a
/// minute of good running). The pid file holds the supervisor's pid and is removed on the way out.
pub fn main(pid_file: &Path, argv: &[OsString]) -> ExitCode {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("bulwark supervise: nothing to run");
        return ExitCode::from(2);
    };
    if let Err(e) = pki::write_public(pid_file, format!("{}\n", std::process::id()).as_bytes()) {
        eprintln!("bulwark supervise: {e}");
        return ExitCode::from(1);
    }
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(supervise(program, args)));
    let _ = std::fs::remove_file(pid_file);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulwark supervise: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn supervise(program: &OsString, args: &[OsString]) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let exe = std::env::current_exe()?;
    let mut backoff = Duration::from_secs(1);
    loop {
        // A personality name runs this same binary, so PATH need not hold the symlinks.
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg(program).args(args);
        let mut child = cmd.spawn()?;
        let started = Instant::now();
        tracing::info!(pid = child.id(), "started {}", program.to_string_lossy());
        let stop = tokio::select! {
            status = child.wait() => {
                eprintln!("bulwark supervise: {} exited ({}); restarting in {backoff:?}", program.to_string_lossy(), status?);
                false
            }
            _ = term.recv() => true,
            _ = int.recv() => true,
        };
        if stop {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
