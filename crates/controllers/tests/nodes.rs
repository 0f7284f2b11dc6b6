#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The node lifecycle and endpoint controllers against a real API server, run in-process with short periods: a node
//! that stops heartbeating turns Unknown and tainted and its pods leave as their tolerations say; a Service's
//! Endpoints follow its pods.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use controllers::{Context, Settings};
use k8s_openapi::api::core::v1::{
    Container, Endpoints, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, Service, ServiceAccount,
    ServicePort, ServiceSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use testkit::cluster::SingleServer;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

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

async fn start(names: &[&str], grace: Duration) -> Result<Running> {
    let server = SingleServer::start()?;
    let client = client::from_kubeconfig(&server.kubeconfig()).await?;
    let settings = Settings {
        node_monitor_grace_period: grace,
        node_monitor_period: Duration::from_millis(200),
        ..Settings::default()
    };
    let shutdown = CancellationToken::new();
    let ctx = Context {
        client: client.clone(),
        shutdown: shutdown.clone(),
        settings: Arc::new(settings),
    };
    // Pods need the `default` ServiceAccount (ServiceAccount admission), which a controller makes.
    let flags: Vec<String> = names
        .iter()
        .chain(&["serviceaccount"])
        .map(|s| s.to_string())
        .collect();
    tokio::spawn(async move {
        if let Err(e) = controllers::run(ctx, &flags, None).await {
            eprintln!("controllers stopped: {e}");
        }
    });
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
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

fn meta(name: &str, ns: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(str::to_string),
        ..ObjectMeta::default()
    }
}

fn ready_node(name: &str, taints: Option<Vec<Taint>>) -> Node {
    Node {
        metadata: meta(name, None),
        spec: Some(NodeSpec {
            taints,
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                last_heartbeat_time: Some(Time(Timestamp::now())),
                last_transition_time: Some(Time(Timestamp::now())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, node: Option<&str>, tolerations: Option<Vec<Toleration>>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..meta(name, Some("default"))
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            tolerations,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether the pod is gone or on its way out.
async fn leaving(pods: &Api<Pod>, name: &str) -> Result<bool> {
    Ok(pods
        .get_opt(name)
        .await?
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some()))
}

fn taint_names(node: &Node) -> Vec<String> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_without_heartbeats_turns_unknown_is_tainted_and_loses_pods_as_their_tolerations_say()
-> Result<()> {
    let r = start(&["nodelifecycle"], Duration::from_secs(2)).await?;
    let nodes: Api<Node> = Api::all(r.client.clone());
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), "default");
    nodes
        .create(&PostParams::default(), &ready_node("silent", None))
        .await?;
    let brief = Toleration {
        key: Some("node.kubernetes.io/unreachable".into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: Some(1),
        ..Default::default()
    };
    pods.create(
        &PostParams::default(),
        &pod("brief", Some("silent"), Some(vec![brief])),
    )
    .await?;
    // DefaultTolerationSeconds admission gives this one 300 s.
    pods.create(&PostParams::default(), &pod("patient", Some("silent"), None))
        .await?;

    let node = testkit::eventually(DEADLINE, || async {
        let n = nodes.get("silent").await?;
        let taints = taint_names(&n);
        let tainted = taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
            && taints.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string());
        if tainted {
            Ok(n)
        } else {
            Err(anyhow!("taints so far: {taints:?}"))
        }
    })
    .await?;
    let conditions = node.status.unwrap().conditions.unwrap();
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions.iter().find(|c| c.type_ == kind).unwrap();
        assert_eq!(c.status, "Unknown", "{kind}");
    }
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(
        ready.message.as_deref(),
        Some("Kubelet stopped posting node status.")
    );

    testkit::eventually(DEADLINE, || async {
        if leaving(&pods, "brief").await? {
            Ok(())
        } else {
            Err(anyhow!("pod 'brief' not evicted yet"))
        }
    })
    .await?;
    assert!(
        !leaving(&pods, "patient").await?,
        "300 s of toleration have not passed"
    );

    // The kubelet comes back: Ready with a fresh heartbeat, and the taints go.
    let patch = json!({"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "lastHeartbeatTime": Timestamp::now().to_string(), "lastTransitionTime": Timestamp::now().to_string(),
    }]}});
    nodes
        .patch_status("silent", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    testkit::eventually(DEADLINE, || async {
        let taints = taint_names(&nodes.get("silent").await?);
        if taints.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("taints left: {taints:?}"))
        }
    })
    .await?;
    assert!(!leaving(&pods, "patient").await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_without_toleration_for_a_no_execute_taint_is_evicted_at_once_and_a_tolerating_one_stays()
-> Result<()> {
    let r = start(&["nodelifecycle"], Duration::from_secs(600)).await?;
    let nodes: Api<Node> = Api::all(r.client.clone());
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), "default");
    let taint = Taint {
        key: "dedicated".into(),
        value: Some("db".into()),
        effect: "NoExecute".into(),
        time_added: None,
    };
    nodes
        .create(&PostParams::default(), &ready_node("db-node", Some(vec![taint])))
        .await?;
    let tolerating = Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("db".into()),
        effect: Some("NoExecute".into()),
        ..Default::default()
    };
    pods.create(
        &PostParams::default(),
        &pod("db", Some("db-node"), Some(vec![tolerating])),
    )
    .await?;
    pods.create(&PostParams::default(), &pod("intruder", Some("db-node"), None))
        .await?;
    testkit::eventually(DEADLINE, || async {
        if leaving(&pods, "intruder").await? {
            Ok(())
        } else {
            Err(anyhow!("pod 'intruder' not evicted yet"))
        }
    })
    .await?;
    assert!(!leaving(&pods, "db").await?);
    Ok(())
}

