//! The embedded backend: a kine-style revision log in one SQLite file, for single-node clusters.
//!
//! - One writer connection behind a mutex: it assigns revisions (current + 1), applies compare-and-swap inside
//!   an immediate transaction, and publishes each committed change on a broadcast channel while still holding
//!   the lock, so watchers see changes in revision order.
//! - A few reader connections: WAL lets them read consistent snapshots while the writer commits.
//! - Every SQLite call runs on tokio's blocking pool, never on the async workers.
//! - Watches replay the log from their start revision, then follow the broadcast; a watcher that falls behind
//!   the broadcast goes back to the log (see `watch.rs`).
//! - A maintenance task deletes expired TTL keys (producing `Deleted` events) by the injected [`Clock`], and
//!   compacts history when [`SqliteConfig::compaction`] is set.
//!
//! See `db.rs` for the tables.

mod db;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use crate::compactor::{CompactionPolicy, compaction_target};
use crate::validate::{self, prefix_end};
use crate::{
    Clock, Deleted, Error, KeyValue, ListOptions, ListResult, Result, Revision, Store, SystemClock,
    WatchEvent, WatchOptions, WatchStream,
};

/// Where the embedded store keeps its data and how it maintains it.
#[derive(Clone)]
pub struct SqliteConfig {
    /// The database file (created if missing; `-wal` and `-shm` files appear next to it).
    pub path: PathBuf,
    /// The time TTL expiry is measured against.
    pub clock: Arc<dyn Clock>,
    /// How often expired keys are looked for. Keys live at most this much past their TTL.
    pub sweep_interval: Duration,
    /// Periodic compaction; `None` leaves compaction to explicit [`Store::compact`] calls.
    pub compaction: Option<CompactionPolicy>,
    /// Reader connections kept open for concurrent reads.
    pub readers: usize,
    /// Changes a watcher may fall behind the in-process broadcast by before it goes back to reading the log.
    pub broadcast_capacity: usize,
}

impl std::fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("path", &self.path)
            .field("sweep_interval", &self.sweep_interval)
            .field("compaction", &self.compaction)
            .field("readers", &self.readers)
            .field("broadcast_capacity", &self.broadcast_capacity)
            .finish_non_exhaustive()
    }
}

impl SqliteConfig {
    /// Defaults: the system clock, a sweep every second, compaction every 5 minutes keeping at least 1000
    /// revisions, four readers, a broadcast of 4096 changes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            clock: Arc::new(SystemClock),
            sweep_interval: Duration::from_secs(1),
            compaction: Some(CompactionPolicy::default()),
            readers: 4,
            broadcast_capacity: 4096,
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    pub fn with_compaction(mut self, compaction: Option<CompactionPolicy>) -> Self {
        self.compaction = compaction;
        self
    }
}

/// A [`Store`] in a local SQLite file.
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// Stops the maintenance task and every watch when the store is dropped.
    _stop: DropGuard,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.config.path)
            .finish_non_exhaustive()
    }
}

struct Writer {
    conn: Connection,
    revision: Revision,
}

