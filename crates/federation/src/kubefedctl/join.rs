//! `kubefedctl join`: registers a member cluster with the host, undoing its own work when a step fails.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role as RbacRole, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, Kubeconfig, Role};
use super::console::{Console, v2, warning};
use super::{
    DEFAULT_NAMESPACE, KUBEFED_CONFIG_NAME, POLL, TOKEN_TIMEOUT, check_subdomain, ensure_kubefed_api,
    health_check_role_name, host_cluster_name, kubefed_clusters, kubefed_resource, role_name,
    service_account_name,
};
use crate::Error;
use crate::crds::{CORE_GROUP, VERSION};

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";

/// `kubefedctl join` flags.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub cluster_name: String,
    /// `--cluster-context`; the cluster name when absent.
    pub cluster_context: Option<String>,
    /// `--host-cluster-context`; the current context when absent.
    pub host_cluster_context: Option<String>,
    /// `--host-cluster-name`; the host context's name when absent.
    pub host_cluster_name: Option<String>,
    pub kubefed_namespace: String,
    /// `--secret-name`: the host Secret's name instead of a generated `<cluster>-xxxxx`.
    pub secret_name: Option<String>,
    /// `--error-on-existing` (upstream's default: true): fail on objects of an earlier join instead of updating them.
    pub error_on_existing: bool,
    pub token_timeout: Duration,
}

impl JoinOptions {
    pub fn new(cluster_name: &str) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            cluster_context: None,
            host_cluster_context: None,
            host_cluster_name: None,
            kubefed_namespace: DEFAULT_NAMESPACE.to_string(),
            secret_name: None,
            error_on_existing: true,
            token_timeout: TOKEN_TIMEOUT,
        }
    }
}

/// What a join registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub cluster: String,
    pub service_account: String,
    /// The host Secret the KubeFedCluster references.
    pub secret: String,
    /// An existing KubeFedCluster was updated rather than created.
    pub updated: bool,
}

/// The RBAC scope of the federation, from the host's KubeFedConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Cluster,
    Namespaced,
}

/// An object this run created, to delete again if a later step fails.
#[derive(Debug)]
enum Made {
    Namespace(String),
    ServiceAccount(String, String),
    Secret(String, String),
    ClusterRole(String),
    ClusterRoleBinding(String),
    Role(String, String),
    RoleBinding(String, String),
    KubeFedCluster(String, String),
}

#[derive(Default)]
struct Undo {
    member: Vec<Made>,
    host: Vec<Made>,
}

/// Registers `opts.cluster_name` with the host. On failure, everything this call created is deleted again.
#[tracing::instrument(name = "join", skip_all, fields(cluster = %opts.cluster_name))]
pub async fn join(kubeconfig: &Kubeconfig, opts: &JoinOptions, console: &Console) -> Result<Joined, Error> {
    let name = opts.cluster_name.as_str();
    let cluster_context = match opts.cluster_context.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => {
            v2!(
                console,
                "Defaulting cluster context to joining cluster name {name}"
            );
            name.to_string()
        }
    };
    let host_context = kubeconfig.context_or_current(opts.host_cluster_context.as_deref())?;
    let host_name = host_cluster_name(opts.host_cluster_name.as_deref(), &host_context)?;
    v2!(
        console,
        "Args and flags: name {name}, host: {host_context}, host-system-namespace: {}, kubeconfig: {}, \
         cluster-context: {cluster_context}, secret-name: {}, dry-run: false",
        opts.kubefed_namespace,
        kubeconfig.source_name(),
        opts.secret_name.as_deref().unwrap_or("")
    );
    check_subdomain("cluster name", name)?;
    let sa = service_account_name(name, &host_name);
    check_subdomain("service account name (<cluster>-<host-cluster-name>)", &sa).map_err(|e| {
        Error::Hinted {
            source: Box::new(e),
            hint: "pass --host-cluster-name with a valid name".into(),
        }
    })?;

    // Both contexts resolve before any request: an unknown one changes nothing.
    let host = kubeconfig.connect(&host_context, Role::Host).await?;
    let member = kubeconfig.connect(&cluster_context, Role::Joining).await?;
    ensure_kubefed_api(&host, &["kubefedclusters"]).await?;
    let scope = federation_scope(&host, &opts.kubefed_namespace, console).await?;

    let mut undo = Undo::default();
    let steps = Steps {
        host: &host,
        member: &member,
        opts,
        sa: &sa,
        scope,
        console,
    };
    match steps.run(&mut undo).await {
        Ok(joined) => Ok(joined),
        Err(e) => {
            roll_back(undo, &host, &member, console).await;
            Err(e)
        }
    }
}

