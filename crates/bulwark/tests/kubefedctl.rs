#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `bulwark kubefedctl` against two real clusters (etcd, `bulwark kube-apiserver`, `bulwark kube-controller-manager`
//! each), with the kubeconfig guide C builds with real kubectl: context `fedhost` (the host's admin client
//! certificate) and `member1` (a ServiceAccount token of the member, read with `kubectl get secret | grep` and
//! `kubectl describe secret`). The KubeFed CRDs are applied to the host with kubectl; no federation controller runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use common::{Proc, eventually, fails, kubectl_newest, ok, text};
use serde_json::Value;
use testkit::cluster::{ApiServer, Pki, free_port};

const DEADLINE: Duration = Duration::from_secs(60);
const NS: &str = "kube-federation-system";

/// One cluster. Fields drop in order: controller-manager, API server, etcd, runtime, certificates.
struct Cluster {
    cm: Option<Proc>,
    server: Option<ApiServer>,
    _etcd: testkit::EtcdCluster,
    _rt: tokio::runtime::Runtime,
    pki: Pki,
    port: u16,
}

impl Cluster {
    fn start(controller_manager: bool) -> Cluster {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let etcd = rt.block_on(testkit::EtcdCluster::start_single()).unwrap();
        let port = free_port().unwrap();
        let pki = Pki::new(port).unwrap();
        let server = ApiServer::start(
            &pki,
            port,
            &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
        )
        .unwrap();
        let cm = controller_manager.then(|| {
            let dir = pki.pki_dir();
            let file = |flag: &str, f: &str| format!("--{flag}={}", dir.join(f).display());
            let log = std::fs::File::create(pki.dir.path().join("controller-manager.log")).unwrap();
            Proc(
                Command::new(common::bulwark())
                    .arg("kube-controller-manager")
                    .arg(format!("--kubeconfig={}", pki.kubeconfig().display()))
                    .args(["--secure-port=0", "--controllers=*", "--leader-elect=false"])
                    .args([
                        file("root-ca-file", "ca.crt"),
                        file("service-account-private-key-file", "sa.key"),
                        file("cluster-signing-cert-file", "ca.crt"),
                        file("cluster-signing-key-file", "ca.key"),
                    ])
                    .env("BULWARK_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .unwrap(),
            )
        });
        Cluster {
            cm,
            server: Some(server),
            _etcd: etcd,
            _rt: rt,
            pki,
            port,
        }
    }

    fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn ca_file(&self) -> PathBuf {
        self.pki.pki_dir().join("ca.crt")
    }

    fn ca_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(self.ca_file()).unwrap())
    }

    /// kubectl as this cluster's admin.
    fn admin(&self, args: &[&str]) -> Output {
        kubectl(&self.pki.kubeconfig(), args)
    }

    fn admin_ok(&self, args: &[&str]) -> String {
        ok(self.admin(args))
    }

    fn admin_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = kubectl_cmd(&self.pki.kubeconfig(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        ok(child.wait_with_output().unwrap())
    }

    fn exists(&self, args: &[&str]) -> bool {
        self.admin(args).status.success()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.admin_ok(&a)).unwrap()
    }

    fn names(&self, args: &[&str]) -> Vec<String> {
        self.json(args)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn log(&self) -> String {
        let cm =
            std::fs::read_to_string(self.pki.dir.path().join("controller-manager.log")).unwrap_or_default();
        let server = self.server.as_ref().map(ApiServer::log_tail).unwrap_or_default();
        format!("controller-manager:\n{cm}\napiserver:\n{server}")
    }

    /// Applies the KubeFed CRDs as the chart would.
    fn install_crds(&self) {
        let docs: Vec<String> = federation::crds::all()
            .unwrap()
            .iter()
            .map(|c| serde_yaml::to_string(c).unwrap())
            .collect();
        self.admin_stdin(&["apply", "-f", "-"], &docs.join("---\n"));
    }
}

fn kubectl_cmd(kubeconfig: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(kubectl_newest().expect("a kubectl"));
    c.env("KUBECONFIG", kubeconfig)
        .env("HOME", kubeconfig.parent().unwrap())
        .args(args);
    c
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    kubectl_cmd(kubeconfig, args).output().unwrap()
}

/// A host and a member, and the kubeconfig guide C builds for them.
struct Federation {
    member: Cluster,
    host: Cluster,
    dir: tempfile::TempDir,
}

