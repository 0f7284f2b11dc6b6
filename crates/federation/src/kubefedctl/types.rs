//! Finding API types by what a user types (upstream's `LookupAPIResource` over the server's preferred versions),
//! and `kubefedctl enable` / `disable`, which install and remove a type's `Federated<Kind>` CRD and its
//! FederatedTypeConfig.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use super::cluster::{Cluster, Kubeconfig, Role};
use super::console::{Console, v2};
use super::{DEFAULT_NAMESPACE, POLL, ensure_kubefed_api, qualified, type_configs, yaml_document};
use crate::Error;
use crate::crds::{self, CORE_GROUP, TYPES_GROUP, TargetType, VERSION};

/// A resource the server serves, as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl ApiType {
    /// `deployments.apps`, or `configmaps` for the core group: the FederatedTypeConfig's name.
    pub fn group_qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `deployments.apps/v1`, `configmaps.core/v1`: how upstream logs a type it found.
    pub fn resource_key(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("{}.{group}/{}", self.plural, self.version)
    }

    /// Upstream's `NameMatchesResource`: plural, singular, kind, group-qualified plural or a short name.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name == self.plural
            || (!self.singular.is_empty() && name == self.singular)
            || name == self.kind.to_ascii_lowercase()
            || name == format!("{}.{}", self.plural, self.group)
            || self.short_names.iter().any(|s| s.to_ascii_lowercase() == name)
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.plural,
        )
    }

    fn default_type(&self) -> Option<TargetType> {
        crds::DEFAULT_TYPES
            .iter()
            .copied()
            .find(|t| t.group == self.group && t.version == self.version && t.kind == self.kind)
    }

    fn federated_kind(&self) -> String {
        format!("Federated{}", self.kind)
    }

    fn federated_plural(&self) -> String {
        format!("federated{}", self.plural)
    }

    /// Federated namespaces live in the namespace they federate; other types keep their scope.
    fn federated_namespaced(&self) -> bool {
        self.namespaced || self.group_qualified_name() == "namespaces"
    }

    /// The `Federated<Kind>` CRD: [`crds::federated_crd`] for the default types, the same shape for others.
    pub fn federated_crd(&self) -> Value {
        if let Some(t) = self.default_type() {
            return crds::federated_crd(&t);
        }
        let (kind, plural) = (self.federated_kind(), self.federated_plural());
        let mut crd = crds::federated_crd(&crds::DEFAULT_TYPES[0]);
        crd["metadata"]["name"] = json!(format!("{plural}.{TYPES_GROUP}"));
        crd["spec"]["scope"] = json!(if self.federated_namespaced() {
            "Namespaced"
        } else {
            "Cluster"
        });
        crd["spec"]["names"] = json!({"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
            "singular": kind.to_ascii_lowercase()});
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"]
            ["description"] = json!(format!("The {} every selected member cluster gets.", self.kind));
        crd
    }

    /// The FederatedTypeConfig: [`crds::type_config`] for the default types, the same shape for others.
    pub fn type_config(&self, namespace: &str) -> Value {
        if let Some(t) = self.default_type() {
            return crds::type_config(&t, namespace);
        }
        let scope = |namespaced: bool| if namespaced { "Namespaced" } else { "Cluster" };
        json!({
            "apiVersion": format!("{CORE_GROUP}/{VERSION}"),
            "kind": "FederatedTypeConfig",
            "metadata": {"name": self.group_qualified_name(), "namespace": namespace},
            "spec": {
                "federatedType": {"group": TYPES_GROUP, "version": VERSION, "kind": self.federated_kind(),
                                  "pluralName": self.federated_plural(),
                                  "scope": scope(self.federated_namespaced())},
                "targetType": {"group": self.group, "version": self.version, "kind": self.kind,
                               "pluralName": self.plural, "scope": scope(self.namespaced)},
                "propagation": "Enabled"
            }
        })
    }

    fn from_discovery(group: &str, version: &str, list: APIResourceList) -> Vec<ApiType> {
        list.resources
            .into_iter()
            .filter(|r| !r.name.contains('/'))
            .map(|r| ApiType {
                group: group.to_string(),
                version: version.to_string(),
                kind: r.kind,
                plural: r.name,
                singular: r.singular_name,
                short_names: r.short_names.unwrap_or_default(),
                namespaced: r.namespaced,
            })
            .collect()
    }
}

