//! Values exchanged through the [`crate::Store`] trait.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::Result;

/// A store revision: global, strictly increasing with every write, the Kubernetes `resourceVersion`.
pub type Revision = i64;

/// One stored key with its value and the revisions Kubernetes exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (reset when a key is deleted and created again).
    pub create_revision: Revision,
    /// Revision of the last write to the key: the object's `resourceVersion`.
    pub mod_revision: Revision,
}

/// How to page through a prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Serve the list as of this revision; `None` (or 0) means the latest. Continuing pages pass the
    /// [`ListResult::revision`] of the first page so that all pages see the same snapshot.
    pub revision: Option<Revision>,
    /// At most this many items; `None` (or 0) means all.
    pub limit: Option<usize>,
    /// Start at this key (inclusive) instead of the prefix: the [`ListResult::next_key`] of the previous page.
    pub start_key: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Items in key order.
    pub items: Vec<KeyValue>,
    /// The revision the page was served at (the list's `resourceVersion`).
    pub revision: Revision,
    /// Whether keys remain after this page.
    pub more: bool,
    /// Where the next page starts, when `more`: together with `revision` this is a Kubernetes continue token.
    pub next_key: Option<String>,
    /// How many keys remain after this page (Kubernetes' `remainingItemCount`).
    pub remaining: u64,
}

/// What [`crate::Store::delete`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The last value the key held.
    pub prev: KeyValue,
    /// The revision of the deletion.
    pub revision: Revision,
}

/// Kubernetes' watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: String,
    /// The revision of the change.
    pub revision: Revision,
    /// The value after the change; `None` for `Deleted`.
    pub current: Option<KeyValue>,
    /// The value before the change, so a watcher with a label selector can see an object leave its selection;
    /// `None` for `Added`.
    pub prev: Option<KeyValue>,
}

/// Where a watch starts and what it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Watch every key under the given prefix rather than one key.
    pub prefix: bool,
    /// Deliver events from this revision on (inclusive); `None` (or 0) means changes after now.
    pub start_revision: Option<Revision>,
}

/// A stream of watch events in revision order. It ends after an error (for example
/// [`crate::Error::Compacted`]), when the store shuts down, or never. Dropping it stops the watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchEvent>>,
    _stop: DropGuard,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

/// Events a watch buffers before its producer waits for the consumer.
pub(crate) const WATCH_BUFFER: usize = 1024;

impl WatchStream {
    /// A stream and the producer half a backend's pump task feeds; `stop` is cancelled when the stream is dropped.
    pub(crate) fn channel(stop: CancellationToken) -> (mpsc::Sender<Result<WatchEvent>>, WatchStream) {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        (
            tx,
            WatchStream {
                rx,
                _stop: stop.drop_guard(),
            },
        )
    }

    /// The next event, an error after which the stream ends, or `None` once it has ended.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for WatchStream {
    type Item = Result<WatchEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
