//! Revisioned key-value storage for the API server: one object-safe [`Store`] trait, two backends.
//!
//! Semantics follow etcd v3 as kube-apiserver uses it: one global revision that grows with every write and
//! becomes the objects' `resourceVersion`; per-key create and modification revisions; compare-and-swap on the
//! modification revision; lists by prefix, paged at a fixed revision; watches of a key or prefix from a revision,
//! with the previous value on every event; compaction of old history (reads and watches below it fail with
//! [`Error::Compacted`], which the API maps to 410 Gone); keys that expire after a time-to-live. Keys follow
//! `/registry/<resource>/...`, values are opaque bytes of at most [`MAX_VALUE_SIZE`].
//!
//! Layout:
//! - [`Store`] and its value types ([`KeyValue`], [`ListOptions`], [`ListResult`], [`WatchEvent`], [`WatchStream`]),
//!   [`Error`].
//! - [`etcd`]: [`EtcdStore`] on the etcd v3 API: TLS client certificates, several endpoints with failover,
//!   per-request deadlines, leases shared between keys, watches that resume on another member.
//! - [`sqlite`]: [`SqliteStore`], the embedded single-node backend: a kine-style revision log in SQLite, watch
//!   fan-out in process, a TTL sweeper driven by a [`Clock`].
//! - [`compactor`]: a periodic compaction task that works on any [`Store`].
//!
//! Entry points: [`EtcdStore::connect`] with an [`EtcdConfig`], [`SqliteStore::open`] with a [`SqliteConfig`]; both
//! are meant to be held as `Arc<dyn Store>`.

pub mod clock;
pub mod compactor;
mod error;
pub mod etcd;
pub mod sqlite;
mod types;
mod validate;

use std::time::Duration;

use bytes::Bytes;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result};
pub use etcd::{EtcdConfig, EtcdStore};
pub use sqlite::{SqliteConfig, SqliteStore};
pub use types::{
    Deleted, EventKind, KeyValue, ListOptions, ListResult, Revision, WatchEvent, WatchOptions, WatchStream,
};
pub use validate::{KEY_PREFIX, MAX_VALUE_SIZE};

/// Revisioned storage as the API server needs it. Every call checks its input first: an invalid key or an
/// oversized value fails with [`Error::InvalidKey`] / [`Error::ValueTooLarge`] and writes nothing.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The current value of `key`, or [`Error::NotFound`].
    async fn get(&self, key: &str) -> Result<KeyValue>;

    /// Keys under `prefix` (which ends with `/`) in key order, one page at a time. A `revision` in the past reads
    /// that snapshot ([`Error::Compacted`] if it is gone, [`Error::FutureRevision`] if it has not happened).
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Writes `key` if it does not exist ([`Error::AlreadyExists`] otherwise). With a `ttl` the key is deleted
    /// once it expires (Kubernetes events).
    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue>;

    /// Replaces `key` if its modification revision is still `expected_mod_revision`: [`Error::Conflict`] with the
    /// key's current revision if not, [`Error::NotFound`] if the key is gone. The `ttl` applies to the new value;
    /// `None` removes any expiry.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue>;

    /// Deletes `key`, only if its modification revision is `expected_mod_revision` when given, and returns what
    /// was deleted.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted>;

    /// Changes to `key`, or to every key under it when `opts.prefix` (then `key` ends with `/`), from
    /// `opts.start_revision` on. The watch is registered when this returns: no later write is missed. Errors
    /// during the watch, such as [`Error::Compacted`] for a start revision below the compacted one, arrive on the
    /// stream, which then ends.
    async fn watch(&self, key: &str, opts: WatchOptions) -> Result<WatchStream>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Discards history before `revision`: the state as of `revision` stays readable and watchable. Fails with
    /// [`Error::Compacted`] if history is already compacted past it.
    async fn compact(&self, revision: Revision) -> Result<()>;
}
