#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The security and bootstrap controllers against a real API server, run in-process: default service accounts,
//! `kube-root-ca.crt`, legacy token Secrets (used by kubectl), the cluster-info signer, the token cleaner, and the
//! kubelet CSR approver and signer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use controllers::{Context, Settings};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use serde_json::json;
use testkit::cluster::SingleServer;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

struct Running {
    server: SingleServer,
    client: kube::Client,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    fn pki(&self, file: &str) -> PathBuf {
        self.server.pki.pki_dir().join(file)
    }

    /// A kubeconfig for this server that authenticates with `token` only.
    fn token_kubeconfig(&self, token: &str) -> Result<PathBuf> {
        let admin = pki::Kubeconfig::read(&self.server.kubeconfig())?;
        let ca = pki::read_cert(&self.pki("ca.crt"))?;
        let path = self
            .server
            .pki
            .dir
            .path()
            .join(format!("token-{}.conf", &token[..6]));
        pki::Kubeconfig::for_token("kubernetes", admin.server()?, &ca, "token-user", token).write(&path)?;
        Ok(path)
    }
}

async fn start(names: &[&str]) -> Result<Running> {
    let server = SingleServer::start()?;
    let client = client::from_kubeconfig(&server.kubeconfig()).await?;
    let dir = server.pki.pki_dir();
    let settings = Settings {
        cluster_signing_cert_file: Some(dir.join("ca.crt")),
        cluster_signing_key_file: Some(dir.join("ca.key")),
        root_ca_file: Some(dir.join("ca.crt")),
        service_account_private_key_file: Some(dir.join("sa.key")),
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    let ctx = Context {
        client: client.clone(),
        shutdown: shutdown.clone(),
        settings: Arc::new(settings),
    };
    let flags: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    tokio::spawn(async move {
        if let Err(e) = controllers::run(ctx, &flags, None).await {
            eprintln!("controllers stopped: {e}");
        }
    });
    Ok(Running {
        server,
        client,
        shutdown,
    })
}

fn kubectl(kubeconfig: &Path) -> Option<testkit::cluster::Kubectl> {
    let bin = testkit::cluster::kubectl_newest().or_else(testkit::cluster::kubectl_1_20)?;
    Some(testkit::cluster::Kubectl {
        bin,
        kubeconfig: kubeconfig.to_path_buf(),
    })
}

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(str::to_string),
        ..ObjectMeta::default()
    }
}

