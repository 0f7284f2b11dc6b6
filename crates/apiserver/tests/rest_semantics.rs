//! Raw HTTP against a real server on real etcd: upstream's status codes for bad input (and nothing stored),
//! resourceVersion conflicts, finalizers, pagination, health, discovery and watches.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use common::*;
use serde_json::{Value, json};

struct Env {
    _etcd: testkit::etcd::EtcdCluster,
    pki: Pki,
    server: ApiServer,
}

impl Env {
    async fn start() -> Result<Self> {
        let etcd = testkit::etcd::EtcdCluster::start_single().await?;
        let port = free_port()?;
        let pki = Pki::new(port)?;
        let server = ApiServer::start(
            &pki,
            port,
            &[format!("--etcd-servers={}", etcd.endpoints().join(","))],
        )?;
        Ok(Self {
            _etcd: etcd,
            pki,
            server,
        })
    }

    fn req(&self, method: &str, path: &str, content_type: &str, body: &str) -> Result<(u16, Value)> {
        let ct = format!("Content-Type: {content_type}");
        let mut args = vec![path, "-X", method, "-H", ct.as_str()];
        if !body.is_empty() {
            args.extend(["--data-binary", body]);
        }
        let (code, text) = curl(&self.pki, self.server.port, &args)?;
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.req("GET", path, "application/json", "")
    }

    fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        self.req("POST", path, "application/json", &body.to_string())
    }
}

