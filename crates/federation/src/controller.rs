//! The `kubefed-controller-manager`: cluster health, replica scheduling and propagation, run against the host
//! cluster's API, reaching members over their own HTTPS APIs with the credentials `kubefedctl join` stored.
//!
//! [`run`] installs the KubeFed API when it is missing (CRDs, namespace, FederatedTypeConfigs), then runs two
//! loops until shutdown:
//! - health ([`probe_clusters`]): every period, `GET /healthz` on each member (timeout), turned into the
//!   KubeFedCluster's `Ready`/`Offline` conditions after the failure/success thresholds, as upstream;
//! - sync ([`sync_pass`]): on any change of clusters, federated objects or preferences, and on a resync period,
//!   plans each ReplicaSchedulingPreference over the ready members ([`crate::planner`]), then makes every member
//!   hold what the federated objects of the enabled types select for it ([`crate::propagation`]), deleting managed
//!   objects that are no longer wanted, and writes per-cluster propagation status with each member's workload
//!   status.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Error;
use crate::crds::{
    self, CORE_GROUP, DEFAULT_TYPES, MANAGED_LABEL, SCHEDULING_GROUP, TYPES_GROUP, TargetType, VERSION,
};
use crate::propagation::{self, Member};

/// The finalizer that lets the sync controller remove a deleted federated object from the members first.
pub const FINALIZER: &str = "kubefed.io/sync-controller";
/// Upstream's annotation that leaves the members' objects in place when the federated object goes.
pub const ORPHAN_ANNOTATION: &str = "kubefed.io/orphan";

/// Settings of a controller-manager; [`Options::new`] gives upstream's defaults.
#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
    pub health_period: Duration,
    pub probe_timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// How often everything is reconciled even without a change (members can drift).
    pub resync: Duration,
}

impl Options {
    /// Upstream's KubeFedConfig defaults: health every 10 s, 3 s timeout, 3 failures to offline, 1 success back.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            health_period: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(3),
            failure_threshold: 3,
            success_threshold: 1,
            resync: Duration::from_secs(10),
        }
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn clusters_resource() -> ApiResource {
    resource(CORE_GROUP, VERSION, "KubeFedCluster", "kubefedclusters")
}

fn type_configs_resource() -> ApiResource {
    resource(CORE_GROUP, VERSION, "FederatedTypeConfig", "federatedtypeconfigs")
}

fn preferences_resource() -> ApiResource {
    resource(
        SCHEDULING_GROUP,
        "v1alpha1",
        "ReplicaSchedulingPreference",
        "replicaschedulingpreferences",
    )
}

fn federated_resource(t: &TargetType) -> ApiResource {
    resource(TYPES_GROUP, VERSION, &t.federated_kind(), &t.federated_plural())
}

fn target_resource(t: &TargetType) -> ApiResource {
    resource(t.group, t.version, t.kind, t.plural)
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Request {
        what,
        source: Box::new(source),
    }
}

fn to_value(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or(Value::Null)
}

