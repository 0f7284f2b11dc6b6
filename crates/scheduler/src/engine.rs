//! The running scheduler: watches feed one task that owns the cache and the queue; it places pods one at a time
//! (assume), and hands the API calls (binding, failure reports) to spawned tasks whose outcomes come back as
//! messages. Owning all state in one task keeps each scheduling decision consistent without locks, and leaves the
//! slow part, the HTTP round trips, to run concurrently.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Event, EventSource, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn};

use crate::cache::{Cache, PodInfo, PodKey, pod_key};
use crate::queue::{Popped, Queue};

/// How the scheduler runs; [`Config::default`] is upstream's default profile.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is one of these are ours (upstream: the profiles' `schedulerName`s).
    pub scheduler_names: Vec<String>,
    /// `percentageOfNodesToScore`; 0 for upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// Binding requests in flight at once.
    pub bind_concurrency: usize,
    /// Seed of the tie-breaking between equally scored nodes.
    pub seed: u64,
    /// `reportingInstance` of the events written.
    pub identity: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_names: vec![DEFAULT_SCHEDULER.into()],
            percentage_of_nodes_to_score: 0,
            bind_concurrency: 64,
            seed: 0x5eed,
            identity: String::new(),
        }
    }
}

pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

enum Watched<K> {
    // Boxed: objects are large and the channel holds many messages.
    Apply(Box<K>),
    Delete(Box<K>),
    /// A complete listing (after a start or a watch restart): whatever is not in it is gone.
    Relisted(Vec<K>),
}

enum Msg {
    Node(Watched<Node>),
    Pod(Watched<Pod>),
    BindDone {
        key: PodKey,
        uid: String,
        pod: Arc<Pod>,
        attempts: u32,
        result: Result<(), kube::Error>,
    },
}

/// Schedules until `shutdown` fires. API errors are retried (watches back off, failed bindings requeue the pod).
pub async fn run(client: kube::Client, config: Config, shutdown: CancellationToken) {
    let (tx, rx) = mpsc::unbounded_channel();
    let nodes = tokio::spawn(forward(
        "nodes",
        Api::<Node>::all(client.clone()),
        tx.clone(),
        Msg::Node,
        shutdown.clone(),
    ));
    let pods = tokio::spawn(forward(
        "pods",
        Api::<Pod>::all(client.clone()),
        tx.clone(),
        Msg::Pod,
        shutdown.clone(),
    ));
    let mut engine = Engine {
        cache: Cache::new(config.percentage_of_nodes_to_score, config.seed),
        queue: Queue::default(),
        nodes_synced: false,
        pods_synced: false,
        events: HashMap::new(),
        bind_slots: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        report_slots: Arc::new(Semaphore::new(8)),
        names: config.scheduler_names.iter().cloned().collect(),
        config,
        client,
        tx,
        shutdown: shutdown.clone(),
        scheduled: 0,
    };
    engine.run(rx).await;
    let _ = nodes.await;
    let _ = pods.await;
    info!(scheduled = engine.scheduled, "scheduler stopped");
}

/// Runs a watcher, buffering initial listings so the engine sees them whole.
async fn forward<K>(
    what: &'static str,
    api: Api<K>,
    tx: mpsc::UnboundedSender<Msg>,
    wrap: fn(Watched<K>) -> Msg,
    shutdown: CancellationToken,
) where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing = Vec::new();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let msg = match event {
            None => return,
            Some(Ok(watcher::Event::Init)) => {
                listing.clear();
                continue;
            }
            Some(Ok(watcher::Event::InitApply(obj))) => {
                listing.push(obj);
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => Watched::Relisted(std::mem::take(&mut listing)),
            Some(Ok(watcher::Event::Apply(obj))) => Watched::Apply(Box::new(obj)),
            Some(Ok(watcher::Event::Delete(obj))) => Watched::Delete(Box::new(obj)),
            Some(Err(err)) => {
                warn!(watch = what, error = %err, "watch failed; retrying");
                continue;
            }
        };
        if tx.send(wrap(msg)).is_err() {
            return;
        }
    }
}

/// The last FailedScheduling event written for a pod, so repeats bump its count as upstream's recorder does.
#[derive(Clone)]
struct EventRecord {
    name: String,
    message: String,
    count: i32,
    first: Time,
}

