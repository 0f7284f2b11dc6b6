//! The phases of `kubeadm init` that talk to the new cluster through its API (as kubeadm does, with the
//! `admin.conf` client): `upload-config`, `upload-certs`, `mark-control-plane`, `bootstrap-token`, and the
//! `kubeadm token create|list|delete` commands.
//!
//! Every write is create-or-update, so a phase can be re-run (`kubeadm init phase upload-certs --upload-certs` two
//! hours later, as the init output suggests).

use crate::config::{Etcd, InitConfig};
use crate::{Error, Layout, say};
use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Taint};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

pub const KUBEADM_CONFIG: &str = "kubeadm-config";
pub const KUBELET_CONFIG: &str = "kubelet-config";
pub const KUBEADM_CERTS: &str = "kubeadm-certs";
pub const CLUSTER_INFO: &str = "cluster-info";
/// The group of `admin.conf`'s user, bound to `cluster-admin` (kubeadm 1.29+).
pub const CLUSTER_ADMINS: &str = "kubeadm:cluster-admins";
pub const NODE_BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Uploaded certificates live as long as this token (upstream: two hours).
pub const CERTS_TTL: Duration = Duration::from_secs(2 * 3600);

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api {
        what,
        error: Box::new(source),
    }
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(String::from),
        ..ObjectMeta::default()
    }
}

/// Creates `obj`, or replaces the existing object of that name (keeping its resourceVersion), as kubeadm's
/// `CreateOrUpdate` helpers do.
async fn create_or_update<K>(api: &Api<K>, obj: K) -> Result<K, Error>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let what = format!("{} {name:?}", K::kind(&Default::default()));
    match api.create(&PostParams::default(), &obj).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let current = api.get(&name).await.map_err(api_err(format!("reading {what}")))?;
            let mut next = obj;
            next.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map_err(api_err(format!("updating {what}")))
        }
        Err(e) => Err(api_err(format!("creating {what}"))(e)),
    }
}

fn config_map(namespace: &str, name: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: meta(Some(namespace), name),
        data: Some(data),
        ..ConfigMap::default()
    }
}

fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Subject::default()
    }
}

fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Subject::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// A Role allowing `get` of named objects and a RoleBinding of it to `subjects`.
async fn grant_get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    resource: &str,
    resource_names: &[&str],
    subjects: Vec<Subject>,
) -> Result<(), Error> {
    let role = Role {
        metadata: meta(Some(namespace), name),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec![resource.into()]),
            resource_names: Some(resource_names.iter().map(|s| s.to_string()).collect()),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    };
    create_or_update(&Api::namespaced(client.clone(), namespace), role).await?;
    let binding = RoleBinding {
        metadata: meta(Some(namespace), name),
        role_ref: role_ref("Role", name),
        subjects: Some(subjects),
    };
    create_or_update(&Api::namespaced(client.clone(), namespace), binding).await?;
    Ok(())
}

async fn bind_cluster_role(
    client: &kube::Client,
    name: &str,
    role: &str,
    subjects: Vec<Subject>,
) -> Result<(), Error> {
    let binding = ClusterRoleBinding {
        metadata: meta(None, name),
        role_ref: role_ref("ClusterRole", role),
        subjects: Some(subjects),
    };
    create_or_update(&Api::all(client.clone()), binding)
        .await
        .map(|_| ())
}

/// The binding that gives `admin.conf` (group `kubeadm:cluster-admins`) the `cluster-admin` role.
pub async fn ensure_admin_binding(client: &kube::Client) -> Result<(), Error> {
    let binding = ClusterRoleBinding {
        metadata: meta(None, CLUSTER_ADMINS),
        role_ref: role_ref("ClusterRole", "cluster-admin"),
        subjects: Some(vec![group(CLUSTER_ADMINS)]),
    };
    match Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(api_err(format!("creating ClusterRoleBinding {CLUSTER_ADMINS:?}"))(e)),
    }
}

