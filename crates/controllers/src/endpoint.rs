//! `endpoint`: the Endpoints object of every Service with a selector lists the Pods it selects: ready Pods with an IP
//! under `addresses`, others under `notReadyAddresses` (all under `addresses` with `publishNotReadyAddresses`), ports
//! resolved per Pod (named target ports look up the Pod's container ports), Pods grouped into subsets by their
//! resolved ports. `default/kubernetes` is the API server's own and is left alone, as are Services without selector.
//! Endpoints of deleted Services are deleted.
//!
//! Layout: [`subsets`] is the pure computation; [`start`] runs a kube-runtime `Controller` over Services, woken by
//! Pods (through the Service cache) and Endpoints changes, plus a watcher that deletes Endpoints of deleted Services.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "endpoint";

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The Service's ports as this Pod serves them; `None` when a named target port is missing from the Pod.
fn pod_ports(svc: &Service, pod: &Pod) -> Option<Vec<EndpointPort>> {
    let mut out = Vec::new();
    for sp in svc.spec.as_ref()?.ports.iter().flatten() {
        let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
        let port = match &sp.target_port {
            None => sp.port,
            Some(IntOrString::Int(p)) => *p,
            Some(IntOrString::String(name)) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|cp| cp.container_port)?,
        };
        out.push(EndpointPort {
            name: sp.name.clone(),
            port,
            protocol: Some(protocol),
            app_protocol: sp.app_protocol.clone(),
        });
    }
    Some(out)
}

fn address(pod: &Pod, ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..EndpointAddress::default()
    }
}

/// One subset in the making: its ports, ready and not-ready addresses.
type Group = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);

/// The subsets for `svc` given the Pods of its namespace, in a stable order.
pub fn subsets(svc: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let publish_all = spec.publish_not_ready_addresses == Some(true);
    // Keyed by the serialised port list: EndpointPort has no Ord.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(selector, p)) {
        let status = pod.status.as_ref();
        let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let phase = status.and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let Some(ports) = pod_ports(svc, pod) else {
            continue;
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let entry = groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish_all || is_ready(pod) {
            entry.1.push(address(pod, ip));
        } else {
            entry.2.push(address(pod, ip));
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

fn is_api_server_service(svc: &Service) -> bool {
    svc.namespace().as_deref() == Some("default") && svc.name_any() == "kubernetes"
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, namespace = %svc.namespace().unwrap_or_default(), service = %svc.name_any()))]
async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    if is_api_server_service(&svc) || !has_selector || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods = pods.list(&ListParams::default()).await.map_err(err)?.items;
    let want = subsets(&svc, &pods);
    let endpoints: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let mut labels = svc.labels().clone();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let result = match endpoints.get_opt(&name).await.map_err(err)? {
        Some(cur) if cur.subsets.clone().unwrap_or_default() == want && cur.labels() == &labels => {
            return Ok(Action::await_change());
        }
        Some(mut cur) => {
            cur.subsets = Some(want);
            cur.metadata.labels = Some(labels);
            endpoints.replace(&name, &PostParams::default(), &cur).await
        }
        None => {
            let ep = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                subsets: Some(want),
            };
            endpoints.create(&PostParams::default(), &ep).await
        }
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(Duration::from_millis(200))),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(err(e)),
    }
}

/// Deletes the Endpoints of Services as they are deleted (the Controller only sees Services that exist).
async fn delete_orphans(ctx: Context) {
    let services: Api<Service> = Api::all(ctx.client.clone());
    let mut events = std::pin::pin!(watcher(services, watcher::Config::default()).default_backoff());
    loop {
        let event = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            e = events.next() => e,
        };
        let Some(Ok(watcher::Event::Delete(svc))) = event else {
            if event.is_none() {
                return;
            }
            continue;
        };
        if is_api_server_service(&svc) {
            continue;
        }
        let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
        match api.delete(&svc.name_any(), &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => {
                tracing::warn!(controller = NAME, error = %e, "deleting endpoints of a deleted service")
            }
        }
    }
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let services: Api<Service> = Api::all(ctx.client.clone());
        let pods: Api<Pod> = Api::all(ctx.client.clone());
        let endpoints: Api<Endpoints> = Api::all(ctx.client.clone());
        let shutdown = ctx.shutdown.clone();
        let orphans = tokio::spawn(delete_orphans(ctx.clone()));
        let controller = Controller::new(services, watcher::Config::default());
        let cache = controller.store();
        controller
            .watches(pods, watcher::Config::default(), move |pod| {
                let ns = pod.namespace();
                cache
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == ns)
                    .filter(|s| {
                        s.spec
                            .as_ref()
                            .and_then(|sp| sp.selector.as_ref())
                            .is_some_and(|sel| !sel.is_empty() && selects(sel, &pod))
                    })
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            })
            .watches(endpoints, watcher::Config::default(), |ep| {
                Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default()))
            })
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                Arc::new(ctx),
            )
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::warn!(controller = NAME, error = %e, "reconcile failed");
                }
            })
            .await;
        let _ = orphans.await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };

    fn pod(name: &str, ip: &str, ready: bool, port_name: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: port_name.map(|n| {
                        vec![ContainerPort {
                            name: Some(n.into()),
                            container_port: 8080,
                            ..Default::default()
                        }]
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn service(target: IntOrString) -> Service {
        Service {
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(target),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_and_unready_pods_land_in_their_lists_with_resolved_ports() {
        let pods = [
            pod("b", "10.0.0.2", true, None),
            pod("a", "10.0.0.1", true, None),
            pod("c", "10.0.0.3", false, None),
        ];
        let got = subsets(&service(IntOrString::Int(9376)), &pods);
        assert_eq!(got.len(), 1);
        let ips =
            |v: &Option<Vec<EndpointAddress>>| v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(ips(&got[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&got[0].not_ready_addresses), ["10.0.0.3"]);
        assert_eq!(got[0].ports.as_ref().unwrap()[0].port, 9376);
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_pods_without_them_are_left_out() {
        let pods = [
            pod("a", "10.0.0.1", true, Some("web")),
            pod("b", "10.0.0.2", true, None),
        ];
        let got = subsets(&service(IntOrString::String("web".into())), &pods);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].addresses.as_ref().unwrap().len(), 1);
        assert_eq!(got[0].ports.as_ref().unwrap()[0].port, 8080);
        let mut other = pod("x", "10.0.0.9", true, None);
        other.metadata.labels = None;
        assert!(subsets(&service(IntOrString::Int(1)), &[other]).is_empty());
    }
}
