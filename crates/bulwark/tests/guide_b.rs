//! Guide B ("Set up a High Availability etcd cluster with kubeadm"), command by command, with bulwark as kubeadm
//! and kubelet: three hosts in network namespaces, each with a kubelet that only has `--pod-manifest-path` (the
//! guide's "kubelet as a service manager for etcd"), certificates made on HOST0 and copied out, and a static pod
//! manifest per host from which the kubelet runs Debian's real etcd. The cluster must report healthy to etcdctl
//! with the certificates the guide names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{Containers, Network, Proc, eventually, files_under, ok, text};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const NAMES: [&str; 3] = ["infra0", "infra1", "infra2"];

fn host_config(hosts: &[String], i: usize) -> String {
    let host = &hosts[i];
    format!(
        r#"apiVersion: "kubeadm.k8s.io/v1beta1"
kind: ClusterConfiguration
etcd:
    local:
        serverCertSANs:
        - "{host}"
        peerCertSANs:
        - "{host}"
        extraArgs:
            initial-cluster: {n0}=https://{h0}:2380,{n1}=https://{h1}:2380,{n2}=https://{h2}:2380
            initial-cluster-state: new
            name: {name}
            listen-peer-urls: https://{host}:2380
            listen-client-urls: https://{host}:2379
            advertise-client-urls: https://{host}:2379
            initial-advertise-peer-urls: https://{host}:2380
"#,
        n0 = NAMES[0],
        n1 = NAMES[1],
        n2 = NAMES[2],
        h0 = hosts[0],
        h1 = hosts[1],
        h2 = hosts[2],
        name = NAMES[i],
    )
}

