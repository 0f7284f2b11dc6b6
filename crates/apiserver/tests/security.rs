//! Security against a real server: RBAC escalation prevention on role and binding writes, impersonation, what a
//! bootstrap token (and anonymous discovery) may do, and a kubelet confined to its own Node.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail, ensure};
use common::*;
use serde_json::{Value, json};

/// curl as someone other than the admin: `auth` are curl's credential arguments (`--cert`/`--key` or `-H`).
fn curl_as(
    s: &SingleServer,
    auth: &[&str],
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, String)> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "--max-time",
        "20",
        "-X",
        method,
    ])
    .arg("--cacert")
    .arg(s.pki.pki_dir().join("ca.crt"))
    .args(auth)
    .args(["-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        cmd.args(["--data-binary", &b.to_string()]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{}{path}", s.server.port))
        .output()?;
    let t = text(&out.stdout);
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", t.as_str()));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").current_dir(dir).args(args).output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", text(&out.stderr));
    }
    Ok(())
}

/// An EC key and a CSR for `subject` in `dir`: `<name>.key`, `<name>.csr`.
fn key_and_csr(dir: &Path, name: &str, subject: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{name}.csr"),
        ],
    )
}

#[test]
fn rbac_writes_grant_only_held_permissions_unless_bind_or_escalate_is_held() -> Result<()> {
    let Some(bin) = kubectl_newest() else {
        eprintln!("no kubectl installed; skipping");
        return Ok(());
    };
    let s = SingleServer::start()?;
    let k = s.kubectl(bin);
    let run = || -> Result<()> {
        k.ok(&["create", "namespace", "dev"])?;
        k.ok(&[
            "create",
            "rolebinding",
            "alice-admin",
            "-n",
            "dev",
            "--clusterrole=admin",
            "--user=alice",
        ])?;
        let alice = |args: &[&str], input: Option<&str>| -> Result<(bool, String)> {
            let mut all = vec!["--as=alice"];
            all.extend_from_slice(args);
            let out = match input {
                None => k.run(&all)?,
                Some(i) => {
                    use std::io::Write;
                    let mut child = k
                        .cmd(&all)
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()?;
                    child.stdin.take().unwrap().write_all(i.as_bytes())?;
                    child.wait_with_output()?
                }
            };
            Ok((
                out.status.success(),
                format!("{}{}", text(&out.stdout), text(&out.stderr)),
            ))
        };

        // What alice holds in dev (admin) she may grant.
        let (ok, out) = alice(
            &[
                "create",
                "role",
                "pod-reader",
                "-n",
                "dev",
                "--verb=get,list",
                "--resource=pods",
            ],
            None,
        )?;
        ensure!(ok, "{out}");
        let everything = r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "everything", "namespace": "dev"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}"#;
        let (ok, out) = alice(&["apply", "-f", "-"], Some(everything))?;
        ensure!(
            !ok && out.contains(r#"user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held"#),
            "{out}"
        );
        let (ok, out) = alice(
            &[
                "create",
                "rolebinding",
                "bob-view",
                "-n",
                "dev",
                "--clusterrole=view",
                "--user=bob",
            ],
            None,
        )?;
        ensure!(ok, "{out}");
        let (ok, out) = alice(
            &[
                "create",
                "rolebinding",
                "bob-root",
                "-n",
                "dev",
                "--clusterrole=cluster-admin",
                "--user=bob",
            ],
            None,
        )?;
        ensure!(
            !ok && out.contains("is attempting to grant RBAC permissions not currently held"),
            "{out}"
        );
        ensure!(
            k.run(&["get", "rolebinding", "bob-root", "-n", "dev"])?
                .status
                .code()
                != Some(0)
        );

        // `bind` on cluster-admin lets her bind it without holding it; `escalate` lets her write any role.
        k.ok(&[
            "create",
            "clusterrole",
            "bind-and-escalate",
            "--verb=bind,escalate",
            "--resource=clusterroles.rbac.authorization.k8s.io,roles.rbac.authorization.k8s.io",
        ])?;
        k.ok(&[
            "create",
            "rolebinding",
            "alice-bind",
            "-n",
            "dev",
            "--clusterrole=bind-and-escalate",
            "--user=alice",
        ])?;
        let (ok, out) = alice(
            &[
                "create",
                "rolebinding",
                "bob-root",
                "-n",
                "dev",
                "--clusterrole=cluster-admin",
                "--user=bob",
            ],
            None,
        )?;
        ensure!(ok, "{out}");
        let (ok, out) = alice(&["apply", "-f", "-"], Some(everything))?;
        ensure!(ok, "{out}");

        // Impersonation needs the impersonate verb: a ServiceAccount without it is refused.
        k.ok(&["create", "serviceaccount", "robot", "-n", "dev"])?;
        let token = k.ok(&["create", "token", "robot", "-n", "dev"])?;
        let bearer = format!("Authorization: Bearer {}", token.trim());
        let (code, body) = curl_as(
            &s,
            &["-H", &bearer, "-H", "Impersonate-User: alice"],
            "GET",
            "/api/v1/namespaces/dev/pods",
            None,
        )?;
        ensure!(
            code == 403
                && body.contains(r#"User \"system:serviceaccount:dev:robot\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"#),
            "{code} {body}"
        );
        Ok(())
    };
    run().map_err(|e| e.context(s.server.log_tail()))
}

#[test]
fn a_joining_node_reads_cluster_info_and_its_bootstrap_token_creates_csrs_and_nothing_else() -> Result<()> {
    let Some(bin) = kubectl_newest() else {
        return Ok(());
    };
    let s = SingleServer::start()?;
    let k = s.kubectl(bin);
    let run = || -> Result<()> {
        let policy = json!({"apiVersion": "v1", "kind": "List",
            "items": apiserver::auth::policy::kubeadm_bootstrap_token_policy()});
        k.ok_stdin(&["apply", "-f", "-"], &policy.to_string())?;
        k.ok(&[
            "create",
            "configmap",
            "cluster-info",
            "-n",
            "kube-public",
            "--from-literal=kubeconfig=x",
        ])?;
        k.ok(&[
            "create",
            "secret",
            "generic",
            "bootstrap-token-abcdef",
            "-n",
            "kube-system",
            "--type=bootstrap.kubernetes.io/token",
            "--from-literal=token-id=abcdef",
            "--from-literal=token-secret=0123456789abcdef",
            "--from-literal=usage-bootstrap-authentication=true",
            "--from-literal=auth-extra-groups=system:bootstrappers:kubeadm:default-node-token",
        ])?;
        let token = ["-H", "Authorization: Bearer abcdef.0123456789abcdef"];

        // Discovery reads cluster-info before the token is used, anonymously, as kubeadm join does (kubeadm's
        // Role binds system:anonymous only, so the token itself may not read it).
        let (code, body) = curl_as(
            &s,
            &[],
            "GET",
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            None,
        )?;
        ensure!(code == 200 && body.contains("cluster-info"), "{code} {body}");
        let (code, body) = curl_as(&s, &[], "GET", "/api/v1/namespaces/kube-public/configmaps", None)?;
        ensure!(code == 403, "anonymous may read only cluster-info: {code} {body}");

        let dir = tempfile::tempdir()?;
        key_and_csr(dir.path(), "node", "/O=system:nodes/CN=system:node:n1")?;
        let pem = std::fs::read(dir.path().join("node.csr"))?;
        use base64::Engine;
        let csr = json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"generateName": "node-csr-"},
            "spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
                     "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "usages": ["digital signature", "client auth"]}});
        let (code, body) = curl_as(
            &s,
            &token,
            "POST",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            Some(&csr),
        )?;
        ensure!(code == 201, "{code} {body}");
        let created: Value = serde_json::from_str(&body)?;
        ensure!(
            created["spec"]["username"] == "system:bootstrap:abcdef",
            "{created}"
        );

        for path in [
            "/api/v1/namespaces/kube-system/secrets",
            "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef",
            "/api/v1/pods",
            "/api/v1/namespaces/default/configmaps",
            "/apis/apps/v1/deployments",
        ] {
            let (code, body) = curl_as(&s, &token, "GET", path, None)?;
            ensure!(
                code == 403 && body.contains(r#"User \"system:bootstrap:abcdef\" cannot"#),
                "{path}: {code} {body}"
            );
        }
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
        let (code, _) = curl_as(
            &s,
            &token,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&cm),
        )?;
        ensure!(code == 403, "{code}");
        // A wrong secret is no token at all.
        let (code, _) = curl_as(
            &s,
            &["-H", "Authorization: Bearer abcdef.0000000000000000"],
            "GET",
            "/api/v1/namespaces/kube-public/configmaps/cluster-info",
            None,
        )?;
        ensure!(code == 401, "{code}");
        Ok(())
    };
    run().map_err(|e| e.context(s.server.log_tail()))
}

