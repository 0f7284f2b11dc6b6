//! `kubeadm init phase preflight`: checks that the host can take a control plane before anything is written, with
//! upstream's check names (`Port-6443`, `DirAvailable--etc-kubernetes-manifests`, `FileExisting-etcd`, ...) so that
//! `--ignore-preflight-errors=<name>,...` (or `all`) works as users know it.
//!
//! Entry points: [`init_checks`] (pure, host facts injected through [`Probe`]), [`run`].

use crate::config::{Etcd, InitConfig};
use crate::etcd::{CLIENT_PORT, MANIFESTS_DIR, PEER_PORT};
use crate::{Error, Layout, say};
use std::io::Write;
use std::path::Path;

/// What the checks ask of the host; a trait so tests can describe any host.
pub trait Probe {
    fn port_in_use(&self, port: u16) -> bool;
    fn dir_nonempty(&self, logical: &str) -> bool;
    fn file_exists(&self, logical: &str) -> bool;
    fn on_path(&self, program: &str) -> bool;
    fn is_root(&self) -> bool;
}

/// The real host below a `--rootfs`.
pub struct Host<'a> {
    pub layout: &'a Layout,
    pub path_env: String,
}

impl Probe for Host<'_> {
    fn port_in_use(&self, port: u16) -> bool {
        std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
    }
    fn dir_nonempty(&self, logical: &str) -> bool {
        std::fs::read_dir(self.layout.host(logical)).is_ok_and(|mut d| d.next().is_some())
    }
    fn file_exists(&self, logical: &str) -> bool {
        self.layout.host(logical).exists()
    }
    fn on_path(&self, program: &str) -> bool {
        self.path_env
            .split(':')
            .filter(|d| !d.is_empty())
            .any(|d| Path::new(d).join(program).is_file())
    }
    fn is_root(&self) -> bool {
        nix::unistd::Uid::effective().is_root()
    }
}

/// A failed check: upstream's name and message; `fatal` is false for warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: String,
    pub message: String,
    pub fatal: bool,
}

fn check_name_of_path(prefix: &str, logical: &str) -> String {
    format!("{prefix}-{}", logical.replace('/', "-"))
}

/// The checks `kubeadm init` runs on a control-plane node.
pub fn init_checks(cfg: &InitConfig, probe: &dyn Probe) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut fail = |name: String, message: String| {
        findings.push(Finding {
            name,
            message,
            fatal: true,
        })
    };
    if !probe.is_root() {
        fail("IsPrivilegedUser".into(), "user is not running as root".into());
    }
    let mut ports = vec![cfg.node.bind_port, 10259, 10257, 10250];
    if let Etcd::Local(_) = cfg.cluster.etcd {
        ports.extend([CLIENT_PORT, PEER_PORT]);
    }
    for port in ports {
        if probe.port_in_use(port) {
            fail(format!("Port-{port}"), format!("Port {port} is in use"));
        }
    }
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        let file = format!("{MANIFESTS_DIR}/{component}.yaml");
        if probe.file_exists(&file) {
            fail(
                check_name_of_path("FileAvailable", &file),
                format!("{file} already exists"),
            );
        }
    }
    if let Etcd::Local(local) = &cfg.cluster.etcd {
        if probe.dir_nonempty(&local.data_dir) {
            fail(
                check_name_of_path("DirAvailable", &local.data_dir),
                format!("{} is not empty", local.data_dir),
            );
        }
        if !probe.on_path("etcd") {
            fail("FileExisting-etcd".into(), "etcd not found in system path".into());
        }
    }
    for program in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
    ] {
        if !probe.on_path(program) {
            fail(
                format!("FileExisting-{program}"),
                format!(
                    "{program} not found in system path (run `bulwark install` to put bulwark's personalities on PATH)"
                ),
            );
        }
    }
    findings
}