fn from_value(v: Value) -> Result<DynamicObject, Error> {
    serde_json::from_value(v).map_err(|e| Error::Manifest {
        file: "object",
        message: e.to_string(),
    })
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Creates the KubeFed CRDs, the namespace and the FederatedTypeConfigs of the default types where missing.
pub async fn install(host: &kube::Client, namespace: &str) -> Result<(), Error> {
    let crd_api: Api<DynamicObject> = Api::all_with(
        host.clone(),
        &resource(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
    );
    for crd in crds::all()? {
        match crd_api
            .create(&PostParams::default(), &from_value(crd.clone())?)
            .await
        {
            Ok(_) => tracing::info!(crd = crd["metadata"]["name"].as_str().unwrap_or(""), "installed"),
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(api_err("creating the KubeFed CRDs")(e)),
        }
    }
    let ns_api: Api<DynamicObject> =
        Api::all_with(host.clone(), &resource("", "v1", "Namespace", "namespaces"));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    match ns_api.create(&PostParams::default(), &from_value(ns)?).await {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(api_err(format!("creating namespace {namespace}"))(e)),
    }
    let ftc_api: Api<DynamicObject> = Api::namespaced_with(host.clone(), namespace, &type_configs_resource());
    for t in DEFAULT_TYPES {
        match ftc_api
            .create(
                &PostParams::default(),
                &from_value(crds::type_config(&t, namespace))?,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict(&e) => {}
            Err(e) => {
                return Err(api_err(format!(
                    "creating FederatedTypeConfig {}",
                    t.config_name()
                ))(e));
            }
        }
    }
    Ok(())
}

/// A client for a member cluster from its KubeFedCluster and the token Secret `kubefedctl join` stored.
pub async fn member_client(
    host: &kube::Client,
    namespace: &str,
    cluster: &Value,
) -> Result<kube::Client, Error> {
    let name = cluster["metadata"]["name"].as_str().unwrap_or("");
    let endpoint = cluster["spec"]["apiEndpoint"].as_str().unwrap_or("");
    let server = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let secret_name = cluster["spec"]["secretRef"]["name"].as_str().unwrap_or("");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(host.clone(), namespace);
    let secret = secrets.get(secret_name).await.map_err(api_err(format!(
        "reading Secret {namespace}/{secret_name} of cluster {name}"
    )))?;
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get("token"))
        .map(|t| String::from_utf8_lossy(&t.0).trim().to_string())
        .ok_or_else(|| Error::Member {
            cluster: name.to_string(),
            message: format!("Secret {namespace}/{secret_name} has no token"),
        })?;
    let insecure = cluster["spec"]["disabledTLSValidations"]
        .as_array()
        .is_some_and(|v| v.iter().any(|x| x == "*"));
    let mut cluster_entry = json!({"server": server});
    match cluster["spec"]["caBundle"].as_str().filter(|c| !c.is_empty()) {
        Some(ca) if !insecure => cluster_entry["certificate-authority-data"] = json!(ca),
        _ => cluster_entry["insecure-skip-tls-verify"] = json!(insecure),
    }
    // A kubeconfig document is the one input kube-rs turns into a client with a CA bundle and a token.
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster_entry}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    });
    let member_err = |message: String| Error::Member {
        cluster: name.to_string(),
        message,
    };
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig.to_string())
        .map_err(|e| member_err(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| member_err(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| member_err(e.to_string()))
}

/// Health bookkeeping per cluster between probes.
#[derive(Debug, Default, Clone)]
struct Health {
    failures: u32,
    successes: u32,
    /// `None` until the thresholds decide.
    ready: Option<bool>,
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &str, old: &Value) -> Value {
    // A condition keeps its transition time while its status stays.
    let since = old["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_ && c["status"] == status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now));
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastProbeTime": now, "lastTransitionTime": since})
}

fn now_string() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Probes every member once and writes the conditions that changed; returns whether any readiness changed.
async fn probe_clusters(
    host: &kube::Client,
    opts: &Options,
    health: &mut HashMap<String, Health>,
) -> Result<bool, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(host.clone(), &opts.namespace, &clusters_resource());
    let clusters = api
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing KubeFedClusters"))?;
    let mut changed = false;
    health.retain(|name, _| {
        clusters
            .items
            .iter()
            .any(|c| c.metadata.name.as_deref() == Some(name))
    });
    for c in &clusters.items {
        let value = to_value(c);
        let name = c.metadata.name.clone().unwrap_or_default();
        let span = tracing::info_span!("probe", cluster = %name);
        let outcome = async {
            let client = member_client(host, &opts.namespace, &value).await?;
            let req = http::Request::get("/healthz")
                .body(Vec::new())
                .map_err(|e| Error::Member {
                    cluster: name.clone(),
                    message: e.to_string(),
                })?;
            match tokio::time::timeout(opts.probe_timeout, client.request_text(req)).await {
                Ok(Ok(body)) => Ok(body.trim().eq_ignore_ascii_case("ok")),
                Ok(Err(e)) => Err(Error::Member {
                    cluster: name.clone(),
                    message: e.to_string(),
                }),
                Err(_) => Err(Error::Member {
                    cluster: name.clone(),
                    message: "timed out".into(),
                }),
            }
        }
        .instrument(span)
        .await;
        let h = health.entry(name.clone()).or_default();
        let reachable_ok = match &outcome {
            Ok(ok) => *ok,
            Err(e) => {
                tracing::debug!(cluster = %name, error = %e, "health probe failed");
                false
            }
        };
        if reachable_ok {
            h.successes += 1;
            h.failures = 0;
        } else {
            h.failures += 1;
            h.successes = 0;
        }
        // Thresholds as upstream: the first probe decides, afterwards it takes `failure_threshold` failures to go
        // offline and `success_threshold` successes to come back.
        let was = h.ready;
        h.ready = match was {
            None => Some(reachable_ok),
            Some(true) if h.failures >= opts.failure_threshold => Some(false),
            Some(false) if h.successes >= opts.success_threshold => Some(true),
            keep => keep,
        };
        if h.ready != was {
            changed = true;
            tracing::info!(cluster = %name, ready = ?h.ready, "cluster readiness changed");
        }
        let now = now_string();
        let conditions = match (h.ready, &outcome) {
            (Some(true), _) => vec![condition(
                "Ready",
                "True",
                "ClusterReady",
                "/healthz responded with ok",
                &now,
                &value,
            )],
            (_, Ok(_)) => vec![condition(
                "Ready",
                "False",
                "ClusterNotReady",
                "/healthz responded without ok",
                &now,
                &value,
            )],
            (_, Err(_)) => vec![
                condition(
                    "Ready",
                    "False",
                    "ClusterNotReachable",
                    "cluster is not reachable",
                    &now,
                    &value,
                ),
                condition(
                    "Offline",
                    "True",
                    "ClusterNotReachable",
                    "cluster is not reachable",
                    &now,
                    &value,
                ),
            ],
        };
        let patch = json!({"status": {"conditions": conditions}});
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(cluster = %name, error = %e, "writing cluster status failed");
        }
    }
    Ok(changed)
}