/// `upload-config`: the `kubeadm-config` and `kubelet-config` ConfigMaps, readable by joining nodes.
pub async fn upload_config(
    client: &kube::Client,
    cfg: &InitConfig,
    out: &mut dyn Write,
) -> Result<(), Error> {
    say(
        out,
        format_args!(
            "[upload-config] Storing the configuration used in ConfigMap \"{KUBEADM_CONFIG}\" in the \"kube-system\" Namespace"
        ),
    )?;
    let cluster = crate::config::cluster_configuration_yaml(cfg)?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    create_or_update(
        &cms,
        config_map(
            "kube-system",
            KUBEADM_CONFIG,
            [("ClusterConfiguration".to_string(), cluster)].into(),
        ),
    )
    .await?;
    let readers = || vec![group(NODE_BOOTSTRAP_GROUP), group("system:nodes")];
    grant_get(
        client,
        "kube-system",
        "kubeadm:nodes-kubeadm-config",
        "configmaps",
        &[KUBEADM_CONFIG],
        readers(),
    )
    .await?;
    say(
        out,
        format_args!(
            "[kubelet] Creating a ConfigMap \"{KUBELET_CONFIG}\" in namespace kube-system with the configuration for the kubelets in the cluster"
        ),
    )?;
    let kubelet = crate::kubelet::config_yaml(cfg);
    create_or_update(
        &cms,
        config_map(
            "kube-system",
            KUBELET_CONFIG,
            [("kubelet".to_string(), kubelet)].into(),
        ),
    )
    .await?;
    grant_get(
        client,
        "kube-system",
        "kubeadm:kubelet-config",
        "configmaps",
        &[KUBELET_CONFIG],
        readers(),
    )
    .await?;
    Ok(())
}

/// The files `upload-certs` shares with joining control-plane nodes: (Secret key, logical path).
pub fn shared_certs(cfg: &InitConfig) -> Vec<(String, String)> {
    let pki = cfg.cluster.certificates_dir.trim_end_matches('/');
    let mut files: Vec<(String, String)> = [
        "ca.crt",
        "ca.key",
        "front-proxy-ca.crt",
        "front-proxy-ca.key",
        "sa.key",
        "sa.pub",
    ]
    .iter()
    .map(|f| (f.to_string(), format!("{pki}/{f}")))
    .collect();
    match &cfg.cluster.etcd {
        Etcd::Local(_) => {
            files.push(("etcd-ca.crt".into(), format!("{pki}/etcd/ca.crt")));
            files.push(("etcd-ca.key".into(), format!("{pki}/etcd/ca.key")));
        }
        Etcd::Embedded => {}
        Etcd::External(external) => {
            for (key, path) in [
                ("external-etcd-ca.crt", &external.ca_file),
                ("external-etcd.crt", &external.cert_file),
                ("external-etcd.key", &external.key_file),
            ] {
                if !path.is_empty() {
                    files.push((key.into(), path.clone()));
                }
            }
        }
    }
    files
}