/// The checks `kubeadm join` runs: a control-plane node gets init's, every node needs its kubelet files free.
pub fn join_checks(cfg: &InitConfig, control_plane: bool, probe: &dyn Probe) -> Vec<Finding> {
    let mut findings = if control_plane {
        init_checks(cfg, probe)
    } else {
        let mut f = Vec::new();
        if probe.port_in_use(10250) {
            f.push(Finding {
                name: "Port-10250".into(),
                message: "Port 10250 is in use".into(),
                fatal: true,
            });
        }
        if !probe.on_path("kubelet") {
            f.push(Finding {
                name: "FileExisting-kubelet".into(),
                message: "kubelet not found in system path (run `bulwark install`)".into(),
                fatal: true,
            });
        }
        let ca = format!("{}/ca.crt", cfg.cluster.certificates_dir.trim_end_matches('/'));
        if probe.file_exists(&ca) {
            f.push(Finding {
                name: check_name_of_path("FileAvailable", &ca),
                message: format!("{ca} already exists"),
                fatal: true,
            });
        }
        f
    };
    for file in [
        "/etc/kubernetes/kubelet.conf",
        "/etc/kubernetes/bootstrap-kubelet.conf",
    ] {
        if probe.file_exists(file) {
            findings.push(Finding {
                name: check_name_of_path("FileAvailable", file),
                message: format!("{file} already exists"),
                fatal: true,
            });
        }
    }
    findings
}

/// Runs init's checks; fatal findings not ignored fail the phase with upstream's message.
pub fn run(cfg: &InitConfig, probe: &dyn Probe, out: &mut dyn Write) -> Result<(), Error> {
    say(out, format_args!("[preflight] Running pre-flight checks"))?;
    report(init_checks(cfg, probe), &cfg.node.ignore_preflight_errors, out)
}

/// Prints warnings and fails on the fatal findings not named in `ignore` (`all` ignores every check).
pub fn report(findings: Vec<Finding>, ignore: &[String], out: &mut dyn Write) -> Result<(), Error> {
    let ignored = |name: &str| {
        ignore
            .iter()
            .any(|i| i.eq_ignore_ascii_case("all") || i.eq_ignore_ascii_case(name))
    };
    let mut errors = Vec::new();
    for finding in findings {
        if finding.fatal && !ignored(&finding.name) {
            errors.push(format!("\t[ERROR {}]: {}", finding.name, finding.message));
        } else {
            say(
                out,
                format_args!("\t[WARNING {}]: {}", finding.name, finding.message),
            )?;
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "[preflight] Some fatal errors occurred:\n{}\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`",
        errors.join("\n")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HostFacts, InitFlags, load_init};

    struct FakeHost {
        busy: Vec<u16>,
        files: Vec<&'static str>,
    }

    impl Probe for FakeHost {
        fn port_in_use(&self, port: u16) -> bool {
            self.busy.contains(&port)
        }
        fn dir_nonempty(&self, logical: &str) -> bool {
            self.files.iter().any(|f| f.starts_with(logical))
        }
        fn file_exists(&self, logical: &str) -> bool {
            self.files.contains(&logical)
        }
        fn on_path(&self, _: &str) -> bool {
            true
        }
        fn is_root(&self) -> bool {
            true
        }
    }

    fn cfg(ignore: Option<Vec<String>>) -> InitConfig {
        let host = HostFacts {
            hostname: "cp".into(),
            default_address: Some("10.0.0.6".parse().unwrap()),
        };
        load_init(
            None,
            &InitFlags {
                ignore_preflight_errors: ignore,
                ..InitFlags::default()
            },
            &host,
        )
        .unwrap()
    }

    #[test]
    fn a_port_in_use_fails_preflight_naming_the_port() {
        let host = FakeHost {
            busy: vec![6443],
            files: vec![],
        };
        let mut out = Vec::new();
        let err = run(&cfg(None), &host, &mut out).unwrap_err().to_string();
        assert!(err.contains("[ERROR Port-6443]: Port 6443 is in use"), "{err}");
    }

    #[test]
    fn ignored_errors_become_warnings() {
        let host = FakeHost {
            busy: vec![6443],
            files: vec!["/etc/kubernetes/manifests/etcd.yaml"],
        };
        let mut out = Vec::new();
        let ignore = vec![
            "Port-6443".into(),
            "FileAvailable--etc-kubernetes-manifests-etcd.yaml".into(),
        ];
        run(&cfg(Some(ignore)), &host, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("[WARNING Port-6443]"), "{text}");
        assert!(
            text.contains("[WARNING FileAvailable--etc-kubernetes-manifests-etcd.yaml]"),
            "{text}"
        );
    }
}