/// Every resource of the server at its group's preferred version, core first, as `ServerPreferredResources`.
pub async fn preferred_types(cluster: &Cluster) -> Result<Vec<ApiType>, Error> {
    let client = &cluster.client;
    let mut out = Vec::new();
    let core = client
        .list_core_api_versions()
        .await
        .map_err(|e| cluster.error("discovering the core API", e))?;
    if let Some(version) = core.versions.first() {
        let list = client
            .list_core_api_resources(version)
            .await
            .map_err(|e| cluster.error(format!("discovering the core API {version}"), e))?;
        out.extend(ApiType::from_discovery("", version, list));
    }
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| cluster.error("discovering API groups", e))?;
    for group in groups.groups {
        let Some(preferred) = group
            .preferred_version
            .or_else(|| group.versions.first().cloned())
        else {
            continue;
        };
        match client.list_api_group_resources(&preferred.group_version).await {
            Ok(list) => out.extend(ApiType::from_discovery(&group.name, &preferred.version, list)),
            // A group that vanished (a CRD deleted meanwhile) is not an error for the others.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 503 => {}
            Err(e) => {
                return Err(cluster.error(format!("discovering {}", preferred.group_version), e));
            }
        }
    }
    Ok(out)
}

/// Upstream's `LookupAPIResource`: the core group wins at once; elsewhere a name must be unambiguous.
pub fn lookup(types: &[ApiType], key: &str) -> Result<ApiType, Error> {
    let mut found: Option<&ApiType> = None;
    let mut matched = Vec::new();
    for t in types.iter().filter(|t| t.matches(key)) {
        if found.is_none() {
            if t.group.is_empty() {
                return Ok(t.clone());
            }
            found = Some(t);
        }
        matched.push(t.group_qualified_name());
    }
    if matched.len() > 1 {
        return Err(Error::Conflict(format!(
            "Multiple resources are matched by \"{key}\": {}. A group-qualified plural name must be provided.",
            matched.join(", ")
        )));
    }
    found
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("Unable to find api resource named \"{key}\".")))
}

pub(crate) async fn find_type(cluster: &Cluster, key: &str) -> Result<ApiType, Error> {
    lookup(&preferred_types(cluster).await?, key)
}

/// `kubefedctl enable` flags.
#[derive(Debug, Clone)]
pub struct EnableOptions {
    pub type_name: String,
    pub host_cluster_context: Option<String>,
    pub kubefed_namespace: String,
    /// `-o yaml`: print the FederatedTypeConfig and CRD instead of creating them.
    pub output_yaml: bool,
}

impl EnableOptions {
    pub fn new(type_name: &str) -> Self {
        Self {
            type_name: type_name.to_string(),
            host_cluster_context: None,
            kubefed_namespace: DEFAULT_NAMESPACE.to_string(),
            output_yaml: false,
        }
    }
}

/// Enables propagation of a type: its `Federated<Kind>` CRD and FederatedTypeConfig, created or updated.
#[tracing::instrument(name = "enable", skip_all, fields(type_name = %opts.type_name))]
pub async fn enable(kubeconfig: &Kubeconfig, opts: &EnableOptions, console: &Console) -> Result<(), Error> {
    let context = kubeconfig.context_or_current(opts.host_cluster_context.as_deref())?;
    let host = kubeconfig.connect(&context, Role::Host).await?;
    let t = find_type(&host, &opts.type_name).await?;
    v2!(console, "Found type \"{}\"", t.resource_key());
    if opts.output_yaml {
        let mut text = yaml_document("FederatedTypeConfig", &t.type_config(&opts.kubefed_namespace))?;
        text.push_str(&yaml_document("CustomResourceDefinition", &t.federated_crd())?);
        return console.write(&text);
    }
    enable_type(&host, &t, &opts.kubefed_namespace, console).await
}

fn encode<T: k8s_openapi::serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|e| Error::Encode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

