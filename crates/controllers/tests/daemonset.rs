#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The DaemonSet controller against a real API server, run in-process: one pod per fitting node as nodes come,
//! change and go, node selectors and taints honoured, failed pods replaced, template changes rolled out within
//! maxUnavailable (or left to the user under OnDelete), and the status counts. No kubelet and no scheduler: the
//! tests mark pods ready through the status subresource and bind one pod themselves where that matters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use controllers::daemonset::{HASH_LABEL, target_node};
use controllers::{Context, Settings};
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Binding, Container, Node, NodeSpec, ObjectReference, Pod, PodSpec, PodTemplateSpec, ServiceAccount, Taint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use testkit::cluster::SingleServer;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);
const NS: &str = "default";

struct Running {
    _server: SingleServer,
    client: kube::Client,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), NS)
    }
    fn daemonsets(&self) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), NS)
    }
}

async fn start() -> Result<Running> {
    start_as(false).await
}

/// With `own_account`, the controller writes as ServiceAccount `kube-system/daemon-set-controller` under
/// upstream's role for it, as with `--use-service-account-credentials`.
async fn start_as(own_account: bool) -> Result<Running> {
    let server = SingleServer::start()?;
    let client = client::from_kubeconfig(&server.kubeconfig()).await?;
    let config = client::config_from_kubeconfig(&server.kubeconfig()).await?;
    let shutdown = CancellationToken::new();
    let ctx = Context {
        client: client.clone(),
        shutdown: shutdown.clone(),
        settings: Arc::new(Settings::default()),
    };
    // Pods need the `default` ServiceAccount (ServiceAccount admission), which a controller makes.
    let flags = vec!["daemonset".to_string(), "serviceaccount".to_string()];
    let accounts = own_account.then(|| client::serviceaccount::ServiceAccountClients {
        root: client.clone(),
        config,
        namespace: "kube-system".into(),
        shutdown: shutdown.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = controllers::run(ctx, &flags, accounts.as_ref()).await {
            eprintln!("controllers stopped: {e}");
        }
    });
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    testkit::eventually(DEADLINE, || async {
        accounts
            .get_opt("default")
            .await?
            .ok_or_else(|| anyhow!("no default service account yet"))
    })
    .await?;
    Ok(Running {
        _server: server,
        client,
        shutdown,
    })
}

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                taints
                    .iter()
                    .map(|(k, e)| Taint {
                        key: k.to_string(),
                        value: Some("true".into()),
                        effect: e.to_string(),
                        time_added: None,
                    })
                    .collect(),
            ),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

async fn add_nodes(r: &Running, nodes: &[Node]) -> Result<()> {
    for n in nodes {
        r.nodes().create(&PostParams::default(), n).await?;
    }
    Ok(())
}

fn daemonset(
    name: &str,
    node_selector: &[(&str, &str)],
    strategy: Option<DaemonSetUpdateStrategy>,
) -> DaemonSet {
    let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    node_selector: (!node_selector.is_empty()).then(|| {
                        node_selector
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    }),
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some("busybox".into()),
                        command: Some(vec!["sleep".into(), "3600".into()]),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            update_strategy: strategy,
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}

fn rolling(max_unavailable: i32) -> Option<DaemonSetUpdateStrategy> {
    Some(DaemonSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            max_surge: Some(IntOrString::Int(0)),
        }),
    })
}