fn token_secret(
    token: &pki::BootstrapToken,
    ttl: Option<Duration>,
    now: Timestamp,
    usages: &[String],
    groups: &[String],
    description: Option<&str>,
) -> Secret {
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.into(), ByteString(v.as_bytes().to_vec()));
    };
    put("token-id", &token.id);
    put("token-secret", &token.secret);
    if let Some(ttl) = ttl.filter(|t| !t.is_zero()) {
        let expiry = now
            .checked_add(SignedDuration::from_secs(
                i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            ))
            .unwrap_or(now);
        put("expiration", &expiry.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    for usage in usages {
        put(&format!("usage-bootstrap-{usage}"), "true");
    }
    if !groups.is_empty() {
        put("auth-extra-groups", &groups.join(","));
    }
    if let Some(d) = description {
        put("description", d);
    }
    Secret {
        metadata: meta(Some("kube-system"), &format!("bootstrap-token-{}", token.id)),
        type_: Some("bootstrap.kubernetes.io/token".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// `upload-certs`: encrypts the shared CA and service-account keys with `key` into the `kubeadm-certs` Secret, owned
/// by a bootstrap token that expires in two hours (the token cleaner then deletes it and the garbage collector the
/// Secret).
pub async fn upload_certs(
    client: &kube::Client,
    cfg: &InitConfig,
    layout: &Layout,
    key: &pki::CertificateKey,
    out: &mut dyn Write,
) -> Result<(), Error> {
    say(
        out,
        format_args!(
            "[upload-certs] Storing the certificates in Secret \"{KUBEADM_CERTS}\" in the \"kube-system\" Namespace"
        ),
    )?;
    let mut rng = pki::OsRng;
    let mut data = BTreeMap::new();
    for (name, logical) in shared_certs(cfg) {
        let path = layout.host(&logical);
        let plain = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        data.insert(name, ByteString(key.seal(&plain, &mut rng)?));
    }
    let owner_token = pki::BootstrapToken::generate(&mut rng);
    let owner = token_secret(
        &owner_token,
        Some(CERTS_TTL),
        Timestamp::now(),
        &[],
        &[],
        Some("Proxy for managing TTL for the kubeadm-certs secret"),
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let owner = create_or_update(&secrets, owner).await?;
    let secret = Secret {
        metadata: ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Secret".into(),
                name: owner.metadata.name.clone().unwrap_or_default(),
                uid: owner.metadata.uid.clone().unwrap_or_default(),
                block_owner_deletion: Some(true),
                controller: Some(true),
            }]),
            ..meta(Some("kube-system"), KUBEADM_CERTS)
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    };
    create_or_update(&secrets, secret).await?;
    grant_get(
        client,
        "kube-system",
        "kubeadm:kubeadm-certs",
        "secrets",
        &[KUBEADM_CERTS],
        vec![group(NODE_BOOTSTRAP_GROUP)],
    )
    .await?;
    say(
        out,
        format_args!("[upload-certs] Using certificate key:\n{}", key.to_hex()),
    )?;
    Ok(())
}

/// Waits for the Node object, for up to `timeout`.
pub async fn wait_for_node(client: &kube::Client, name: &str, timeout: Duration) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match nodes.get_opt(name).await {
            Ok(Some(node)) => return Ok(node),
            Ok(None) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(None) => {
                return Err(Error::Usage(format!(
                    "timed out waiting for the Node {name:?} to register"
                )));
            }
            Err(e) => return Err(api_err(format!("reading Node {name:?}"))(e)),
        }
    }
}

/// `mark-control-plane`: kubeadm's labels and taints on this node.
pub async fn mark_control_plane(
    client: &kube::Client,
    cfg: &InitConfig,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let name = &cfg.node.name;
    say(
        out,
        format_args!(
            "[mark-control-plane] Marking the node {name} as control-plane by adding the labels: [{CONTROL_PLANE_LABEL} {EXCLUDE_LB_LABEL}]"
        ),
    )?;
    let taints: Vec<Taint> = cfg
        .node
        .taints
        .iter()
        .map(|t| Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            time_added: None,
        })
        .collect();
    if !taints.is_empty() {
        let shown: Vec<String> = taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        say(
            out,
            format_args!(
                "[mark-control-plane] Marking the node {name} as control-plane by adding the taints [{}]",
                shown.join(" ")
            ),
        )?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    // The kubelet updates its Node too: retry on conflicts.
    for _ in 0..20 {
        let mut node = wait_for_node(client, name, Duration::from_secs(120)).await?;
        let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(CONTROL_PLANE_LABEL.into(), String::new());
        labels.insert(EXCLUDE_LB_LABEL.into(), String::new());
        let spec = node.spec.get_or_insert_with(Default::default);
        for taint in &taints {
            let existing = spec.taints.get_or_insert_with(Vec::new);
            if !existing
                .iter()
                .any(|t| t.key == taint.key && t.effect == taint.effect)
            {
                existing.push(taint.clone());
            }
        }
        match nodes.replace(name, &PostParams::default(), &node).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(api_err(format!("updating Node {name:?}"))(e)),
        }
    }
    Err(Error::Usage(format!(
        "could not update Node {name:?}: it kept changing"
    )))
}