fn ready_of(cluster: &Value) -> bool {
    cluster["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Replicas that run per member as the last sync pass saw them (upstream counts ready replicas too).
fn running_replicas(fed: &Value) -> BTreeMap<String, i64> {
    fed["status"]["clusters"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let ready = c["remoteStatus"]["readyReplicas"].as_i64()?;
                    Some((c["name"].as_str()?.to_string(), ready))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Plans every ReplicaSchedulingPreference over the ready members and writes placement and replica overrides to
/// its federated object when they differ.
async fn schedule_replicas(host: &kube::Client, members: &[Member]) -> Result<(), Error> {
    let prefs: Api<DynamicObject> = Api::all_with(host.clone(), &preferences_resource());
    let list = prefs
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing ReplicaSchedulingPreferences"))?;
    let ready: Vec<String> = members
        .iter()
        .filter(|m| m.ready)
        .map(|m| m.name.clone())
        .collect();
    for rsp in &list.items {
        let rsp = to_value(rsp);
        let (ns, name) = (
            rsp["metadata"]["namespace"].as_str().unwrap_or(""),
            rsp["metadata"]["name"].as_str().unwrap_or(""),
        );
        let target = match rsp["spec"]["targetKind"].as_str().unwrap_or("") {
            "FederatedDeployment" => crds::target_type("deployments"),
            "FederatedReplicaSet" => crds::target_type("replicasets"),
            _ => None,
        };
        let Some(target) = target else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(host.clone(), ns, &federated_resource(&target));
        let fed = match api.get(name).await {
            Ok(f) => to_value(&f),
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(api_err(format!("reading {}/{name}", target.federated_kind()))(e)),
        };
        let total = rsp["spec"]["totalReplicas"].as_i64().unwrap_or(0);
        let prefs = crate::planner::preferences(&rsp["spec"]);
        let plan = if crate::planner::rebalance(&rsp["spec"]) {
            crate::planner::plan(total, &prefs, &ready)
        } else {
            crate::planner::plan_keeping(total, &prefs, &ready, &running_replicas(&fed))
        };
        let placed: Vec<Value> = plan
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, _)| json!({"name": c}))
            .collect();
        // Other overrides of a cluster stay; only its `/spec/replicas` entry is the planner's.
        let mut overrides: Vec<Value> = fed["spec"]["overrides"].as_array().cloned().unwrap_or_default();
        for o in overrides.iter_mut() {
            if let Some(list) = o["clusterOverrides"].as_array_mut() {
                list.retain(|co| co["path"] != "/spec/replicas");
            }
        }
        for (cluster, n) in plan.iter().filter(|(_, n)| **n > 0) {
            let entry = json!({"path": "/spec/replicas", "value": n});
            match overrides
                .iter_mut()
                .find(|o| o["clusterName"] == cluster.as_str())
            {
                Some(o) => {
                    if !o["clusterOverrides"].is_array() {
                        o["clusterOverrides"] = json!([]);
                    }
                    if let Some(list) = o["clusterOverrides"].as_array_mut() {
                        list.push(entry);
                    }
                }
                None => overrides.push(json!({"clusterName": cluster, "clusterOverrides": [entry]})),
            }
        }
        overrides.retain(|o| o["clusterOverrides"].as_array().is_some_and(|l| !l.is_empty()));
        let placement = json!({"clusters": placed});
        if fed["spec"]["placement"] == placement && fed["spec"]["overrides"] == json!(overrides) {
            continue;
        }
        tracing::info!(namespace = ns, name, ?plan, "replica schedule changed");
        let patch = json!({"spec": {"placement": placement, "overrides": overrides}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_err(format!("scheduling {}/{name}", target.federated_kind())))?;
    }
    Ok(())
}

/// What the sync pass found for one federated object in one cluster.
fn cluster_status(name: &str, reason: Option<&str>, remote: Option<&Value>) -> Value {
    let mut s = json!({"name": name});
    if let Some(r) = reason {
        s["status"] = json!(r);
    }
    if let Some(status) = remote.filter(|v| !v.is_null()) {
        s["remoteStatus"] = status.clone();
    }
    s
}

async fn ensure_namespace(client: &kube::Client, ns: &str) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &resource("", "v1", "Namespace", "namespaces"));
    if api.get_opt(ns).await?.is_some() {
        return Ok(());
    }
    let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns}}))
    .map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn member_api(client: &kube::Client, t: &TargetType, ns: &str) -> Api<DynamicObject> {
    if t.namespaced {
        Api::namespaced_with(client.clone(), ns, &target_resource(t))
    } else {
        Api::all_with(client.clone(), &target_resource(t))
    }
}