impl Federation {
    fn start() -> Federation {
        let host = Cluster::start(true);
        let member = Cluster::start(true);
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(host.pki.kubeconfig(), dir.path().join("config")).unwrap();
        let fed = Federation { member, host, dir };
        // Context names with '@' would make invalid object names; guide C renames the admin context.
        fed.config(&["rename-context", "kubernetes-admin@kubernetes", "fedhost"]);
        let token = fed.member_account("member1", Some(ALL_RULES));
        fed.add_context("member1", &fed.member.server_url(), &token);
        fed
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn config(&self, args: &[&str]) -> String {
        let mut a = vec!["config"];
        a.extend(args);
        ok(kubectl(&self.kubeconfig(), &a))
    }

    /// A ServiceAccount `name` in the member's `default` namespace, bound to a ClusterRole with `rules` (none: no
    /// rights at all), with a legacy token Secret; its token as guide C reads it.
    fn member_account(&self, name: &str, rules: Option<&str>) -> String {
        let mut manifest = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: default}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-token-a1b2c\n  namespace: default\n  \
             annotations: {{kubernetes.io/service-account.name: {name}}}\ntype: kubernetes.io/service-account-token\n"
        );
        if let Some(rules) = rules {
            manifest.push_str(&format!(
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {name}}}\n\
                 rules:\n{rules}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n\
                 metadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, \
                 name: {name}}}\nsubjects: [{{kind: ServiceAccount, name: {name}, namespace: default}}]\n"
            ));
        }
        self.member.admin_stdin(&["apply", "-f", "-"], &manifest);
        let secret = eventually(DEADLINE, "the token controller to fill the token", || {
            let listing = self.member.admin_ok(&["get", "secret"]);
            let line = listing
                .lines()
                .find(|l| l.starts_with(&format!("{name}-token-")))?;
            let secret = line.split_whitespace().next()?.to_string();
            let token = self
                .member
                .admin_ok(&["get", "secret", &secret, "-o", "jsonpath={.data.token}"]);
            (!token.trim().is_empty()).then_some(secret)
        });
        let described = self.member.admin_ok(&["describe", "secret", &secret]);
        described
            .lines()
            .find_map(|l| l.strip_prefix("token:"))
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| panic!("no token in:\n{described}"))
    }

    fn add_context(&self, name: &str, server: &str, token: &str) {
        let user = format!("kubefed-{name}");
        let cluster = format!("kubefed-remote-{name}");
        self.config(&["set-credentials", &user, &format!("--token={token}")]);
        self.config(&["set-cluster", &cluster, &format!("--server={server}")]);
        self.config(&[
            "set",
            &format!("clusters.{cluster}.certificate-authority-data"),
            &self.member.ca_base64(),
        ]);
        self.config(&[
            "set-context",
            name,
            &format!("--cluster={cluster}"),
            &format!("--user={user}"),
            "--namespace=default",
        ]);
    }

    fn kubefedctl(&self, args: &[&str]) -> Output {
        Command::new(common::bulwark())
            .arg("kubefedctl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap()
    }

    fn join(&self, name: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "join",
            name,
            "--host-cluster-context",
            "fedhost",
            "--kubefed-namespace=kube-federation-system",
        ];
        args.extend(extra);
        self.kubefedctl(&args)
    }

    fn unjoin(&self, name: &str, extra: &[&str]) -> Output {
        let mut args = vec!["unjoin", name, "--host-cluster-context", "fedhost"];
        args.extend(extra);
        self.kubefedctl(&args)
    }

    fn kubefedclusters(&self) -> Vec<String> {
        self.host.names(&["get", "kubefedclusters", "-n", NS])
    }

    fn host_secrets(&self, prefix: &str) -> Vec<String> {
        if !self.host.exists(&["get", "namespace", NS]) {
            return Vec::new();
        }
        self.host
            .names(&["get", "secrets", "-n", NS])
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect()
    }
}

const ALL_RULES: &str =
    "- {apiGroups: ['*'], resources: ['*'], verbs: ['*']}\n- {nonResourceURLs: ['*'], verbs: ['*']}\n";