struct Engine {
    cache: Cache,
    queue: Queue,
    nodes_synced: bool,
    pods_synced: bool,
    events: HashMap<PodKey, EventRecord>,
    bind_slots: Arc<Semaphore>,
    report_slots: Arc<Semaphore>,
    names: HashSet<String>,
    config: Config,
    client: kube::Client,
    tx: mpsc::UnboundedSender<Msg>,
    shutdown: CancellationToken,
    scheduled: u64,
}

fn is_ours(names: &HashSet<String>, pod: &Pod) -> bool {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(DEFAULT_SCHEDULER);
    names.contains(name)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Engine {
    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut since_yield = 0u32;
        loop {
            // Take in everything already reported before deciding, so decisions see the freshest state.
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg);
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            if self.nodes_synced
                && self.pods_synced
                && let Some(popped) = self.queue.pop(Instant::now())
            {
                self.schedule_one(popped);
                since_yield += 1;
                // Placing is CPU work; let the binding tasks and watches run between pods.
                if since_yield >= 8 {
                    since_yield = 0;
                    tokio::task::yield_now().await;
                }
                continue;
            }
            // Before both caches are synced nothing is popped, so a due time would only spin the loop.
            let due = if self.nodes_synced && self.pods_synced {
                self.queue.next_due()
            } else {
                None
            };
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                () = async {
                    match due {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Node(Watched::Apply(node)) => {
                if self.cache.upsert_node(*node) {
                    self.queue.move_all_to_backoff();
                }
            }
            Msg::Node(Watched::Delete(node)) => {
                if let Some(name) = &node.metadata.name {
                    self.cache.remove_node(name);
                }
            }
            Msg::Node(Watched::Relisted(nodes)) => {
                let listed: HashSet<String> = nodes.iter().filter_map(|n| n.metadata.name.clone()).collect();
                for name in self.cache.node_names() {
                    if !listed.contains(&name) {
                        self.cache.remove_node(&name);
                    }
                }
                for node in nodes {
                    self.cache.upsert_node(node);
                }
                self.queue.move_all_to_backoff();
                if !self.nodes_synced {
                    info!(nodes = self.cache.node_count(), "node cache synced");
                }
                self.nodes_synced = true;
            }
            Msg::Pod(Watched::Apply(pod)) => self.pod_changed(*pod),
            Msg::Pod(Watched::Delete(pod)) => self.pod_gone(&pod_key(&pod)),
            Msg::Pod(Watched::Relisted(pods)) => {
                let listed: HashSet<PodKey> = pods.iter().map(pod_key).collect();
                let mut known = self.queue.keys();
                // Assumed pods stay: their binding's outcome settles them.
                known.extend(
                    self.cache
                        .placed_keys()
                        .into_iter()
                        .filter(|k| self.cache.placement(k).is_some_and(|p| !p.assumed)),
                );
                for key in known {
                    if !listed.contains(&key) {
                        self.pod_gone(&key);
                    }
                }
                for pod in pods {
                    self.pod_changed(pod);
                }
                if !self.pods_synced {
                    info!(pending = self.queue.len(), "pod cache synced");
                }
                self.pods_synced = true;
            }
            Msg::BindDone {
                key,
                uid,
                pod,
                attempts,
                result,
            } => self.bind_done(key, uid, pod, attempts, result),
        }
    }

    fn pod_changed(&mut self, pod: Pod) {
        let key = pod_key(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if is_terminal(&pod) {
            // A finished pod frees its node's resources.
            self.pod_gone(&key);
            return;
        }
        let node = node_name(&pod);
        if !node.is_empty() {
            self.queue.remove(&key);
            self.events.remove(&key);
            let node = node.to_string();
            self.cache.place(&PodInfo::new(&pod), &uid, &node, false);
            return;
        }
        if let Some(p) = self.cache.placement(&key) {
            if p.assumed && p.uid == uid {
                // Our binding is in flight; this is an older view of the pod.
                return;
            }
            self.cache.unplace(&key);
        }
        if !is_ours(&self.names, &pod) || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&key);
            return;
        }
        self.queue.upsert(key, Arc::new(pod), Instant::now());
    }

    fn pod_gone(&mut self, key: &str) {
        self.queue.remove(key);
        self.events.remove(key);
        if self.cache.unplace(key).is_some() {
            self.queue.move_all_to_backoff();
        }
    }

    fn schedule_one(&mut self, popped: Popped) {
        let Popped { key, pod, attempts } = popped;
        let _span = info_span!("schedule", pod = %key, attempt = attempts + 1).entered();
        let info = PodInfo::new(&pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match self.cache.find_node(&info) {
            Ok(node) => {
                debug!(%node, "assumed");
                self.cache.place(&info, &uid, &node, true);
                self.scheduled += 1;
                self.spawn_bind(key, uid, pod, attempts + 1, node);
            }
            Err(diagnosis) => {
                let message = diagnosis.message();
                info!(%message, "unschedulable");
                self.queue
                    .add_unschedulable(key.clone(), pod.clone(), attempts + 1, Instant::now());
                self.spawn_report(key, pod, message);
            }
        }
    }

    fn spawn_bind(&self, key: PodKey, uid: String, pod: Arc<Pod>, attempts: u32, node: String) {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let slots = self.bind_slots.clone();
        let tx = self.tx.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = tokio::select! {
                () = shutdown.cancelled() => return,
                permit = slots.acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: pod.metadata.namespace.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node),
                    ..ObjectReference::default()
                },
            };
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(|_| ());
            let _ = tx.send(Msg::BindDone {
                key,
                uid,
                pod,
                attempts,
                result,
            });
        });
    }

    fn bind_done(
        &mut self,
        key: PodKey,
        uid: String,
        pod: Arc<Pod>,
        attempts: u32,
        result: Result<(), kube::Error>,
    ) {
        let Err(err) = result else { return };
        let ours = self
            .cache
            .placement(&key)
            .is_some_and(|p| p.assumed && p.uid == uid);
        if !ours {
            // The watch has told us more since (bound elsewhere, deleted): that is the truth.
            return;
        }
        self.cache.unplace(&key);
        self.queue.move_all_to_backoff();
        match &err {
            // Gone, or already bound / being deleted: the watch will deliver the pod's real state.
            kube::Error::Api(s) if s.code == 404 || s.code == 409 => {
                debug!(pod = %key, error = %err, "binding refused");
            }
            _ => {
                warn!(pod = %key, error = %err, "binding failed; retrying after backoff");
                self.queue.add_backoff(key, pod, attempts, Instant::now());
            }
        }
    }

    /// Writes the FailedScheduling event and the PodScheduled=False condition.
    fn spawn_report(&mut self, key: PodKey, pod: Arc<Pod>, message: String) {
        let now = Time(Timestamp::now());
        let record = match self.events.get(&key) {
            Some(r) if r.message == message => EventRecord {
                count: r.count + 1,
                ..r.clone()
            },
            _ => EventRecord {
                name: format!(
                    "{}.{:x}",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    now.0.as_nanosecond()
                ),
                message: message.clone(),
                count: 1,
                first: now.clone(),
            },
        };
        self.events.insert(key, record.clone());
        let client = self.client.clone();
        let slots = self.report_slots.clone();
        let shutdown = self.shutdown.clone();
        let identity = self.config.identity.clone();
        tokio::spawn(async move {
            let _permit = tokio::select! {
                () = shutdown.cancelled() => return,
                permit = slots.acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            };
            report(client, &pod, record, now, &identity).await;
        });
    }
}