/// Makes one member hold (or not hold) one federated object; returns the failure reason, if any, and the
/// member's status of the object.
async fn sync_member(
    client: &kube::Client,
    t: &TargetType,
    fed: &Value,
    cluster: &str,
    wanted: bool,
) -> (Option<&'static str>, Option<Value>) {
    let ns = fed["metadata"]["namespace"].as_str().unwrap_or("");
    let name = fed["metadata"]["name"].as_str().unwrap_or("");
    let api = member_api(client, t, ns);
    let current = match api.get_opt(name).await {
        Ok(c) => c.map(|c| to_value(&c)),
        Err(e) => {
            tracing::debug!(cluster, error = %e, "reading member object failed");
            return (Some("ClusterNotReady"), None);
        }
    };
    let managed = |v: &Value| v["metadata"]["labels"][MANAGED_LABEL] == "true";
    if !wanted {
        // Only what propagation put there is removed; a member's own object of that name stays.
        if current.as_ref().is_some_and(managed)
            && let Err(e) = api.delete(name, &DeleteParams::default()).await
            && !is_not_found(&e)
        {
            tracing::warn!(cluster, error = %e, "removing object from member failed");
            return (Some("DeletionFailed"), None);
        }
        return (None, None);
    }
    if t.namespaced
        && let Err(e) = ensure_namespace(client, ns).await
    {
        tracing::warn!(cluster, error = %e, "creating namespace in member failed");
        return (Some("CreationFailed"), None);
    }
    let desired = propagation::desired_object(fed, t, cluster);
    let retain = fed["spec"]["retainReplicas"] == true;
    let result = match &current {
        None => api
            .create(
                &PostParams::default(),
                &match from_value(desired.clone()) {
                    Ok(o) => o,
                    Err(_) => return (Some("CreationFailed"), None),
                },
            )
            .await
            .map(|o| to_value(&o))
            .map_err(|e| ("CreationFailed", e)),
        Some(cur) => {
            let merged = propagation::merged_for_update(cur, &desired, retain);
            let tm = &desired["metadata"];
            if propagation::managed_parts(&merged, tm) == propagation::managed_parts(cur, tm) {
                Ok(cur.clone())
            } else {
                match from_value(merged) {
                    Ok(o) => api
                        .replace(name, &PostParams::default(), &o)
                        .await
                        .map(|o| to_value(&o))
                        .map_err(|e| ("UpdateFailed", e)),
                    Err(_) => return (Some("UpdateFailed"), None),
                }
            }
        }
    };
    match result {
        Ok(obj) => (None, obj.get("status").cloned()),
        Err((reason, e)) => {
            tracing::warn!(cluster, error = %e, reason, "propagating to member failed");
            (Some(reason), None)
        }
    }
}