/// Exit status 255 and one klog fatal line, as upstream's klog.Fatalf.
#[track_caller]
fn fails_fatally(out: Output) -> String {
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    let stderr = fails(out);
    let fatal = stderr.lines().find(|l| l.starts_with('F')).unwrap_or_default();
    assert!(fatal.contains("] Error: "), "{stderr}");
    stderr
}

/// `I0102 15:04:05.123456   12345 join.rs:42] msg`
fn is_klog_line(line: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 30
        && matches!(b[0], b'I' | b'W' | b'E' | b'F')
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5] == b' '
        && line.contains("] ")
        && line[..line.find("] ").unwrap()].ends_with(|c: char| c.is_ascii_digit())
}

#[test]
fn guide_cs_joins_register_both_clusters_with_working_credentials_and_unjoin_removes_both_sides() {
    let mut fed = Federation::start();
    fed.host.install_crds();

    let out = ok_stderr(fed.join("fedhost", &["--v=2"]));
    for step in [
        "] Performing preflight checks.",
        "] Created service account: fedhost-fedhost in joining cluster: fedhost",
        "] Created cluster role and binding for service account: fedhost-fedhost in joining cluster: fedhost",
        "] Using secret named: fedhost-fedhost-token-",
        "] Created federated cluster resource",
    ] {
        assert!(out.contains(step), "{step} missing from:\n{out}");
    }
    assert!(out.lines().all(is_klog_line), "{out}");
    ok(fed.join("member1", &["--v=2"]));

    let listing = ok(kubectl(&fed.kubeconfig(), &["-n", NS, "get", "kubefedclusters"]));
    let mut lines = listing.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "AGE", "READY"], "{listing}");
    let rows: Vec<&str> = lines.filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(rows, ["fedhost", "member1"], "{listing}");

    // The KubeFedCluster points at the member context's server and CA, and its Secret's token has the rights.
    let cluster = fed.host.json(&["get", "kubefedcluster", "member1", "-n", NS]);
    assert_eq!(cluster["spec"]["apiEndpoint"], fed.member.server_url());
    assert_eq!(cluster["spec"]["caBundle"], fed.member.ca_base64());
    let secret_name = cluster["spec"]["secretRef"]["name"].as_str().unwrap().to_string();
    assert!(secret_name.starts_with("member1-"), "{secret_name}");
    let secret = fed.host.json(&["get", "secret", &secret_name, "-n", NS]);
    let token = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["token"].as_str().unwrap())
        .unwrap();
    let token = String::from_utf8(token).unwrap();
    assert!(secret["data"]["ca.crt"].is_string());
    let empty = fed.dir.path().join("empty-kubeconfig");
    std::fs::write(&empty, "").unwrap();
    let as_host = |args: &[&str]| {
        let mut a = vec![
            format!("--server={}", fed.member.server_url()),
            format!("--token={token}"),
            format!("--certificate-authority={}", fed.member.ca_file().display()),
        ];
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        kubectl(&empty, &a)
    };
    assert_eq!(
        ok(as_host(&["auth", "can-i", "create", "deployments.apps", "-A"])).trim(),
        "yes"
    );
    assert!(ok(as_host(&["get", "namespaces"])).contains(NS));

    // What join made in the member.
    let sa = "member1-fedhost";
    let role = "kubefed-controller-manager:member1-fedhost";
    assert!(fed.member.exists(&["get", "serviceaccount", sa, "-n", NS]));
    let cr = fed.member.json(&["get", "clusterrole", role]);
    assert_eq!(cr["rules"][0]["verbs"], serde_json::json!(["*"]));
    assert_eq!(cr["rules"][1]["nonResourceURLs"], serde_json::json!(["/healthz"]));
    let crb = fed.member.json(&["get", "clusterrolebinding", role]);
    assert_eq!(crb["subjects"][0]["name"], sa);
    assert_eq!(crb["roleRef"]["name"], role);

    // A second join fails as upstream's does by default, and updates in place with --error-on-existing=false.
    let err = fails_fatally(fed.join("member1", &[]));
    assert!(
        err.contains("service account: member1-fedhost already exists in joining cluster: member1"),
        "{err}"
    );
    ok(fed.join("member1", &["--error-on-existing=false"]));
    let secrets = fed.host_secrets("member1-");
    assert_eq!(
        secrets.len(),
        1,
        "the earlier join's secret is deleted: {secrets:?}"
    );
    let cluster = fed.host.json(&["get", "kubefedcluster", "member1", "-n", NS]);
    assert_eq!(cluster["spec"]["secretRef"]["name"], secrets[0].as_str());
    assert_eq!(fed.kubefedclusters(), ["fedhost", "member1"]);

    // unjoin removes both sides; the host keeps its own KubeFed namespace.
    let out = ok_stderr(fed.unjoin("member1", &["--v=2"]));
    assert!(out.contains("Deleted kubefed cluster"), "{out}");
    assert_eq!(fed.kubefedclusters(), ["fedhost"]);
    assert!(fed.host_secrets("member1-").is_empty());
    assert!(!fed.member.exists(&["get", "clusterrole", role]));
    assert!(!fed.member.exists(&["get", "clusterrolebinding", role]));
    eventually(DEADLINE, "the member's KubeFed namespace to go", || {
        (!fed.member.exists(&["get", "namespace", NS])).then_some(())
    });
    ok(fed.unjoin("fedhost", &[]));
    assert!(fed.kubefedclusters().is_empty());
    assert!(
        !fed.host
            .exists(&["get", "serviceaccount", "fedhost-fedhost", "-n", NS])
    );
    assert!(
        fed.host.exists(&["get", "namespace", NS]),
        "the host keeps its KubeFed namespace"
    );

    // A member that is gone can only be removed with --force, which removes the host side.
    ok(fed.join("member1", &[]));
    fed.member.cm = None;
    fed.member.server = None;
    let err = fails_fatally(fed.unjoin("member1", &[]));
    assert!(
        err.contains("cannot reach the unjoining cluster (context \"member1\")") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fed.kubefedclusters(), ["member1"]);
    ok(fed.unjoin("member1", &["--force"]));
    assert!(fed.kubefedclusters().is_empty());
    assert!(fed.host_secrets("member1-").is_empty());
}

