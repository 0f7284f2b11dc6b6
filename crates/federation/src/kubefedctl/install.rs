//! `kubefedctl install`, bulwark's own verb (upstream installs KubeFed with its Helm chart): the federation control
//! plane of a host cluster in one command, with the objects and names of upstream's chart:
//! - the KubeFed CRDs, the namespace and the FederatedTypeConfigs of the default types ([`crate::controller::install`]);
//! - the KubeFedConfig `kubefed` (scope `Cluster`, the cluster health check settings);
//! - ServiceAccount `kubefed-controller`, ClusterRole `kubefed-role` and ClusterRoleBinding `kubefed-rolebinding`;
//! - Deployment `kubefed-controller-manager`: `replicas` pods running `kubefed-controller-manager` (bulwark's
//!   personality, found on the node's PATH by the process runtime), leader-elected on a Lease, reaching the host's
//!   API with the pods' service-account tokens.
//!
//! Running it again updates these objects (as `helm upgrade` would): the Deployment's pods restart when its spec
//! changed.

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, Kubeconfig, Role};
use super::console::{Console, v2};
use super::{DEFAULT_NAMESPACE, KUBEFED_CONFIG_NAME, kubefed_resource, yaml_document};
use crate::Error;

/// The chart's names.
pub const SERVICE_ACCOUNT: &str = "kubefed-controller";
pub const CLUSTER_ROLE: &str = "kubefed-role";
pub const CLUSTER_ROLE_BINDING: &str = "kubefed-rolebinding";
pub const DEPLOYMENT: &str = "kubefed-controller-manager";
/// The label the chart selects the controller-manager's pods by.
pub const POD_LABEL: (&str, &str) = ("kubefed-control-plane", "controller-manager");

/// What `kubefedctl install` installs.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub host_cluster_context: Option<String>,
    pub kubefed_namespace: String,
    pub replicas: i32,
    /// The program the pods run (a name on the node's PATH).
    pub command: String,
    /// The image the Deployment names (the process runtime runs `command` whatever it says).
    pub image: String,
    /// KubeFedConfig `spec.clusterHealthCheck`: Go durations and counts, upstream's defaults.
    pub health_period: String,
    pub health_timeout: String,
    pub health_failure_threshold: u32,
    pub health_success_threshold: u32,
    /// Print the objects instead of creating them.
    pub output_yaml: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            host_cluster_context: None,
            kubefed_namespace: DEFAULT_NAMESPACE.into(),
            replicas: 2,
            command: "kubefed-controller-manager".into(),
            image: "quay.io/kubernetes-multicluster/kubefed:v0.7.0".into(),
            health_period: "10s".into(),
            health_timeout: "3s".into(),
            health_failure_threshold: 3,
            health_success_threshold: 1,
            output_yaml: false,
        }
    }
}

/// The control plane's objects besides the CRDs and type configs, in creation order.
pub fn manifests(opts: &InstallOptions) -> Vec<Value> {
    let ns = opts.kubefed_namespace.as_str();
    let (label, value) = POD_LABEL;
    vec![
        json!({"apiVersion": "core.kubefed.io/v1beta1", "kind": "KubeFedConfig",
        "metadata": {"name": KUBEFED_CONFIG_NAME, "namespace": ns},
        "spec": {
            "scope": "Cluster",
            "controllerDuration": {"availableDelay": "20s", "unavailableDelay": "60s"},
            "leaderElect": {"leaseDuration": "15s", "renewDeadline": "10s", "retryPeriod": "5s",
                            "resourceLock": "leases"},
            "clusterHealthCheck": {"period": opts.health_period, "timeout": opts.health_timeout,
                "failureThreshold": opts.health_failure_threshold,
                "successThreshold": opts.health_success_threshold},
            "syncController": {"adoptResources": "Enabled"},
        }}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns}}),
        // The chart's rules: everything federated, the KubeFed API, and what propagation writes into the host.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE},
        "rules": [
            {"apiGroups": ["scheduling.kubefed.io", "core.kubefed.io", "types.kubefed.io",
                           "multiclusterdns.kubefed.io"],
             "resources": ["*"], "verbs": ["*"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
             "verbs": ["get", "list", "watch", "create", "update", "patch"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create"]},
            {"apiGroups": [""], "resources": ["secrets", "events", "configmaps"], "verbs": ["*"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": CLUSTER_ROLE_BINDING},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": ns, "labels": {label: value}},
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {label: value}},
            "template": {
                "metadata": {"labels": {label: value}},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "containers": [{
                        "name": "controller-manager",
                        "image": opts.image,
                        "command": [opts.command, format!("--kubefed-namespace={ns}")],
                    }],
                },
            },
        }}),
    ]
}

