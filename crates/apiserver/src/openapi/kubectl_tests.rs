//! The documents as real kubectl binaries decode them: a small plain-HTTP server in the test
//! serves discovery (built from the registry) and the OpenAPI documents, and kubectl runs
//! `explain` and client-side validated `create --dry-run=client` against it.
//!
//! kubectl 1.20 (the Debian package, extracted by `scripts/install-deps`) decodes `/openapi/v2`
//! as protobuf with kube-openapi's strict parser; kubectl 1.33 explains through `/openapi/v3`.
//! A test whose binary is absent says so and passes, so `cargo test` works before install-deps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::Registry;
use serde_json::{Value, json};

use super::tests::CronTabSchema;
use super::{Documents, NoCustomSchemas, SchemaSource};

struct Served {
    docs: Documents,
    registry: Registry,
    /// One stored object (request path and body) that GET returns and PATCH answers with.
    existing: Option<(String, Value)>,
    /// Content type and body of every PATCH received.
    patches: Mutex<Vec<(String, String)>>,
}

impl Served {
    /// Status, content type and body for one GET.
    fn respond(&self, target: &str, accept: &str) -> (u16, &'static str, Vec<u8>) {
        let path = target.split('?').next().unwrap_or_default();
        let json = |v: Value| (200, "application/json", v.to_string().into_bytes());
        match path {
            "/version" => {
                json(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}))
            }
            "/api" => {
                json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}))
            }
            "/apis" => json(self.group_list()),
            "/openapi/v2" if accept.contains("protobuf") => {
                (200, "application/octet-stream", self.docs.v2_protobuf.clone())
            }
            "/openapi/v2" => (200, "application/json", self.docs.v2_json.clone()),
            "/openapi/v3" => json(self.docs.v3_index()),
            _ if self.existing.as_ref().is_some_and(|(p, _)| p == path) => {
                json(self.existing.as_ref().map(|(_, o)| o.clone()).unwrap_or_default())
            }
            _ => {
                if let Some(doc) = path
                    .strip_prefix("/openapi/v3/")
                    .and_then(|p| self.docs.v3_by_path(p))
                {
                    return (200, "application/json", doc.json.clone());
                }
                if let Some(list) = self.resource_list(path) {
                    return json(list);
                }
                (
                    404,
                    "application/json",
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
                        .to_string()
                        .into_bytes(),
                )
            }
        }
    }

    fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .registry
            .group_versions()
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, v)| {
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    fn resource_list(&self, path: &str) -> Option<Value> {
        let (group, version) = match path.strip_prefix("/api/") {
            Some(v) => ("", v),
            None => path.strip_prefix("/apis/")?.split_once('/')?,
        };
        let mut resources = Vec::new();
        for r in self.registry.in_group_version(group, version) {
            resources.push(json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": r.verbs, "shortNames": r.short_names, "categories": r.categories,
            }));
        }
        if resources.is_empty() {
            return None;
        }
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": api::registry::api_version(group, version), "resources": resources}),
        )
    }
}

/// Serves one connection: HTTP/1.1 keep-alive requests; PATCH bodies are recorded, every
/// method is otherwise answered like GET (kubectl sends nothing else here).
fn serve_connection(stream: TcpStream, served: &Served) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut words = request_line.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let target = words.next().unwrap_or("/").to_owned();
        let mut accept = String::new();
        let mut content_type = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim().to_owned();
                match name.to_ascii_lowercase().as_str() {
                    "accept" => accept = value,
                    "content-type" => content_type = value,
                    "content-length" => length = value.parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        if method == "PATCH" {
            let body = String::from_utf8_lossy(&body).into_owned();
            served.patches.lock().unwrap().push((content_type, body));
        }
        let (code, content_type, body) = served.respond(&target, &accept);
        let head = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            if code == 200 { "OK" } else { "Not Found" },
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
    }
}

/// Starts the server on a free loopback port; it lives until the test process ends.
fn start_server() -> String {
    start_server_with(None).0
}

fn start_server_with(existing: Option<(String, Value)>) -> (String, Arc<Served>) {
    start_server_for(Registry::builtin(), &NoCustomSchemas, existing)
}

fn start_server_for(
    registry: Registry,
    custom: &dyn SchemaSource,
    existing: Option<(String, Value)>,
) -> (String, Arc<Served>) {
    let served = Arc::new(Served {
        docs: Documents::build(&registry, custom),
        registry,
        existing,
        patches: Mutex::new(Vec::new()),
    });
    let handle = Arc::clone(&served);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let served = Arc::clone(&served);
            std::thread::spawn(move || serve_connection(stream, &served));
        }
    });
    (format!("http://{addr}"), handle)
}