#[test]
fn a_kubelet_may_write_its_own_node_and_not_another() -> Result<()> {
    let s = SingleServer::start()?;
    let run = || -> Result<()> {
        let dir = tempfile::tempdir()?;
        let pki = s.pki.pki_dir();
        key_and_csr(dir.path(), "n1", "/O=system:nodes/CN=system:node:n1")?;
        // Extensions make it an X.509 v3 certificate; TLS libraries refuse v1 ones.
        std::fs::write(
            dir.path().join("ext.cnf"),
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )?;
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "n1.csr",
                "-CA",
                &pki.join("ca.crt").to_string_lossy(),
                "-CAkey",
                &pki.join("ca.key").to_string_lossy(),
                "-CAcreateserial",
                "-CAserial",
                "ca.srl",
                "-extfile",
                "ext.cnf",
                "-days",
                "1",
                "-out",
                "n1.crt",
            ],
        )?;
        let cert = dir.path().join("n1.crt").to_string_lossy().into_owned();
        let key = dir.path().join("n1.key").to_string_lossy().into_owned();
        let kubelet = ["--cert", cert.as_str(), "--key", key.as_str()];
        let node = |name: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});

        let (code, body) = curl_as(&s, &kubelet, "POST", "/api/v1/nodes", Some(&node("n1")))?;
        ensure!(code == 201, "{code} {body}");
        let (code, body) = curl_as(&s, &kubelet, "POST", "/api/v1/nodes", Some(&node("n2")))?;
        ensure!(code == 403, "{code} {body}");
        let (code, _) = curl(
            &s.pki,
            s.server.port,
            &[
                "/api/v1/nodes",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &node("n2").to_string(),
            ],
        )?;
        ensure!(code == 201, "admin creates n2: {code}");

        let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "ready", "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        let merge = "Content-Type: application/merge-patch+json";
        let patch = |name: &str| -> Result<(u16, String)> {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "-",
                    "-w",
                    "\n%{http_code}",
                    "-X",
                    "PATCH",
                    "--cacert",
                ])
                .arg(pki.join("ca.crt"))
                .args(kubelet)
                .args(["-H", merge, "--data-binary", &status.to_string()])
                .arg(format!(
                    "https://127.0.0.1:{}/api/v1/nodes/{name}/status",
                    s.server.port
                ))
                .output()?;
            let t = text(&out.stdout);
            let (body, code) = t.rsplit_once('\n').unwrap_or(("", t.as_str()));
            Ok((code.trim().parse().unwrap_or(0), body.to_string()))
        };
        let (code, body) = patch("n1")?;
        ensure!(code == 200, "own node status: {code} {body}");
        let (code, body) = patch("n2")?;
        ensure!(code == 403, "other node status: {code} {body}");
        let (code, body) = curl_as(&s, &kubelet, "DELETE", "/api/v1/nodes/n2", None)?;
        ensure!(code == 403, "delete other node: {code} {body}");
        let (code, body) = curl_as(
            &s,
            &kubelet,
            "GET",
            "/api/v1/namespaces/kube-system/secrets",
            None,
        )?;
        ensure!(code == 403, "list secrets: {code} {body}");
        Ok(())
    };
    run().map_err(|e| e.context(s.server.log_tail()))
}