pub(crate) async fn enable_type(
    host: &Cluster,
    t: &ApiType,
    ns: &str,
    console: &Console,
) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(host.client.clone());
    let exists = namespaces.get_opt(ns).await.map_err(|e| {
        host.error(
            format!("Error attempting to determine whether KubeFed system namespace \"{ns}\" exists"),
            e,
        )
    })?;
    if exists.is_none() {
        return Err(Error::NotFound(format!(
            "KubeFed system namespace \"{ns}\" does not exist"
        )));
    }
    ensure_kubefed_api(host, &["federatedtypeconfigs"]).await?;
    let config = t.type_config(ns);
    let config_name = t.group_qualified_name();
    let configs: Api<DynamicObject> = Api::namespaced_with(host.client.clone(), ns, &type_configs());
    let existing = configs.get_opt(&config_name).await.map_err(|e| {
        host.error(
            format!("Error retrieving FederatedTypeConfig \"{config_name}\""),
            e,
        )
    })?;
    if let Some(existing) = &existing {
        let (old, new) = (
            &existing.data["spec"]["federatedType"],
            &config["spec"]["federatedType"],
        );
        let name = |f: &Value| {
            format!(
                "{}.{}/{}",
                f["pluralName"].as_str().unwrap_or_default(),
                f["group"].as_str().unwrap_or_default(),
                f["version"].as_str().unwrap_or_default()
            )
        };
        if name(old) != name(new) {
            return Err(Error::Conflict(format!(
                "Federation is already enabled for \"{}\" with federated type \"{}\". Changing the federated type \
                 to \"{}\" is not supported.",
                t.resource_key(),
                name(old),
                name(new)
            )));
        }
    }

    let crd: CustomResourceDefinition = encode("CustomResourceDefinition", t.federated_crd())?;
    let crd_name = crd.metadata.name.clone().unwrap_or_default();
    let crds: Api<CustomResourceDefinition> = Api::all(host.client.clone());
    let current = crds
        .get_opt(&crd_name)
        .await
        .map_err(|e| host.error(format!("Error getting CRD \"{crd_name}\""), e))?;
    match current {
        None => {
            crds.create(&PostParams::default(), &crd)
                .await
                .map_err(|e| host.error(format!("Error creating CRD \"{crd_name}\""), e))?;
            console.print(format_args!(
                "customresourcedefinition.apiextensions.k8s.io/{crd_name} created"
            ))?;
        }
        Some(mut current) => {
            current.spec = crd.spec;
            crds.replace(&crd_name, &PostParams::default(), &current)
                .await
                .map_err(|e| host.error(format!("Error updating CRD \"{crd_name}\""), e))?;
            console.print(format_args!(
                "customresourcedefinition.apiextensions.k8s.io/{crd_name} updated"
            ))?;
        }
    }

    let verb = match existing {
        None => {
            let object: DynamicObject = encode("FederatedTypeConfig", config)?;
            configs
                .create(&PostParams::default(), &object)
                .await
                .map_err(|e| {
                    host.error(format!("Error creating FederatedTypeConfig \"{config_name}\""), e)
                })?;
            "created"
        }
        Some(mut existing) => {
            existing.data["spec"] = config["spec"].clone();
            configs
                .replace(&config_name, &PostParams::default(), &existing)
                .await
                .map_err(|e| {
                    host.error(format!("Error updating FederatedTypeConfig \"{config_name}\""), e)
                })?;
            "updated"
        }
    };
    console.print(format_args!(
        "federatedtypeconfig.core.kubefed.io/{config_name} {verb} in namespace {ns}"
    ))
}

/// `kubefedctl disable` flags.
#[derive(Debug, Clone)]
pub struct DisableOptions {
    pub type_name: String,
    pub host_cluster_context: Option<String>,
    pub kubefed_namespace: String,
    /// `--delete-crd`: also delete the `Federated<Kind>` CRD (refused while federated objects of it exist).
    pub delete_crd: bool,
    /// How long to wait for a running propagation controller to report it stopped.
    pub stop_timeout: Duration,
}

