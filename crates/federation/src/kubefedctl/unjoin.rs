//! `kubefedctl unjoin`: deletes what join created, in the member and then in the host.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role as RbacRole, RoleBinding};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};

use super::cluster::{Cluster, Kubeconfig, Role};
use super::console::{Console, v2};
use super::{
    DEFAULT_NAMESPACE, health_check_role_name, host_cluster_name, kubefed_clusters, role_name,
    service_account_name,
};
use crate::Error;

/// `kubefedctl unjoin` flags.
#[derive(Debug, Clone)]
pub struct UnjoinOptions {
    pub cluster_name: String,
    pub cluster_context: Option<String>,
    pub host_cluster_context: Option<String>,
    pub host_cluster_name: Option<String>,
    pub kubefed_namespace: String,
    /// `--force`: remove the host side even if the member cannot be cleaned (unreachable, unknown context).
    pub force: bool,
}

impl UnjoinOptions {
    pub fn new(cluster_name: &str) -> Self {
        Self {
            cluster_name: cluster_name.to_string(),
            cluster_context: None,
            host_cluster_context: None,
            host_cluster_name: None,
            kubefed_namespace: DEFAULT_NAMESPACE.to_string(),
            force: false,
        }
    }
}

const FORCE_HINT: &str = "pass --force to remove the cluster from the host cluster anyway";

/// Removes `opts.cluster_name` from the federation.
#[tracing::instrument(name = "unjoin", skip_all, fields(cluster = %opts.cluster_name))]
pub async fn unjoin(kubeconfig: &Kubeconfig, opts: &UnjoinOptions, console: &Console) -> Result<(), Error> {
    let name = opts.cluster_name.as_str();
    let ns = opts.kubefed_namespace.as_str();
    let cluster_context = match opts.cluster_context.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => {
            v2!(
                console,
                "Defaulting cluster context to unjoining cluster name {name}"
            );
            name.to_string()
        }
    };
    let host_context = kubeconfig.context_or_current(opts.host_cluster_context.as_deref())?;
    let host_name = host_cluster_name(opts.host_cluster_name.as_deref(), &host_context)?;
    v2!(
        console,
        "Args and flags: name {name}, host-cluster-context: {host_context}, host-system-namespace: {ns}, \
         kubeconfig: {}, cluster-context: {cluster_context}, dry-run: false",
        kubeconfig.source_name()
    );
    let host = kubeconfig.connect(&host_context, Role::Host).await?;
    let member = match kubeconfig.connect(&cluster_context, Role::Unjoining).await {
        Ok(member) => Some(member),
        Err(e) if opts.force => {
            v2!(console, "Failed to get unjoining cluster config: {e}");
            None
        }
        Err(e) => {
            return Err(Error::Hinted {
                source: Box::new(e),
                hint: FORCE_HINT.into(),
            });
        }
    };
    if let Some(member) = &member {
        let sa = service_account_name(name, &host_name);
        let cleanup = Cleanup {
            member,
            host: &host,
            ns,
            name,
            sa: &sa,
            force: opts.force,
            console,
        };
        let mut reachable = true;
        if let Err(e) = cleanup.rbac().await {
            if !opts.force {
                return Err(hint(e));
            }
            reachable = !e.is_unreachable();
            v2!(console, "Failed to delete RBAC resources: {e}");
        }
        if !reachable {
            v2!(
                console,
                "Skipping the kubefed namespace of unreachable cluster \"{name}\"."
            );
        } else if let Err(e) = cleanup.namespace().await {
            if !opts.force {
                return Err(hint(e));
            }
            v2!(console, "Failed to delete kubefed namespace: {e}");
        }
    }
    delete_host_side(&host, ns, name, opts.force, console).await
}

fn hint(e: Error) -> Error {
    if e.is_unreachable() {
        Error::Hinted {
            source: Box::new(e),
            hint: FORCE_HINT.into(),
        }
    } else {
        e
    }
}

struct Cleanup<'a> {
    member: &'a Cluster,
    host: &'a Cluster,
    ns: &'a str,
    name: &'a str,
    sa: &'a str,
    force: bool,
    console: &'a Console,
}