/// `find DIR -not -name ca.crt -not -name ca.key -type f -delete`
fn delete_non_reusable(dir: &Path) {
    for file in files_under(dir) {
        let name = Path::new(&file)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if name != "ca.crt" && name != "ca.key" {
            std::fs::remove_file(dir.join(file)).unwrap();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for file in files_under(from) {
        let target = to.join(&file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&file), target).unwrap();
    }
}

#[test]
fn guide_b_gives_a_healthy_three_member_tls_etcd_cluster() {
    let net = Network::new(3);
    let hosts: Vec<String> = net.hosts.iter().map(|h| h.ip.clone()).collect();
    let work = tempfile::tempdir().unwrap();
    let roots: Vec<PathBuf> = (0..3).map(|i| work.path().join(format!("host{i}"))).collect();
    let root0 = roots[0].to_str().unwrap().to_string();
    // Clean-up order on drop: containers, then kubelets (declared later, dropped first), then the network.
    let _containers: Vec<Containers> = roots.iter().map(|r| Containers(r.clone())).collect();
    let kubeadm_on = |i: usize, args: &[&str]| -> Output {
        net.command(i, common::bulwark())
            .arg("kubeadm")
            .args(args)
            .output()
            .expect("run bulwark in namespace")
    };

    // Step 1: on every host, a kubelet that is only a service manager for static pods.
    let _kubelets: Vec<Proc> = (0..3)
        .map(|i| {
            let args = [
                "kubelet".to_string(),
                "--address=127.0.0.1".into(),
                "--pod-manifest-path=/etc/kubernetes/manifests".into(),
                "--rootfs".into(),
                roots[i].display().to_string(),
            ];
            std::fs::create_dir_all(&roots[i]).unwrap();
            net.spawn(
                i,
                common::bulwark().to_str().unwrap(),
                &args,
                &work.path().join(format!("kubelet{i}.log")),
            )
        })
        .collect();

    // Step 2: a kubeadm config per host, in /tmp/${HOST}/ on HOST0.
    let staging = |ip: &str| roots[0].join("tmp").join(ip);
    for (i, host) in hosts.iter().enumerate() {
        std::fs::create_dir_all(staging(host)).unwrap();
        std::fs::write(staging(host).join("kubeadmcfg.yaml"), host_config(&hosts, i)).unwrap();
    }

    // Step 3: the etcd CA on HOST0.
    let out = ok(kubeadm_on(
        0,
        &["init", "phase", "certs", "etcd-ca", "--rootfs", &root0],
    ));
    assert!(
        out.contains("[certs] Generating \"etcd/ca\" certificate and key"),
        "{out}"
    );
    let pki0 = roots[0].join("etc/kubernetes/pki");
    assert_eq!(files_under(&pki0), ["etcd/ca.crt", "etcd/ca.key"]);

    // Step 4: certificates for each member, HOST2 and HOST1 first, then HOST0.
    for i in [2, 1, 0] {
        let cfg = staging(&hosts[i]).join("kubeadmcfg.yaml");
        let cfg = format!("--config={}", cfg.display());
        for phase in [
            "etcd-server",
            "etcd-peer",
            "etcd-healthcheck-client",
            "apiserver-etcd-client",
        ] {
            ok(kubeadm_on(
                0,
                &["init", "phase", "certs", phase, &cfg, "--rootfs", &root0],
            ));
        }
        if i != 0 {
            copy_tree(&pki0, &staging(&hosts[i]).join("pki"));
            delete_non_reusable(&pki0);
        }
    }
    for i in [2, 1] {
        let _ = std::fs::remove_file(staging(&hosts[i]).join("pki/etcd/ca.key"));
    }

    // Step 5: copy certificates and configs to HOST1 and HOST2 (pki into /etc/kubernetes, config into $HOME).
    for i in [1, 2] {
        copy_tree(
            &staging(&hosts[i]).join("pki"),
            &roots[i].join("etc/kubernetes/pki"),
        );
        std::fs::create_dir_all(roots[i].join("root")).unwrap();
        std::fs::copy(
            staging(&hosts[i]).join("kubeadmcfg.yaml"),
            roots[i].join("root/kubeadmcfg.yaml"),
        )
        .unwrap();
    }

    // Step 6: exactly the files the guide lists per host.
    let member_files = [
        "apiserver-etcd-client.crt",
        "apiserver-etcd-client.key",
        "etcd/ca.crt",
        "etcd/healthcheck-client.crt",
        "etcd/healthcheck-client.key",
        "etcd/peer.crt",
        "etcd/peer.key",
        "etcd/server.crt",
        "etcd/server.key",
    ];
    let mut host0_files = member_files.to_vec();
    host0_files.insert(3, "etcd/ca.key");
    assert_eq!(files_under(&pki0), host0_files);
    for root in &roots[1..] {
        assert_eq!(files_under(&root.join("etc/kubernetes/pki")), member_files);
    }

    // Step 7: a static pod manifest per host; each host's kubelet starts its etcd member.
    for (i, root) in roots.iter().enumerate() {
        let cfg = if i == 0 {
            staging(&hosts[0]).join("kubeadmcfg.yaml")
        } else {
            root.join("root/kubeadmcfg.yaml")
        };
        let root = root.to_str().unwrap();
        let out = ok(kubeadm_on(
            i,
            &[
                "init",
                "phase",
                "etcd",
                "local",
                &format!("--config={}", cfg.display()),
                "--rootfs",
                root,
            ],
        ));
        assert!(
            out.contains(
                "[etcd] Creating static Pod manifest for local etcd in \"/etc/kubernetes/manifests\""
            ),
            "{out}"
        );
    }

    // Step 8: the cluster is healthy, seen with the healthcheck-client certificate and with the peer certificate.
    let pki = |f: &str| pki0.join(f).display().to_string();
    let endpoints = hosts
        .iter()
        .map(|h| format!("https://{h}:2379"))
        .collect::<Vec<_>>()
        .join(",");
    let etcdctl = |cert: &str, key: &str, endpoints: &str, args: &[&str]| -> Output {
        net.command(0, "etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--cert",
                &pki(cert),
                "--key",
                &pki(key),
                "--cacert",
                &pki("etcd/ca.crt"),
            ])
            .args(["--endpoints", endpoints, "--command-timeout=3s"])
            .args(args)
            .output()
            .expect("etcdctl")
    };
    let health = eventually(Duration::from_secs(60), "all three members healthy", || {
        let out = etcdctl(
            "etcd/healthcheck-client.crt",
            "etcd/healthcheck-client.key",
            &endpoints,
            &["endpoint", "health"],
        );
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        (out.status.success() && all.matches("is healthy").count() == 3).then_some(all)
    });
    for host in &hosts {
        assert!(
            health.contains(&format!("https://{host}:2379 is healthy")),
            "{health}"
        );
    }
    let out = etcdctl(
        "etcd/peer.crt",
        "etcd/peer.key",
        &format!("https://{}:2379", hosts[0]),
        &["endpoint", "health"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let members_list = ok(etcdctl(
        "etcd/healthcheck-client.crt",
        "etcd/healthcheck-client.key",
        &endpoints,
        &["member", "list"],
    ));
    for name in NAMES {
        assert!(members_list.contains(name), "{members_list}");
    }
    // A client without a certificate from the etcd CA is refused: TLS is enforced on the client port.
    let anonymous = net
        .command(0, "etcdctl")
        .args([
            "--insecure-transport=false",
            "--insecure-skip-tls-verify",
            "--endpoints",
            &format!("https://{}:2379", hosts[0]),
        ])
        .args(["--command-timeout=2s", "endpoint", "health"])
        .output()
        .unwrap();
    assert!(
        !anonymous.status.success(),
        "etcd must demand a client certificate"
    );
    // The members are the kubelets' containers, logging where upstream's would.
    let pod_dirs: Vec<String> = std::fs::read_dir(roots[0].join("var/log/pods"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        pod_dirs.iter().any(|d| d.starts_with("kube-system_etcd-")),
        "{pod_dirs:?}"
    );
}