async fn federation_scope(host: &Cluster, namespace: &str, console: &Console) -> Result<Scope, Error> {
    let configs: Api<DynamicObject> = Api::namespaced_with(
        host.client.clone(),
        namespace,
        &kubefed_resource("KubeFedConfig", "kubefedconfigs"),
    );
    let config = configs.get_opt(KUBEFED_CONFIG_NAME).await.map_err(|e| {
        host.error(
            format!("Error retrieving KubeFedConfig \"{namespace}/{KUBEFED_CONFIG_NAME}\""),
            e,
        )
    })?;
    match config {
        Some(c) if c.data["spec"]["scope"] == "Namespaced" => Ok(Scope::Namespaced),
        Some(_) => Ok(Scope::Cluster),
        None => {
            v2!(
                console,
                "No KubeFedConfig \"{KUBEFED_CONFIG_NAME}\" in namespace \"{namespace}\" of the host cluster; \
                 joining with the Cluster scope of a default KubeFed install"
            );
            Ok(Scope::Cluster)
        }
    }
}

fn all_rules(scope: Scope) -> Vec<PolicyRule> {
    let all = PolicyRule {
        api_groups: Some(vec!["*".into()]),
        resources: Some(vec!["*".into()]),
        verbs: vec!["*".into()],
        ..PolicyRule::default()
    };
    match scope {
        Scope::Namespaced => vec![all],
        Scope::Cluster => vec![
            all,
            PolicyRule {
                non_resource_urls: Some(vec!["/healthz".into()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            },
        ],
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    }
}

struct Steps<'a> {
    host: &'a Cluster,
    member: &'a Cluster,
    opts: &'a JoinOptions,
    sa: &'a str,
    scope: Scope,
    console: &'a Console,
}

impl Steps<'_> {
    fn name(&self) -> &str {
        &self.opts.cluster_name
    }

    fn ns(&self) -> &str {
        &self.opts.kubefed_namespace
    }

    async fn run(&self, undo: &mut Undo) -> Result<Joined, Error> {
        let (console, name, ns, sa) = (self.console, self.name(), self.ns(), self.sa);
        v2!(console, "Performing preflight checks.");
        self.preflight().await?;

        v2!(console, "Creating {ns} namespace in joining cluster");
        self.ensure_namespace(undo).await?;
        v2!(console, "Created {ns} namespace in joining cluster");

        v2!(console, "Creating service account in joining cluster: {name}");
        let sa_existed = self.create_service_account(undo).await?;
        v2!(
            console,
            "Created service account: {sa} in joining cluster: {name}"
        );
        let token_secret = self.create_token_secret(sa_existed, undo).await?;
        v2!(
            console,
            "Created service account token secret: {token_secret} in joining cluster: {name}"
        );

        match self.scope {
            Scope::Cluster => {
                v2!(
                    console,
                    "Creating cluster role and binding for service account: {sa} in joining cluster: {name}"
                );
                let role = role_name(sa);
                self.cluster_role(&role, all_rules(Scope::Cluster), "cluster role", undo)
                    .await?;
                self.cluster_role_binding(&role, "cluster role binding", undo)
                    .await?;
                v2!(
                    console,
                    "Created cluster role and binding for service account: {sa} in joining cluster: {name}"
                );
            }
            Scope::Namespaced => {
                v2!(
                    console,
                    "Creating role and binding for service account: {sa} in joining cluster: {name}"
                );
                self.role_and_binding(undo).await?;
                v2!(
                    console,
                    "Created role and binding for service account: {sa} in joining cluster: {name}"
                );
                v2!(
                    console,
                    "Creating health check cluster role and binding for service account: {sa} in joining cluster: {name}"
                );
                let role = health_check_role_name(sa, ns);
                let rules = vec![
                    PolicyRule {
                        non_resource_urls: Some(vec!["/healthz".into()]),
                        verbs: vec!["get".into()],
                        ..PolicyRule::default()
                    },
                    // The health check reads zones and regions off the member's nodes.
                    PolicyRule {
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec!["nodes".into()]),
                        verbs: vec!["list".into()],
                        ..PolicyRule::default()
                    },
                ];
                self.cluster_role(&role, rules, "health check cluster role", undo)
                    .await?;
                self.cluster_role_binding(&role, "health check cluster role binding", undo)
                    .await?;
                v2!(
                    console,
                    "Created health check cluster role and binding for service account: {sa} in joining cluster: {name}"
                );
            }
        }

        v2!(console, "Creating cluster credentials secret in host cluster");
        let (token, ca) = self.wait_for_token(&token_secret).await?;
        v2!(console, "Using secret named: {token_secret}");
        let secret = self.host_secret(token, ca.clone(), undo).await?;
        v2!(console, "Created secret in host cluster named: {secret}");

        let ca_bundle = self.member.info.ca_bundle.clone().or_else(|| {
            ca.filter(|c| !c.is_empty())
                .map(|c| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, c))
        });
        let updated = self.kubefed_cluster(&secret, ca_bundle, undo).await?;
        v2!(console, "Created federated cluster resource");
        Ok(Joined {
            cluster: name.to_string(),
            service_account: sa.to_string(),
            secret,
            updated,
        })
    }

    fn conflict(&self, what: String) -> Error {
        Error::Hinted {
            source: Box::new(Error::Conflict(what)),
            hint: "unjoin it first, or pass --error-on-existing=false to update it in place".into(),
        }
    }

    async fn preflight(&self) -> Result<(), Error> {
        let (name, ns, sa) = (self.name(), self.ns(), self.sa);
        let accounts: Api<ServiceAccount> = Api::namespaced(self.member.client.clone(), ns);
        let existing = accounts
            .get_opt(sa)
            .await
            .map_err(|e| self.member.error(format!("getting service account {ns}/{sa}"), e))?;
        if existing.is_some() {
            if self.opts.error_on_existing {
                return Err(self.conflict(format!(
                    "service account: {sa} already exists in joining cluster: {name}"
                )));
            }
            v2!(
                self.console,
                "Service account {sa} already exists in joining cluster {name}"
            );
        }
        // Upstream notices an existing KubeFedCluster only at its last step; asking first spares the member work
        // that would be undone anyway.
        if self.opts.error_on_existing {
            let clusters: Api<DynamicObject> =
                Api::namespaced_with(self.host.client.clone(), ns, &kubefed_clusters());
            let existing = clusters
                .get_opt(name)
                .await
                .map_err(|e| self.host.error(format!("getting kubefed cluster {ns}/{name}"), e))?;
            if existing.is_some() {
                return Err(self.conflict(format!("federated cluster {name} already exists in host cluster")));
            }
        }
        Ok(())
    }

    async fn ensure_namespace(&self, undo: &mut Undo) -> Result<(), Error> {
        let ns = self.ns();
        let namespaces: Api<Namespace> = Api::all(self.member.client.clone());
        let get = |e| self.member.error(format!("getting namespace {ns}"), e);
        if let Some(existing) = namespaces.get_opt(ns).await.map_err(get)? {
            if existing.metadata.deletion_timestamp.is_none() {
                v2!(self.console, "Already existing {ns} namespace");
                return Ok(());
            }
            // An earlier unjoin's namespace is still being emptied; nothing can be created in it until it is gone.
            v2!(
                self.console,
                "Waiting for namespace {ns} to finish terminating in joining cluster"
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while namespaces.get_opt(ns).await.map_err(get)?.is_some() {
                if Instant::now() > deadline {
                    return Err(Error::Timeout {
                        what: format!("namespace {ns} in the joining cluster was not deleted"),
                        waited: Duration::from_secs(60),
                        hint: "its namespace controller has not finished emptying it; try again later".into(),
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
        let object = Namespace {
            metadata: meta(ns, None),
            ..Namespace::default()
        };
        match namespaces.create(&PostParams::default(), &object).await {
            Ok(_) => {
                undo.member.push(Made::Namespace(ns.to_string()));
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(self.member.error(format!("creating namespace {ns}"), e)),
        }
    }

    /// Whether the account was there already.
    async fn create_service_account(&self, undo: &mut Undo) -> Result<bool, Error> {
        let (ns, sa) = (self.ns(), self.sa);
        let accounts: Api<ServiceAccount> = Api::namespaced(self.member.client.clone(), ns);
        let object = ServiceAccount {
            metadata: meta(sa, Some(ns)),
            ..ServiceAccount::default()
        };
        match accounts.create(&PostParams::default(), &object).await {
            Ok(_) => {
                undo.member.push(Made::ServiceAccount(ns.into(), sa.into()));
                Ok(false)
            }
            Err(kube::Error::Api(s)) if s.code == 409 && self.opts.error_on_existing => {
                v2!(
                    self.console,
                    "Service account {ns}/{sa} already exists in target cluster {}",
                    self.name()
                );
                Err(self.conflict(format!(
                    "service account: {sa} already exists in joining cluster: {}",
                    self.name()
                )))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
            Err(e) => Err(self
                .member
                .error(format!("creating service account {ns}/{sa}"), e)),
        }
    }

    /// The legacy token Secret of the account: an existing one on a re-join, else a new `<sa>-token-xxxxx`.
    async fn create_token_secret(&self, sa_existed: bool, undo: &mut Undo) -> Result<String, Error> {
        let (ns, sa) = (self.ns(), self.sa);
        let secrets: Api<Secret> = Api::namespaced(self.member.client.clone(), ns);
        if sa_existed {
            let list = secrets
                .list(&ListParams::default())
                .await
                .map_err(|e| self.member.error(format!("listing secrets in {ns}"), e))?;
            let found = list.items.into_iter().find(|s| {
                s.type_.as_deref() == Some(TOKEN_TYPE)
                    && s.metadata.deletion_timestamp.is_none()
                    && s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(SA_NAME_ANNOTATION))
                        .is_some_and(|n| n == sa)
            });
            if let Some(name) = found.and_then(|s| s.metadata.name) {
                return Ok(name);
            }
        }
        let object = Secret {
            metadata: ObjectMeta {
                generate_name: Some(format!("{sa}-token-")),
                namespace: Some(ns.into()),
                annotations: Some(BTreeMap::from([(SA_NAME_ANNOTATION.to_string(), sa.to_string())])),
                ..ObjectMeta::default()
            },
            type_: Some(TOKEN_TYPE.into()),
            ..Secret::default()
        };
        let created = secrets
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| {
                self.member
                    .error(format!("creating service account token secret for {ns}/{sa}"), e)
            })?;
        let name = created.metadata.name.unwrap_or_default();
        undo.member.push(Made::Secret(ns.into(), name.clone()));
        Ok(name)
    }

    fn existing(&self, what: &str) -> Error {
        self.conflict(format!(
            "{what} for service account {} in joining cluster {} already exists",
            self.sa,
            self.name()
        ))
    }

    async fn cluster_role(
        &self,
        role: &str,
        rules: Vec<PolicyRule>,
        what: &str,
        undo: &mut Undo,
    ) -> Result<(), Error> {
        let api: Api<ClusterRole> = Api::all(self.member.client.clone());
        let existing = api
            .get_opt(role)
            .await
            .map_err(|e| self.member.error(format!("getting {what} {role}"), e))?;
        match existing {
            Some(_) if self.opts.error_on_existing => Err(self.existing(what)),
            Some(mut current) => {
                current.rules = Some(rules);
                api.replace(role, &PostParams::default(), &current)
                    .await
                    .map_err(|e| self.member.error(format!("updating {what} {role}"), e))?;
                Ok(())
            }
            None => {
                let object = ClusterRole {
                    metadata: meta(role, None),
                    rules: Some(rules),
                    ..ClusterRole::default()
                };
                api.create(&PostParams::default(), &object)
                    .await
                    .map_err(|e| self.member.error(format!("creating {what} {role}"), e))?;
                undo.member.push(Made::ClusterRole(role.into()));
                Ok(())
            }
        }
    }

    fn subjects(&self) -> Vec<Subject> {
        vec![Subject {
            kind: "ServiceAccount".into(),
            name: self.sa.to_string(),
            namespace: Some(self.ns().to_string()),
            ..Subject::default()
        }]
    }

    async fn cluster_role_binding(&self, role: &str, what: &str, undo: &mut Undo) -> Result<(), Error> {
        let api: Api<ClusterRoleBinding> = Api::all(self.member.client.clone());
        let role_ref = RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: role.into(),
        };
        let desired = ClusterRoleBinding {
            metadata: meta(role, None),
            role_ref: role_ref.clone(),
            subjects: Some(self.subjects()),
        };
        let err = |verb: &str, e| self.member.error(format!("{verb} {what} {role}"), e);
        match api.get_opt(role).await.map_err(|e| err("getting", e))? {
            Some(_) if self.opts.error_on_existing => Err(self.existing(what)),
            // roleRef is immutable: a binding to another role is replaced.
            Some(current) if current.role_ref != role_ref => {
                api.delete(role, &DeleteParams::default())
                    .await
                    .map_err(|e| err("deleting", e))?;
                api.create(&PostParams::default(), &desired)
                    .await
                    .map_err(|e| err("creating", e))?;
                Ok(())
            }
            Some(mut current) => {
                current.subjects = desired.subjects;
                api.replace(role, &PostParams::default(), &current)
                    .await
                    .map_err(|e| err("updating", e))?;
                Ok(())
            }
            None => {
                api.create(&PostParams::default(), &desired)
                    .await
                    .map_err(|e| err("creating", e))?;
                undo.member.push(Made::ClusterRoleBinding(role.into()));
                Ok(())
            }
        }
    }

    async fn role_and_binding(&self, undo: &mut Undo) -> Result<(), Error> {
        let (ns, role) = (self.ns(), role_name(self.sa));
        let roles: Api<RbacRole> = Api::namespaced(self.member.client.clone(), ns);
        let err = |verb: &str, what: &str, e| self.member.error(format!("{verb} {what} {ns}/{role}"), e);
        match roles
            .get_opt(&role)
            .await
            .map_err(|e| err("getting", "role", e))?
        {
            Some(_) if self.opts.error_on_existing => return Err(self.existing("role")),
            Some(mut current) => {
                current.rules = Some(all_rules(Scope::Namespaced));
                roles
                    .replace(&role, &PostParams::default(), &current)
                    .await
                    .map_err(|e| err("updating", "role", e))?;
            }
            None => {
                let object = RbacRole {
                    metadata: meta(&role, Some(ns)),
                    rules: Some(all_rules(Scope::Namespaced)),
                };
                roles
                    .create(&PostParams::default(), &object)
                    .await
                    .map_err(|e| err("creating", "role", e))?;
                undo.member.push(Made::Role(ns.into(), role.clone()));
            }
        }
        let bindings: Api<RoleBinding> = Api::namespaced(self.member.client.clone(), ns);
        let role_ref = RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: role.clone(),
        };
        let desired = RoleBinding {
            metadata: meta(&role, Some(ns)),
            role_ref: role_ref.clone(),
            subjects: Some(self.subjects()),
        };
        match bindings
            .get_opt(&role)
            .await
            .map_err(|e| err("getting", "role binding", e))?
        {
            Some(_) if self.opts.error_on_existing => Err(self.existing("role binding")),
            Some(current) if current.role_ref != role_ref => {
                bindings
                    .delete(&role, &DeleteParams::default())
                    .await
                    .map_err(|e| err("deleting", "role binding", e))?;
                bindings
                    .create(&PostParams::default(), &desired)
                    .await
                    .map_err(|e| err("creating", "role binding", e))?;
                Ok(())
            }
            Some(mut current) => {
                current.subjects = desired.subjects;
                bindings
                    .replace(&role, &PostParams::default(), &current)
                    .await
                    .map_err(|e| err("updating", "role binding", e))?;
                Ok(())
            }
            None => {
                bindings
                    .create(&PostParams::default(), &desired)
                    .await
                    .map_err(|e| err("creating", "role binding", e))?;
                undo.member.push(Made::RoleBinding(ns.into(), role.clone()));
                Ok(())
            }
        }
    }

    /// The token (and CA) the member's controller-manager writes into the Secret.
    async fn wait_for_token(&self, secret: &str) -> Result<(Vec<u8>, Option<Vec<u8>>), Error> {
        let ns = self.ns();
        let secrets: Api<Secret> = Api::namespaced(self.member.client.clone(), ns);
        let deadline = Instant::now() + self.opts.token_timeout;
        loop {
            let current = secrets
                .get_opt(secret)
                .await
                .map_err(|e| self.member.error(format!("getting secret {ns}/{secret}"), e))?;
            let data = current.and_then(|s| s.data).unwrap_or_default();
            if let Some(token) = data.get("token").filter(|t| !t.0.is_empty()) {
                return Ok((token.0.clone(), data.get("ca.crt").map(|c| c.0.clone())));
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "service account token secret {ns}/{secret} in the joining cluster (context \"{}\") got no token",
                        self.member.context
                    ),
                    waited: self.opts.token_timeout,
                    hint: "the member's kube-controller-manager fills it (its serviceaccount-token controller, with \
                           --service-account-private-key-file); is it running?"
                        .into(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The host Secret holding the member's token; its name.
    async fn host_secret(
        &self,
        token: Vec<u8>,
        ca: Option<Vec<u8>>,
        undo: &mut Undo,
    ) -> Result<String, Error> {
        let ns = self.ns();
        let secrets: Api<Secret> = Api::namespaced(self.host.client.clone(), ns);
        let mut data = BTreeMap::from([("token".to_string(), ByteString(token))]);
        if let Some(ca) = ca.filter(|c| !c.is_empty()) {
            data.insert("ca.crt".into(), ByteString(ca));
        }
        let err = |verb: &str, e| {
            self.host.error(
                format!("{verb} the cluster credentials secret in namespace {ns}"),
                e,
            )
        };
        if let Some(name) = self.opts.secret_name.as_deref().filter(|n| !n.is_empty())
            && let Some(mut current) = secrets.get_opt(name).await.map_err(|e| err("getting", e))?
        {
            if self.opts.error_on_existing {
                return Err(self.conflict(format!("host cluster secret {name} already exists")));
            }
            if current.data.as_ref() != Some(&data) {
                current.data = Some(data);
                secrets
                    .replace(name, &PostParams::default(), &current)
                    .await
                    .map_err(|e| err("updating", e))?;
            }
            return Ok(name.to_string());
        }
        let metadata = match self.opts.secret_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => meta(name, Some(ns)),
            None => ObjectMeta {
                generate_name: Some(format!("{}-", self.name())),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
        };
        let object = Secret {
            metadata,
            data: Some(data),
            ..Secret::default()
        };
        let created = match secrets.create(&PostParams::default(), &object).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(Error::Hinted {
                    source: Box::new(err("creating", kube::Error::Api(s))),
                    hint: format!(
                        "install the KubeFed control plane (it creates namespace {ns}), or join the host cluster \
                         itself first"
                    ),
                });
            }
            Err(e) => return Err(err("creating", e)),
        };
        let name = created.metadata.name.unwrap_or_default();
        undo.host.push(Made::Secret(ns.into(), name.clone()));
        Ok(name)
    }

    /// Creates the KubeFedCluster, or points an existing one at the new endpoint and Secret; whether it existed.
    async fn kubefed_cluster(
        &self,
        secret: &str,
        ca_bundle: Option<String>,
        undo: &mut Undo,
    ) -> Result<bool, Error> {
        let (ns, name) = (self.ns(), self.name());
        let api: Api<DynamicObject> = Api::namespaced_with(self.host.client.clone(), ns, &kubefed_clusters());
        let spec = kubefed_cluster_spec(
            &self.member.info.server,
            ca_bundle,
            secret,
            self.member.info.insecure,
        );
        let err = |verb: &str, e| {
            self.host
                .error(format!("{verb} federated cluster resource {ns}/{name}"), e)
        };
        match api.get_opt(name).await.map_err(|e| err("getting", e))? {
            Some(_) if self.opts.error_on_existing => {
                Err(self.conflict(format!("federated cluster {name} already exists in host cluster")))
            }
            Some(mut current) => {
                let previous = current.data["spec"]["secretRef"]["name"]
                    .as_str()
                    .map(str::to_string);
                current.data["spec"] = spec;
                api.replace(name, &PostParams::default(), &current)
                    .await
                    .map_err(|e| err("updating", e))?;
                // The Secret of the earlier join is no longer referenced by anything.
                if let Some(previous) = previous.filter(|p| p != secret) {
                    let secrets: Api<Secret> = Api::namespaced(self.host.client.clone(), ns);
                    match secrets.delete(&previous, &DeleteParams::default()).await {
                        Ok(_) => v2!(self.console, "Deleted secret {ns}/{previous} of the earlier join"),
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => warning!(
                            self.console,
                            "Could not delete secret {ns}/{previous} of the earlier join: {}",
                            self.host.error("deleting", e)
                        ),
                    }
                }
                Ok(true)
            }
            None => {
                let object: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": format!("{CORE_GROUP}/{VERSION}"),
                    "kind": "KubeFedCluster",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": spec,
                }))
                .map_err(|e| Error::Encode {
                    what: "KubeFedCluster".into(),
                    message: e.to_string(),
                })?;
                api.create(&PostParams::default(), &object)
                    .await
                    .map_err(|e| err("creating", e))?;
                undo.host.push(Made::KubeFedCluster(ns.into(), name.into()));
                Ok(false)
            }
        }
    }
}

/// KubeFedCluster's spec as upstream's join writes it.
pub(crate) fn kubefed_cluster_spec(
    server: &str,
    ca_bundle: Option<String>,
    secret: &str,
    insecure: bool,
) -> Value {
    let mut spec = json!({"apiEndpoint": server, "secretRef": {"name": secret}});
    if let Some(ca) = ca_bundle {
        spec["caBundle"] = json!(ca);
    }
    if insecure {
        spec["disabledTLSValidations"] = json!(["*"]);
    }
    spec
}

async fn roll_back(undo: Undo, host: &Cluster, member: &Cluster, console: &Console) {
    for (cluster, made) in [(host, undo.host), (member, undo.member)] {
        for item in made.into_iter().rev() {
            let client = cluster.client.clone();
            let dp = DeleteParams::default();
            let (what, result) = match &item {
                Made::Namespace(n) => (
                    format!("namespace {n}"),
                    Api::<Namespace>::all(client).delete(n, &dp).await.map(drop),
                ),
                Made::ServiceAccount(ns, n) => (
                    format!("service account {ns}/{n}"),
                    Api::<ServiceAccount>::namespaced(client, ns)
                        .delete(n, &dp)
                        .await
                        .map(drop),
                ),
                Made::Secret(ns, n) => (
                    format!("secret {ns}/{n}"),
                    Api::<Secret>::namespaced(client, ns)
                        .delete(n, &dp)
                        .await
                        .map(drop),
                ),
                Made::ClusterRole(n) => (
                    format!("cluster role {n}"),
                    Api::<ClusterRole>::all(client).delete(n, &dp).await.map(drop),
                ),
                Made::ClusterRoleBinding(n) => (
                    format!("cluster role binding {n}"),
                    Api::<ClusterRoleBinding>::all(client)
                        .delete(n, &dp)
                        .await
                        .map(drop),
                ),
                Made::Role(ns, n) => (
                    format!("role {ns}/{n}"),
                    Api::<RbacRole>::namespaced(client, ns)
                        .delete(n, &dp)
                        .await
                        .map(drop),
                ),
                Made::RoleBinding(ns, n) => (
                    format!("role binding {ns}/{n}"),
                    Api::<RoleBinding>::namespaced(client, ns)
                        .delete(n, &dp)
                        .await
                        .map(drop),
                ),
                Made::KubeFedCluster(ns, n) => (
                    format!("kubefed cluster {ns}/{n}"),
                    Api::<DynamicObject>::namespaced_with(client, ns, &kubefed_clusters())
                        .delete(n, &dp)
                        .await
                        .map(drop),
                ),
            };
            let role = cluster.role.as_str();
            match result {
                Ok(()) => v2!(console, "Rolled back: deleted {what} in the {role} cluster"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => warning!(
                    console,
                    "Could not roll back {what} in the {role} cluster: {}",
                    cluster.error("deleting", e)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubefed_cluster_spec_carries_endpoint_ca_secret_and_tls_choice() {
        let spec = kubefed_cluster_spec(
            "https://10.0.0.2:6443",
            Some("Q0E=".into()),
            "member1-x7k2p",
            false,
        );
        assert_eq!(
            spec,
            json!({"apiEndpoint": "https://10.0.0.2:6443", "caBundle": "Q0E=", "secretRef": {"name": "member1-x7k2p"}})
        );
        let spec = kubefed_cluster_spec("https://lb:6443", None, "s", true);
        assert_eq!(spec["disabledTLSValidations"], json!(["*"]));
        assert!(spec.get("caBundle").is_none());
    }

    #[test]
    fn cluster_scope_adds_the_healthz_rule() {
        let rules = all_rules(Scope::Cluster);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].verbs, vec!["*"]);
        assert_eq!(
            rules[1].non_resource_urls.as_deref(),
            Some(&["/healthz".to_string()][..])
        );
        assert_eq!(all_rules(Scope::Namespaced).len(), 1);
    }
}
