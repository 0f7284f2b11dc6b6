//! `kubefedctl federate`: a `Federated<Kind>` made from an object of the host cluster.

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Map, Value, json};

use super::cluster::{Kubeconfig, Role};
use super::console::{Console, info, v2, warning};
use super::types::{enable_type, find_type};
use super::{DEFAULT_NAMESPACE, POLL, qualified, type_configs, yaml_document};
use crate::Error;

/// `kubefedctl federate` flags.
#[derive(Debug, Clone)]
pub struct FederateOptions {
    pub type_name: String,
    pub resource_name: String,
    /// `-n`; the host context's namespace, else `default`, when absent.
    pub namespace: Option<String>,
    pub host_cluster_context: Option<String>,
    pub kubefed_namespace: String,
    /// `--enable-type`: enable the type first if it has no FederatedTypeConfig.
    pub enable_type: bool,
    /// `-o yaml`: print the federated object instead of creating it.
    pub output_yaml: bool,
}

impl FederateOptions {
    pub fn new(type_name: &str, resource_name: &str) -> Self {
        Self {
            type_name: type_name.to_string(),
            resource_name: resource_name.to_string(),
            namespace: None,
            host_cluster_context: None,
            kubefed_namespace: DEFAULT_NAMESPACE.to_string(),
            enable_type: false,
            output_yaml: false,
        }
    }
}

/// How long a just-created federated CRD may take to be served (upstream retries 10 s).
const CREATE_RETRY: Duration = Duration::from_secs(10);

/// Upstream's `FederatedResourceFromTargetResource`: the object minus what a member must choose itself, its labels
/// kept under `template.metadata`, placed on every cluster (`clusterSelector.matchLabels: {}`). Also returns the
/// object's annotations, which the template drops.
pub fn federated_object(
    type_config_spec: &Value,
    target: &Value,
) -> Result<(Value, Map<String, Value>), Error> {
    let fed = &type_config_spec["federatedType"];
    let target_kind = type_config_spec["targetType"]["kind"]
        .as_str()
        .unwrap_or_default();
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut template = target.clone();
    let Some(object) = template.as_object_mut() else {
        return Err(Error::Encode {
            what: format!("{target_kind} to federate"),
            message: "not a JSON object".into(),
        });
    };
    match target_kind {
        "Namespace" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
        "ServiceAccount" => {
            object.remove("secrets");
        }
        // Node ports and cluster IPs are allocated by each member.
        "Service" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                        port.remove("nodePort");
                    }
                }
            }
        }
        _ => {}
    }
    let metadata = object.remove("metadata").unwrap_or_else(|| json!({}));
    let name = text(&metadata, "name");
    let namespace = if target_kind == "Namespace" {
        name.clone()
    } else {
        text(&metadata, "namespace")
    };
    let annotations = metadata["annotations"].as_object().cloned().unwrap_or_default();
    for field in ["apiVersion", "kind", "status"] {
        object.remove(field);
    }
    if let Some(labels) = metadata["labels"].as_object().filter(|l| !l.is_empty()) {
        object.insert("metadata".into(), json!({"labels": labels}));
    }
    let group = text(fed, "group");
    let version = text(fed, "version");
    let api_version = if group.is_empty() {
        version
    } else {
        format!("{group}/{version}")
    };
    let mut meta = json!({"name": name});
    if fed["scope"] == "Namespaced" {
        meta["namespace"] = json!(namespace);
    }
    let federated = json!({
        "apiVersion": api_version,
        "kind": text(fed, "kind"),
        "metadata": meta,
        "spec": {
            "template": template,
            "placement": {"clusterSelector": {"matchLabels": {}}}
        }
    });
    Ok((federated, annotations))
}

fn resource_of(t: &Value) -> (ApiResource, bool) {
    let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&text("group"), &text("version"), &text("kind")),
        &text("pluralName"),
    );
    (resource, t["scope"] == "Namespaced")
}