impl DisableOptions {
    pub fn new(type_name: &str) -> Self {
        Self {
            type_name: type_name.to_string(),
            host_cluster_context: None,
            kubefed_namespace: DEFAULT_NAMESPACE.to_string(),
            delete_crd: false,
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// The federated type a FederatedTypeConfig names, as a resource to list.
fn federated_resource(config_spec: &Value) -> (ApiResource, String) {
    let f = &config_spec["federatedType"];
    let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&text("group"), &text("version"), &text("kind")),
        &text("pluralName"),
    );
    let crd = format!("{}.{}", text("pluralName"), text("group"));
    (resource, crd)
}

/// Disables propagation of a type and deletes its FederatedTypeConfig, as upstream; with `delete_crd` its CRD too.
#[tracing::instrument(name = "disable", skip_all, fields(type_name = %opts.type_name))]
pub async fn disable(kubeconfig: &Kubeconfig, opts: &DisableOptions, console: &Console) -> Result<(), Error> {
    let context = kubeconfig.context_or_current(opts.host_cluster_context.as_deref())?;
    let host = kubeconfig.connect(&context, Role::Host).await?;
    let ns = opts.kubefed_namespace.as_str();
    let mut found = None;
    let name = if opts.type_name.contains('.') {
        opts.type_name.clone()
    } else {
        let t = find_type(&host, &opts.type_name).await?;
        let name = t.group_qualified_name();
        found = Some(t);
        name
    };
    let q = qualified(Some(ns), &name);
    let configs: Api<DynamicObject> = Api::namespaced_with(host.client.clone(), ns, &type_configs());
    let config = match configs.get_opt(&name).await {
        Ok(c) => c,
        // Without the FederatedTypeConfig CRD there is no FederatedTypeConfig either.
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(host.error(format!("Error retrieving FederatedTypeConfig \"{q}\""), e)),
    };
    if config.is_none() {
        console.print(format_args!("FederatedTypeConfig \"{q}\" does not exist"))?;
    }
    if let Some(mut config) = config.clone() {
        if opts.delete_crd {
            refuse_if_instances(&host, &config.data["spec"]).await?;
        }
        if config.data["spec"]["propagation"] == "Enabled" {
            config.data["spec"]["propagation"] = json!("Disabled");
            configs
                .replace(&name, &PostParams::default(), &config)
                .await
                .map_err(|e| {
                    host.error(
                        format!("Error disabling propagation for FederatedTypeConfig \"{q}\""),
                        e,
                    )
                })?;
            console.print(format_args!(
                "Disabled propagation for FederatedTypeConfig \"{q}\""
            ))?;
        }
        console.print(format_args!(
            "Verifying propagation controller is stopped for FederatedTypeConfig \"{q}\""
        ))?;
        wait_stopped(&host, &configs, &name, &q, opts.stop_timeout, console).await?;
        console.print(format_args!(
            "Propagation controller for FederatedTypeConfig \"{q}\" is stopped"
        ))?;
    }
    if opts.delete_crd {
        let spec = match &config {
            Some(c) => c.data["spec"].clone(),
            None => {
                let t = match found {
                    Some(t) => t,
                    None => find_type(&host, &opts.type_name).await?,
                };
                t.type_config(ns)["spec"].clone()
            }
        };
        refuse_if_instances(&host, &spec).await?;
        let (_, crd) = federated_resource(&spec);
        let crds: Api<CustomResourceDefinition> = Api::all(host.client.clone());
        match crds.delete(&crd, &DeleteParams::default()).await {
            Ok(_) => console.print(format_args!("customresourcedefinition \"{crd}\" deleted"))?,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                console.print(format_args!("customresourcedefinition \"{crd}\" does not exist"))?
            }
            Err(e) => return Err(host.error(format!("Error deleting crd \"{crd}\""), e)),
        }
    }
    if config.is_some() {
        match configs.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(host.error(format!("Error deleting FederatedTypeConfig \"{q}\""), e)),
        }
        console.print(format_args!("federatedtypeconfig \"{q}\" deleted"))?;
    }
    Ok(())
}

async fn refuse_if_instances(host: &Cluster, config_spec: &Value) -> Result<(), Error> {
    let (resource, crd) = federated_resource(config_spec);
    let api: Api<DynamicObject> = Api::all_with(host.client.clone(), &resource);
    let exist = match api.list(&ListParams::default().limit(1)).await {
        Ok(list) => !list.items.is_empty(),
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(e) => return Err(host.error(format!("listing {crd}"), e)),
    };
    if exist {
        return Err(Error::Conflict(format!(
            "Cannot delete CRD \"{crd}\" while resource instances exist. Please try kubefedctl disable again after \
             removing the resource instances or without the '--delete-crd' option"
        )));
    }
    Ok(())
}

