//! `kubeadm init phase certs|kubeconfig`, `certs ...` and `token generate` through the real binary, checked with
//! openssl and kubectl, which nobody here wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod common;

use common::{fails, files_under, kubeadm, ok, text};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const FLAGS: &[&str] = &[
    "--apiserver-advertise-address",
    "127.0.0.1",
    "--control-plane-endpoint",
    "lb.example.com:6443",
    "--apiserver-cert-extra-sans",
    "extra.example.com,10.9.8.7",
    "--node-name",
    "cp-1",
];

fn certs_all(root: &Path) -> String {
    let mut args = vec![
        "init",
        "phase",
        "certs",
        "all",
        "--rootfs",
        root.to_str().unwrap(),
    ];
    args.extend_from_slice(FLAGS);
    ok(kubeadm(&args))
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn certs_all_writes_kubeadms_file_tree_with_private_files_0600() {
    let root = tempfile::tempdir().unwrap();
    let output = certs_all(root.path());
    assert!(
        output.starts_with("[certs] Using certificateDir folder \"/etc/kubernetes/pki\"\n"),
        "{output}"
    );
    assert!(
        output.contains("[certs] Generating \"etcd/ca\" certificate and key"),
        "{output}"
    );
    let pki = root.path().join("etc/kubernetes/pki");
    let expected = [
        "apiserver-etcd-client.crt",
        "apiserver-etcd-client.key",
        "apiserver-kubelet-client.crt",
        "apiserver-kubelet-client.key",
        "apiserver.crt",
        "apiserver.key",
        "ca.crt",
        "ca.key",
        "etcd/ca.crt",
        "etcd/ca.key",
        "etcd/healthcheck-client.crt",
        "etcd/healthcheck-client.key",
        "etcd/peer.crt",
        "etcd/peer.key",
        "etcd/server.crt",
        "etcd/server.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "front-proxy-client.crt",
        "front-proxy-client.key",
        "sa.key",
        "sa.pub",
    ];
    assert_eq!(files_under(&pki), expected);
    for file in expected {
        let mode = std::fs::metadata(pki.join(file)).unwrap().permissions().mode() & 0o777;
        let want = if file.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{file}");
    }
    assert!(
        std::fs::read_to_string(pki.join("ca.key"))
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    assert!(
        std::fs::read_to_string(pki.join("sa.pub"))
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[test]
fn openssl_verifies_every_leaf_and_sees_kubeadms_subjects_sans_and_usages() {
    let root = tempfile::tempdir().unwrap();
    certs_all(root.path());
    let pki = root.path().join("etc/kubernetes/pki");
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let leaves = [
        (
            "apiserver",
            "ca",
            "CN = kube-apiserver",
            "TLS Web Server Authentication",
        ),
        (
            "apiserver-kubelet-client",
            "ca",
            "O = kubeadm:cluster-admins, CN = kube-apiserver-kubelet-client",
            "TLS Web Client Authentication",
        ),
        (
            "front-proxy-client",
            "front-proxy-ca",
            "CN = front-proxy-client",
            "TLS Web Client Authentication",
        ),
        (
            "etcd/server",
            "etcd/ca",
            "CN = cp-1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ),
        (
            "etcd/peer",
            "etcd/ca",
            "CN = cp-1",
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ),
        (
            "etcd/healthcheck-client",
            "etcd/ca",
            "CN = kube-etcd-healthcheck-client",
            "TLS Web Client Authentication",
        ),
        (
            "apiserver-etcd-client",
            "etcd/ca",
            "CN = kube-apiserver-etcd-client",
            "TLS Web Client Authentication",
        ),
    ];
    for (leaf, ca, subject, usage) in leaves {
        let verified = openssl(&[
            "verify",
            "-CAfile",
            &p(&format!("{ca}.crt")),
            &p(&format!("{leaf}.crt")),
        ]);
        assert!(verified.trim().ends_with(": OK"), "{leaf}: {verified}");
        let text = openssl(&["x509", "-noout", "-text", "-in", &p(&format!("{leaf}.crt"))]);
        assert!(text.contains(&format!("Subject: {subject}")), "{leaf}:\n{text}");
        assert!(text.contains(usage), "{leaf}:\n{text}");
        assert!(
            text.contains("Digital Signature, Key Encipherment"),
            "{leaf}:\n{text}"
        );
        assert!(text.contains("CA:FALSE"), "{leaf}:\n{text}");
        assert!(text.contains("Public-Key: (2048 bit)"), "{leaf}:\n{text}");
    }
    let apiserver = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        &p("apiserver.crt"),
    ]);
    for san in [
        "DNS:cp-1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:lb.example.com",
        "DNS:extra.example.com",
        "IP Address:10.96.0.1",
        "IP Address:127.0.0.1",
        "IP Address:10.9.8.7",
    ] {
        assert!(apiserver.contains(san), "{san} missing:\n{apiserver}");
    }
    let etcd_server = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        &p("etcd/server.crt"),
    ]);
    for san in [
        "DNS:cp-1",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
    ] {
        assert!(etcd_server.contains(san), "{san} missing:\n{etcd_server}");
    }
    for (ca, cn) in [
        ("ca", "kubernetes"),
        ("front-proxy-ca", "front-proxy-ca"),
        ("etcd/ca", "etcd-ca"),
    ] {
        let text = openssl(&["x509", "-noout", "-text", "-in", &p(&format!("{ca}.crt"))]);
        assert!(text.contains(&format!("Subject: CN = {cn}")), "{ca}:\n{text}");
        assert!(text.contains("CA:TRUE"), "{ca}:\n{text}");
        assert!(text.contains("Certificate Sign"), "{ca}:\n{text}");
        let end = openssl(&[
            "x509",
            "-noout",
            "-checkend",
            &(9 * 365 * 86400).to_string(),
            "-in",
            &p(&format!("{ca}.crt")),
        ]);
        assert!(end.contains("will not expire"), "{ca} must last ten years");
    }
    let leaf_end = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkend",
            &(366 * 86400).to_string(),
            "-in",
            &p("apiserver.crt"),
        ])
        .output()
        .unwrap();
    assert!(!leaf_end.status.success(), "leaves last one year");
}