/// Creates (or updates) the bootstrap tokens of the configuration; returns them.
pub async fn create_tokens(
    client: &kube::Client,
    cfg: &InitConfig,
) -> Result<Vec<pki::BootstrapToken>, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let mut created = Vec::new();
    for t in &cfg.node.bootstrap_tokens {
        let token = match &t.token {
            Some(text) => pki::BootstrapToken::parse(text)?,
            None => pki::BootstrapToken::generate(&mut pki::OsRng),
        };
        let secret = token_secret(
            &token,
            Some(Duration::from_secs(t.ttl_secs)),
            Timestamp::now(),
            &t.usages,
            &t.groups,
            t.description.as_deref(),
        );
        create_or_update(&secrets, secret).await?;
        created.push(token);
    }
    Ok(created)
}

/// The `kube-public/cluster-info` kubeconfig: the cluster's CA and endpoint, nothing secret.
pub fn cluster_info_kubeconfig(cfg: &InitConfig, layout: &Layout) -> Result<String, Error> {
    let path = layout.host(format!(
        "{}/ca.crt",
        cfg.cluster.certificates_dir.trim_end_matches('/')
    ));
    let ca = std::fs::read(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let data = base64::engine::general_purpose::STANDARD.encode(ca);
    Ok(format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {data}\n    server: {}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        cfg.control_plane_url()
    ))
}

/// `bootstrap-token`: the tokens, the RBAC that lets them join nodes, and the public `cluster-info`.
pub async fn bootstrap_token(
    client: &kube::Client,
    cfg: &InitConfig,
    layout: &Layout,
    out: &mut dyn Write,
) -> Result<Vec<pki::BootstrapToken>, Error> {
    let tokens = create_tokens(client, cfg).await?;
    for token in &tokens {
        say(out, format_args!("[bootstrap-token] Using token: {token}"))?;
    }
    say(
        out,
        format_args!("[bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles"),
    )?;
    let get_nodes = ClusterRole {
        metadata: meta(None, "kubeadm:get-nodes"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["nodes".into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    create_or_update(&Api::all(client.clone()), get_nodes).await?;
    bind_cluster_role(
        client,
        "kubeadm:get-nodes",
        "kubeadm:get-nodes",
        vec![group(NODE_BOOTSTRAP_GROUP)],
    )
    .await?;
    say(
        out,
        format_args!("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes"),
    )?;
    bind_cluster_role(
        client,
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        vec![group(NODE_BOOTSTRAP_GROUP)],
    )
    .await?;
    say(
        out,
        format_args!(
            "[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials"
        ),
    )?;
    bind_cluster_role(
        client,
        "kubeadm:node-autoapprove-bootstrap",
        "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        vec![group(NODE_BOOTSTRAP_GROUP)],
    )
    .await?;
    say(
        out,
        format_args!(
            "[bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token"
        ),
    )?;
    bind_cluster_role(
        client,
        "kubeadm:node-autoapprove-certificate-rotation",
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
        vec![group("system:nodes")],
    )
    .await?;
    say(
        out,
        format_args!(
            "[bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster"
        ),
    )?;
    say(
        out,
        format_args!(
            "[bootstrap-token] Creating the \"{CLUSTER_INFO}\" ConfigMap in the \"kube-public\" namespace"
        ),
    )?;
    let kubeconfig = cluster_info_kubeconfig(cfg, layout)?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    // Keep the JWS signatures the bootstrap signer already added.
    let mut data: BTreeMap<String, String> = cms
        .get_opt(CLUSTER_INFO)
        .await
        .map_err(api_err("reading cluster-info"))?
        .and_then(|cm| cm.data)
        .unwrap_or_default();
    data.insert("kubeconfig".into(), kubeconfig);
    create_or_update(&cms, config_map("kube-public", CLUSTER_INFO, data)).await?;
    grant_get(
        client,
        "kube-public",
        "kubeadm:bootstrap-signer-clusterinfo",
        "configmaps",
        &[CLUSTER_INFO],
        vec![user("system:anonymous")],
    )
    .await?;
    Ok(tokens)
}

/// One row of `kubeadm token list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token: String,
    pub expires: Option<Timestamp>,
    pub usages: Vec<String>,
    pub description: String,
    pub groups: String,
}

/// `kubeadm token create`: a new (or the given) token with `ttl` (zero: never expires).
pub async fn token_create(
    client: &kube::Client,
    token: Option<&str>,
    ttl: Duration,
    description: Option<&str>,
    usages: &[String],
    groups: &[String],
) -> Result<pki::BootstrapToken, Error> {
    let token = match token {
        Some(text) => pki::BootstrapToken::parse(text)?,
        None => pki::BootstrapToken::generate(&mut pki::OsRng),
    };
    let secret = token_secret(&token, Some(ttl), Timestamp::now(), usages, groups, description);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(api_err(format!("creating bootstrap token {:?}", token.id)))?;
    Ok(token)
}

/// `kubeadm token list`.
pub async fn token_list(client: &kube::Client) -> Result<Vec<TokenInfo>, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let list = secrets
        .list(&ListParams::default().fields("type=bootstrap.kubernetes.io/token"))
        .await
        .map_err(api_err("listing bootstrap tokens"))?;
    let mut rows = Vec::new();
    for secret in list.items {
        let data = secret.data.unwrap_or_default();
        let get = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(&v.0).into_owned());
        let (Some(id), Some(sec)) = (get("token-id"), get("token-secret")) else {
            continue;
        };
        let usages = data
            .keys()
            .filter_map(|k| k.strip_prefix("usage-bootstrap-"))
            .filter(|k| get(&format!("usage-bootstrap-{k}")).as_deref() == Some("true"))
            .map(String::from)
            .collect();
        rows.push(TokenInfo {
            token: format!("{id}.{sec}"),
            expires: get("expiration").and_then(|e| e.parse().ok()),
            usages,
            description: get("description").unwrap_or_default(),
            groups: get("auth-extra-groups").unwrap_or_default(),
        });
    }
    Ok(rows)
}