/// The DaemonSet's pods that are not on their way out.
async fn live_pods(r: &Running, ds: &str) -> Result<Vec<Pod>> {
    let listed = r
        .pods()
        .list(&ListParams::default().labels(&format!("app={ds}")))
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Node name -> pod names of the DaemonSet.
async fn placement(r: &Running, ds: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in live_pods(r, ds).await? {
        let node = target_node(&p).ok_or_else(|| anyhow!("pod {} names no node", p.name_any()))?;
        out.entry(node).or_default().push(p.name_any());
    }
    Ok(out)
}

/// Waits until the DaemonSet has exactly one pod on each of `nodes` and none elsewhere.
async fn wait_for_placement(r: &Running, ds: &str, nodes: &[&str]) -> Result<BTreeMap<String, String>> {
    testkit::eventually(DEADLINE, || async {
        let p = placement(r, ds).await?;
        let on: Vec<&str> = p.keys().map(String::as_str).collect();
        if on == nodes && p.values().all(|pods| pods.len() == 1) {
            Ok(p.into_iter().map(|(n, mut pods)| (n, pods.remove(0))).collect())
        } else {
            Err(anyhow!("{ds} pods: {p:?}, want one on each of {nodes:?}"))
        }
    })
    .await
    .map_err(Into::into)
}

/// Waits until the DaemonSet's status satisfies `ok` for its current generation.
async fn wait_for_status(
    r: &Running,
    ds: &str,
    ok: impl Fn(&DaemonSetStatus) -> bool,
) -> Result<DaemonSetStatus> {
    testkit::eventually(DEADLINE, || async {
        let d = r.daemonsets().get(ds).await?;
        let s = d.status.clone().unwrap_or_default();
        if s.observed_generation == d.metadata.generation && ok(&s) {
            Ok(s)
        } else {
            Err(anyhow!("status of {ds}: {s:?}"))
        }
    })
    .await
    .map_err(Into::into)
}

async fn set_ready(r: &Running, pod: &str) -> Result<()> {
    let now = Timestamp::now().to_string();
    let patch = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
    ]}});
    r.pods()
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// A new template for the DaemonSet. The patch is retried on 409 as kubectl does: this API server answers a
/// concurrent write (here the controller's status update) with a conflict even for a patch without
/// resourceVersion.
async fn change_template(r: &Running, ds: &str) -> Result<()> {
    let change = json!({"spec": {"template": {"metadata": {"annotations": {"rollout": "2"}}}}});
    testkit::eventually(DEADLINE, || async {
        r.daemonsets()
            .patch(ds, &PatchParams::default(), &Patch::Merge(&change))
            .await
    })
    .await?;
    Ok(())
}