/// What the sync loop knows between passes: the members, a client per member, the enabled types.
#[derive(Default)]
pub struct World {
    members: Vec<Member>,
    clients: HashMap<String, (String, kube::Client)>,
    enabled: Vec<TargetType>,
}

/// One reconcile of every federated object of every enabled type, refreshing `world` first.
pub async fn sync_pass(host: &kube::Client, opts: &Options, world: &mut World) -> Result<(), Error> {
    refresh_world(host, opts, world).await?;
    schedule_replicas(host, &world.members).await?;
    for t in &world.enabled {
        let fed_api: Api<DynamicObject> = Api::all_with(host.clone(), &federated_resource(t));
        let feds = match fed_api.list(&ListParams::default()).await {
            Ok(l) => l.items,
            // The type's CRD may not be installed (disabled with its CRD deleted).
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(api_err(format!("listing {}", t.federated_plural()))(e)),
        };
        for fed in feds {
            reconcile_object(host, t, &to_value(&fed), world).await;
        }
    }
    Ok(())
}

async fn reconcile_object(host: &kube::Client, t: &TargetType, fed: &Value, world: &World) {
    let ns = fed["metadata"]["namespace"].as_str().unwrap_or("");
    let name = fed["metadata"]["name"].as_str().unwrap_or("");
    let span = tracing::info_span!("reconcile", kind = %t.federated_kind(), namespace = %ns, name = %name);
    sync_object(host, t, fed, &world.members, &world.clients)
        .instrument(span)
        .await;
}

/// Reconciles one federated object that changed, with what the last full pass learnt about the members.
async fn sync_one(host: &kube::Client, world: &World, kind: &str, ns: &str, name: &str) {
    let Some(t) = world.enabled.iter().find(|t| t.federated_kind() == kind) else {
        return;
    };
    let api: Api<DynamicObject> = Api::namespaced_with(host.clone(), ns, &federated_resource(t));
    match api.get_opt(name).await {
        Ok(Some(fed)) => reconcile_object(host, t, &to_value(&fed), world).await,
        Ok(None) => {}
        Err(e) => tracing::debug!(kind, ns, name, error = %e, "reading a changed federated object failed"),
    }
}