/// Waits for `status.propagationController` to say `NotRunning`. A FederatedTypeConfig no controller has ever
/// reported on has nothing running to wait for.
async fn wait_stopped(
    host: &Cluster,
    configs: &Api<DynamicObject>,
    name: &str,
    q: &str,
    timeout: Duration,
    console: &Console,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let current = configs
            .get_opt(name)
            .await
            .map_err(|e| host.error(format!("Error retrieving FederatedTypeConfig \"{q}\""), e))?;
        let status = current.as_ref().and_then(|c| {
            c.data["status"]["propagationController"]
                .as_str()
                .map(str::to_string)
        });
        match status.as_deref() {
            None => {
                v2!(
                    console,
                    "No propagation controller has reported on FederatedTypeConfig \"{q}\""
                );
                return Ok(());
            }
            Some("NotRunning") => return Ok(()),
            Some(_) if Instant::now() > deadline => {
                return Err(Error::Timeout {
                    what: format!(
                        "Unable to verify propagation controller for FederatedTypeConfig \"{q}\" is stopped"
                    ),
                    waited: timeout,
                    hint: "its status.propagationController still says it runs".into(),
                });
            }
            Some(_) => tokio::time::sleep(POLL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(group: &str, kind: &str, plural: &str, short: &[&str], namespaced: bool) -> ApiType {
        ApiType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            namespaced,
        }
    }

    fn server() -> Vec<ApiType> {
        vec![
            t("", "ConfigMap", "configmaps", &["cm"], true),
            t("", "Namespace", "namespaces", &["ns"], false),
            t("", "Event", "events", &["ev"], true),
            t("apps", "Deployment", "deployments", &["deploy"], true),
            t("events.k8s.io", "Event", "events", &["ev"], true),
            t("example.com", "Widget", "widgets", &[], true),
            t("other.example.com", "Widget", "widgets", &[], true),
            t(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "clusterroles",
                &[],
                false,
            ),
        ]
    }

    #[test]
    fn types_are_found_by_plural_kind_short_or_qualified_name() {
        let types = server();
        for key in [
            "deployments.apps",
            "deployments",
            "Deployment",
            "deploy",
            "deployment",
        ] {
            assert_eq!(lookup(&types, key).unwrap().kind, "Deployment", "{key}");
        }
        assert_eq!(lookup(&types, "cm").unwrap().plural, "configmaps");
        // The core group wins outright, as upstream.
        assert_eq!(lookup(&types, "events").unwrap().group, "");
        let err = lookup(&types, "widgets").unwrap_err().to_string();
        assert!(
            err.contains("widgets.example.com, widgets.other.example.com"),
            "{err}"
        );
        assert_eq!(
            lookup(&types, "widgets.example.com").unwrap().group,
            "example.com"
        );
        assert_eq!(
            lookup(&types, "gadgets").unwrap_err().to_string(),
            "Unable to find api resource named \"gadgets\"."
        );
    }

    #[test]
    fn default_types_use_the_built_in_manifests_and_others_the_same_shape() {
        for d in crds::DEFAULT_TYPES {
            let a = t(d.group, d.kind, d.plural, &[], d.namespaced);
            assert_eq!(a.federated_crd(), crds::federated_crd(&d));
            assert_eq!(a.type_config("kf"), crds::type_config(&d, "kf"));
            // The generic path builds exactly what the built-in manifests hold.
            let mut generic = a.clone();
            generic.version = "v1".into();
            generic.kind = format!("{}X", d.kind);
            let crd = generic.federated_crd();
            let expected = crds::federated_crd(&d);
            assert_eq!(
                crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["placement"],
                expected["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
                    ["placement"]
            );
            assert_eq!(crd["spec"]["names"]["kind"], format!("Federated{}X", d.kind));
            let ftc = generic.type_config("kf");
            let mut want = crds::type_config(&d, "kf");
            want["spec"]["targetType"]["kind"] = json!(format!("{}X", d.kind));
            want["spec"]["federatedType"]["kind"] = json!(format!("Federated{}X", d.kind));
            assert_eq!(ftc, want);
        }
        let role = t(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "clusterroles",
            &[],
            false,
        );
        assert_eq!(role.federated_crd()["spec"]["scope"], "Cluster");
        assert_eq!(
            role.federated_crd()["metadata"]["name"],
            "federatedclusterroles.types.kubefed.io"
        );
        assert_eq!(
            role.type_config("kf")["metadata"]["name"],
            "clusterroles.rbac.authorization.k8s.io"
        );
        assert_eq!(role.resource_key(), "clusterroles.rbac.authorization.k8s.io/v1");
        assert!(api::crd::validate_definition(&role.federated_crd()).is_empty());
    }
}
