//! The newest kubectl's generator commands (`create configmap|secret|deployment|...`, `create token`,
//! `auth can-i`) send protobuf bodies; the server decodes them into the same objects JSON clients create.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use anyhow::{Result, ensure};
use common::*;
use serde_json::Value;

fn json(k: &Kubectl, args: &[&str]) -> Result<Value> {
    Ok(serde_json::from_str(&k.ok(args)?)?)
}

#[test]
fn newest_kubectl_generator_commands_create_the_objects_they_describe() -> Result<()> {
    let Some(bin) = kubectl_newest() else {
        eprintln!("no kubectl installed; skipping");
        return Ok(());
    };
    let s = SingleServer::start()?;
    let k = s.kubectl(bin);
    let ctx = || s.server.log_tail();
    let run = || -> Result<()> {
        k.ok(&["create", "namespace", "gen"])?;
        let ns = json(&k, &["get", "namespace", "gen", "-o", "json"])?;
        ensure!(ns["status"]["phase"] == "Active", "{ns}");

        k.ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            "gen",
            "--from-literal=mode=fast",
            "--from-literal=empty=",
        ])?;
        let cm = json(&k, &["get", "configmap", "settings", "-n", "gen", "-o", "json"])?;
        ensure!(cm["data"]["mode"] == "fast" && cm["data"]["empty"] == "", "{cm}");
        ensure!(
            cm["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{cm}"
        );

        k.ok(&[
            "create",
            "secret",
            "generic",
            "creds",
            "-n",
            "gen",
            "--from-literal=password=s3cret",
        ])?;
        let sec = json(&k, &["get", "secret", "creds", "-n", "gen", "-o", "json"])?;
        ensure!(
            sec["data"]["password"] == "czNjcmV0" && sec["type"] == "Opaque",
            "{sec}"
        );

        k.ok(&[
            "create",
            "deployment",
            "web",
            "-n",
            "gen",
            "--image=nginx:1.25",
            "--replicas=0",
            "--port=80",
        ])?;
        let d = json(&k, &["get", "deployment", "web", "-n", "gen", "-o", "json"])?;
        ensure!(d["spec"]["replicas"] == 0, "{d}");
        ensure!(d["spec"]["selector"]["matchLabels"]["app"] == "web", "{d}");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        ensure!(
            c["image"] == "nginx:1.25" && c["ports"][0]["containerPort"] == 80,
            "{d}"
        );
        // Defaulted by the server as for a JSON body, not left as Go's zero values.
        ensure!(c["imagePullPolicy"] == "IfNotPresent", "{d}");
        ensure!(c.get("stdin").is_none(), "{d}");

        k.ok(&["create", "serviceaccount", "robot", "-n", "gen"])?;
        let token = k.ok(&["create", "token", "robot", "-n", "gen", "--duration=1h"])?;
        ensure!(token.trim().split('.').count() == 3, "{token}");

        k.ok(&[
            "create",
            "role",
            "reader",
            "-n",
            "gen",
            "--verb=get,list",
            "--resource=pods",
        ])?;
        k.ok(&[
            "create",
            "rolebinding",
            "robot-reads",
            "-n",
            "gen",
            "--role=reader",
            "--serviceaccount=gen:robot",
        ])?;
        let can = |args: &[&str]| -> Result<String> {
            let out = k.run(args)?;
            Ok(text(&out.stdout).trim().to_string())
        };
        ensure!(can(&["auth", "can-i", "create", "deployments", "-n", "gen"])? == "yes");
        let sa = "--as=system:serviceaccount:gen:robot";
        ensure!(can(&["auth", "can-i", "list", "pods", "-n", "gen", sa])? == "yes");
        ensure!(can(&["auth", "can-i", "delete", "pods", "-n", "gen", sa])? == "no");

        k.ok(&[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            "gen",
            "--tcp=80:8080",
        ])?;
        let svc = json(&k, &["get", "service", "web", "-n", "gen", "-o", "json"])?;
        ensure!(svc["spec"]["ports"][0]["targetPort"] == 8080, "{svc}");
        ensure!(
            svc["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| ip.starts_with("10.")),
            "{svc}"
        );

        // fieldValidation: Strict refuses unknown fields, Warn (the default) drops them with a warning.
        let cm = |name: &str| {
            format!(
                r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}"}}, "data": {{"a": "b"}}, "spec": {{"foo": 1}}}}"#
            )
        };
        let post = |query: &str, body: &str| {
            curl(
                &s.pki,
                s.server.port,
                &[
                    &format!("/api/v1/namespaces/gen/configmaps{query}"),
                    "-X",
                    "POST",
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    body,
                    // Response headers go to stdout before the body, for the Warning header.
                    "-D",
                    "-",
                ],
            )
        };
        let (code, body) = post("?fieldValidation=Strict", &cm("strict"))?;
        ensure!(
            code == 400 && body.contains(r#"strict decoding error: unknown field \"spec\""#),
            "{code} {body}"
        );
        ensure!(k.run(&["get", "configmap", "strict", "-n", "gen"])?.status.code() != Some(0));
        let (code, body) = post("", &cm("warned"))?;
        ensure!(
            code == 201
                && body
                    .to_lowercase()
                    .contains(r#"warning: 299 - "unknown field \"spec\"""#),
            "{code} {body}"
        );
        let stored = json(&k, &["get", "configmap", "warned", "-n", "gen", "-o", "json"])?;
        ensure!(
            stored.get("spec").is_none() && stored["data"]["a"] == "b",
            "{stored}"
        );
        let (code, body) = post("?fieldValidation=Bogus", &cm("bogus"))?;
        ensure!(code == 400, "{code} {body}");
        Ok(())
    };
    run().map_err(|e| e.context(ctx()))
}
