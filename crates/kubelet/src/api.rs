//! The kubelet's conversation with the API server about pods: watching the pods bound to this node
//! ([`watch_pods`] into [`ApiPods`]), and after each reconcile pass ([`ApiSync::sync`]) reporting pod status through
//! `pods/status`, keeping a mirror pod for every static pod, and finishing graceful deletions (the kubelet deletes a
//! terminating pod with grace 0 once its containers are gone, as upstream does), and writing the pods' service-account
//! token volumes ([`crate::volumes`]).
//!
//! Registration, node status and the node Lease live in [`crate::node`].

use crate::PodView;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// The pods bound to this node, as the watch last saw them. Empty and not ready until the first list completed:
/// before that the kubelet must not mistake "not listed yet" for "deleted".
#[derive(Default)]
pub struct ApiPods {
    ready: AtomicBool,
    pods: Mutex<BTreeMap<String, Pod>>,
    /// Wakes the reconcile loop when something changed.
    pub changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ApiPods {
    /// Every pod bound to the node, once the first list is in.
    pub fn snapshot(&self) -> Option<Vec<Pod>> {
        self.ready
            .load(Ordering::SeqCst)
            .then(|| lock(&self.pods).values().cloned().collect())
    }

    fn key(pod: &Pod) -> String {
        pod.metadata.uid.clone().unwrap_or_default()
    }
}

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// Watches `spec.nodeName=<node>` into `pods` until `shutdown`; the watcher re-lists with back-off on errors.
pub async fn watch_pods(client: kube::Client, node: String, pods: Arc<ApiPods>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut staging: BTreeMap<String, Pod> = BTreeMap::new();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Init) => staging.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                staging.insert(ApiPods::key(&pod), pod);
            }
            Ok(watcher::Event::InitDone) => {
                *lock(&pods.pods) = std::mem::take(&mut staging);
                pods.ready.store(true, Ordering::SeqCst);
                pods.changed.notify_one();
            }
            Ok(watcher::Event::Apply(pod)) => {
                lock(&pods.pods).insert(ApiPods::key(&pod), pod);
                pods.changed.notify_one();
            }
            Ok(watcher::Event::Delete(pod)) => {
                lock(&pods.pods).remove(&ApiPods::key(&pod));
                pods.changed.notify_one();
            }
            Err(e) => tracing::warn!(node = %node, error = %e, "pod watch failed; retrying"),
        }
    }
}

/// The mirror pod of a static pod: the manifest's pod, bound to the node, owned by the Node, annotated with the
/// static pod's hash.
pub fn mirror_pod(view: &PodView, node: &str, node_uid: &str) -> Pod {
    let mut pod = view.pod.pod.clone();
    let hash = view.pod.uid.clone();
    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(MIRROR_ANNOTATION.into(), hash.clone());
    annotations.insert(HASH_ANNOTATION.into(), hash);
    annotations.insert(SOURCE_ANNOTATION.into(), "file".into());
    annotations.insert(SEEN_ANNOTATION.into(), crate::shim::now_rfc3339());
    pod.metadata = ObjectMeta {
        name: Some(view.pod.name.clone()),
        namespace: Some(view.pod.namespace.clone()),
        labels: pod.metadata.labels.clone(),
        annotations: Some(annotations),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node.into(),
            uid: node_uid.into(),
            controller: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.into());
    }
    pod.status = None;
    pod
}

/// The API side of each pass: statuses, mirror pods, finished deletions.
pub struct ApiSync {
    client: kube::Client,
    node: String,
    node_uid: Arc<OnceLock<String>>,
    /// The last status sent per API pod UID, so unchanged statuses are not sent again.
    sent: BTreeMap<String, PodStatus>,
    /// Failures already logged, so a pass per second does not repeat them.
    warned: BTreeSet<String>,
    /// The kubelet's root directory, where pods' volumes are written.
    root_dir: std::path::PathBuf,
    tokens: crate::volumes::Tokens,
}

impl ApiSync {
    pub fn new(
        client: kube::Client,
        node: String,
        node_uid: Arc<OnceLock<String>>,
        root_dir: std::path::PathBuf,
    ) -> ApiSync {
        ApiSync {
            client,
            node,
            node_uid,
            sent: BTreeMap::new(),
            warned: BTreeSet::new(),
            root_dir,
            tokens: crate::volumes::Tokens::default(),
        }
    }

