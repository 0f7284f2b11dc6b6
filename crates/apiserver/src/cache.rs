//! The watch cache, as upstream's cacher: one store watch per resource (its storage prefix) keeps the resource's
//! current objects, decoded once, and a bounded window of recent events. Client watches of the resource (all
//! namespaces, one namespace, one name) are fanned out from it, and lists and gets with `resourceVersion=0`
//! read it instead of the store.
//!
//! - A [`Cacher`] starts by listing its prefix and then watches the store from the list's revision. A watch
//!   from a revision older than its window gets [`CacheError::TooOld`] (410 Gone), so clients relist.
//! - Every watcher has a bounded buffer filled without waiting: a watcher that falls behind is ended (its stream
//!   ends and the client re-watches) instead of slowing the others or growing memory.
//! - When the store watch fails (compaction, storage down) the cacher ends all its watchers, lists again and
//!   resumes; meanwhile it is not ready and callers fall back to the store or wait.
//!
//! Revisions are global to the store, so a cacher's revision only moves when its own resource changes: a
//! request that needs "not older than N" with N above the cacher's revision is served from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use store::{EventKind, KeyValue, ListOptions, Revision, Store, WatchOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Sizes and pauses of the watch cache.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Events kept per resource for watches that resume from a past resourceVersion.
    pub window: usize,
    /// Events buffered per watcher; a watcher that falls this far behind is ended.
    pub watcher_buffer: usize,
    /// Pause before listing again after the store watch or list failed.
    pub relist_backoff: Duration,
    /// How long a request waits for a starting cacher before giving up on it.
    pub ready_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            window: 4096,
            watcher_buffer: 1024,
            relist_backoff: Duration::from_millis(500),
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a cacher cannot serve a watch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The requested revision is older than the cacher's window.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld { requested: Revision, oldest: Revision },
    /// The cacher is (re)listing.
    #[error("the watch cache of {prefix} is not ready")]
    NotReady { prefix: String },
}

/// A cached object: decoded once, and serialized as a list item at most once, however many lists and watchers
/// read it.
#[derive(Debug)]
pub struct CachedObject {
    pub value: Value,
    list_item: OnceLock<Bytes>,
}

impl CachedObject {
    pub fn new(value: Value) -> Self {
        Self {
            value,
            list_item: OnceLock::new(),
        }
    }

    /// The object's JSON as an item of a list: without `kind` and `apiVersion`, as upstream's typed lists.
    pub fn list_item_json(&self) -> &Bytes {
        self.list_item.get_or_init(|| {
            let mut out = Vec::with_capacity(1024);
            let _ = match &self.value {
                Value::Object(map) => serde_json::to_writer(&mut out, &WithoutTypeMeta(map)),
                other => serde_json::to_writer(&mut out, other),
            };
            Bytes::from(out)
        })
    }
}

struct WithoutTypeMeta<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for WithoutTypeMeta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if k != "kind" && k != "apiVersion" {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// One change of a cached resource, decoded once and shared by every watcher.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventKind,
    pub key: String,
    pub revision: Revision,
    /// The object after the change; `None` for `Deleted`.
    pub current: Option<Arc<CachedObject>>,
    /// The object before the change (so selectors see objects leave); for `Deleted` it carries the deletion's
    /// resourceVersion, as upstream's DELETED events do.
    pub prev: Option<Arc<CachedObject>>,
}

/// Where a cache watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the cached objects as a snapshot ([`CacheWatch::initial`]), then the changes after it.
    Snapshot,
    /// With the changes after this revision.
    After(Revision),
}

/// All cachers of one API server, by storage prefix.
pub struct WatchCache {
    store: Arc<dyn Store>,
    config: CacheConfig,
    shutdown: CancellationToken,
    cachers: Mutex<HashMap<String, Arc<Cacher>>>,
}