/// Creates `Federated<Kind>` NAME from the host's object of that kind and name.
#[tracing::instrument(name = "federate", skip_all, fields(type_name = %opts.type_name, name = %opts.resource_name))]
pub async fn federate(
    kubeconfig: &Kubeconfig,
    opts: &FederateOptions,
    console: &Console,
) -> Result<(), Error> {
    let context = kubeconfig.context_or_current(opts.host_cluster_context.as_deref())?;
    let namespace = match opts.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => ns.to_string(),
        None => kubeconfig
            .context_info(&context)?
            .namespace
            .unwrap_or_else(|| "default".into()),
    };
    if opts.enable_type && opts.output_yaml {
        return Err(Error::Usage(
            "Flag '--enable-type' cannot be used with '--output [yaml]'".into(),
        ));
    }
    let host = kubeconfig.connect(&context, Role::Host).await?;
    let kf_ns = opts.kubefed_namespace.as_str();
    let t = find_type(&host, &opts.type_name).await.map_err(|e| match e {
        Error::NotFound(m) | Error::Conflict(m) => Error::NotFound(format!(
            "Failed to find target API resource {}: {m}",
            opts.type_name
        )),
        other => other,
    })?;
    v2!(console, "API Resource for {} found", opts.type_name);

    let config_name = t.group_qualified_name();
    let configs: Api<DynamicObject> = Api::namespaced_with(host.client.clone(), kf_ns, &type_configs());
    let installed = match configs.get_opt(&config_name).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => {
            return Err(host.error(
                format!("Error retrieving FederatedTypeConfig \"{config_name}\""),
                e,
            ));
        }
    };
    let spec = match &installed {
        Some(c) => c.data["spec"].clone(),
        None if opts.enable_type || opts.output_yaml => t.type_config(kf_ns)["spec"].clone(),
        None => {
            return Err(Error::NotFound(format!(
                "federatedtypeconfigs.core.kubefed.io \"{config_name}\" not found in namespace {kf_ns}. Consider \
                 using '--enable-type' to optionally enable type while federating the resource"
            )));
        }
    };

    let (target_resource, target_namespaced) = resource_of(&spec["targetType"]);
    let target_kind = target_resource.kind.clone();
    let target_ns = target_namespaced.then_some(namespace.as_str());
    let q = qualified(target_ns, &opts.resource_name);
    let targets: Api<DynamicObject> = match target_ns {
        Some(ns) => Api::namespaced_with(host.client.clone(), ns, &target_resource),
        None => Api::all_with(host.client.clone(), &target_resource),
    };
    let target = targets
        .get(&opts.resource_name)
        .await
        .map_err(|e| host.error(format!("Error retrieving target {target_kind} \"{q}\""), e))?;
    v2!(console, "Target {target_kind} \"{q}\" found");
    let target = serde_json::to_value(&target).map_err(|e| Error::Encode {
        what: format!("{target_kind} \"{q}\""),
        message: e.to_string(),
    })?;
    let (federated, annotations) = federated_object(&spec, &target)?;
    if !annotations.is_empty() {
        warning!(
            console,
            "Annotations defined for {target_kind} \"{q}\" will not appear in the template of the federated \
             resource: {}",
            Value::Object(annotations)
        );
    }
    if opts.output_yaml {
        return console.write(&yaml_document("federated resource", &federated)?);
    }
    if opts.enable_type && installed.is_none() {
        enable_type(&host, &t, kf_ns, console).await?;
    }
    if target_kind == "Namespace" {
        info!(
            console,
            "Resource to federate is a namespace. Given namespace will itself be the container for the federated namespace"
        );
    }

    let (fed_resource, fed_namespaced) = resource_of(&spec["federatedType"]);
    let fed_kind = fed_resource.kind.clone();
    let fed_ns = federated["metadata"]["namespace"].as_str().map(str::to_string);
    let fed_q = qualified(fed_ns.as_deref(), &opts.resource_name);
    let api: Api<DynamicObject> = match (&fed_ns, fed_namespaced) {
        (Some(ns), true) => Api::namespaced_with(host.client.clone(), ns, &fed_resource),
        _ => Api::all_with(host.client.clone(), &fed_resource),
    };
    let object: DynamicObject = serde_json::from_value(federated).map_err(|e| Error::Encode {
        what: fed_kind.clone(),
        message: e.to_string(),
    })?;
    let deadline = Instant::now() + CREATE_RETRY;
    loop {
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => break,
            // A CRD enabled a moment ago may not be served yet.
            Err(kube::Error::Api(s)) if s.code == 404 && Instant::now() < deadline => {
                tokio::time::sleep(POLL).await;
            }
            Err(e) => return Err(host.error(format!("Error creating federated resource \"{fed_q}\""), e)),
        }
    }
    info!(
        console,
        "Successfully created {fed_kind} \"{fed_q}\" from {target_kind}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::crds;

    fn spec(kind: &str) -> Value {
        crds::type_config(&crds::target_type(kind).unwrap(), "kube-federation-system")["spec"].clone()
    }

    #[test]
    fn the_template_is_the_object_without_identity_and_status_but_with_its_labels() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "demo", "uid": "u1", "resourceVersion": "7",
                         "labels": {"app": "web"}, "annotations": {"team": "a"}},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}}},
            "status": {"replicas": 3}
        });
        let (fed, annotations) = federated_object(&spec("Deployment"), &deployment).unwrap();
        assert_eq!(
            fed,
            json!({
                "apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedDeployment",
                "metadata": {"name": "web", "namespace": "demo"},
                "spec": {
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}}}}},
                    "placement": {"clusterSelector": {"matchLabels": {}}}
                }
            })
        );
        assert_eq!(annotations["team"], "a");
    }

    #[test]
    fn members_choose_service_addresses_and_namespaces_contain_themselves() {
        let service = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "demo"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "type": "NodePort",
                     "ports": [{"port": 80, "nodePort": 30080}]}
        });
        let (fed, _) = federated_object(&spec("Service"), &service).unwrap();
        assert_eq!(
            fed["spec"]["template"],
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}})
        );
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"},
                        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let (fed, _) = federated_object(&spec("Namespace"), &ns).unwrap();
        assert_eq!(fed["metadata"], json!({"name": "demo", "namespace": "demo"}));
        assert_eq!(fed["spec"]["template"], json!({"spec": {}}));
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "namespace": "d"},
                        "secrets": [{"name": "a-token-x"}]});
        let (fed, _) = federated_object(&spec("ServiceAccount"), &sa).unwrap();
        assert_eq!(fed["spec"]["template"], json!({}));
    }
}