/// stdout must be empty on success as upstream's; the progress is on stderr.
#[track_caller]
fn ok_stderr(out: Output) -> String {
    let stderr = text(&out.stderr);
    let stdout = ok(out);
    assert!(stdout.is_empty(), "{stdout}");
    stderr
}

#[test]
fn joins_that_cannot_work_name_their_cause_and_leave_nothing_behind() {
    let fed = Federation::start();
    let member_ns_absent = || !fed.member.exists(&["get", "namespace", NS]);

    let err = fails_fatally(fed.join("member1", &[]));
    assert!(
        err.contains("the KubeFed API is not installed in the host cluster (context \"fedhost\")")
            && err.contains("kubefedclusters.core.kubefed.io"),
        "{err}"
    );
    assert!(member_ns_absent(), "nothing was created in the member");
    fed.host.install_crds();

    let err = fails_fatally(fed.join("ghost", &[]));
    assert!(
        err.contains("context \"ghost\" does not exist in kubeconfig"),
        "{err}"
    );
    assert!(err.contains("fedhost, member1"), "{err}");

    // A context whose server does not answer.
    let token = fed.member_account("deadbeat", Some(ALL_RULES));
    fed.add_context(
        "dead",
        &format!("https://127.0.0.1:{}", free_port().unwrap()),
        &token,
    );
    let err = fails_fatally(fed.join("dead", &[]));
    assert!(
        err.contains("cannot reach the joining cluster (context \"dead\") at https://127.0.0.1:"),
        "{err}"
    );

    // Credentials without any rights fail on the first request.
    let token = fed.member_account("nobody", None);
    fed.add_context("nobody", &fed.member.server_url(), &token);
    let err = fails_fatally(fed.join("nobody", &[]));
    assert!(
        err.contains("in the joining cluster (context \"nobody\")") && err.contains("Forbidden (403)"),
        "{err}"
    );
    assert!(err.contains("lack the rights"), "{err}");
    assert!(member_ns_absent());

    // Credentials that may create the namespace, account and secret but no ClusterRole: the run's work is undone.
    let limited = "- {apiGroups: [''], resources: [namespaces, serviceaccounts, secrets], \
                   verbs: [get, list, watch, create, delete]}\n\
                   - {apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles, clusterrolebindings], \
                   verbs: [get, list]}\n";
    let token = fed.member_account("limited", Some(limited));
    fed.add_context("limited", &fed.member.server_url(), &token);
    let err = fails_fatally(fed.join("limited", &["--v=2"]));
    assert!(
        err.contains(
            "creating cluster role kubefed-controller-manager:limited-fedhost in the joining cluster"
        ),
        "{err}"
    );
    assert!(
        err.contains("] Rolled back: deleted service account kube-federation-system/limited-fedhost"),
        "{err}"
    );
    assert!(
        err.contains("] Rolled back: deleted namespace kube-federation-system"),
        "{err}"
    );
    eventually(DEADLINE, "the rolled back namespace to go", || {
        member_ns_absent().then_some(())
    });
    assert!(
        !fed.member
            .exists(&["get", "clusterrole", "kubefed-controller-manager:limited-fedhost"])
    );

    // None of these left a KubeFedCluster or credentials in the host.
    let listing = ok(kubectl(&fed.kubeconfig(), &["-n", NS, "get", "kubefedclusters"]));
    assert!(listing.trim().is_empty(), "{listing}");
    assert!(fed.kubefedclusters().is_empty());
    for prefix in ["member1-", "ghost-", "dead-", "nobody-", "limited-"] {
        assert!(fed.host_secrets(prefix).is_empty(), "{prefix}");
    }
    // A member joined before the host has a KubeFed namespace cannot store its credentials there; its side is
    // undone too. In guide C's order, the host first, both join.
    let err = fails_fatally(fed.join("member1", &[]));
    assert!(
        err.contains("namespaces \"kube-federation-system\" not found")
            && err.contains("join the host cluster"),
        "{err}"
    );
    assert!(
        !fed.member
            .exists(&["get", "serviceaccount", "member1-fedhost", "-n", NS])
    );
    assert!(
        !fed.member
            .exists(&["get", "clusterrole", "kubefed-controller-manager:member1-fedhost"])
    );
    eventually(DEADLINE, "the rolled back namespace to go", || {
        member_ns_absent().then_some(())
    });
    ok(fed.join("fedhost", &[]));
    ok(fed.join("member1", &[]));
    assert_eq!(
        fed.kubefedclusters(),
        ["fedhost", "member1"],
        "{}",
        fed.member.log()
    );
}