impl WatchCache {
    /// Cachers stop when `shutdown` is cancelled.
    pub fn new(store: Arc<dyn Store>, config: CacheConfig, shutdown: CancellationToken) -> Self {
        Self {
            store,
            config,
            shutdown,
            cachers: Mutex::default(),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The cacher of `prefix`, started if needed. A new cacher lists at `hint` when given (the revision the first
    /// watcher starts from, so that it is inside the window) and at the latest revision otherwise.
    pub fn cacher(&self, prefix: &str, hint: Option<Revision>) -> Arc<Cacher> {
        let mut cachers = self.cachers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cachers.get(prefix) {
            return c.clone();
        }
        let cacher = Arc::new(Cacher::new(prefix.to_string(), self.config.clone()));
        cachers.insert(prefix.to_string(), cacher.clone());
        let span = tracing::info_span!("watch_cache", prefix = %prefix);
        tokio::spawn(
            cacher
                .clone()
                .run(self.store.clone(), hint, self.shutdown.clone())
                .instrument(span),
        );
        cacher
    }

    /// The cacher of `prefix` once it is ready, waiting up to the configured time for a starting one; `None` when
    /// it did not get ready in time (callers read the store instead).
    pub async fn ready(&self, prefix: &str) -> Option<Arc<Cacher>> {
        let cacher = self.cacher(prefix, None);
        cacher
            .wait_ready(self.config.ready_timeout)
            .await
            .then_some(cacher)
    }
}

/// The cache of one resource.
pub struct Cacher {
    prefix: String,
    config: CacheConfig,
    inner: Mutex<Inner>,
    ready: watch::Sender<bool>,
}

struct Inner {
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<CacheEvent>>,
    /// The revision of the latest change applied (or of the initial list).
    revision: Revision,
    /// Watches from this revision on are complete from the window.
    oldest: Revision,
    ready: bool,
    watchers: HashMap<u64, Slot>,
    next_id: u64,
}

struct Slot {
    key: String,
    prefix: bool,
    tx: mpsc::Sender<Arc<CacheEvent>>,
}

impl Slot {
    fn covers(&self, key: &str) -> bool {
        if self.prefix {
            key.starts_with(&self.key)
        } else {
            key == self.key
        }
    }
}

/// Keys under `prefix` in a sorted map.
fn under<'a>(
    objects: &'a BTreeMap<String, Arc<CachedObject>>,
    prefix: &'a str,
) -> impl Iterator<Item = &'a Arc<CachedObject>> + 'a {
    objects
        .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

fn decode(kv: &KeyValue) -> Option<Value> {
    match crate::rest::decode(kv) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "undecodable object left out of the watch cache");
            None
        }
    }
}