#[test]
fn existing_files_are_reused_and_a_ca_is_never_overwritten() {
    let root = tempfile::tempdir().unwrap();
    certs_all(root.path());
    let pki = root.path().join("etc/kubernetes/pki");
    let ca_before = std::fs::read(pki.join("ca.crt")).unwrap();
    let leaf_before = std::fs::read(pki.join("apiserver.crt")).unwrap();
    let again = certs_all(root.path());
    assert!(
        again.contains("[certs] Using existing ca certificate authority"),
        "{again}"
    );
    assert!(
        again.contains("[certs] Using existing apiserver certificate and key on disk"),
        "{again}"
    );
    assert!(again.contains("[certs] Using the existing \"sa\" key"), "{again}");
    assert_eq!(std::fs::read(pki.join("ca.crt")).unwrap(), ca_before);
    assert_eq!(std::fs::read(pki.join("apiserver.crt")).unwrap(), leaf_before);

    // A removed leaf is re-created, signed by the existing CA.
    std::fs::remove_file(pki.join("apiserver.crt")).unwrap();
    std::fs::remove_file(pki.join("apiserver.key")).unwrap();
    let root_str = root.path().to_str().unwrap();
    let mut args = vec!["init", "phase", "certs", "apiserver", "--rootfs", root_str];
    args.extend_from_slice(FLAGS);
    let out = ok(kubeadm(&args));
    assert!(
        out.contains("[certs] Generating \"apiserver\" certificate and key"),
        "{out}"
    );
    let verified = openssl(&[
        "verify",
        "-CAfile",
        pki.join("ca.crt").to_str().unwrap(),
        pki.join("apiserver.crt").to_str().unwrap(),
    ]);
    assert!(verified.contains(": OK"));

    // An existing leaf that lacks a SAN the configuration now needs is refused, not silently replaced.
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "apiserver",
        "--rootfs",
        root_str,
        "--apiserver-advertise-address",
        "127.0.0.1",
        "--node-name",
        "cp-1",
        "--apiserver-cert-extra-sans",
        "new.example.com",
    ]));
    assert!(err.contains("error execution phase certs/apiserver"), "{err}");
    assert!(err.contains("not valid for new.example.com"), "{err}");

    // A CA key without its certificate is never replaced by a new CA.
    std::fs::remove_file(pki.join("front-proxy-ca.crt")).unwrap();
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "front-proxy-ca",
        "--rootfs",
        root_str,
    ]));
    assert!(
        err.contains("/etc/kubernetes/pki/front-proxy-ca.key exists"),
        "{err}"
    );
}

#[test]
fn a_leaf_without_its_ca_key_is_an_error_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    let root_str = root.path().to_str().unwrap();
    ok(kubeadm(&["init", "phase", "certs", "ca", "--rootfs", root_str]));
    std::fs::remove_file(root.path().join("etc/kubernetes/pki/ca.key")).unwrap();
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "apiserver",
        "--rootfs",
        root_str,
        "--apiserver-advertise-address",
        "127.0.0.1",
    ]));
    assert!(err.contains("/etc/kubernetes/pki/ca.key is missing"), "{err}");
    assert!(!root.path().join("etc/kubernetes/pki/apiserver.crt").exists());

    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "etcd-server",
        "--rootfs",
        root_str,
        "--apiserver-advertise-address",
        "127.0.0.1",
    ]));
    assert!(err.contains("/etc/kubernetes/pki/etcd/ca.crt"), "{err}");
}