/// `kubeadm token delete <token or id>`.
pub async fn token_delete(client: &kube::Client, token: &str) -> Result<String, Error> {
    let id = match token.split_once('.') {
        Some(_) => pki::BootstrapToken::parse(token)?.id,
        None if token.len() == 6
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            token.to_string()
        }
        None => {
            return Err(Error::Usage(format!(
                "given token or token id {token:?} didn't match pattern \"[a-z0-9]{{6}}\" or \"[a-z0-9]{{6}}\\.[a-z0-9]{{16}}\""
            )));
        }
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    secrets
        .delete(&format!("bootstrap-token-{id}"), &DeleteParams::default())
        .await
        .map_err(api_err(format!("deleting bootstrap token {id:?}")))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_secrets_carry_kubeadms_fields_and_an_rfc3339_expiry() {
        let token = pki::BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let s = token_secret(
            &token,
            Some(Duration::from_secs(3600)),
            now,
            &["signing".into(), "authentication".into()],
            &[NODE_BOOTSTRAP_GROUP.into()],
            None,
        );
        assert_eq!(s.metadata.name.as_deref(), Some("bootstrap-token-abcdef"));
        assert_eq!(s.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
        let data = s.data.unwrap();
        assert_eq!(data["expiration"].0, b"2026-01-01T01:00:00Z");
        assert_eq!(data["usage-bootstrap-signing"].0, b"true");
        assert_eq!(data["auth-extra-groups"].0, NODE_BOOTSTRAP_GROUP.as_bytes());
    }

    #[test]
    fn a_zero_ttl_token_never_expires() {
        let token = pki::BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        let s = token_secret(&token, Some(Duration::ZERO), Timestamp::now(), &[], &[], None);
        assert!(!s.data.unwrap().contains_key("expiration"));
    }
}
