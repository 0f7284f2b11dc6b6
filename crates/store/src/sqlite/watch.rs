//! In-process watches on the embedded store. A watch subscribes to the broadcast of committed changes first,
//! then replays the log from its start revision, then follows the broadcast, skipping what the replay already
//! delivered: subscribing before reading means no change falls between the two. A watcher that lags behind the
//! broadcast (a slow consumer) replays the log again from where it was.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Inner, db};
use crate::validate::prefix_end;
use crate::{Error, Result, Revision, WatchEvent, WatchOptions, WatchStream};

/// Log rows read per replay query.
const REPLAY_PAGE: usize = 512;

struct Spec {
    key: String,
    /// The end of the prefix range; `None` watches one key.
    end: Option<Vec<u8>>,
}

impl Spec {
    fn range(&self) -> db::Range<'_> {
        match &self.end {
            Some(end) => db::Range::Prefix {
                start: &self.key,
                end,
            },
            None => db::Range::Key(&self.key),
        }
    }
}

pub(super) fn start(inner: Arc<Inner>, key: String, opts: WatchOptions) -> WatchStream {
    let live = inner.events.subscribe();
    let next = opts
        .start_revision
        .filter(|r| *r > 0)
        .unwrap_or_else(|| inner.revision.load(Ordering::SeqCst) + 1);
    let span = tracing::debug_span!("sqlite.watch", key = %key, prefix = opts.prefix, start_revision = next);
    let spec = Spec {
        end: opts.prefix.then(|| prefix_end(&key)),
        key,
    };
    let stop = inner.stop.child_token();
    let (tx, stream) = WatchStream::channel(stop.clone());
    tokio::spawn(pump(inner, spec, next, live, tx, stop).instrument(span));
    stream
}

async fn deliver(
    tx: &mpsc::Sender<Result<WatchEvent>>,
    item: Result<WatchEvent>,
    stop: &CancellationToken,
) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        sent = tx.send(item) => sent.is_ok(),
    }
}

async fn pump(
    inner: Arc<Inner>,
    spec: Spec,
    mut next: Revision,
    mut live: broadcast::Receiver<Arc<WatchEvent>>,
    tx: mpsc::Sender<Result<WatchEvent>>,
    stop: CancellationToken,
) {
    let spec = Arc::new(spec);
    loop {
        // Replay the log until it has nothing newer than `next`.
        while next <= inner.revision.load(Ordering::SeqCst) {
            let (spec_, from) = (spec.clone(), next);
            let replayed = inner
                .clone()
                .blocking(move |i| i.read(|conn| db::replay(conn, &spec_.range(), from, REPLAY_PAGE)))
                .await;
            let events = match replayed {
                Ok(db::Replay::Events(events)) => events,
                Ok(db::Replay::Compacted(compact_revision)) => {
                    deliver(&tx, Err(Error::Compacted { compact_revision }), &stop).await;
                    return;
                }
                Err(e) => {
                    deliver(&tx, Err(e), &stop).await;
                    return;
                }
            };
            let full_page = events.len() == REPLAY_PAGE;
            for event in events {
                next = event.revision + 1;
                if !deliver(&tx, Ok(event), &stop).await {
                    return;
                }
            }
            if !full_page {
                break;
            }
        }
        // Follow the broadcast.
        loop {
            let received = tokio::select! {
                _ = stop.cancelled() => return,
                received = live.recv() => received,
            };
            match received {
                Ok(event) => {
                    if event.revision < next {
                        continue;
                    }
                    next = event.revision + 1;
                    if spec.range().contains(&event.key) && !deliver(&tx, Ok((*event).clone()), &stop).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "watcher fell behind; replaying from the log");
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}