pub(crate) struct Inner {
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// Committed changes, in revision order.
    events: broadcast::Sender<Arc<WatchEvent>>,
    /// The latest committed revision.
    revision: AtomicI64,
    config: SqliteConfig,
    stop: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite half-written (transactions roll back), so carry on.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SqliteStore {
    /// Opens (or creates) the database and starts the maintenance task, which stops with `shutdown` or when the
    /// store is dropped.
    pub async fn open(config: SqliteConfig, shutdown: CancellationToken) -> Result<Self> {
        let path = config.path.clone();
        let writer = tokio::task::spawn_blocking(move || db::open(&path, true))
            .await
            .map_err(|e| Error::Internal(format!("open task failed: {e}")))??;
        let revision = db::current_revision(&writer)?;
        let stop = shutdown.child_token();
        let inner = Arc::new(Inner {
            writer: Mutex::new(Writer {
                conn: writer,
                revision,
            }),
            readers: Mutex::new(Vec::new()),
            events: broadcast::channel(config.broadcast_capacity.max(1)).0,
            revision: AtomicI64::new(revision),
            config,
            stop: stop.clone(),
        });
        let span = tracing::info_span!("sqlite.maintenance", path = %inner.config.path.display());
        tokio::spawn(maintain(inner.clone()).instrument(span));
        Ok(Self {
            inner,
            _stop: stop.drop_guard(),
        })
    }

    /// Deletes every key whose TTL has passed by the store's clock, now rather than at the next sweep; returns how
    /// many were deleted.
    pub async fn sweep_expired(&self) -> Result<usize> {
        self.inner.clone().blocking(Inner::sweep).await
    }
}

impl Inner {
    async fn blocking<T, F>(self: Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || f(&self))
            .await
            .map_err(|e| Error::Internal(format!("storage task failed: {e}")))?
    }

    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => db::open(&self.config.path, false)?,
        };
        let result = f(&mut conn);
        let mut readers = lock(&self.readers);
        if readers.len() < self.config.readers.max(1) {
            readers.push(conn);
        }
        result
    }

    fn write(&self, key: &str, op: db::Write<'_>) -> Result<Arc<WatchEvent>> {
        let mut writer = lock(&self.writer);
        let revision = writer.revision + 1;
        let event = Arc::new(db::write(&mut writer.conn, revision, key, op)?);
        writer.revision = revision;
        self.revision.store(revision, Ordering::SeqCst);
        // Sent under the writer lock, so the broadcast carries changes in revision order. No receivers is fine.
        let _ = self.events.send(event.clone());
        Ok(event)
    }

    fn expires_at(&self, ttl: Option<Duration>) -> Option<i64> {
        let at = self.config.clock.now() + ttl?;
        let ms = at.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        Some(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    fn sweep(&self) -> Result<usize> {
        let Some(now) = self.expires_at(Some(Duration::ZERO)) else {
            return Ok(0);
        };
        let expired = {
            let writer = lock(&self.writer);
            db::expired(&writer.conn, now)?
        };
        let mut deleted = 0;
        for (key, revision) in expired {
            // Only the version that expired: a key rewritten since keeps living.
            match self.write(
                &key,
                db::Write::Delete {
                    expected: Some(revision),
                },
            ) {
                Ok(_) => deleted += 1,
                Err(Error::NotFound { .. } | Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if deleted > 0 {
            tracing::debug!(deleted, "expired keys deleted");
        }
        Ok(deleted)
    }

    fn compact(&self, revision: Revision) -> Result<()> {
        let mut writer = lock(&self.writer);
        let removed = db::compact(&mut writer.conn, revision)?;
        tracing::debug!(revision, removed, "compacted");
        Ok(())
    }
}

/// TTL sweeps and periodic compaction, until the store stops.
async fn maintain(inner: Arc<Inner>) {
    let mut sweep = tokio::time::interval(inner.config.sweep_interval.max(Duration::from_millis(1)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let policy = inner.config.compaction;
    let mut compaction = tokio::time::interval(policy.map_or(Duration::from_secs(3600), |p| p.interval));
    compaction.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen_last_tick: Option<Revision> = None;
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = sweep.tick() => {
                if let Err(e) = inner.clone().blocking(Inner::sweep).await {
                    tracing::warn!(error = %e, "TTL sweep failed");
                }
            }
            _ = compaction.tick(), if policy.is_some() => {
                let current = inner.revision.load(Ordering::SeqCst);
                if let (Some(policy), Some(seen)) = (policy, seen_last_tick)
                    && let Some(target) = compaction_target(&policy, seen, current)
                {
                    match inner.clone().blocking(move |i| i.compact(target)).await {
                        Ok(()) | Err(Error::Compacted { .. }) => {}
                        Err(e) => tracing::warn!(error = %e, revision = target, "compaction failed"),
                    }
                }
                seen_last_tick = Some(current);
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<KeyValue> {
        validate::key(key)?;
        let span = tracing::debug_span!("sqlite.get", key);
        let owned = key.to_owned();
        self.inner
            .clone()
            .blocking(move |inner| {
                inner
                    .read(|conn| db::get(conn, &owned))?
                    .ok_or(Error::NotFound { key: owned })
            })
            .instrument(span)
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let start = validate::list(prefix, &opts)?.to_owned();
        let span = tracing::debug_span!("sqlite.list", prefix, start, revision = ?opts.revision, limit = ?opts.limit);
        let end = prefix_end(prefix);
        let revision = opts.revision.filter(|r| *r > 0);
        let limit = opts.limit.filter(|l| *l > 0);
        let page = self
            .inner
            .clone()
            .blocking(move |inner| inner.read(|conn| db::list(conn, &start, &end, revision, limit)))
            .instrument(span)
            .await?;
        let remaining = page.count.saturating_sub(page.items.len() as u64);
        let more = remaining > 0;
        let next_key = if more {
            page.items.last().map(|kv| validate::key_after(&kv.key))
        } else {
            None
        };
        Ok(ListResult {
            items: page.items,
            revision: page.revision,
            more,
            next_key,
            remaining,
        })
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        validate::key(key)?;
        validate::value(&value)?;
        let span = tracing::debug_span!("sqlite.create", key, size = value.len(), ?ttl);
        let key = key.to_owned();
        let event = self
            .inner
            .clone()
            .blocking(move |inner| {
                let expires_at = inner.expires_at(ttl);
                inner.write(
                    &key,
                    db::Write::Create {
                        value: &value,
                        expires_at,
                    },
                )
            })
            .instrument(span)
            .await?;
        event
            .current
            .clone()
            .ok_or_else(|| Error::Internal("create produced no value".into()))
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        validate::key(key)?;
        validate::value(&value)?;
        let span = tracing::debug_span!(
            "sqlite.update",
            key,
            expected_mod_revision,
            size = value.len(),
            ?ttl
        );
        let key = key.to_owned();
        let event = self
            .inner
            .clone()
            .blocking(move |inner| {
                let expires_at = inner.expires_at(ttl);
                inner.write(
                    &key,
                    db::Write::Update {
                        value: &value,
                        expected: expected_mod_revision,
                        expires_at,
                    },
                )
            })
            .instrument(span)
            .await?;
        event
            .current
            .clone()
            .ok_or_else(|| Error::Internal("update produced no value".into()))
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate::key(key)?;
        let span = tracing::debug_span!("sqlite.delete", key, ?expected_mod_revision);
        let key = key.to_owned();
        let event = self
            .inner
            .clone()
            .blocking(move |inner| {
                inner.write(
                    &key,
                    db::Write::Delete {
                        expected: expected_mod_revision,
                    },
                )
            })
            .instrument(span)
            .await?;
        match &event.prev {
            Some(prev) => Ok(Deleted {
                prev: prev.clone(),
                revision: event.revision,
            }),
            None => Err(Error::Internal("delete produced no previous value".into())),
        }
    }

    async fn watch(&self, key: &str, opts: WatchOptions) -> Result<WatchStream> {
        if opts.prefix {
            validate::prefix(key)?;
        } else {
            validate::key(key)?;
        }
        Ok(watch::start(self.inner.clone(), key.to_owned(), opts))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let span = tracing::debug_span!("sqlite.compact", revision);
        self.inner
            .clone()
            .blocking(move |inner| inner.compact(revision))
            .instrument(span)
            .await
    }
}