#[test]
fn bad_input_fails_clearly_and_leaves_no_files() {
    let root = tempfile::tempdir().unwrap();
    let root_str = root.path().to_str().unwrap();
    let cfg = root.path().join("cfg.yaml");
    let cfg_str = cfg.to_str().unwrap();
    let pki = root.path().join("etc/kubernetes/pki");
    let run = |config: &str| {
        std::fs::write(&cfg, config).unwrap();
        let err = fails(kubeadm(&[
            "init", "phase", "certs", "all", "--rootfs", root_str, "--config", cfg_str,
        ]));
        assert!(files_under(&pki).is_empty(), "files left behind after: {err}");
        err
    };

    let err = run("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworking: [\n");
    assert!(err.contains("cfg.yaml: line "), "{err}");
    let err = run("apiVersion: kubeadm.k8s.io/v1alpha1\nkind: ClusterConfiguration\n");
    assert!(
        err.contains("unknown apiVersion \"kubeadm.k8s.io/v1alpha1\""),
        "{err}"
    );
    let err = run("apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfig\n");
    assert!(err.contains("unknown kind \"ClusterConfig\""), "{err}");
    let err = run(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\napiServer:\n  certSANs: [\"not a san\"]\n",
    );
    assert!(
        err.contains("ClusterConfiguration.apiServer.certSANs[0]: Invalid value: \"not a san\""),
        "{err}"
    );
    let err = run(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\ncertificateKey: abcd\nlocalAPIEndpoint:\n  advertiseAddress: 127.0.0.1\n",
    );
    assert!(
        err.contains("expected 64 hexadecimal characters (32 bytes), got 4"),
        "{err}"
    );
    let not_hex = "g".repeat(64);
    let err = run(&format!(
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\ncertificateKey: {not_hex}\n"
    ));
    assert!(err.contains("not hexadecimal"), "{err}");

    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "all",
        "--rootfs",
        root_str,
        "--apiserver-cert-extra-sans",
        "bad_san",
    ]));
    assert!(err.contains("\"bad_san\""), "{err}");
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "all",
        "--config",
        "/nonexistent/kubeadm.yaml",
    ]));
    assert!(err.contains("/nonexistent/kubeadm.yaml"), "{err}");
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "all",
        "--rootfs",
        root_str,
        "--config",
        cfg_str,
        "--cert-dir",
        "/x",
    ]));
    assert!(
        err.contains("can not mix '--config' with arguments [cert-dir]"),
        "{err}"
    );

    // A certificate directory that is not a readable directory.
    std::fs::create_dir_all(root.path().join("etc/kubernetes")).unwrap();
    std::fs::write(&pki, "a file, not a directory").unwrap();
    let err = fails(kubeadm(&[
        "init",
        "phase",
        "certs",
        "all",
        "--rootfs",
        root_str,
        "--apiserver-advertise-address",
        "127.0.0.1",
    ]));
    assert!(err.contains("/etc/kubernetes/pki is not a directory"), "{err}");
    assert_eq!(std::fs::read_to_string(&pki).unwrap(), "a file, not a directory");
}