impl Cacher {
    fn new(prefix: String, config: CacheConfig) -> Self {
        Self {
            prefix,
            config,
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                window: VecDeque::new(),
                revision: 0,
                oldest: 0,
                ready: false,
                watchers: HashMap::new(),
                next_id: 0,
            }),
            ready: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Waits until the cacher has listed; false if it did not within `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await,
            Ok(Ok(_))
        )
    }

    /// The cacher's revision, `None` while it is not ready.
    pub fn revision(&self) -> Option<Revision> {
        let inner = self.lock();
        inner.ready.then_some(inner.revision)
    }

    /// Watches currently served.
    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    /// The cached objects under `prefix` (in key order) and the revision they are current at; `None` while not
    /// ready.
    pub fn list(&self, prefix: &str) -> Option<(Vec<Arc<CachedObject>>, Revision)> {
        let inner = self.lock();
        if !inner.ready {
            return None;
        }
        Some((under(&inner.objects, prefix).cloned().collect(), inner.revision))
    }

    /// The cached object at `key` (`Some(None)` when absent); `None` while not ready.
    pub fn get(&self, key: &str) -> Option<(Option<Arc<CachedObject>>, Revision)> {
        let inner = self.lock();
        if !inner.ready {
            return None;
        }
        Some((inner.objects.get(key).cloned(), inner.revision))
    }

    /// Registers a watcher of `key` (every key under it when `prefix`). The snapshot or the replayed window and
    /// the registration happen under one lock, so no change falls between them.
    pub fn watch(self: &Arc<Self>, key: &str, prefix: bool, start: Start) -> Result<CacheWatch, CacheError> {
        let mut inner = self.lock();
        if !inner.ready {
            return Err(CacheError::NotReady {
                prefix: self.prefix.clone(),
            });
        }
        let covers = |k: &str| if prefix { k.starts_with(key) } else { k == key };
        let (initial, replay, after) = match start {
            Start::Snapshot => {
                let initial: Vec<Arc<CachedObject>> = if prefix {
                    under(&inner.objects, key).cloned().collect()
                } else {
                    inner.objects.get(key).cloned().into_iter().collect()
                };
                (initial, Vec::new(), inner.revision)
            }
            Start::After(rev) => {
                if rev < inner.oldest {
                    return Err(CacheError::TooOld {
                        requested: rev,
                        oldest: inner.oldest,
                    });
                }
                let replay: Vec<Arc<CacheEvent>> = inner
                    .window
                    .iter()
                    .filter(|e| e.revision > rev && covers(&e.key))
                    .cloned()
                    .collect();
                (Vec::new(), replay, rev)
            }
        };
        let (tx, rx) = mpsc::channel(self.config.watcher_buffer.max(1) + replay.len());
        for ev in replay {
            // Cannot fail: the channel was sized for the replay.
            let _ = tx.try_send(ev);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.watchers.insert(
            id,
            Slot {
                key: key.to_string(),
                prefix,
                tx,
            },
        );
        Ok(CacheWatch {
            initial,
            revision: after,
            rx,
            cacher: self.clone(),
            id,
        })
    }

    /// Lists, watches from the list, applies events; lists again after a failure; ends on shutdown.
    async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut hint: Option<Revision>,
        shutdown: CancellationToken,
    ) {
        loop {
            let listed = tokio::select! {
                _ = shutdown.cancelled() => break,
                l = store.list(&self.prefix, ListOptions { revision: hint, ..Default::default() }) => l,
            };
            let page = match listed {
                Ok(p) => p,
                Err(e) if hint.is_some() => {
                    tracing::debug!(error = %e, ?hint, "listing at the first watcher's revision failed; listing the latest");
                    hint = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache list failed; retrying");
                    if self.pause(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            hint = None;
            let opts = WatchOptions {
                prefix: true,
                start_revision: Some(page.revision + 1),
            };
            let mut stream = match store.watch(&self.prefix, opts).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache could not watch the store; retrying");
                    if self.pause(&shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            let objects: BTreeMap<String, Arc<CachedObject>> = page
                .items
                .iter()
                .filter_map(|kv| decode(kv).map(|v| (kv.key.clone(), Arc::new(CachedObject::new(v)))))
                .collect();
            let count = objects.len();
            {
                let mut inner = self.lock();
                inner.objects = objects;
                inner.window.clear();
                inner.revision = page.revision;
                inner.oldest = page.revision;
                inner.ready = true;
            }
            self.ready.send_replace(true);
            tracing::debug!(revision = page.revision, objects = count, "watch cache ready");
            let failure = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break None,
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => self.apply(ev),
                        Some(Err(e)) => break Some(e.to_string()),
                        None => break Some("the store watch ended".to_string()),
                    },
                }
            };
            // Watchers end with the cache's history: they re-watch and the 410 or relist sorts them out.
            {
                let mut inner = self.lock();
                inner.ready = false;
                inner.watchers.clear();
                inner.window.clear();
                inner.objects.clear();
            }
            self.ready.send_replace(false);
            match failure {
                None => break,
                Some(reason) => {
                    tracing::warn!(%reason, "watch cache lost its store watch; listing again");
                    if self.pause(&shutdown).await {
                        break;
                    }
                }
            }
        }
    }

    /// Sleeps the back-off; true when shutdown came first.
    async fn pause(&self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(self.config.relist_backoff) => false,
        }
    }

    fn apply(&self, ev: store::WatchEvent) {
        let current = ev
            .current
            .as_ref()
            .and_then(decode)
            .map(|v| Arc::new(CachedObject::new(v)));
        let prev = ev.prev.as_ref().and_then(decode).map(|mut v| {
            if ev.kind == EventKind::Deleted {
                crate::rest::set_rv(&mut v, ev.revision);
            }
            Arc::new(CachedObject::new(v))
        });
        let event = Arc::new(CacheEvent {
            kind: ev.kind,
            key: ev.key,
            revision: ev.revision,
            current,
            prev,
        });
        let mut inner = self.lock();
        match &event.current {
            Some(obj) if event.kind != EventKind::Deleted => {
                inner.objects.insert(event.key.clone(), obj.clone());
            }
            _ => {
                inner.objects.remove(&event.key);
            }
        }
        inner.revision = event.revision;
        inner.window.push_back(event.clone());
        while inner.window.len() > self.config.window.max(1) {
            if let Some(old) = inner.window.pop_front() {
                inner.oldest = old.revision;
            }
        }
        inner.watchers.retain(|id, slot| {
            if !slot.covers(&event.key) {
                return true;
            }
            match slot.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(watcher = id, "ending a watcher that fell behind");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}

/// One watcher of a [`Cacher`]; deregisters when dropped.
pub struct CacheWatch {
    /// The snapshot of a [`Start::Snapshot`] watch, in key order.
    pub initial: Vec<Arc<CachedObject>>,
    /// The revision the watch continues after: the snapshot's or the requested one.
    pub revision: Revision,
    rx: mpsc::Receiver<Arc<CacheEvent>>,
    cacher: Arc<Cacher>,
    id: u64,
}

impl CacheWatch {
    /// The next change after [`CacheWatch::revision`]; `None` once the watcher was ended (it fell behind, or the
    /// cacher lost its store watch).
    pub async fn next(&mut self) -> Option<Arc<CacheEvent>> {
        loop {
            let ev = self.rx.recv().await?;
            // A start revision above the cacher's may still see older events arrive: they are not news here.
            if ev.revision > self.revision {
                return Some(ev);
            }
        }
    }

    /// A change already buffered, without waiting.
    pub fn try_next(&mut self) -> Option<Arc<CacheEvent>> {
        loop {
            let ev = self.rx.try_recv().ok()?;
            if ev.revision > self.revision {
                return Some(ev);
            }
        }
    }

    /// The cacher's revision now: every change up to it is buffered for this watcher (or was delivered).
    pub fn cache_revision(&self) -> Option<Revision> {
        self.cacher.revision()
    }
}

impl Drop for CacheWatch {
    fn drop(&mut self) {
        self.cacher.lock().watchers.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use serde_json::json;
    use store::{SqliteConfig, SqliteStore};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(30);
    const CMS: &str = "/registry/configmaps/";

    struct Fixture {
        store: Arc<dyn Store>,
        cache: WatchCache,
        shutdown: CancellationToken,
        _dir: tempfile::TempDir,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn fixture(config: CacheConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(SqliteConfig::new(dir.path().join("db")), shutdown.child_token())
                .await
                .unwrap(),
        );
        let cache = WatchCache::new(store.clone(), config, shutdown.child_token());
        Fixture {
            store,
            cache,
            shutdown,
            _dir: dir,
        }
    }

    fn small(window: usize, watcher_buffer: usize) -> CacheConfig {
        CacheConfig {
            window,
            watcher_buffer,
            relist_backoff: Duration::from_millis(20),
            ..CacheConfig::default()
        }
    }

    fn cm(ns: &str, name: &str, labels: Value) -> Bytes {
        Bytes::from(
            json!({"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns, "labels": labels}})
            .to_string(),
        )
    }

    async fn put(store: &dyn Store, ns: &str, name: &str) -> Revision {
        let key = format!("{CMS}{ns}/{name}");
        match store.get(&key).await {
            Ok(kv) => {
                store
                    .update(&key, cm(ns, name, json!({})), kv.mod_revision, None)
                    .await
                    .unwrap()
                    .mod_revision
            }
            Err(_) => {
                store
                    .create(&key, cm(ns, name, json!({})), None)
                    .await
                    .unwrap()
                    .mod_revision
            }
        }
    }

    async fn ready(f: &Fixture) -> Arc<Cacher> {
        let c = f.cache.cacher(CMS, None);
        assert!(c.wait_ready(DEADLINE).await, "cacher never got ready");
        c
    }

    async fn next(w: &mut CacheWatch) -> Option<Arc<CacheEvent>> {
        tokio::time::timeout(DEADLINE, w.next())
            .await
            .expect("no event before the deadline")
    }

    fn name(v: &Value) -> &str {
        v["metadata"]["name"].as_str().unwrap_or("")
    }

    #[tokio::test]
    async fn a_snapshot_watch_gets_the_cached_objects_then_each_change_once_in_order() {
        let f = fixture(CacheConfig::default()).await;
        put(f.store.as_ref(), "a", "one").await;
        let c = ready(&f).await;
        let mut w = c.watch(CMS, true, Start::Snapshot).unwrap();
        assert_eq!(
            w.initial.iter().map(|o| name(&o.value)).collect::<Vec<_>>(),
            ["one"]
        );
        let r1 = put(f.store.as_ref(), "a", "two").await;
        let r2 = put(f.store.as_ref(), "a", "one").await;
        let deleted = f.store.delete(&format!("{CMS}a/two"), None).await.unwrap();
        let got: Vec<(EventKind, Revision)> = [
            next(&mut w).await.unwrap(),
            next(&mut w).await.unwrap(),
            next(&mut w).await.unwrap(),
        ]
        .iter()
        .map(|e| (e.kind, e.revision))
        .collect();
        assert_eq!(
            got,
            [
                (EventKind::Added, r1),
                (EventKind::Modified, r2),
                (EventKind::Deleted, deleted.revision)
            ]
        );
        // The cached state follows, and the deleted object carries the deletion's resourceVersion.
        let (objects, rev) = c.list(CMS).unwrap();
        assert_eq!(
            objects.iter().map(|o| name(&o.value)).collect::<Vec<_>>(),
            ["one"]
        );
        assert_eq!(rev, deleted.revision);
    }

    #[tokio::test]
    async fn a_watch_from_a_revision_in_the_window_replays_what_it_missed_and_older_ones_are_too_old() {
        let f = fixture(small(4, 16)).await;
        let c = ready(&f).await;
        let mut revs = Vec::new();
        for i in 0..10 {
            revs.push(put(f.store.as_ref(), "a", &format!("o{i}")).await);
        }
        let last = revs.last().copied();
        testkit::eventually(DEADLINE, || async {
            (c.revision() == last).then_some(()).ok_or("cache behind")
        })
        .await
        .unwrap();
        // The window holds the last 4 events: from the 6th on the watch is complete.
        let mut w = c.watch(CMS, true, Start::After(revs[5])).unwrap();
        for want in &revs[6..] {
            assert_eq!(next(&mut w).await.unwrap().revision, *want);
        }
        assert_eq!(
            c.watch(CMS, true, Start::After(revs[4])).err(),
            Some(CacheError::TooOld {
                requested: revs[4],
                oldest: revs[5]
            })
        );
    }

    #[tokio::test]
    async fn watchers_of_a_namespace_or_of_one_name_see_only_their_keys() {
        let f = fixture(CacheConfig::default()).await;
        let c = ready(&f).await;
        let mut ns = c.watch(&format!("{CMS}b/"), true, Start::Snapshot).unwrap();
        let mut one = c.watch(&format!("{CMS}a/x"), false, Start::Snapshot).unwrap();
        put(f.store.as_ref(), "a", "y").await;
        put(f.store.as_ref(), "bb", "x").await;
        let b = put(f.store.as_ref(), "b", "x").await;
        let ax = put(f.store.as_ref(), "a", "x").await;
        assert_eq!(next(&mut ns).await.unwrap().revision, b);
        assert_eq!(next(&mut one).await.unwrap().revision, ax);
        assert!(ns.try_next().is_none() && one.try_next().is_none());
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_ended_and_a_dropped_one_deregisters() {
        let f = fixture(small(1024, 4)).await;
        let c = ready(&f).await;
        let mut slow = c.watch(CMS, true, Start::Snapshot).unwrap();
        let dropped = c.watch(CMS, true, Start::Snapshot).unwrap();
        assert_eq!(c.watcher_count(), 2);
        drop(dropped);
        assert_eq!(c.watcher_count(), 1);
        for i in 0..6 {
            put(f.store.as_ref(), "a", &format!("o{i}")).await;
        }
        // What was buffered is still delivered, then the stream ends.
        let mut got = 0;
        while next(&mut slow).await.is_some() {
            got += 1;
        }
        assert_eq!(got, 4);
        assert_eq!(c.watcher_count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_thousand_watchers_receive_every_event_in_order_and_a_stalled_one_neither_slows_them_nor_grows()
     {
        const WATCHERS: usize = 10_000;
        const BATCH: usize = 32;
        const BATCHES: usize = 8;
        const BUFFER: usize = 64;
        let f = fixture(small(1024, BUFFER)).await;
        let c = ready(&f).await;
        let received = Arc::new(AtomicUsize::new(0));
        let start = c.revision().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..WATCHERS {
            let mut w = c.watch(CMS, true, Start::After(start)).unwrap();
            let received = received.clone();
            tasks.push(tokio::spawn(async move {
                let mut revs = Vec::with_capacity(BATCH * BATCHES);
                while revs.len() < BATCH * BATCHES {
                    match w.next().await {
                        Some(ev) => revs.push(ev.revision),
                        None => break,
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
                revs
            }));
        }
        let mut stalled = c.watch(CMS, true, Start::After(start)).unwrap();
        let mut written = Vec::new();
        for b in 0..BATCHES {
            for i in 0..BATCH {
                written.push(put(f.store.as_ref(), "a", &format!("o{}", (b * BATCH + i) % 50)).await);
            }
            // The next batch waits for every active watcher, so only the stalled one can fall behind.
            let want = WATCHERS * written.len();
            testkit::eventually(DEADLINE, || async {
                let got = received.load(Ordering::Relaxed);
                (got >= want)
                    .then_some(())
                    .ok_or_else(|| format!("batch {b}: {got} of {want} deliveries"))
            })
            .await
            .unwrap();
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), written);
        }
        // The stalled watcher holds at most its buffer and was ended, leaving the others registered.
        let mut buffered = 0;
        while stalled.try_next().is_some() {
            buffered += 1;
        }
        assert!(
            buffered <= BUFFER,
            "{buffered} events buffered for a stalled watcher"
        );
        assert!(next(&mut stalled).await.is_none());
    }

    /// A store whose backend can be replaced, to end the cacher's store watch as a lost etcd would.
    struct Swappable(Mutex<Arc<dyn Store>>);

    impl Swappable {
        fn now(&self) -> Arc<dyn Store> {
            self.0.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Store for Swappable {
        async fn get(&self, key: &str) -> store::Result<KeyValue> {
            self.now().get(key).await
        }
        async fn list(&self, prefix: &str, opts: ListOptions) -> store::Result<store::ListResult> {
            self.now().list(prefix, opts).await
        }
        async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> store::Result<KeyValue> {
            self.now().create(key, value, ttl).await
        }
        async fn update(
            &self,
            key: &str,
            value: Bytes,
            expected: Revision,
            ttl: Option<Duration>,
        ) -> store::Result<KeyValue> {
            self.now().update(key, value, expected, ttl).await
        }
        async fn delete(&self, key: &str, expected: Option<Revision>) -> store::Result<store::Deleted> {
            self.now().delete(key, expected).await
        }
        async fn watch(&self, key: &str, opts: WatchOptions) -> store::Result<store::WatchStream> {
            self.now().watch(key, opts).await
        }
        async fn current_revision(&self) -> store::Result<Revision> {
            self.now().current_revision().await
        }
        async fn compact(&self, revision: Revision) -> store::Result<()> {
            self.now().compact(revision).await
        }
    }

    #[tokio::test]
    async fn a_cache_that_loses_its_store_watch_ends_its_watchers_and_lists_again() {
        let dir = tempfile::tempdir().unwrap();
        let open = |token: CancellationToken| {
            let path = dir.path().join("db");
            async move {
                Arc::new(SqliteStore::open(SqliteConfig::new(path), token).await.unwrap()) as Arc<dyn Store>
            }
        };
        let first = CancellationToken::new();
        let shutdown = CancellationToken::new();
        let _stop = shutdown.clone().drop_guard();
        let store = Arc::new(Swappable(Mutex::new(open(first.clone()).await)));
        let cache = WatchCache::new(store.clone(), small(64, 64), shutdown.child_token());
        put(store.as_ref(), "a", "before").await;
        let c = cache.cacher(CMS, None);
        assert!(c.wait_ready(DEADLINE).await);
        let mut w = c.watch(CMS, true, Start::Snapshot).unwrap();

        // The old backend goes away; a new one over the same data takes its place.
        *store.0.lock().unwrap() = open(shutdown.child_token()).await;
        first.cancel();
        assert!(
            next(&mut w).await.is_none(),
            "the watcher outlived its cache's store watch"
        );
        let after = put(store.as_ref(), "a", "after").await;
        testkit::eventually(DEADLINE, || async {
            match c.list(CMS) {
                Some((objects, rev)) if rev >= after => Ok(objects.len()),
                _ => Err("not relisted yet"),
            }
        })
        .await
        .map(|n| assert_eq!(n, 2))
        .unwrap();
    }
}