fn reason(v: &Value) -> &str {
    v["reason"].as_str().unwrap_or("")
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_upstream_status_codes_and_nothing_is_stored() -> Result<()> {
    let env = Env::start().await?;
    // Malformed JSON: 400.
    let (code, body) = env.req("POST", CMS, "application/json", "{\"kind\": ")?;
    ensure!(code == 400 && reason(&body) == "BadRequest", "{code} {body}");
    // Malformed YAML: 400.
    let (code, _) = env.req("POST", CMS, "application/yaml", "kind: [unclosed")?;
    ensure!(code == 400, "{code}");
    // Wrong kind for the endpoint: 400.
    let (code, body) = env.post(
        CMS,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
    )?;
    ensure!(code == 400, "{code} {body}");
    // Invalid name and label value: 422 with causes.
    let (code, body) = env.post(CMS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "labels": {"a": "-x-"}}}))?;
    ensure!(code == 422 && reason(&body) == "Invalid", "{code} {body}");
    let causes = body["details"]["causes"].as_array().cloned().unwrap_or_default();
    ensure!(causes.iter().any(|c| c["field"] == "metadata.name"), "{body}");
    ensure!(causes.iter().any(|c| c["field"] == "metadata.labels"), "{body}");
    // Without the `default` ServiceAccount (the controller-manager makes it) admission refuses pods, as upstream.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok"}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let (code, body) = env.post("/api/v1/namespaces/default/pods", &pod)?;
    ensure!(
        code == 403
            && body["message"]
                .as_str()
                .is_some_and(|m| m.contains("serviceaccount \"default\" not found")),
        "{code} {body}"
    );
    let (code, _) = env.post(
        "/api/v1/namespaces/default/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    )?;
    ensure!(code == 201);
    // Admission defaults what upstream's does: the service account and the not-ready/unreachable tolerations.
    let (code, created) = env.post("/api/v1/namespaces/default/pods", &pod)?;
    ensure!(
        code == 201 && created["spec"]["serviceAccountName"] == "default",
        "{code} {created}"
    );
    ensure!(
        created["spec"]["tolerations"]
            .as_array()
            .is_some_and(|t| t.len() == 2),
        "{created}"
    );
    ensure!(
        created["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
            && created["status"]["phase"] == "Pending",
        "{created}"
    );
    let (code, _) = env.req(
        "DELETE",
        "/api/v1/namespaces/default/pods/ok",
        "application/json",
        "",
    )?;
    ensure!(code == 200, "{code}");
    // Pods need containers.
    let (code, body) = env.post(
        "/api/v1/namespaces/default/pods",
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}),
    )?;
    ensure!(
        code == 422 && body["details"]["causes"][0]["field"] == "spec.containers",
        "{code} {body}"
    );
    // A Deployment whose selector does not match its template's labels, selects everything or is missing: 422 naming
    // the field, as upstream's validation.
    const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
    for (selector, field, message) in [
        (
            json!({"matchLabels": {"app": "other"}}),
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        ),
        (
            json!({}),
            "spec.selector",
            "empty selector is invalid for deployment",
        ),
        (Value::Null, "spec.selector", "Required value"),
    ] {
        let mut deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
            "spec": {"selector": selector, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        if deployment["spec"]["selector"].is_null() {
            deployment["spec"].as_object_mut().map(|s| s.remove("selector"));
        }
        let (code, body) = env.post(DEPLOYS, &deployment)?;
        let causes = body["details"]["causes"].as_array().cloned().unwrap_or_default();
        ensure!(
            code == 422
                && reason(&body) == "Invalid"
                && causes.iter().any(|c| c["field"] == field)
                && body["message"].as_str().is_some_and(|m| {
                    m.starts_with("Deployment.apps \"bad\" is invalid: ") && m.contains(message)
                }),
            "{code} {body}"
        );
    }
    let (code, list) = env.get(DEPLOYS)?;
    ensure!(
        code == 200 && list["items"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );
    // Oversized body: 413.
    let big = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"x": "a".repeat(4 << 20)}});
    let file = env.pki.dir.path().join("big.json");
    std::fs::write(&file, big.to_string())?;
    let at = format!("@{}", file.display());
    let (code, _) = curl(
        &env.pki,
        env.server.port,
        &[
            CMS,
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &at,
        ],
    )?;
    ensure!(code == 413, "{code}");
    // Bad selector: 400.
    let (code, _) = env.get(&format!("{CMS}?labelSelector=a%20in%20(b"))?;
    ensure!(code == 400, "{code}");
    let (code, _) = env.get(&format!("{CMS}?fieldSelector=spec.nope%3Dx"))?;
    ensure!(code == 400, "{code}");
    // Namespace that does not exist: 404.
    let (code, _) = env.post(
        "/api/v1/namespaces/nowhere/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    )?;
    ensure!(code == 404, "{code}");
    // Nothing of that was stored.
    let (code, list) = env.get(CMS)?;
    ensure!(
        code == 200 && list["items"].as_array().is_some_and(Vec::is_empty),
        "{list}"
    );

    // Bad patches: 400 for a malformed document, 422 for one that does not apply.
    let (code, _) = env.post(
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
    )?;
    ensure!(code == 201, "{code}");
    let (code, _) = env.req(
        "PATCH",
        &format!("{CMS}/c"),
        "application/json-patch+json",
        r#"{"op":"add"}"#,
    )?;
    ensure!(code == 400, "{code}");
    let (code, _) = env.req(
        "PATCH",
        &format!("{CMS}/c"),
        "application/json-patch+json",
        r#"[{"op":"remove","path":"/data/zzz"}]"#,
    )?;
    ensure!(code == 422, "{code}");
    let (code, _) = env.req(
        "PATCH",
        &format!("{CMS}/c"),
        "application/merge-patch+json",
        "[1]",
    )?;
    ensure!(code == 400, "{code}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_follow_resource_versions_generate_names_and_finalizers() -> Result<()> {
    let env = Env::start().await?;
    let (code, cm) = env.post(
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rv"}, "data": {"a": "1"}}),
    )?;
    ensure!(
        code == 201 && cm["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36),
        "{cm}"
    );
    let rv: i64 = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .parse()?;
    // Already exists: 409.
    let (code, body) = env.post(
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rv"}}),
    )?;
    ensure!(code == 409 && reason(&body) == "AlreadyExists", "{body}");
    // Update with the right version, then with the stale one.
    let mut next = cm.clone();
    next["data"]["a"] = json!("2");
    let (code, updated) = env.req("PUT", &format!("{CMS}/rv"), "application/json", &next.to_string())?;
    ensure!(code == 200, "{code} {updated}");
    let (code, body) = env.req("PUT", &format!("{CMS}/rv"), "application/json", &next.to_string())?;
    ensure!(code == 409 && reason(&body) == "Conflict", "{body}");
    ensure!(
        body["message"].as_str().is_some_and(|m| m.contains(
            "the object has been modified; please apply your changes to the latest version and try again"
        )),
        "{body}"
    );
    let (_, now) = env.get(&format!("{CMS}/rv"))?;
    ensure!(
        now["data"]["a"] == "2"
            && now["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .parse::<i64>()?
                > rv,
        "{now}"
    );

    // generateName.
    let (code, generated) = env.post(
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
    )?;
    ensure!(
        code == 201
            && generated["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("gen-") && n.len() == 9),
        "{generated}"
    );

    // Finalizers: delete marks, removing the last finalizer deletes.
    let (code, _) = env.post(CMS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fin", "finalizers": ["example.com/hold"]}}))?;
    ensure!(code == 201);
    let (code, marked) = env.req("DELETE", &format!("{CMS}/fin"), "application/json", "")?;
    ensure!(
        code == 200 && marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let (code, _) = env.get(&format!("{CMS}/fin"))?;
    ensure!(code == 200);
    let (code, _) = env.req(
        "PATCH",
        &format!("{CMS}/fin"),
        "application/merge-patch+json",
        r#"{"metadata":{"finalizers":null}}"#,
    )?;
    ensure!(code == 200);
    let (code, _) = env.get(&format!("{CMS}/fin"))?;
    ensure!(code == 404, "{code}");

    // Pagination with continue tokens.
    for i in 0..5 {
        env.post(CMS, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("page-{i}"), "labels": {"paged": "yes"}}}))?;
    }
    let mut names = Vec::new();
    let mut cont = String::new();
    loop {
        let (code, page) = env.get(&format!(
            "{CMS}?labelSelector=paged%3Dyes&limit=2&continue={cont}"
        ))?;
        ensure!(code == 200, "{page}");
        for i in page["items"].as_array().cloned().unwrap_or_default() {
            names.push(i["metadata"]["name"].as_str().unwrap_or("").to_string());
        }
        match page["metadata"]["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => break,
        }
    }
    ensure!(
        names == ["page-0", "page-1", "page-2", "page-3", "page-4"],
        "{names:?}"
    );

    // Deployments: defaults read back, status ignored on the main resource, scale subresource.
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}, "status": {"replicas": 9}});
    let (code, d) = env.post("/apis/apps/v1/namespaces/default/deployments", &dep)?;
    ensure!(code == 201, "{d}");
    ensure!(
        d["spec"]["replicas"] == 1
            && d["spec"]["strategy"]["type"] == "RollingUpdate"
            && d["spec"]["revisionHistoryLimit"] == 10,
        "{d}"
    );
    ensure!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always",
        "{d}"
    );
    ensure!(
        d["status"]["replicas"].is_null() && d["metadata"]["generation"] == 1,
        "{d}"
    );
    let mut bad = dep.clone();
    bad["metadata"]["name"] = json!("d2");
    bad["spec"]["template"]["metadata"]["labels"]["app"] = json!("other");
    let (code, _) = env.post("/apis/apps/v1/namespaces/default/deployments", &bad)?;
    ensure!(code == 422, "{code}");
    let (code, scale) = env.req(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/d/scale",
        "application/merge-patch+json",
        r#"{"spec":{"replicas":4}}"#,
    )?;
    ensure!(
        code == 200 && scale["kind"] == "Scale" && scale["spec"]["replicas"] == 4,
        "{scale}"
    );
    let (code, st) = env.req(
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/d/status",
        "application/merge-patch+json",
        r#"{"status":{"replicas":4},"spec":{"replicas":1}}"#,
    )?;
    ensure!(
        code == 200 && st["status"]["replicas"] == 4 && st["spec"]["replicas"] == 4,
        "{st}"
    );

    // Services get a cluster IP from the range.
    let (code, svc) = env.post("/api/v1/namespaces/default/services", &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "d"}}}))?;
    ensure!(
        code == 201
            && svc["spec"]["type"] == "ClusterIP"
            && svc["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.")),
        "{svc}"
    );
    ensure!(svc["spec"]["ports"][0]["targetPort"] == 80, "{svc}");

    // dryRun stores nothing.
    let (code, _) = env.post(
        &format!("{CMS}?dryRun=All"),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"}}),
    )?;
    ensure!(code == 201);
    let (code, _) = env.get(&format!("{CMS}/dry"))?;
    ensure!(code == 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_discovery_and_watch_behave_as_upstream() -> Result<()> {
    let env = Env::start().await?;
    let (code, body) = curl(&env.pki, env.server.port, &["/readyz?verbose"])?;
    ensure!(
        code == 200
            && body.contains("[+]ping ok")
            && body.contains("[+]etcd ok")
            && body.contains("readyz check passed"),
        "{body}"
    );
    let (code, body) = curl(&env.pki, env.server.port, &["/healthz"])?;
    ensure!(code == 200 && body == "ok", "{body}");
    let (code, v) = env.get("/version")?;
    ensure!(code == 200 && v["gitVersion"] == "v1.33.0", "{v}");
    let (_, apps) = env.get("/apis/apps/v1")?;
    let names: Vec<&str> = apps["resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        names.contains(&"deployments")
            && names.contains(&"deployments/scale")
            && names.contains(&"deployments/status"),
        "{names:?}"
    );
    let (code, agg) = curl(
        &env.pki,
        env.server.port,
        &[
            "/apis",
            "-H",
            "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        ],
    )?;
    let agg: Value = serde_json::from_str(&agg)?;
    ensure!(code == 200 && agg["kind"] == "APIGroupDiscoveryList", "{agg}");
    // Protobuf-only clients get 406; protobuf-or-JSON clients get JSON.
    let (code, _) = curl(
        &env.pki,
        env.server.port,
        &[CMS, "-H", "Accept: application/vnd.kubernetes.protobuf"],
    )?;
    ensure!(code == 406, "{code}");
    let (code, _) = curl(
        &env.pki,
        env.server.port,
        &[
            CMS,
            "-H",
            "Accept: application/vnd.kubernetes.protobuf, application/json",
        ],
    )?;
    ensure!(code == 200, "{code}");

    // A watch with a label selector sees an object enter and leave the selection.
    let (_, list) = env.get(CMS)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sN", "--cacert"])
        .arg(env.pki.pki_dir().join("ca.crt"))
        .arg("--cert")
        .arg(env.pki.dir.path().join("admin.crt"))
        .arg("--key")
        .arg(env.pki.dir.path().join("admin.key"))
        .arg(format!(
            "https://127.0.0.1:{}{CMS}?watch=true&labelSelector=w%3Dyes&resourceVersion={rv}",
            env.server.port
        ));
    let watch = Streaming::spawn(cmd)?;
    env.post(
        CMS,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w1", "labels": {"w": "yes"}}}),
    )?;
    watch.wait_for(&["\"ADDED\"", "w1"], Duration::from_secs(20))?;
    env.req(
        "PATCH",
        &format!("{CMS}/w1"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"w":"no"}}}"#,
    )?;
    watch.wait_for(&["\"DELETED\"", "w1"], Duration::from_secs(20))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_bad_tokens_and_service_accounts_without_rbac_are_refused_as_upstream() -> Result<()> {
    let env = Env::start().await?;
    let bare = |args: &[&str]| -> Result<(u16, String)> {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(env.pki.pki_dir().join("ca.crt"))
            .args(args)
            .output()?;
        let s = text(&out.stdout);
        let (body, code) = s.rsplit_once('\n').unwrap_or(("", s.as_str()));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    };
    let url = |p: &str| format!("https://127.0.0.1:{}{p}", env.server.port);
    // Anonymous requests are system:anonymous: public info is readable, the rest forbidden.
    let (code, _) = bare(&[&url("/version")])?;
    ensure!(code == 200, "{code}");
    let (code, body) = bare(&[&url(CMS)])?;
    ensure!(
        code == 403 && body.contains(r#"User \"system:anonymous\" cannot list resource \"configmaps\""#),
        "{code} {body}"
    );
    // A token nobody issued: 401.
    let (code, _) = bare(&["-H", "Authorization: Bearer not-a-token", &url(CMS)])?;
    ensure!(code == 401, "{code}");

    // A ServiceAccount's token (TokenRequest) authenticates, but without RBAC it may do nothing.
    let (code, _) = env.post(
        "/api/v1/namespaces/default/serviceaccounts",
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
    )?;
    ensure!(code == 201);
    let (code, tr) = env.post(
        "/api/v1/namespaces/default/serviceaccounts/robot/token",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
    )?;
    let token = tr["status"]["token"].as_str().unwrap_or("").to_string();
    ensure!(code == 201 && !token.is_empty(), "{code} {tr}");
    let auth = format!("Authorization: Bearer {token}");
    let (code, body) = bare(&["-H", &auth, &url(CMS)])?;
    ensure!(
        code == 403 && body.contains(r#"User \"system:serviceaccount:default:robot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""#),
        "{code} {body}"
    );
    // The admin's SelfSubjectAccessReview says yes; a SubjectAccessReview for the robot says no.
    let (code, ssar) = env.post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": {"verb": "create", "resource": "pods", "namespace": "default"}}}),
    )?;
    ensure!(code == 201 && ssar["status"]["allowed"] == true, "{ssar}");
    let (code, sar) = env.post(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "system:serviceaccount:default:robot", "resourceAttributes": {"verb": "list", "resource": "configmaps", "namespace": "default"}}}),
    )?;
    ensure!(code == 201 && sar["status"]["allowed"] == false, "{sar}");
    // TokenReview of the robot's token names it.
    let (code, review) = env.post(
        "/apis/authentication.k8s.io/v1/tokenreviews",
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}),
    )?;
    ensure!(
        code == 201 && review["status"]["user"]["username"] == "system:serviceaccount:default:robot",
        "{review}"
    );
    Ok(())
}