fn resource(v: &Value) -> (kube::core::ApiResource, bool) {
    let kind = v["kind"].as_str().unwrap_or_default();
    let (group, version) = match v["apiVersion"].as_str().unwrap_or_default().split_once('/') {
        Some((g, ver)) => (g.to_string(), ver.to_string()),
        None => (
            String::new(),
            v["apiVersion"].as_str().unwrap_or_default().to_string(),
        ),
    };
    let (plural, namespaced) = match kind {
        "KubeFedConfig" => return (kubefed_resource("KubeFedConfig", "kubefedconfigs"), true),
        "ServiceAccount" => ("serviceaccounts", true),
        "ClusterRole" => ("clusterroles", false),
        "ClusterRoleBinding" => ("clusterrolebindings", false),
        _ => ("deployments", true),
    };
    (
        kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(&group, &version, kind),
            plural,
        ),
        namespaced,
    )
}

/// Creates `obj`, or replaces what is there with it (keeping what the server owns: resourceVersion, status).
async fn create_or_update(host: &Cluster, obj: &Value, console: &Console) -> Result<(), Error> {
    let (ar, namespaced) = resource(obj);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(
            host.client.clone(),
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            &ar,
        )
    } else {
        Api::all_with(host.client.clone(), &ar)
    };
    let what = format!("{} \"{name}\"", ar.kind);
    let decode = |v: Value| {
        serde_json::from_value::<DynamicObject>(v).map_err(|e| Error::Encode {
            what: what.clone(),
            message: e.to_string(),
        })
    };
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| host.error(format!("Error retrieving {what}"), e))?;
    match existing {
        None => {
            api.create(&PostParams::default(), &decode(obj.clone())?)
                .await
                .map_err(|e| host.error(format!("Error creating {what}"), e))?;
            v2!(console, "Created {what}");
        }
        Some(current) => {
            let mut wanted = obj.clone();
            wanted["metadata"]["resourceVersion"] = json!(current.metadata.resource_version);
            api.replace(name, &PostParams::default(), &decode(wanted)?)
                .await
                .map_err(|e| host.error(format!("Error updating {what}"), e))?;
            v2!(console, "Updated {what}");
        }
    }
    Ok(())
}

/// Installs (or updates) the KubeFed control plane in the host cluster.
pub async fn install(kubeconfig: &Kubeconfig, opts: &InstallOptions, console: &Console) -> Result<(), Error> {
    if opts.output_yaml {
        let ns = opts.kubefed_namespace.as_str();
        let mut text = yaml_document(
            "Namespace",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        for crd in crate::crds::all()? {
            text.push_str(&yaml_document("CustomResourceDefinition", &crd)?);
        }
        for t in crate::crds::DEFAULT_TYPES {
            text.push_str(&yaml_document(
                "FederatedTypeConfig",
                &crate::crds::type_config(&t, ns),
            )?);
        }
        for obj in manifests(opts) {
            text.push_str(&yaml_document("object", &obj)?);
        }
        return console.write(&text);
    }
    let context = kubeconfig.context_or_current(opts.host_cluster_context.as_deref())?;
    let host = kubeconfig.connect(&context, Role::Host).await?;
    crate::controller::install(&host.client, &opts.kubefed_namespace).await?;
    v2!(
        console,
        "Installed the KubeFed CRDs and namespace \"{}\"",
        opts.kubefed_namespace
    );
    // The KubeFedConfig CRD was just created: its resource may take a moment to be served.
    let objects = manifests(opts);
    for obj in &objects {
        let mut tries = 0;
        loop {
            match create_or_update(&host, obj, console).await {
                Err(e) if e.is_not_found() && tries < 40 => {
                    tries += 1;
                    tokio::time::sleep(super::POLL).await;
                }
                other => break other?,
            }
        }
    }
    console.write(&format!(
        "KubeFed control plane installed in namespace \"{}\": Deployment {DEPLOYMENT} with {} replicas\n",
        opts.kubefed_namespace, opts.replicas
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_control_plane_is_a_leader_elected_deployment_running_the_personality_as_its_service_account() {
        let opts = InstallOptions {
            health_period: "2s".into(),
            ..InstallOptions::default()
        };
        let objs = manifests(&opts);
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "KubeFedConfig",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Deployment"
            ]
        );
        let deploy = &objs[4];
        assert_eq!(deploy["metadata"]["namespace"], "kube-federation-system");
        assert_eq!(deploy["spec"]["replicas"], 2);
        let pod = &deploy["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT);
        assert_eq!(
            pod["containers"][0]["command"],
            json!([
                "kubefed-controller-manager",
                "--kubefed-namespace=kube-federation-system"
            ])
        );
        assert_eq!(objs[3]["subjects"][0]["name"], SERVICE_ACCOUNT);
        assert_eq!(objs[0]["spec"]["clusterHealthCheck"]["period"], "2s");
        let (ar, namespaced) = resource(&objs[4]);
        assert_eq!(
            (ar.plural.as_str(), ar.group.as_str(), namespaced),
            ("deployments", "apps", true)
        );
        let (ar, namespaced) = resource(&objs[2]);
        assert_eq!((ar.plural.as_str(), namespaced), ("clusterroles", false));
    }
}