/// Reads the members (with fresh clients where their records changed) and the enabled types.
async fn refresh_world(host: &kube::Client, opts: &Options, world: &mut World) -> Result<(), Error> {
    let clients = &mut world.clients;
    let clusters_api: Api<DynamicObject> =
        Api::namespaced_with(host.clone(), &opts.namespace, &clusters_resource());
    let clusters: Vec<Value> = clusters_api
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing KubeFedClusters"))?
        .items
        .iter()
        .map(to_value)
        .collect();
    let members: Vec<Member> = clusters
        .iter()
        .map(|c| Member {
            name: c["metadata"]["name"].as_str().unwrap_or("").to_string(),
            labels: labels_of(c),
            ready: ready_of(c),
        })
        .collect();
    // Clients are rebuilt when a cluster's record changes (new endpoint, CA or secret).
    clients.retain(|name, _| members.iter().any(|m| &m.name == name));
    for c in &clusters {
        let name = c["metadata"]["name"].as_str().unwrap_or("").to_string();
        let rv = c["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let spec = c["spec"].to_string();
        let fresh = clients.get(&name).is_some_and(|(k, _)| *k == spec);
        if !fresh {
            match member_client(host, &opts.namespace, c).await {
                Ok(client) => {
                    clients.insert(name, (spec, client));
                }
                Err(e) => tracing::warn!(cluster = %name, rv, error = %e, "no client for member"),
            }
        }
    }
    world.members = members;

    let ftcs: Api<DynamicObject> =
        Api::namespaced_with(host.clone(), &opts.namespace, &type_configs_resource());
    let configs: Vec<Value> = ftcs
        .list(&ListParams::default())
        .await
        .map_err(api_err("listing FederatedTypeConfigs"))?
        .items
        .iter()
        .map(to_value)
        .collect();
    // `kubefedctl disable` waits for NotRunning before it deletes a type's config, as upstream.
    for f in &configs {
        let running = if f["spec"]["propagation"] == "Enabled" {
            "Running"
        } else {
            "NotRunning"
        };
        if f["status"]["propagationController"] != running {
            let name = f["metadata"]["name"].as_str().unwrap_or("");
            let patch = json!({"status": {"propagationController": running,
                                          "observedGeneration": f["metadata"]["generation"]}});
            if let Err(e) = ftcs
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(config = name, error = %e, "writing FederatedTypeConfig status failed");
            }
        }
    }
    world.enabled = configs
        .iter()
        .filter(|f| f["spec"]["propagation"] == "Enabled")
        .filter_map(|f| f["metadata"]["name"].as_str().and_then(crds::target_type))
        .collect();
    Ok(())
}

async fn sync_object(
    host: &kube::Client,
    t: &TargetType,
    fed: &Value,
    members: &[Member],
    clients: &HashMap<String, (String, kube::Client)>,
) {
    let ns = fed["metadata"]["namespace"].as_str().unwrap_or("");
    let name = fed["metadata"]["name"].as_str().unwrap_or("");
    let api: Api<DynamicObject> = Api::namespaced_with(host.clone(), ns, &federated_resource(t));
    let finalizers: Vec<String> = fed["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let deleting = fed["metadata"]["deletionTimestamp"].is_string();
    if deleting {
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return;
        }
        let orphan = fed["metadata"]["annotations"][ORPHAN_ANNOTATION] == "true";
        if !orphan {
            futures_util::future::join_all(members.iter().filter(|m| m.ready).filter_map(|m| {
                let (_, client) = clients.get(&m.name)?;
                Some(sync_member(client, t, fed, &m.name, false))
            }))
            .await;
        }
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
        let patch =
            json!({"metadata": {"finalizers": rest, "resourceVersion": fed["metadata"]["resourceVersion"]}});
        if let Err(e) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(error = %e, "releasing the finalizer failed");
        }
        return;
    }
    if !finalizers.iter().any(|f| f == FINALIZER) {
        let mut all = finalizers.clone();
        all.push(FINALIZER.to_string());
        let patch = json!({"metadata": {"finalizers": all}});
        if let Err(e) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(error = %e, "adding the finalizer failed");
            return;
        }
    }
    let selected = propagation::selected_clusters(fed, members);
    // Members are independent: one slow member must not hold the others back.
    let outcomes = futures_util::future::join_all(members.iter().map(|m| {
        let wanted = selected.contains(&m.name);
        let client = clients.get(&m.name).map(|(_, c)| c).filter(|_| m.ready);
        async move {
            let (reason, remote) = match client {
                Some(client) => sync_member(client, t, fed, &m.name, wanted).await,
                None => (Some("ClusterNotReady"), None),
            };
            (m, wanted, reason, remote)
        }
    }))
    .await;
    let mut statuses = Vec::new();
    let mut all_ok = true;
    for (m, wanted, reason, remote) in outcomes {
        if wanted {
            all_ok &= reason.is_none();
            statuses.push(cluster_status(&m.name, reason, remote.as_ref()));
        }
    }
    let old = &fed["status"];
    let condition_status = if all_ok { "True" } else { "False" };
    let unchanged = old["clusters"] == json!(statuses)
        && old["conditions"][0]["status"] == condition_status
        && old["observedGeneration"] == fed["metadata"]["generation"];
    if unchanged {
        return;
    }
    let now = now_string();
    let mut cond = json!({"type": "Propagation", "status": condition_status, "lastUpdateTime": now,
                          "lastTransitionTime": now});
    if old["conditions"][0]["status"] == condition_status {
        cond["lastTransitionTime"] = old["conditions"][0]["lastTransitionTime"].clone();
    }
    if !all_ok {
        cond["reason"] = json!("CheckClusters");
    }
    let patch = json!({"status": {"clusters": statuses, "conditions": [cond],
                                  "observedGeneration": fed["metadata"]["generation"]}});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(error = %e, "writing propagation status failed");
    }
}