async fn set_pod_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) -> Result<()> {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_services_endpoints_list_its_ready_and_unready_pods_and_follow_changes() -> Result<()> {
    let r = start(&["endpoint"], Duration::from_secs(40)).await?;
    let pods: Api<Pod> = Api::namespaced(r.client.clone(), "default");
    let services: Api<Service> = Api::namespaced(r.client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(r.client.clone(), "default");
    for (name, ip, ready) in [("web-1", "10.244.0.11", true), ("web-2", "10.244.0.12", false)] {
        pods.create(&PostParams::default(), &pod(name, Some("n1"), None))
            .await?;
        set_pod_status(&pods, name, ip, ready).await?;
    }
    let svc = Service {
        metadata: meta("web", Some("default")),
        spec: Some(ServiceSpec {
            selector: Some([("app".to_string(), "web".to_string())].into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(8080)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    services.create(&PostParams::default(), &svc).await?;
    let ips = |ep: &Endpoints, ready: bool| -> Vec<String> {
        ep.subsets
            .iter()
            .flatten()
            .flat_map(|s| {
                if ready {
                    s.addresses.clone()
                } else {
                    s.not_ready_addresses.clone()
                }
            })
            .flatten()
            .map(|a| a.ip)
            .collect()
    };
    let ep = testkit::eventually(DEADLINE, || async {
        let ep = endpoints
            .get_opt("web")
            .await?
            .ok_or_else(|| anyhow!("no endpoints yet"))?;
        if ips(&ep, true) == ["10.244.0.11"] && ips(&ep, false) == ["10.244.0.12"] {
            Ok(ep)
        } else {
            Err(anyhow!("{:?}", ep.subsets))
        }
    })
    .await?;
    let port = &ep.subsets.unwrap()[0].ports.clone().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));

    set_pod_status(&pods, "web-2", "10.244.0.12", true).await?;
    testkit::eventually(DEADLINE, || async {
        let ep = endpoints.get("web").await?;
        if ips(&ep, true) == ["10.244.0.11", "10.244.0.12"] {
            Ok(())
        } else {
            Err(anyhow!("{:?}", ep.subsets))
        }
    })
    .await?;
    services.delete("web", &Default::default()).await?;
    testkit::eventually(DEADLINE, || async {
        if endpoints.get_opt("web").await?.is_none() {
            Ok(())
        } else {
            Err(anyhow!("endpoints still there"))
        }
    })
    .await?;
    Ok(())
}
