//! etcd watches behind [`WatchStream`]: one pump task per watch reads etcd's stream, converts events, and, when
//! the stream breaks (member killed, member lost its leader), reopens it from the last delivered revision + 1 on
//! whichever endpoint answers. It gives up with [`Error::Unavailable`] after
//! [`super::EtcdConfig::watch_resume_timeout`], and ends with [`Error::Compacted`] when etcd has compacted the
//! revisions it needs.

use std::sync::Arc;

use etcd_client::{EventType, WatchResponse};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Inner, Kind, into_kv};
use crate::validate::prefix_end;
use crate::{Error, EventKind, Result, Revision, WatchEvent, WatchOptions, WatchStream};

struct Spec {
    key: String,
    range_end: Option<Vec<u8>>,
}

pub(super) async fn start(inner: Arc<Inner>, key: String, opts: WatchOptions) -> Result<WatchStream> {
    let spec = Spec {
        range_end: opts.prefix.then(|| prefix_end(&key)),
        key,
    };
    let start = opts.start_revision.filter(|r| *r > 0);
    let span =
        tracing::debug_span!("etcd.watch", key = %spec.key, prefix = opts.prefix, start_revision = ?start);
    // The first stream is opened before returning, so failures surface here and no later write is missed.
    let (stream, created) = open(&inner, &spec, start).instrument(span.clone()).await?;
    let next = start.unwrap_or_else(|| header_revision(&created) + 1);
    let stop = inner.shutdown.child_token();
    let (tx, watch) = WatchStream::channel(stop.clone());
    tokio::spawn(pump(inner, spec, next, stream, created, tx, stop).instrument(span));
    Ok(watch)
}

fn header_revision(resp: &WatchResponse) -> Revision {
    resp.header().map_or(0, |h| h.revision())
}

/// Opens a watch stream and returns it with its first response, which says whether etcd created the watch.
async fn open(
    inner: &Inner,
    spec: &Spec,
    start: Option<Revision>,
) -> Result<(etcd_client::WatchStream, WatchResponse)> {
    let mut options = etcd_client::WatchOptions::new()
        .with_prev_key()
        .with_progress_notify();
    if let Some(end) = &spec.range_end {
        options = options.with_range(end.clone());
    }
    if let Some(rev) = start {
        options = options.with_start_revision(rev);
    }
    inner
        .call(Kind::Read, |m| {
            let (mut client, options, key) = (m.watch.clone(), options.clone(), spec.key.clone());
            async move {
                let mut stream = client.watch(key, Some(options)).await?;
                match stream.message().await? {
                    Some(first) => Ok((stream, first)),
                    None => Err(etcd_client::Error::WatchError(
                        "watch stream closed before the watch was created".into(),
                    )),
                }
            }
        })
        .await
        .map_err(Error::from)
}

/// Sends one item unless the watcher has gone away or the store is shutting down.
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

enum Next {
    /// Keep reading this stream.
    Continue,
    /// The stream is over; open another.
    Resume(String),
    /// The watch is over.
    End,
}

async fn pump(
    inner: Arc<Inner>,
    spec: Spec,
    mut next: Revision,
    mut stream: etcd_client::WatchStream,
    first: WatchResponse,
    tx: mpsc::Sender<Result<WatchEvent>>,
    stop: CancellationToken,
) {
    let mut pending = Some(first);
    loop {
        let step = match pending.take() {
            Some(resp) => handle(resp, &mut next, &tx, &stop).await,
            None => tokio::select! {
                _ = stop.cancelled() => Next::End,
                message = stream.message() => match message {
                    Ok(Some(resp)) => handle(resp, &mut next, &tx, &stop).await,
                    Ok(None) => Next::Resume("etcd closed the watch stream".into()),
                    Err(e) => Next::Resume(e.to_string()),
                },
            },
        };
        match step {
            Next::Continue => continue,
            Next::End => return,
            Next::Resume(reason) => {
                tracing::info!(%reason, next_revision = next, "watch stream broke; resuming");
                match resume(&inner, &spec, next, &stop).await {
                    Some(Ok((reopened, created))) => {
                        stream = reopened;
                        pending = Some(created);
                    }
                    Some(Err(e)) => {
                        deliver(&tx, Err(e), &stop).await;
                        return;
                    }
                    None => return,
                }
            }
        }
    }
}

async fn handle(
    resp: WatchResponse,
    next: &mut Revision,
    tx: &mpsc::Sender<Result<WatchEvent>>,
    stop: &CancellationToken,
) -> Next {
    if resp.compact_revision() > 0 {
        deliver(
            tx,
            Err(Error::Compacted {
                compact_revision: resp.compact_revision(),
            }),
            stop,
        )
        .await;
        return Next::End;
    }
    if resp.canceled() {
        return Next::Resume(format!("etcd cancelled the watch: {}", resp.cancel_reason()));
    }
    let progress = !resp.created() && resp.events().is_empty();
    for event in resp.events() {
        let Some(event) = convert(event) else { continue };
        // A resumed watch may repeat what was already delivered.
        if event.revision < *next {
            continue;
        }
        *next = event.revision + 1;
        if !deliver(tx, Ok(event), stop).await {
            return Next::End;
        }
    }
    // A progress notification promises that nothing up to its revision is left to deliver.
    if progress {
        *next = (*next).max(header_revision(&resp) + 1);
    }
    Next::Continue
}

fn convert(event: &etcd_client::Event) -> Option<WatchEvent> {
    let kv = event.kv()?;
    let prev = event.prev_kv().cloned().map(into_kv);
    let revision = kv.mod_revision();
    Some(match event.event_type() {
        EventType::Put => {
            let current = into_kv(kv.clone());
            let kind = if current.create_revision == current.mod_revision {
                EventKind::Added
            } else {
                EventKind::Modified
            };
            WatchEvent {
                kind,
                key: current.key.clone(),
                revision,
                current: Some(current),
                prev,
            }
        }
        EventType::Delete => WatchEvent {
            kind: EventKind::Deleted,
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            revision,
            current: None,
            prev,
        },
    })
}

/// Reopens the watch from `next`, retrying until the resume deadline. `None` when told to stop.
async fn resume(
    inner: &Inner,
    spec: &Spec,
    next: Revision,
    stop: &CancellationToken,
) -> Option<Result<(etcd_client::WatchStream, WatchResponse)>> {
    let deadline = Instant::now() + inner.config.watch_resume_timeout;
    loop {
        let attempt = tokio::select! {
            _ = stop.cancelled() => return None,
            attempt = open(inner, spec, Some(next)) => attempt,
        };
        match attempt {
            Ok(opened) => return Some(Ok(opened)),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "watch not resumed yet");
            }
            Err(Error::Unavailable(reason) | Error::Timeout(reason)) => {
                return Some(Err(Error::Unavailable(format!(
                    "watch could not be resumed within {:?}: {reason}",
                    inner.config.watch_resume_timeout
                ))));
            }
            Err(e) => return Some(Err(e)),
        }
    }
}