fn hash_of(p: &Pod) -> String {
    p.labels().get(HASH_LABEL).cloned().unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_set_runs_one_pod_per_fitting_node_and_follows_nodes_as_they_come_change_and_go()
-> Result<()> {
    let r = start().await?;
    add_nodes(
        &r,
        &[
            node("n1", &[], &[]),
            node("n2", &[("disk", "ssd")], &[]),
            node("gpu", &[], &[("gpu", "NoSchedule")]),
        ],
    )
    .await?;
    r.daemonsets()
        .create(&PostParams::default(), &daemonset("agent", &[], None))
        .await?;

    // One pod on each node except the tainted one, pinned by node affinity for the scheduler to bind.
    let placed = wait_for_placement(&r, "agent", &["n1", "n2"]).await?;
    let pod = r.pods().get(&placed["n1"]).await?;
    let spec = pod.spec.clone().unwrap();
    let affinity = serde_json::to_value(spec.affinity.unwrap())?;
    assert_eq!(
        affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"],
        json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
    );
    assert!(spec.node_name.is_none());
    assert!(!hash_of(&pod).is_empty());
    let tolerations: Vec<String> = spec
        .tolerations
        .unwrap_or_default()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t.key.clone().unwrap_or_default(),
                t.effect.clone().unwrap_or_default()
            )
        })
        .collect();
    for wanted in [
        "node.kubernetes.io/not-ready:NoExecute",
        "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/disk-pressure:NoSchedule",
        "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/pid-pressure:NoSchedule",
        "node.kubernetes.io/unschedulable:NoSchedule",
    ] {
        assert!(
            tolerations.iter().any(|t| t == wanted),
            "{wanted} missing: {tolerations:?}"
        );
    }
    let owner = pod.owner_references()[0].clone();
    assert_eq!((owner.kind.as_str(), owner.controller), ("DaemonSet", Some(true)));
    wait_for_status(&r, "agent", |s| {
        s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 0
            && s.number_available.is_none()
            && s.number_unavailable == Some(2)
            && s.updated_number_scheduled == Some(2)
            && s.number_misscheduled == 0
    })
    .await?;

    // A new node gets a pod.
    add_nodes(&r, &[node("n3", &[], &[])]).await?;
    wait_for_placement(&r, "agent", &["n1", "n2", "n3"]).await?;

    // nodeSelector: only labelled nodes, following label changes both ways.
    r.daemonsets()
        .create(
            &PostParams::default(),
            &daemonset("ssd", &[("disk", "ssd")], None),
        )
        .await?;
    wait_for_placement(&r, "ssd", &["n2"]).await?;
    let label = |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"disk": v}}}));
    r.nodes()
        .patch("n1", &PatchParams::default(), &label(Some("ssd")))
        .await?;
    wait_for_placement(&r, "ssd", &["n1", "n2"]).await?;
    r.nodes()
        .patch("n2", &PatchParams::default(), &label(None))
        .await?;
    wait_for_placement(&r, "ssd", &["n1"]).await?;

    // The pod on n1 is bound there (as the scheduler would) and turns ready: counted, and not doubled.
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(placed["n1"].clone()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some("n1".into()),
            ..ObjectReference::default()
        },
    };
    r.pods()
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &placed["n1"],
            &PostParams::default(),
            &binding,
        )
        .await?;
    set_ready(&r, &placed["n1"]).await?;
    wait_for_status(&r, "agent", |s| {
        s.desired_number_scheduled == 3
            && s.current_number_scheduled == 3
            && s.number_ready == 1
            && s.number_available == Some(1)
            && s.number_unavailable == Some(2)
    })
    .await?;
    assert_eq!(placement(&r, "agent").await?["n1"], vec![placed["n1"].clone()]);

    // A NoSchedule taint leaves the running pod misscheduled; a NoExecute one removes it.
    let taint = |effect: &str| {
        Patch::Merge(json!({"spec": {"taints": [{"key": "maintenance", "value": "true", "effect": effect}]}}))
    };
    r.nodes()
        .patch("n3", &PatchParams::default(), &taint("NoSchedule"))
        .await?;
    wait_for_status(&r, "agent", |s| {
        s.desired_number_scheduled == 2 && s.current_number_scheduled == 2 && s.number_misscheduled == 1
    })
    .await?;
    assert!(placement(&r, "agent").await?.contains_key("n3"));
    r.nodes()
        .patch("n3", &PatchParams::default(), &taint("NoExecute"))
        .await?;
    wait_for_placement(&r, "agent", &["n1", "n2"]).await?;
    wait_for_status(&r, "agent", |s| {
        s.number_misscheduled == 0 && s.desired_number_scheduled == 2
    })
    .await?;

    // A deleted node takes its pods along, bound or not.
    r.nodes().delete("n1", &DeleteParams::default()).await?;
    wait_for_placement(&r, "agent", &["n2"]).await?;
    wait_for_placement(&r, "ssd", &[]).await?;
    testkit::eventually(DEADLINE, || async {
        match r.pods().get_opt(&placed["n1"]).await? {
            None => Ok(()),
            Some(p) => Err(anyhow!(
                "bound pod of the deleted node still there: {:?}",
                p.metadata
            )),
        }
    })
    .await?;

    // A failed daemon pod is replaced.
    let failed = placement(&r, "agent").await?["n2"][0].clone();
    r.pods()
        .patch_status(
            &failed,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await?;
    testkit::eventually(DEADLINE, || async {
        let p = placement(&r, "agent").await?;
        match p.get("n2").map(Vec::as_slice) {
            Some([one]) if *one != failed => Ok(()),
            other => Err(anyhow!("n2 still has {other:?}")),
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_change_rolls_pods_node_by_node_within_max_unavailable() -> Result<()> {
    let r = start().await?;
    let names = ["n1", "n2", "n3"];
    add_nodes(&r, &names.map(|n| node(n, &[], &[]))).await?;
    r.daemonsets()
        .create(&PostParams::default(), &daemonset("agent", &[], rolling(1)))
        .await?;
    let placed = wait_for_placement(&r, "agent", &names).await?;
    for pod in placed.values() {
        set_ready(&r, pod).await?;
    }
    let before = wait_for_status(&r, "agent", |s| s.number_available == Some(3)).await?;
    assert_eq!(
        (before.number_ready, before.updated_number_scheduled),
        (3, Some(3))
    );
    let old_hash = hash_of(&r.pods().get(&placed["n1"]).await?);

    change_template(&r, "agent").await?;

    // One node at a time: the first new pod comes, and while it is not ready the rollout waits.
    // A violation is returned as `Ok(Err(..))` so that polling stops at once.
    let first = testkit::eventually(DEADLINE, || async {
        let pods = live_pods(&r, "agent").await?;
        let new: Vec<&Pod> = pods.iter().filter(|p| hash_of(p) != old_hash).collect();
        let old = pods.len() - new.len();
        match new.as_slice() {
            _ if old + new.iter().filter(|p| ready(p)).count() < 2 => Ok(Err(format!(
                "{old} old pods left: more than maxUnavailable went at once"
            ))),
            [one] if old == 2 => Ok(Ok(one.name_any())),
            _ => Err(anyhow!("{} new, {old} old", new.len())),
        }
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    let waiting = wait_for_status(&r, "agent", |s| {
        s.updated_number_scheduled == Some(1) && s.current_number_scheduled == 3
    })
    .await?;
    assert_eq!(waiting.number_available, Some(2));
    let pods = live_pods(&r, "agent").await?;
    assert_eq!(
        pods.iter().filter(|p| hash_of(p) == old_hash).count(),
        2,
        "the rollout did not wait"
    );

    // Each new pod that turns ready lets the next node go; never more than one node without an available pod.
    set_ready(&r, &first).await?;
    testkit::eventually(Duration::from_secs(60), || async {
        let pods = live_pods(&r, "agent").await?;
        let available = pods.iter().filter(|p| ready(p)).count();
        if available < 2 {
            return Ok(Err(format!(
                "only {available} available pods: more than maxUnavailable down"
            )));
        }
        for p in pods.iter().filter(|p| hash_of(p) != old_hash && !ready(p)) {
            set_ready(&r, &p.name_any()).await?;
        }
        if pods.len() == 3 && pods.iter().all(|p| hash_of(p) != old_hash && ready(p)) {
            Ok(Ok(()))
        } else {
            Err(anyhow!(
                "{:?}",
                pods.iter().map(|p| (hash_of(p), ready(p))).collect::<Vec<_>>()
            ))
        }
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    wait_for_placement(&r, "agent", &names).await?;
    let after = wait_for_status(&r, "agent", |s| {
        s.updated_number_scheduled == Some(3) && s.number_available == Some(3)
    })
    .await?;
    assert_eq!(
        (
            after.desired_number_scheduled,
            after.number_ready,
            after.number_unavailable
        ),
        (3, 3, None)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn under_on_delete_a_template_change_waits_until_the_user_deletes_a_pod() -> Result<()> {
    let r = start().await?;
    add_nodes(&r, &[node("n1", &[], &[]), node("n2", &[], &[])]).await?;
    let on_delete = Some(DaemonSetUpdateStrategy {
        type_: Some("OnDelete".into()),
        rolling_update: None,
    });
    r.daemonsets()
        .create(&PostParams::default(), &daemonset("agent", &[], on_delete))
        .await?;
    let placed = wait_for_placement(&r, "agent", &["n1", "n2"]).await?;
    change_template(&r, "agent").await?;
    // The controller has seen the new template: no pod is current, and the old ones stay.
    wait_for_status(&r, "agent", |s| s.updated_number_scheduled.is_none()).await?;
    ensure!(wait_for_placement(&r, "agent", &["n1", "n2"]).await? == placed);

    r.pods().delete(&placed["n1"], &DeleteParams::default()).await?;
    let now = testkit::eventually(DEADLINE, || async {
        let p = placement(&r, "agent").await?;
        match (p.get("n1").map(Vec::as_slice), p.get("n2").map(Vec::as_slice)) {
            (Some([n1]), Some([n2])) if *n1 != placed["n1"] => Ok((n1.clone(), n2.clone())),
            _ => Err(anyhow!("pods: {p:?}")),
        }
    })
    .await?;
    assert_eq!(now.1, placed["n2"]);
    // The replacement runs the new template; the pod left alone runs the old one.
    let new_hash = hash_of(&r.pods().get(&now.0).await?);
    assert_ne!(new_hash, hash_of(&r.pods().get(&now.1).await?));
    wait_for_status(&r, "agent", |s| s.updated_number_scheduled == Some(1)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_does_its_work_as_its_own_service_account_under_upstreams_role() -> Result<()> {
    let r = start_as(true).await?;
    add_nodes(&r, &[node("n1", &[], &[]), node("n2", &[], &[])]).await?;
    r.daemonsets()
        .create(&PostParams::default(), &daemonset("agent", &[], None))
        .await?;
    let placed = wait_for_placement(&r, "agent", &["n1", "n2"]).await?;
    // Status is written with `update` on daemonsets/status, the only status verb the role grants.
    wait_for_status(&r, "agent", |s| {
        s.desired_number_scheduled == 2 && s.current_number_scheduled == 2
    })
    .await?;
    // Deleting pods is granted too.
    r.nodes().delete("n2", &DeleteParams::default()).await?;
    wait_for_placement(&r, "agent", &["n1"]).await?;
    let pod = r.pods().get(&placed["n1"]).await?;
    assert_eq!(pod.metadata.owner_references.unwrap()[0].name, "agent");
    wait_for_status(&r, "agent", |s| s.desired_number_scheduled == 1).await?;
    Ok(())
}