#[test]
fn enable_disable_and_federate_write_the_federated_api_and_print_upstreams_lines() {
    let host = Cluster::start(false);
    host.install_crds();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::copy(host.pki.kubeconfig(), &config).unwrap();
    ok(kubectl(
        &config,
        &[
            "config",
            "rename-context",
            "kubernetes-admin@kubernetes",
            "fedhost",
        ],
    ));
    let kubefedctl = |args: &[&str]| {
        Command::new(common::bulwark())
            .arg("kubefedctl")
            .args(args)
            .env("KUBECONFIG", &config)
            .output()
            .unwrap()
    };
    host.admin_ok(&["create", "namespace", NS]);
    host.admin_ok(&["create", "namespace", "demo"]);
    host.admin_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\n  labels: {app: web}\n  \
         annotations: {team: blue}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    \
         metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'web:1'}]}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: demo}\ndata: {color: blue}\n",
    );

    // The default types' CRDs came with the install: enable updates it and creates the FederatedTypeConfig.
    assert_eq!(
        ok(kubefedctl(&["enable", "deployments.apps"])),
        "customresourcedefinition.apiextensions.k8s.io/federateddeployments.types.kubefed.io updated\n\
         federatedtypeconfig.core.kubefed.io/deployments.apps created in namespace kube-federation-system\n"
    );
    assert_eq!(
        ok(kubefedctl(&["enable", "Deployment"])),
        "customresourcedefinition.apiextensions.k8s.io/federateddeployments.types.kubefed.io updated\n\
         federatedtypeconfig.core.kubefed.io/deployments.apps updated in namespace kube-federation-system\n"
    );
    let ftc = host.json(&["get", "federatedtypeconfig", "deployments.apps", "-n", NS]);
    assert_eq!(ftc["spec"]["propagation"], "Enabled");
    assert_eq!(ftc["spec"]["federatedType"]["kind"], "FederatedDeployment");
    let err = fails_fatally(kubefedctl(&["enable", "widgets"]));
    assert!(
        err.contains("Unable to find api resource named \"widgets\"."),
        "{err}"
    );

    // federate: the template is the Deployment minus its identity and status, labels kept.
    let out = kubefedctl(&[
        "federate",
        "deployment",
        "web",
        "-n",
        "demo",
        "--host-cluster-context",
        "fedhost",
    ]);
    let stderr = text(&out.stderr);
    ok(out);
    assert!(
        stderr.contains("] Successfully created FederatedDeployment \"demo/web\" from Deployment"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('W') && l.contains("Annotations defined for Deployment \"demo/web\""))
    );
    let fd = host.json(&["get", "federateddeployment", "web", "-n", "demo"]);
    let template = &fd["spec"]["template"];
    assert_eq!(
        template["metadata"],
        serde_json::json!({"labels": {"app": "web"}})
    );
    assert_eq!(template["spec"]["replicas"], 2);
    assert!(template.get("status").is_none() && template.get("kind").is_none());
    assert_eq!(
        fd["spec"]["placement"],
        serde_json::json!({"clusterSelector": {"matchLabels": {}}})
    );
    let yaml = ok(kubefedctl(&[
        "federate", "deploy", "web", "-n", "demo", "-o", "yaml",
    ]));
    assert!(
        yaml.starts_with("---\napiVersion: types.kubefed.io/v1beta1\nkind: FederatedDeployment\n"),
        "{yaml}"
    );

    // A type that is not enabled needs --enable-type; a CRD that is gone is created again.
    let err = fails_fatally(kubefedctl(&["federate", "configmap", "settings", "-n", "demo"]));
    assert!(err.contains("Consider using '--enable-type'"), "{err}");
    assert_eq!(
        ok(kubefedctl(&["disable", "configmaps", "--delete-crd"])),
        "FederatedTypeConfig \"kube-federation-system/configmaps\" does not exist\n\
         customresourcedefinition \"federatedconfigmaps.types.kubefed.io\" deleted\n"
    );
    assert!(!host.exists(&["get", "crd", "federatedconfigmaps.types.kubefed.io"]));
    let out = kubefedctl(&["federate", "cm", "settings", "-n", "demo", "--enable-type"]);
    let stderr = text(&out.stderr);
    assert_eq!(
        ok(out),
        "customresourcedefinition.apiextensions.k8s.io/federatedconfigmaps.types.kubefed.io created\n\
         federatedtypeconfig.core.kubefed.io/configmaps created in namespace kube-federation-system\n"
    );
    assert!(
        stderr.contains("Successfully created FederatedConfigMap \"demo/settings\" from ConfigMap"),
        "{stderr}"
    );
    let fcm = host.json(&["get", "federatedconfigmap", "settings", "-n", "demo"]);
    assert_eq!(fcm["spec"]["template"]["data"]["color"], "blue");

    // A type outside the defaults gets a CRD of the same shape.
    assert_eq!(
        ok(kubefedctl(&["enable", "clusterroles"])),
        "customresourcedefinition.apiextensions.k8s.io/federatedclusterroles.types.kubefed.io created\n\
         federatedtypeconfig.core.kubefed.io/clusterroles.rbac.authorization.k8s.io created in namespace \
         kube-federation-system\n"
    );
    let crd = host.json(&["get", "crd", "federatedclusterroles.types.kubefed.io"]);
    assert_eq!(crd["spec"]["scope"], "Cluster");

    // disable keeps a CRD that still has objects, and otherwise stops propagation and removes the config.
    let err = fails_fatally(kubefedctl(&["disable", "deployments.apps", "--delete-crd"]));
    assert!(
        err.contains(
            "Cannot delete CRD \"federateddeployments.types.kubefed.io\" while resource instances exist"
        ),
        "{err}"
    );
    assert!(host.exists(&["get", "federatedtypeconfig", "deployments.apps", "-n", NS]));
    assert_eq!(
        ok(kubefedctl(&["disable", "deployments.apps"])),
        "Disabled propagation for FederatedTypeConfig \"kube-federation-system/deployments.apps\"\n\
         Verifying propagation controller is stopped for FederatedTypeConfig \"kube-federation-system/deployments.apps\"\n\
         Propagation controller for FederatedTypeConfig \"kube-federation-system/deployments.apps\" is stopped\n\
         federatedtypeconfig \"kube-federation-system/deployments.apps\" deleted\n"
    );
    assert!(!host.exists(&["get", "federatedtypeconfig", "deployments.apps", "-n", NS]));
    assert!(host.exists(&["get", "federateddeployment", "web", "-n", "demo"]));
}