fn text(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_namespace_gets_a_default_service_account_and_the_root_ca_again_after_deletion() -> Result<()> {
    let r = start(&["serviceaccount", "root-ca-cert-publisher"]).await?;
    let ca = std::fs::read_to_string(r.pki("ca.crt"))?;
    let namespaces: Api<Namespace> = Api::all(r.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta("team-a", None),
                ..Default::default()
            },
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(r.client.clone(), "team-a");
    let maps: Api<ConfigMap> = Api::namespaced(r.client.clone(), "team-a");
    testkit::eventually(DEADLINE, || async {
        accounts
            .get_opt("default")
            .await?
            .ok_or_else(|| anyhow!("no default service account yet"))
    })
    .await?;
    let cm = testkit::eventually(DEADLINE, || async {
        maps.get_opt("kube-root-ca.crt")
            .await?
            .ok_or_else(|| anyhow!("no kube-root-ca.crt yet"))
    })
    .await?;
    assert_eq!(cm.data.unwrap()["ca.crt"], ca);

    accounts.delete("default", &DeleteParams::default()).await?;
    let mut cm = maps.get("kube-root-ca.crt").await?;
    cm.data = Some([("ca.crt".to_string(), "tampered".to_string())].into());
    maps.replace("kube-root-ca.crt", &PostParams::default(), &cm)
        .await?;
    testkit::eventually(DEADLINE, || async {
        accounts
            .get_opt("default")
            .await?
            .ok_or_else(|| anyhow!("default service account not recreated"))
    })
    .await?;
    testkit::eventually(DEADLINE, || async {
        let cm = maps.get("kube-root-ca.crt").await?;
        if cm.data.unwrap_or_default().get("ca.crt") == Some(&ca) {
            Ok(())
        } else {
            Err(anyhow!("not restored yet"))
        }
    })
    .await?;
    // The pre-existing namespaces got theirs too.
    Api::<ConfigMap>::namespaced(r.client.clone(), "kube-system")
        .get("kube-root-ca.crt")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_token_secret_is_filled_authenticates_kubectl_as_its_account_and_goes_with_it() -> Result<()>
{
    let r = start(&["serviceaccount-token"]).await?;
    let ns = "build";
    Api::<Namespace>::all(r.client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: meta(ns, None),
                ..Default::default()
            },
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(r.client.clone(), ns);
    let sa = accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("builder", Some(ns)),
                ..Default::default()
            },
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(r.client.clone(), ns);
    let mut secret = Secret {
        metadata: meta("builder-token", Some(ns)),
        type_: Some("kubernetes.io/service-account-token".into()),
        ..Default::default()
    };
    secret.metadata.annotations = Some(
        [(
            "kubernetes.io/service-account.name".to_string(),
            "builder".to_string(),
        )]
        .into(),
    );
    secrets.create(&PostParams::default(), &secret).await?;
    let filled = testkit::eventually(DEADLINE, || async {
        let s = secrets.get("builder-token").await?;
        text(&s, "token")
            .map(|_| s)
            .ok_or_else(|| anyhow!("token not filled yet"))
    })
    .await?;
    assert_eq!(
        text(&filled, "ca.crt").unwrap(),
        std::fs::read_to_string(r.pki("ca.crt"))?
    );
    assert_eq!(text(&filled, "namespace").as_deref(), Some(ns));
    assert_eq!(
        filled.metadata.annotations.as_ref().unwrap()["kubernetes.io/service-account.uid"],
        sa.metadata.uid.unwrap()
    );

    // kubectl with the token is the service account: the API names it when RBAC says no.
    let token = text(&filled, "token").unwrap();
    if let Some(k) = kubectl(&r.token_kubeconfig(&token)?) {
        let out = k.run(&["get", "pods", "-n", ns])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("system:serviceaccount:build:builder"), "{stderr}");
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "builder-view", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder", "namespace": ns}],
        });
        Api::<RoleBinding>::namespaced(r.client.clone(), ns)
            .create(&PostParams::default(), &serde_json::from_value(binding)?)
            .await?;
        testkit::eventually(DEADLINE, || async {
            let out = k.run(&["get", "serviceaccounts", "-n", ns, "-o", "name"])?;
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if stdout.contains("serviceaccount/builder") {
                Ok(())
            } else {
                Err(anyhow!("{}", String::from_utf8_lossy(&out.stderr)))
            }
        })
        .await?;
    }

    accounts.delete("builder", &DeleteParams::default()).await?;
    testkit::eventually(DEADLINE, || async {
        match secrets.get_opt("builder-token").await? {
            None => Ok(()),
            Some(_) => Err(anyhow!("token secret still there")),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_account_gets_a_listed_token_secret_as_guide_c_reads_it() -> Result<()> {
    let r = start(&["serviceaccount-token"]).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(r.client.clone(), "default");
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("member1", Some("default")),
                ..Default::default()
            },
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(r.client.clone(), "default");
    let name = testkit::eventually(DEADLINE, || async {
        let sa = accounts.get("member1").await?;
        let name = sa
            .secrets
            .unwrap_or_default()
            .into_iter()
            .find_map(|s| s.name)
            .ok_or_else(|| anyhow!("no secret listed yet"))?;
        let s = secrets.get(&name).await?;
        text(&s, "token")
            .map(|_| name.clone())
            .ok_or_else(|| anyhow!("token not filled yet"))
    })
    .await?;
    assert!(
        name.starts_with("member1-token-") && name.len() == "member1-token-".len() + 5,
        "{name}"
    );
    // One Secret per account, however often it is reconciled.
    let all = secrets.list(&Default::default()).await?;
    let mine = all.items.iter().filter(|s| {
        s.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/service-account.name"))
            == Some(&"member1".to_string())
    });
    assert_eq!(mine.count(), 1);
    Ok(())
}

fn bootstrap_token(token: &pki::BootstrapToken, expires_in: Option<i64>, extra: &[(&str, &str)]) -> Secret {
    let mut data: Vec<(String, ByteString)> = vec![
        ("token-id".into(), ByteString(token.id.clone().into_bytes())),
        (
            "token-secret".into(),
            ByteString(token.secret.clone().into_bytes()),
        ),
    ];
    if let Some(secs) = expires_in {
        let at = Timestamp::now()
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap();
        let at = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        data.push(("expiration".into(), ByteString(at.into_bytes())));
    }
    data.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))),
    );
    Secret {
        metadata: meta(&format!("bootstrap-token-{}", token.id), Some("kube-system")),
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(data.into_iter().collect()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_info_is_signed_for_each_signing_token_and_expired_tokens_are_removed() -> Result<()> {
    let r = start(&["bootstrapsigner", "tokencleaner"]).await?;
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters: []\n";
    let maps: Api<ConfigMap> = Api::namespaced(r.client.clone(), "kube-public");
    let cm = ConfigMap {
        metadata: meta("cluster-info", Some("kube-public")),
        data: Some([("kubeconfig".to_string(), kubeconfig.to_string())].into()),
        ..Default::default()
    };
    maps.create(&PostParams::default(), &cm).await?;
    let secrets: Api<Secret> = Api::namespaced(r.client.clone(), "kube-system");
    let lasting = pki::BootstrapToken::parse("abcdef.0123456789abcdef")?;
    let brief = pki::BootstrapToken::parse("zyxwvu.0123456789abcdef")?;
    let expired = pki::BootstrapToken::parse("oldold.0123456789abcdef")?;
    let signing = [("usage-bootstrap-signing", "true")];
    secrets
        .create(&PostParams::default(), &bootstrap_token(&lasting, None, &signing))
        .await?;
    secrets
        .create(
            &PostParams::default(),
            &bootstrap_token(&brief, Some(3), &signing),
        )
        .await?;
    secrets
        .create(
            &PostParams::default(),
            &bootstrap_token(&expired, Some(-60), &signing),
        )
        .await?;

    let data = testkit::eventually(DEADLINE, || async {
        let data = maps.get("cluster-info").await?.data.unwrap_or_default();
        if data.contains_key("jws-kubeconfig-abcdef") && data.contains_key("jws-kubeconfig-zyxwvu") {
            Ok(data)
        } else {
            Err(anyhow!("not signed yet: {:?}", data.keys().collect::<Vec<_>>()))
        }
    })
    .await?;
    pki::jws::verify_detached(&data["jws-kubeconfig-abcdef"], kubeconfig.as_bytes(), &lasting)?;
    pki::jws::verify_detached(&data["jws-kubeconfig-zyxwvu"], kubeconfig.as_bytes(), &brief)?;
    assert!(
        !data.contains_key("jws-kubeconfig-oldold"),
        "an expired token never signs"
    );

    // The expired token goes at once, the brief one when its time is up; its signature goes with it.
    testkit::eventually(DEADLINE, || async {
        let left: Vec<String> = secrets
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        let gone = !left
            .iter()
            .any(|n| n.ends_with("oldold") || n.ends_with("zyxwvu"));
        if gone && left.iter().any(|n| n.ends_with("abcdef")) {
            Ok(())
        } else {
            Err(anyhow!("tokens left: {left:?}"))
        }
    })
    .await?;
    testkit::eventually(DEADLINE, || async {
        let data = maps.get("cluster-info").await?.data.unwrap_or_default();
        if data.contains_key("jws-kubeconfig-zyxwvu") {
            Err(anyhow!("stale signature still there"))
        } else {
            Ok(data)
        }
    })
    .await
    .map(|data| assert!(data.contains_key("jws-kubeconfig-abcdef")))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubelet_csr_created_with_a_bootstrap_token_is_approved_and_signed_by_the_cluster_ca() -> Result<()>
{
    let r = start(&["csrapproving", "csrsigning"]).await?;
    let token = pki::BootstrapToken::parse("k8sboo.0123456789abcdef")?;
    let auth = [
        ("usage-bootstrap-authentication", "true"),
        (
            "auth-extra-groups",
            "system:bootstrappers:kubeadm:default-node-token",
        ),
    ];
    Api::<Secret>::namespaced(r.client.clone(), "kube-system")
        .create(
            &PostParams::default(),
            &bootstrap_token(&token, Some(3600), &auth),
        )
        .await?;
    // What `kubeadm init phase bootstrap-token` grants the token group.
    let bindings: Api<ClusterRoleBinding> = Api::all(r.client.clone());
    for (name, role) in [
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper"),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        ),
    ] {
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                          "name": "system:bootstrappers:kubeadm:default-node-token"}],
        });
        bindings
            .create(&PostParams::default(), &serde_json::from_value(binding)?)
            .await?;
    }

    let as_token = client::from_kubeconfig(&r.token_kubeconfig(&token.to_string())?).await?;
    let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
    let request = pki::csr::create(&key, "system:node:worker-1", Some("system:nodes"), &[])?;
    let csr = CertificateSigningRequest {
        metadata: meta("node-csr-worker-1", None),
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = Api::<CertificateSigningRequest>::all(as_token)
        .create(&PostParams::default(), &csr)
        .await?;
    assert_eq!(created.spec.username.as_deref(), Some("system:bootstrap:k8sboo"));

    let csrs: Api<CertificateSigningRequest> = Api::all(r.client.clone());
    let done = testkit::eventually(DEADLINE, || async {
        let c = csrs.get("node-csr-worker-1").await?;
        let signed = c
            .status
            .as_ref()
            .and_then(|s| s.certificate.as_ref())
            .is_some_and(|b| !b.0.is_empty());
        if signed {
            Ok(c)
        } else {
            Err(anyhow!("not signed yet: {:?}", c.status))
        }
    })
    .await?;
    let status = done.status.unwrap();
    let approved = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Approved")
        .unwrap();
    assert_eq!(approved.reason.as_deref(), Some("AutoApproved"));
    assert_eq!(
        approved.message.as_deref(),
        Some("Auto approving kubelet client certificate after SubjectAccessReview.")
    );
    let cert = pki::Certificate::from_pem(std::str::from_utf8(&status.certificate.unwrap().0)?)?;
    let ca = pki::read_cert(&r.pki("ca.crt"))?;
    assert!(cert.is_signed_by(&ca)?);
    assert!(cert.matches_key(&key)?);
    let info = cert.info()?;
    assert_eq!(info.common_name, "system:node:worker-1");
    assert_eq!(info.organizations, ["system:nodes"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csr_for_someone_else_from_a_bootstrap_token_is_not_approved() -> Result<()> {
    let r = start(&["csrapproving", "csrsigning"]).await?;
    let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
    // The admin (system:masters) asks for an admin client certificate through the kubelet signer: not a node.
    let request = pki::csr::create(&key, "kubernetes-admin", Some("system:masters"), &[])?;
    let csrs: Api<CertificateSigningRequest> = Api::all(r.client.clone());
    let csr = CertificateSigningRequest {
        metadata: meta("sneaky", None),
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    csrs.create(&PostParams::default(), &csr).await?;
    // A request created after it and handled after it shows the controllers have looked at the first one.
    let key2 = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
    let ok = pki::csr::create(&key2, "someone", None, &[])?;
    let mut marker = csr.clone();
    marker.metadata = meta("marker", None);
    marker.spec.request = ByteString(ok.into_bytes());
    marker.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
    let mut marker = csrs.create(&PostParams::default(), &marker).await?;
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now());
    marker.status = Some(
        k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus {
            conditions: Some(vec![
                k8s_openapi::api::certificates::v1::CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("Test".into()),
                    last_update_time: Some(now),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        },
    );
    csrs.replace_subresource("approval", "marker", &PostParams::default(), &marker)
        .await?;
    testkit::eventually(DEADLINE, || async {
        let c = csrs.get("marker").await?;
        c.status
            .and_then(|s| s.certificate)
            .map(|_| ())
            .ok_or_else(|| anyhow!("marker not signed yet"))
    })
    .await?;
    let sneaky = csrs.get("sneaky").await?;
    assert!(
        sneaky
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .is_empty()
    );
    Ok(())
}
