//! A kubeadm node for scenario tests: a network-namespace host with its own root (`--rootfs`), bulwark's
//! personalities on `PATH`, and clean-up that leaves no process, container or file behind.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Containers, Network, bulwark, find_files, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `bulwark install --dir <dir>`: the personalities as symlinks, for `PATH`.
pub fn install_personalities(dir: &Path) {
    let out = Command::new(bulwark())
        .args(["install", "--dir"])
        .arg(dir)
        .output()
        .expect("bulwark install");
    assert!(out.status.success(), "bulwark install: {}", text(&out.stderr));
}

/// One node of a cluster: host `index` of `net`, files below `rootfs`.
pub struct Node<'a> {
    pub net: &'a Network,
    pub index: usize,
    pub name: String,
    pub rootfs: PathBuf,
    pub bin: PathBuf,
    _containers: Containers,
}

impl<'a> Node<'a> {
    pub fn new(net: &'a Network, index: usize, name: &str, rootfs: PathBuf, bin: &Path) -> Node<'a> {
        std::fs::create_dir_all(&rootfs).unwrap();
        Node {
            net,
            index,
            name: name.to_string(),
            _containers: Containers(rootfs.clone()),
            rootfs,
            bin: bin.to_path_buf(),
        }
    }

    pub fn ip(&self) -> &str {
        &self.net.hosts[self.index].ip
    }

    fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `kubeadm <args> --rootfs <rootfs>` on this host.
    pub fn kubeadm(&self, args: &[&str]) -> Output {
        self.net
            .command(self.index, self.bin.join("kubeadm"))
            .args(args)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .env("PATH", self.path_env())
            .env("BULWARK_LOG", "warn,kube_client=error,kube_runtime=error")
            .stdin(Stdio::null())
            .output()
            .expect("run kubeadm")
    }

    /// `kubeadm join ENDPOINT --token T --discovery-token-ca-cert-hash H --node-name <name> <extra>`.
    pub fn join(&self, endpoint: &str, token: &str, hash: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "join",
            endpoint,
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            hash,
            "--node-name",
            &self.name,
        ];
        args.extend_from_slice(extra);
        self.kubeadm(&args)
    }

    /// [`Node::join`] as a control-plane node advertising this host's address, with `--certificate-key` if given.
    pub fn join_control_plane(&self, endpoint: &str, token: &str, hash: &str, key: Option<&str>) -> Output {
        let mut extra = vec!["--control-plane", "--apiserver-advertise-address", self.ip()];
        if let Some(key) = key {
            extra.extend(["--certificate-key", key]);
        }
        self.join(endpoint, token, hash, &extra)
    }

    /// Polls until Deployment `name` (namespace default) has `replicas` available.
    pub fn wait_available(&self, kubectl: &Path, name: &str, replicas: u32, deadline: std::time::Duration) {
        let want = replicas.to_string();
        super::eventually(
            deadline,
            &format!("Deployment {name} with {replicas} available"),
            || {
                let out = self.kubectl(
                    kubectl,
                    &[
                        "get",
                        "deployment",
                        name,
                        "-o",
                        "jsonpath={.status.availableReplicas}",
                    ],
                );
                (text(&out.stdout) == want).then_some(())
            },
        );
    }

    /// A path inside this node's root.
    pub fn path(&self, p: &str) -> PathBuf {
        self.rootfs.join(p.trim_start_matches('/'))
    }

    pub fn admin_conf(&self) -> PathBuf {
        self.path("/etc/kubernetes/admin.conf")
    }

    /// `kubectl --kubeconfig admin.conf <args>` from this host.
    pub fn kubectl(&self, kubectl: &Path, args: &[&str]) -> Output {
        self.net
            .command(self.index, kubectl)
            .arg("--kubeconfig")
            .arg(self.admin_conf())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Whether any process still runs a program or file of this node (its kubelet daemon, its containers).
    pub fn processes(&self) -> Vec<String> {
        let root = self.rootfs.display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if line.contains(&root) {
                found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
            }
        }
        found
    }

    /// SIGKILLs every process of this node, as if the host died: the kubelet daemon and every container.
    pub fn kill_host(&self) {
        self.kill_everything();
        testkit::components::kill_containers(&self.rootfs);
    }

    /// Stops whatever `kubeadm reset` would have: the supervised kubelet (its process group) and the containers.
    fn kill_everything(&self) {
        for file in find_files(&self.path("/var/run/bulwark"), &["kubelet.pid"]) {
            if let Ok(pid) = std::fs::read_to_string(&file)
                .unwrap_or_default()
                .trim()
                .parse::<i32>()
            {
                let _ = Command::new("kill")
                    .args(["-9", "--", &format!("-{pid}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        let _ = self.kubeadm(&["reset", "-f"]);
        self.kill_everything();
        // `_containers` then kills any container left.
    }
}