    async fn patch_status(&mut self, namespace: &str, name: &str, uid: &str, status: &PodStatus) {
        if self.sent.get(uid) == Some(status) {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({"metadata": {"uid": uid}, "status": status});
        match pods
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.sent.insert(uid.to_string(), status.clone());
            }
            Err(e) => {
                if self.warned.insert(format!("{namespace}/{name}: {e}")) {
                    tracing::warn!(pod = %name, namespace = %namespace, error = %e, "cannot update pod status");
                }
            }
        }
    }

    async fn delete_now(&self, pod: &Pod, why: &str) {
        let (Some(name), Some(uid)) = (&pod.metadata.name, &pod.metadata.uid) else {
            return;
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(name, &params).await {
            Ok(_) => tracing::info!(pod = %name, namespace = %namespace, "{why}"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, namespace = %namespace, error = %e, "cannot delete pod"),
        }
    }

    /// Brings the API up to date with one pass: `views` are the pods the kubelet runs, `finished` the terminating
    /// API pods whose containers are all gone, `bound` every pod bound to the node (mirror pods included).
    /// Returns whether a pod's volumes became ready, so that its containers start without waiting for a period.
    pub async fn sync(&mut self, views: &[PodView], finished: &[Pod], bound: &[Pod]) -> bool {
        use tracing::Instrument;
        let span = tracing::debug_span!("api_sync", node = %self.node);
        async {
            let ready = self
                .tokens
                .sync(&self.client, &self.root_dir, bound, std::time::SystemTime::now())
                .await;
            self.sync_inner(views, finished, bound).await;
            ready
        }
        .instrument(span)
        .await
    }

    async fn sync_inner(&mut self, views: &[PodView], finished: &[Pod], bound: &[Pod]) {
        let by_name: BTreeMap<(String, String), &Pod> = bound
            .iter()
            .map(|p| {
                (
                    (
                        p.metadata.namespace.clone().unwrap_or_default(),
                        p.metadata.name.clone().unwrap_or_default(),
                    ),
                    p,
                )
            })
            .collect();
        let live: BTreeSet<String> = bound.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        let mut static_names = BTreeSet::new();
        for view in views {
            let key = (view.pod.namespace.clone(), view.pod.name.clone());
            if !view.pod.static_pod {
                if live.contains(&view.pod.uid)
                    && !finished
                        .iter()
                        .any(|f| f.metadata.uid.as_deref() == Some(&view.pod.uid))
                {
                    self.patch_status(&key.0, &key.1, &view.pod.uid.clone(), &view.status)
                        .await;
                }
                continue;
            }
            static_names.insert(key.clone());
            match by_name.get(&key) {
                None => {
                    let Some(node_uid) = self.node_uid.get().cloned() else {
                        continue;
                    };
                    let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
                    match pods
                        .create(&PostParams::default(), &mirror_pod(view, &self.node, &node_uid))
                        .await
                    {
                        Ok(_) => tracing::info!(pod = %key.1, namespace = %key.0, "created mirror pod"),
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => {
                            if self.warned.insert(format!("{}/{}: {e}", key.0, key.1)) {
                                tracing::warn!(pod = %key.1, namespace = %key.0, error = %e, "cannot create mirror pod");
                            }
                        }
                    }
                }
                Some(existing) if !is_mirror(existing) => {
                    tracing::debug!(pod = %key.1, "a pod that is not a mirror pod holds the static pod's name");
                }
                Some(existing) => {
                    let hash = existing
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(MIRROR_ANNOTATION))
                        .cloned()
                        .unwrap_or_default();
                    if hash != view.pod.uid || existing.metadata.deletion_timestamp.is_some() {
                        // Outdated or deleted by a user: removed now, recreated on the next pass.
                        self.delete_now(existing, "deleted outdated mirror pod").await;
                    } else if let Some(uid) = existing.metadata.uid.clone() {
                        self.patch_status(&key.0, &key.1, &uid, &view.status).await;
                    }
                }
            }
        }
        for pod in bound.iter().filter(|p| is_mirror(p)) {
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            if !static_names.contains(&key) {
                self.delete_now(pod, "deleted the mirror pod of a removed static pod")
                    .await;
            }
        }
        for pod in finished {
            self.delete_now(pod, "pod terminated; deleted").await;
        }
        self.sent.retain(|uid, _| live.contains(uid));
    }
}