impl Cleanup<'_> {
    /// Deletes one object; a missing one is fine. Under `--force` failures are logged and skipped.
    async fn delete<K>(&self, api: Api<K>, what: &str, object: &str) -> Result<(), Error>
    where
        K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let (sa, cluster) = (self.sa, self.name);
        // Upstream's wording: objects "for service account X", the account itself by its qualified name.
        let subject = if what == "service account" {
            format!("{what} \"{}/{object}\"", self.ns)
        } else {
            format!("{what} \"{object}\" for service account \"{sa}\"")
        };
        v2!(
            self.console,
            "Deleting {subject} in unjoining cluster \"{cluster}\"."
        );
        match api.delete(object, &DeleteParams::default()).await {
            Ok(_) => {
                v2!(
                    self.console,
                    "Deleted {subject} in unjoining cluster \"{cluster}\"."
                );
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let mut subject = subject.clone();
                if let Some(first) = subject.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                v2!(
                    self.console,
                    "{subject} does not exist in unjoining cluster \"{cluster}\"."
                );
                Ok(())
            }
            Err(e) => {
                let e = self.member.error(format!("deleting {what} {object}"), e);
                if self.force && !e.is_unreachable() {
                    v2!(self.console, "{e}");
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn rbac(&self) -> Result<(), Error> {
        let client = &self.member.client;
        let role = role_name(self.sa);
        for name in [role.clone(), health_check_role_name(self.sa, self.ns)] {
            self.delete(
                Api::<ClusterRoleBinding>::all(client.clone()),
                "cluster role binding",
                &name,
            )
            .await?;
            self.delete(Api::<ClusterRole>::all(client.clone()), "cluster role", &name)
                .await?;
        }
        self.delete(
            Api::<RoleBinding>::namespaced(client.clone(), self.ns),
            "role binding",
            &role,
        )
        .await?;
        self.delete(
            Api::<RbacRole>::namespaced(client.clone(), self.ns),
            "role",
            &role,
        )
        .await?;
        // The token controller would delete the account's token Secrets once the account is gone; deleting them
        // here revokes the host's credentials without depending on it.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), self.ns);
        let tokens = secrets
            .list(&ListParams::default())
            .await
            .map_err(|e| self.member.error(format!("listing secrets in {}", self.ns), e))?;
        for secret in tokens.items.iter().filter(|s| {
            s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                && s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/service-account.name"))
                    .is_some_and(|n| n == self.sa)
        }) {
            if let Some(name) = &secret.metadata.name {
                self.delete(secrets.clone(), "service account token secret", name)
                    .await?;
            }
        }
        self.delete(
            Api::<ServiceAccount>::namespaced(client.clone(), self.ns),
            "service account",
            self.sa,
        )
        .await
    }

    /// Deletes the KubeFed namespace of the member, unless the member is the host itself.
    async fn namespace(&self) -> Result<(), Error> {
        let (ns, name) = (self.ns, self.name);
        let in_host = Api::<Namespace>::all(self.host.client.clone())
            .get_opt(ns)
            .await
            .map_err(|e| self.host.error(format!("retrieving namespace {ns}"), e))?;
        let members: Api<Namespace> = Api::all(self.member.client.clone());
        let in_member = members
            .get_opt(ns)
            .await
            .map_err(|e| self.member.error(format!("retrieving namespace {ns}"), e))?;
        let Some(in_member) = in_member else {
            v2!(
                self.console,
                "The kubefed namespace \"{ns}\" no longer exists in unjoining cluster \"{name}\"."
            );
            return Ok(());
        };
        let uid = |n: &Namespace| n.metadata.uid.clone();
        if in_host
            .as_ref()
            .and_then(uid)
            .is_some_and(|u| Some(u) == uid(&in_member))
        {
            v2!(
                self.console,
                "The kubefed namespace \"{ns}\" does not need to be deleted from the host cluster by unjoin."
            );
            return Ok(());
        }
        v2!(
            self.console,
            "Deleting kubefed namespace \"{ns}\" from unjoining cluster \"{name}\"."
        );
        match members.delete(ns, &DeleteParams::default()).await {
            Ok(_) => {
                v2!(
                    self.console,
                    "Deleted kubefed namespace \"{ns}\" from unjoining cluster \"{name}\"."
                );
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.member.error(format!("deleting kubefed namespace {ns}"), e)),
        }
    }
}

async fn delete_host_side(
    host: &Cluster,
    ns: &str,
    name: &str,
    force: bool,
    console: &Console,
) -> Result<(), Error> {
    v2!(
        console,
        "Deleting kubefed cluster resource from namespace \"{ns}\" for unjoin cluster \"{name}\""
    );
    let clusters: Api<DynamicObject> = Api::namespaced_with(host.client.clone(), ns, &kubefed_clusters());
    let cluster = clusters
        .get_opt(name)
        .await
        .map_err(|e| host.error(format!("Failed to get kubefed cluster \"{ns}/{name}\""), e))?
        .ok_or_else(|| {
            Error::NotFound(format!(
                "Failed to get kubefed cluster \"{ns}/{name}\": it is not registered in the host cluster \
                 (context \"{}\")",
                host.context
            ))
        })?;
    if let Some(secret) = cluster.data["spec"]["secretRef"]["name"].as_str() {
        let secrets: Api<Secret> = Api::namespaced(host.client.clone(), ns);
        match secrets.delete(secret, &DeleteParams::default()).await {
            Ok(_) => v2!(
                console,
                "Deleted secret \"{ns}/{secret}\" for unjoin cluster \"{name}\""
            ),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                v2!(
                    console,
                    "Secret \"{ns}/{secret}\" does not exist in the host cluster."
                )
            }
            Err(e) => {
                let e = host.error(
                    format!("Failed to delete secret \"{ns}/{secret}\" for unjoin cluster \"{name}\""),
                    e,
                );
                if !force {
                    return Err(e);
                }
                v2!(console, "{e}");
            }
        }
    }
    match clusters.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            v2!(
                console,
                "Deleted kubefed cluster \"{ns}/{name}\" for unjoin cluster \"{name}\"."
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => {
            v2!(
                console,
                "KubeFed cluster \"{ns}/{name}\" does not exist in the host cluster."
            );
            Ok(())
        }
        Err(e) => Err(host.error(
            format!("Failed to delete kubefed cluster \"{ns}/{name}\" for unjoin cluster \"{name}\""),
            e,
        )),
    }
}