async fn report(client: kube::Client, pod: &Pod, record: EventRecord, now: Time, identity: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
                && c.message.as_deref() == Some(record.message.as_str())
        });
    if !already {
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": record.message,
            "lastProbeTime": null,
            "lastTransitionTime": now,
        }]}});
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Err(err) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            debug!(pod = %name, error = %err, "could not set PodScheduled=False");
        }
    }
    let events: Api<Event> = Api::namespaced(client, &ns);
    let outcome = if record.count > 1 {
        let patch = serde_json::json!({"count": record.count, "lastTimestamp": now});
        events
            .patch(&record.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    } else {
        let event = Event {
            metadata: ObjectMeta {
                name: Some(record.name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: Some(ns.clone()),
                name: Some(name.clone()),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                ..ObjectReference::default()
            },
            reason: Some("FailedScheduling".into()),
            message: Some(record.message.clone()),
            type_: Some("Warning".into()),
            action: Some("Scheduling".into()),
            source: Some(EventSource {
                component: Some(DEFAULT_SCHEDULER.into()),
                host: None,
            }),
            reporting_component: Some(DEFAULT_SCHEDULER.into()),
            reporting_instance: Some(identity.to_string()),
            first_timestamp: Some(record.first.clone()),
            last_timestamp: Some(now.clone()),
            event_time: Some(MicroTime(now.0)),
            count: Some(1),
            ..Event::default()
        };
        events.create(&PostParams::default(), &event).await.map(|_| ())
    };
    if let Err(err) = outcome {
        debug!(pod = %name, error = %err, "could not record the FailedScheduling event");
    }
}