struct Kubectl {
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(binary: PathBuf, server: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {server}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: t\n    user: u\n    namespace: default\ncurrent-context: c\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
        Self { binary, dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs kubectl with a private kubeconfig and cache, killing it after a deadline.
    fn run(&self, args: &[&str]) -> Output {
        let dir = self.dir.path();
        let mut child = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(args)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn kubectl_1_20() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".cache/bulwark/kubectl-1.20/usr/bin/kubectl");
    path.exists().then_some(path).or_else(|| {
        eprintln!("kubectl 1.20 not installed (scripts/install-deps); skipping");
        None
    })
}

fn kubectl_newest() -> Option<PathBuf> {
    let real = std::fs::canonicalize("/usr/bin/kubectl").ok()?;
    let path = real.with_file_name("kubectl.1.33");
    path.exists().then_some(path).or_else(|| {
        eprintln!("kubectl 1.33 not installed; skipping");
        None
    })
}

const VALID_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx\n    ports:\n    - containerPort: 80\n    resources:\n      limits:\n        cpu: 500m\n        memory: 1Gi\n    livenessProbe:\n      httpGet:\n        port: http\n        path: /\n";
const POD_WITH_UNKNOWN_FIELD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  foo: bar\n  containers:\n  - name: web\n    image: nginx\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 25%, maxUnavailable: 1}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n";

#[test]
fn kubectl_1_20_explains_pod_containers_from_the_protobuf_v2_document() {
    let Some(binary) = kubectl_1_20() else {
        return;
    };
    let kubectl = Kubectl::new(binary, &start_server());
    let out = kubectl.run(&["explain", "pods.spec.containers"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("RESOURCE: containers <[]Object>"), "{t}");
    assert!(t.contains("List of containers belonging to the pod."), "{t}");
    assert!(
        t.contains("A single application container that you want to run within a pod."),
        "{t}"
    );
    assert!(t.contains("image\t<string>"), "{t}");

    let out = kubectl.run(&["explain", "deployments.spec.strategy"]);
    assert!(
        out.status.success() && text(&out).contains("KIND:     Deployment"),
        "{}",
        text(&out)
    );
}

#[test]
fn kubectl_1_20_validates_manifests_against_the_v2_schemas() {
    let Some(binary) = kubectl_1_20() else {
        return;
    };
    let kubectl = Kubectl::new(binary, &start_server());
    for (name, manifest, created) in [
        ("pod.yaml", VALID_POD, "pod/web created (dry run)"),
        ("deploy.yaml", DEPLOYMENT, "deployment.apps/web created (dry run)"),
    ] {
        let file = kubectl.write(name, manifest);
        let out = kubectl.run(&[
            "create",
            "--dry-run=client",
            "--validate=true",
            "-f",
            file.to_str().unwrap(),
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains(created), "{t}");
    }

    let file = kubectl.write("bad.yaml", POD_WITH_UNKNOWN_FIELD);
    let out = kubectl.run(&[
        "create",
        "--dry-run=client",
        "--validate=true",
        "-f",
        file.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(r#"error validating data: ValidationError(Pod.spec): unknown field "foo" in io.k8s.api.core.v1.PodSpec"#),
        "{t}"
    );
}

#[test]
fn kubectl_1_33_explains_pod_containers_from_the_v3_documents() {
    let Some(binary) = kubectl_newest() else {
        return;
    };
    let kubectl = Kubectl::new(binary, &start_server());
    let out = kubectl.run(&["explain", "pods.spec.containers"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("FIELD: containers <[]Container>"), "{t}");
    assert!(t.contains("List of containers belonging to the pod."), "{t}");
    assert!(t.contains("image\t<string>"), "{t}");

    let out = kubectl.run(&["explain", "deployments.spec.strategy.rollingUpdate.maxSurge"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("GROUP:      apps"), "{t}");
}

#[test]
fn kubectl_1_20_client_side_apply_validates_against_the_v2_schemas() {
    let Some(binary) = kubectl_1_20() else {
        return;
    };
    let kubectl = Kubectl::new(binary, &start_server());
    let file = kubectl.write("deploy.yaml", DEPLOYMENT);
    let out = kubectl.run(&[
        "apply",
        "--dry-run=client",
        "--validate=true",
        "-f",
        file.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("deployment.apps/web created (dry run)"), "{t}");
}

#[test]
fn kubectl_1_33_validates_manifests_client_side() {
    let Some(binary) = kubectl_newest() else {
        return;
    };
    let kubectl = Kubectl::new(binary, &start_server());
    let file = kubectl.write("pod.yaml", VALID_POD);
    let out = kubectl.run(&[
        "create",
        "--dry-run=client",
        "--validate=true",
        "-f",
        file.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let file = kubectl.write("bad.yaml", POD_WITH_UNKNOWN_FIELD);
    let out = kubectl.run(&[
        "create",
        "--dry-run=client",
        "--validate=true",
        "-f",
        file.to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    // The server advertises no `fieldValidation` parameter, so kubectl validates client-side.
    assert!(
        t.contains(r#"ValidationError(Pod.spec): unknown field "foo""#),
        "{t}"
    );
}

/// A Deployment as stored after `kubectl apply` of [`DEPLOYMENT`]: the manifest plus the
/// last-applied annotation apply diffs against.
fn applied_deployment() -> Value {
    let manifest: Value = serde_yaml::from_str(DEPLOYMENT).unwrap();
    let mut stored = manifest.clone();
    stored["metadata"]["namespace"] = json!("default");
    stored["metadata"]["uid"] = json!("6f0e3c5e-0000-4000-8000-000000000001");
    stored["metadata"]["resourceVersion"] = json!("7");
    stored["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": manifest.to_string(),
    });
    stored
}

/// Re-applies the Deployment with a changed and an added container and returns the strategic
/// merge patch kubectl sent. Only a schema with `containers` merged by `name` yields
/// `$setElementOrder/containers`; without the merge key kubectl replaces the whole list.
fn reapply_with_new_container(binary: PathBuf) -> String {
    let path = "/apis/apps/v1/namespaces/default/deployments/web".to_owned();
    let (server, served) = start_server_with(Some((path, applied_deployment())));
    let kubectl = Kubectl::new(binary, &server);
    let changed = DEPLOYMENT.replace(
        "      - name: web\n        image: nginx\n",
        "      - name: web\n        image: nginx:1.25\n      - name: sidecar\n        image: busybox\n",
    );
    assert_ne!(changed, DEPLOYMENT);
    let file = kubectl.write("deploy.yaml", &changed);
    let out = kubectl.run(&["apply", "--validate=true", "-f", file.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("deployment.apps/web configured"), "{t}");
    let patches = served.patches.lock().unwrap();
    assert_eq!(patches.len(), 1, "{patches:?}");
    let (content_type, body) = &patches[0];
    assert_eq!(content_type, "application/strategic-merge-patch+json");
    body.clone()
}

#[test]
fn kubectl_1_20_apply_merges_containers_by_the_v2_merge_key() {
    let Some(binary) = kubectl_1_20() else {
        return;
    };
    let patch: Value = serde_json::from_str(&reapply_with_new_container(binary)).unwrap();
    let spec = &patch["spec"]["template"]["spec"];
    assert_eq!(
        spec["$setElementOrder/containers"],
        json!([{"name": "web"}, {"name": "sidecar"}]),
        "{patch}"
    );
}

#[test]
fn kubectl_1_33_apply_merges_containers_by_the_v3_merge_key() {
    let Some(binary) = kubectl_newest() else {
        return;
    };
    let patch: Value = serde_json::from_str(&reapply_with_new_container(binary)).unwrap();
    let spec = &patch["spec"]["template"]["spec"];
    assert_eq!(
        spec["$setElementOrder/containers"],
        json!([{"name": "web"}, {"name": "sidecar"}]),
        "{patch}"
    );
}

/// `kubectl explain <resource>` for every served resource, with each kubectl.
#[test]
fn every_served_resource_is_explained_by_both_kubectl_versions() {
    for binary in [kubectl_1_20(), kubectl_newest()].into_iter().flatten() {
        let kubectl = Kubectl::new(binary, &start_server());
        for info in Registry::builtin().iter() {
            let resource = format!("{} --api-version={}", info.plural, info.api_version());
            let api_version = format!("--api-version={}", info.api_version());
            let out = kubectl.run(&["explain", &info.plural, &api_version]);
            let t = text(&out);
            assert!(out.status.success(), "{resource}: {t}");
            assert!(
                t.contains(&info.kind) && t.contains("DESCRIPTION:"),
                "{resource}: {t}"
            );
        }
    }
}

#[test]
fn a_custom_kind_is_explained_and_validated_from_its_structural_schema() {
    let mut registry = Registry::builtin();
    registry
        .insert(api::ResourceInfo::custom(
            "stable.example.com",
            "v1",
            "CronTab",
            "crontabs",
            "crontab",
            true,
        ))
        .unwrap();
    let (server, _) = start_server_for(registry, &CronTabSchema, None);
    for binary in [kubectl_1_20(), kubectl_newest()].into_iter().flatten() {
        let kubectl = Kubectl::new(binary, &server);
        let out = kubectl.run(&["explain", "crontabs.spec.cronSpec"]);
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        assert!(t.contains("When to run."), "{t}");

        let good = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: c\nspec:\n  cronSpec: '* * * * */5'\n  port: 8080\n  extra: {anything: [1, 2]}\n";
        let file = kubectl.write("good.yaml", good);
        let out = kubectl.run(&[
            "create",
            "--dry-run=client",
            "--validate=true",
            "-f",
            file.to_str().unwrap(),
        ]);
        let t = text(&out);
        assert!(
            out.status.success() && t.contains("crontab.stable.example.com/c created (dry run)"),
            "{t}"
        );

        let file = kubectl.write("bad.yaml", &good.replace("cronSpec", "cronSpecc"));
        let out = kubectl.run(&[
            "create",
            "--dry-run=client",
            "--validate=true",
            "-f",
            file.to_str().unwrap(),
        ]);
        let t = text(&out);
        assert!(
            !out.status.success() && t.contains(r#"unknown field "cronSpecc""#),
            "{t}"
        );
    }
}