/// Why the sync loop wakes: something that may concern every object, or one federated object that changed.
#[derive(Debug)]
enum Wake {
    All,
    Object {
        kind: String,
        namespace: String,
        name: String,
    },
}

/// Sends a [`Wake`] for every change of what the sync loop reads.
fn watch_changes(
    host: &kube::Client,
    opts: &Options,
    wake: mpsc::UnboundedSender<Wake>,
    stop: CancellationToken,
) {
    let mut resources = vec![
        (Some(opts.namespace.clone()), clusters_resource(), false),
        (Some(opts.namespace.clone()), type_configs_resource(), false),
        (None, preferences_resource(), false),
    ];
    resources.extend(DEFAULT_TYPES.iter().map(|t| (None, federated_resource(t), true)));
    for (ns, ar, federated) in resources {
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(host.clone(), ns, &ar),
            None => Api::all_with(host.clone(), &ar),
        };
        let (wake, stop, kind) = (wake.clone(), stop.clone(), ar.kind.clone());
        tokio::spawn(async move {
            let stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default());
            futures_util::pin_mut!(stream);
            loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => return,
                    ev = stream.next() => match ev {
                        Some(ev) => ev,
                        None => return,
                    },
                };
                let msg = match ev {
                    Ok(
                        kube::runtime::watcher::Event::Apply(o) | kube::runtime::watcher::Event::Delete(o),
                    ) if federated => Wake::Object {
                        kind: kind.clone(),
                        namespace: o.metadata.namespace.clone().unwrap_or_default(),
                        name: o.metadata.name.clone().unwrap_or_default(),
                    },
                    // Initial listings are covered by the full pass the loop starts with.
                    Ok(
                        kube::runtime::watcher::Event::Init
                        | kube::runtime::watcher::Event::InitApply(_)
                        | kube::runtime::watcher::Event::InitDone,
                    ) if federated => {
                        continue;
                    }
                    _ => Wake::All,
                };
                if wake.send(msg).is_err() {
                    return;
                }
            }
        });
    }
}

/// Installs what is missing, then runs health checks and propagation until `shutdown`.
pub async fn run(host: kube::Client, opts: Options, shutdown: CancellationToken) -> Result<(), Error> {
    install(&host, &opts.namespace).await?;
    let (wake, mut woken) = mpsc::unbounded_channel();
    watch_changes(&host, &opts, wake.clone(), shutdown.clone());
    let health = {
        let (host, opts, wake, stop) = (host.clone(), opts.clone(), wake.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut state = HashMap::new();
            loop {
                match probe_clusters(&host, &opts, &mut state).await {
                    Ok(true) => {
                        let _ = wake.send(Wake::All);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "health pass failed"),
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(opts.health_period) => {}
                }
            }
        })
    };
    let mut world = World::default();
    let mut full = true;
    loop {
        if full && let Err(e) = sync_pass(&host, &opts, &mut world).await {
            tracing::warn!(error = %e, "sync pass failed");
        }
        full = false;
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            w = woken.recv() => match w {
                Some(w) => w,
                None => break,
            },
            () = tokio::time::sleep(opts.resync) => Wake::All,
        };
        // Everything queued meanwhile goes in one round; one object changing many times is reconciled once.
        let mut objects = Vec::new();
        let mut next = Some(first);
        while let Some(w) = next {
            match w {
                Wake::All => full = true,
                Wake::Object {
                    kind,
                    namespace,
                    name,
                } => {
                    if !objects.contains(&(kind.clone(), namespace.clone(), name.clone())) {
                        objects.push((kind, namespace, name));
                    }
                }
            }
            next = woken.try_recv().ok();
        }
        if !full {
            for (kind, ns, name) in &objects {
                sync_one(&host, &world, kind, ns, name).await;
            }
        }
    }
    let _ = health.await;
    Ok(())
}