#[test]
fn kubeconfig_files_are_written_0600_and_check_expiration_and_renew_work() {
    let root = tempfile::tempdir().unwrap();
    let root_str = root.path().to_str().unwrap();
    certs_all(root.path());
    let mut args = vec!["init", "phase", "kubeconfig", "all", "--rootfs", root_str];
    args.extend_from_slice(&FLAGS[..4]);
    args.extend_from_slice(&FLAGS[6..]);
    let out = ok(kubeadm(&args));
    assert!(
        out.contains("[kubeconfig] Writing \"admin.conf\" kubeconfig file"),
        "{out}"
    );
    let dir = root.path().join("etc/kubernetes");
    for file in [
        "admin.conf",
        "super-admin.conf",
        "kubelet.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ] {
        let mode = std::fs::metadata(dir.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let admin = std::fs::read_to_string(dir.join("admin.conf")).unwrap();
    assert!(admin.contains("server: https://lb.example.com:6443"), "{admin}");
    assert!(
        admin.contains("current-context: kubernetes-admin@kubernetes"),
        "{admin}"
    );
    let scheduler = std::fs::read_to_string(dir.join("scheduler.conf")).unwrap();
    assert!(
        scheduler.contains("server: https://127.0.0.1:6443"),
        "{scheduler}"
    );
    let kubelet = std::fs::read_to_string(dir.join("kubelet.conf")).unwrap();
    assert!(kubelet.contains("system:node:cp-1@kubernetes"), "{kubelet}");

    let table = ok(kubeadm(&["certs", "check-expiration", "--rootfs", root_str]));
    assert!(table.contains("CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("admin.conf ") && l.contains(" 364d ") && l.trim_end().ends_with("no")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("etcd-ca ") && l.contains(" 9y ")),
        "{table}"
    );

    let before = std::fs::read(root.path().join("etc/kubernetes/pki/apiserver.crt")).unwrap();
    let out = ok(kubeadm(&["certs", "renew", "all", "--rootfs", root_str]));
    assert!(
        out.contains("certificate for serving the Kubernetes API renewed"),
        "{out}"
    );
    assert!(
        out.contains(
            "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed"
        ),
        "{out}"
    );
    assert!(out.contains("Done renewing certificates."), "{out}");
    assert_ne!(
        std::fs::read(root.path().join("etc/kubernetes/pki/apiserver.crt")).unwrap(),
        before
    );
    let sans = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        root.path()
            .join("etc/kubernetes/pki/apiserver.crt")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        sans.contains("DNS:lb.example.com") && sans.contains("IP Address:10.96.0.1"),
        "renewal keeps the SANs: {sans}"
    );
    let err = fails(kubeadm(&["certs", "renew", "nonsense", "--rootfs", root_str]));
    assert!(err.contains("unknown certificate \"nonsense\""), "{err}");
}

#[test]
fn kubectl_with_the_generated_admin_conf_completes_a_verified_tls_handshake() {
    let root = tempfile::tempdir().unwrap();
    let root_str = root.path().to_str().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port_s = port.to_string();
    let base = [
        "--rootfs",
        root_str,
        "--apiserver-advertise-address",
        "127.0.0.1",
        "--apiserver-bind-port",
        &port_s,
    ];
    ok(kubeadm(
        &[&["init", "phase", "certs", "all"][..], &base[..4]].concat(),
    ));
    ok(kubeadm(
        &[&["init", "phase", "kubeconfig", "admin"][..], &base[..]].concat(),
    ));
    let pki = root.path().join("etc/kubernetes/pki");
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    // openssl plays the API server with the apiserver certificate and demands a client certificate from our CA.
    let _server = common::Proc(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                &p("apiserver.crt"),
            ])
            .args([
                "-key",
                &p("apiserver.key"),
                "-CAfile",
                &p("ca.crt"),
                "-Verify",
                "1",
                "-verify_return_error",
                "-www",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    common::eventually(
        std::time::Duration::from_secs(10),
        "openssl s_server to listen",
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let admin = root.path().join("etc/kubernetes/admin.conf");
    for kubectl in common::kubectls() {
        let out = Command::new(&kubectl)
            .args([
                "--kubeconfig",
                admin.to_str().unwrap(),
                "get",
                "--raw",
                "/version",
                "--request-timeout",
                "5s",
            ])
            .output()
            .unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        // The TLS layer verified in both directions: s_server answered with its HTTP status page.
        assert!(
            all.contains("s_server") || all.contains("Ciphers supported"),
            "{}: {all}",
            kubectl.display()
        );
        assert!(!all.contains("x509"), "{}: {all}", kubectl.display());
    }
}

#[test]
fn certificate_keys_and_tokens_have_kubeadms_formats() {
    let key = ok(kubeadm(&["certs", "certificate-key"]));
    assert_eq!(key.trim().len(), 64);
    assert!(key.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    let alpha = ok(kubeadm(&["alpha", "certs", "certificate-key"]));
    assert_ne!(alpha, key);
    let token = ok(kubeadm(&["token", "generate"]));
    let (id, secret) = token.trim().split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16));
    assert!(
        token
            .trim()
            .bytes()
            .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit())
    );
}

#[test]
fn personalities_dispatch_on_argv0_and_each_answers_help() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(Command::new(common::bulwark())
        .args(["install", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap());
    assert!(out.contains("kubeadm ->"), "{out}");
    let version = ok(Command::new(dir.path().join("kubeadm"))
        .args(["version", "-o", "short"])
        .output()
        .unwrap());
    assert_eq!(version.trim(), "v1.33.0");
    for name in [
        "kubelet",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubefedctl",
        "kubefed-controller-manager",
    ] {
        let link = dir.path().join(name);
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        let help = ok(Command::new(&link).arg("--help").output().unwrap());
        assert!(help.contains("Usage:"), "{name}: {help}");
    }
    // The first argument works as well as argv[0], and kubeadm's commands are bulwark's too.
    ok(Command::new(common::bulwark())
        .args(["kubeadm", "version"])
        .output()
        .unwrap());
    ok(Command::new(common::bulwark())
        .args(["token", "generate"])
        .output()
        .unwrap());
    // Installing twice replaces the links.
    ok(Command::new(common::bulwark())
        .args(["install", "--dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap());
}
