//! The etcd backend: the etcd v3 API through `etcd-client`, used the way kube-apiserver's etcd3 storage uses it.
//!
//! - One gRPC connection per endpoint; requests stick to one endpoint and move to the next when it fails, so a
//!   dead or leaderless member costs one failed attempt, not every request.
//! - Every request has a deadline ([`EtcdConfig::request_timeout`]). Within it, requests that certainly did not
//!   take effect (connection refused, member without a leader) are retried on the other endpoints; reads are
//!   retried whatever the failure; a write whose fate is unknown is reported as [`Error::Unavailable`] or
//!   [`Error::Timeout`] rather than guessed at.
//! - Compare-and-swap is an etcd transaction on the key's `mod_revision`; the failure branch reads the key so a
//!   conflict reports the current revision in the same round trip.
//! - Keys with a TTL share leases: one lease serves every key whose expiry falls in the same window (see
//!   `lease.rs`).
//! - Watches ask for previous values and resume from the last delivered revision + 1 on another endpoint when
//!   their stream breaks (see `watch.rs`).

mod errors;
mod lease;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity, KvClient,
    LeaseClient, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::errors::{Failure, UNKNOWN_COMPACT_REVISION, classify};
use crate::validate::{self, prefix_end};
use crate::{
    Deleted, Error, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchOptions, WatchStream,
};

/// How to reach etcd, with kube-apiserver's flags alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `--etcd-servers`: client URLs such as `https://10.0.0.1:2379`; at least one.
    pub endpoints: Vec<String>,
    /// `--etcd-cafile`: the CA that signed the members' serving certificates; needed for `https` endpoints.
    pub ca_file: Option<PathBuf>,
    /// `--etcd-certfile`: the client certificate presented to etcd (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// `--etcd-keyfile`: the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// Deadline of one call, retries on other endpoints included.
    pub request_timeout: Duration,
    /// Deadline for opening a connection to one endpoint.
    pub dial_timeout: Duration,
    /// HTTP/2 keepalive ping interval, so a vanished member is noticed on idle connections too. etcd refuses
    /// pings more often than every 5 s by default.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is dropped.
    pub keepalive_timeout: Duration,
    /// How long a broken watch keeps trying to resume before it ends with [`Error::Unavailable`].
    pub watch_resume_timeout: Duration,
}

impl EtcdConfig {
    /// Plain defaults for `endpoints`: 5 s per request, no TLS.
    pub fn new<I, S>(endpoints: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            request_timeout: Duration::from_secs(5),
            dial_timeout: Duration::from_secs(2),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            watch_resume_timeout: Duration::from_secs(60),
        }
    }

    /// Sets the TLS files as kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`.
    pub fn with_tls(
        mut self,
        ca_file: impl Into<PathBuf>,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.ca_file = Some(ca_file.into());
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// A [`Store`] on an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.inner.members.iter().map(|m| m.url.as_str()).collect();
        f.debug_struct("EtcdStore")
            .field("endpoints", &urls)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    members: Vec<Member>,
    /// The endpoint requests go to until it fails.
    preferred: AtomicUsize,
    config: EtcdConfig,
    leases: lease::LeaseCache,
    shutdown: CancellationToken,
}

pub(crate) struct Member {
    url: String,
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
}

/// Why a call failed, before it becomes a [`Error`]: an expired lease is handled by the caller.
enum CallError {
    Store(Error),
    LeaseNotFound,
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Store(e) => e,
            CallError::LeaseNotFound => Error::Internal("etcd lost the lease of a key with a TTL".into()),
        }
    }
}

/// gRPC messages may be as large as a list of many 1.5 MiB objects.
const MAX_MESSAGE: usize = i32::MAX as usize;

impl EtcdStore {
    /// Sets up clients for every endpoint. Connections are opened on first use, so this succeeds with members
    /// down; only bad configuration (unreadable TLS files, malformed URLs) fails. Watches end when `shutdown` is
    /// cancelled.
    pub async fn connect(config: EtcdConfig, shutdown: CancellationToken) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no etcd endpoints given".into()));
        }
        let tls = tls_options(&config)?;
        let mut members = Vec::with_capacity(config.endpoints.len());
        for url in &config.endpoints {
            let mut options = ConnectOptions::new()
                .with_connect_timeout(config.dial_timeout)
                .with_keep_alive(config.keepalive_interval, config.keepalive_timeout)
                .with_keep_alive_while_idle(true)
                // A member cut off from the quorum then refuses at once instead of hanging until a timeout, and
                // its watch streams are closed so they resume elsewhere.
                .with_require_leader(true);
            if url.starts_with("https://") {
                let tls = tls.clone().ok_or_else(|| {
                    Error::Config(format!(
                        "{url}: an https endpoint needs a CA file (--etcd-cafile)"
                    ))
                })?;
                options = options.with_tls(tls);
            }
            let client =
                Client::connect([url.as_str()], Some(options))
                    .await
                    .map_err(|e| match classify(e) {
                        Failure::Final(e) => e,
                        other => Error::Config(format!("{url}: {other:?}")),
                    })?;
            members.push(Member {
                url: url.clone(),
                kv: client
                    .kv_client()
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
                watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
                lease: client.lease_client(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
                config,
                leases: lease::LeaseCache::default(),
                shutdown,
            }),
        })
    }
}

fn tls_options(config: &EtcdConfig) -> Result<Option<TlsOptions>> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
    };
    let Some(ca_file) = &config.ca_file else {
        if config.cert_file.is_some() || config.key_file.is_some() {
            return Err(Error::Config(
                "a client certificate needs the CA file too (--etcd-cafile)".into(),
            ));
        }
        return Ok(None);
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca_file)?));
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?)),
        (None, None) => {}
        _ => {
            return Err(Error::Config(
                "--etcd-certfile and --etcd-keyfile go together".into(),
            ));
        }
    }
    Ok(Some(tls))
}

/// Whether a request may be repeated after an attempt of unknown outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl Inner {
    /// Runs `attempt` against the preferred endpoint, moving on to the next endpoint after failures that allow
    /// it, until it succeeds, fails for good, or the request deadline passes.
    async fn call<T, F, Fut>(&self, kind: Kind, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut(&Member) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let timeout = self.config.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(25);
        let mut failures = 0usize;
        loop {
            let index = self.preferred.load(Ordering::Relaxed) % self.members.len();
            let member = &self.members[index];
            let outcome = tokio::time::timeout_at(deadline, attempt(member)).await;
            let reason = match outcome {
                Ok(Ok(value)) => return Ok(value),
                // A read that got no answer changed nothing: the storage is unavailable (typically etcd without
                // quorum holds the read). A write may have been applied, so its outcome stays a timeout.
                Err(_elapsed) if kind == Kind::Read => {
                    return Err(CallError::Store(Error::Unavailable(format!(
                        "no answer from {} within {timeout:?} (has etcd lost its quorum?)",
                        member.url
                    ))));
                }
                Err(_elapsed) => {
                    return Err(CallError::Store(Error::Timeout(format!(
                        "no answer from {} within {timeout:?}",
                        member.url
                    ))));
                }
                Ok(Err(err)) => match classify(err) {
                    Failure::Final(e) => return Err(CallError::Store(e)),
                    Failure::LeaseNotFound => return Err(CallError::LeaseNotFound),
                    Failure::NotSent(reason) => reason,
                    Failure::Ambiguous(reason) if kind == Kind::Read => reason,
                    Failure::TimedOut(reason) if kind == Kind::Read => reason,
                    Failure::Ambiguous(reason) => {
                        self.move_on_from(index);
                        return Err(CallError::Store(Error::Unavailable(format!(
                            "{}: {reason}",
                            member.url
                        ))));
                    }
                    Failure::TimedOut(reason) => {
                        return Err(CallError::Store(Error::Timeout(format!(
                            "{}: {reason}",
                            member.url
                        ))));
                    }
                },
            };
            tracing::debug!(endpoint = %member.url, %reason, "etcd request failed; trying the next endpoint");
            self.move_on_from(index);
            failures += 1;
            // Once every endpoint has failed in a row, give the cluster a moment (an election, a restart).
            if failures.is_multiple_of(self.members.len()) {
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                backoff = (backoff * 2).min(Duration::from_millis(500));
                tokio::time::sleep(pause).await;
            }
            if Instant::now() >= deadline {
                return Err(CallError::Store(Error::Unavailable(format!(
                    "no etcd endpoint could serve the request within {timeout:?}; last error from {}: {reason}",
                    member.url
                ))));
            }
        }
    }

    /// Points requests at the endpoint after `failed`, unless another request already moved them.
    fn move_on_from(&self, failed: usize) {
        let next = (failed + 1) % self.members.len();
        let _ = self
            .preferred
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The revision history is compacted to, learned from a watch at revision 1, which etcd cancels at once
    /// with that revision (there is no direct API for it).
    async fn compact_revision(&self) -> Result<Revision> {
        const PROBE_KEY: &str = "\0bulwark-compaction-probe";
        self.call(Kind::Read, |member| {
            let mut client = member.watch.clone();
            async move {
                let options = etcd_client::WatchOptions::new().with_start_revision(1);
                let mut stream = client.watch(PROBE_KEY, Some(options)).await?;
                while let Some(resp) = stream.message().await? {
                    if resp.compact_revision() > 0 || resp.canceled() {
                        return Ok(resp.compact_revision());
                    }
                }
                Err(etcd_client::Error::WatchError(
                    "watch closed before reporting the compaction".into(),
                ))
            }
        })
        .await
        .map_err(Error::from)
    }

    /// Fills in what etcd's error messages leave out.
    async fn complete(&self, err: Error, requested: Option<Revision>, value_len: usize) -> Error {
        match err {
            Error::Compacted {
                compact_revision: UNKNOWN_COMPACT_REVISION,
            } => match self.compact_revision().await {
                Ok(compact_revision) => Error::Compacted { compact_revision },
                Err(e) => {
                    tracing::debug!(error = %e, "cannot learn the compaction revision");
                    Error::Compacted {
                        compact_revision: UNKNOWN_COMPACT_REVISION,
                    }
                }
            },
            Error::FutureRevision { .. } => Error::FutureRevision {
                requested: requested.unwrap_or(0),
            },
            Error::ValueTooLarge { limit, .. } => Error::ValueTooLarge {
                size: value_len,
                limit,
            },
            other => other,
        }
    }

    /// A lease for a key with `ttl`, or none. Retried once with a fresh lease if etcd already expired it.
    async fn put_with_ttl<T, F, Fut>(&self, ttl: Option<Duration>, op: F) -> Result<T>
    where
        F: Fn(Option<i64>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let Some(ttl) = ttl else {
            return op(None).await.map_err(Error::from);
        };
        let lease = self.lease_for(ttl).await?;
        match op(Some(lease)).await {
            Err(CallError::LeaseNotFound) => {
                self.leases.forget(lease).await;
                let lease = self.lease_for(ttl).await?;
                op(Some(lease)).await.map_err(Error::from)
            }
            other => other.map_err(Error::from),
        }
    }
}

fn into_kv(kv: etcd_client::KeyValue) -> KeyValue {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    KeyValue {
        key,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision())
}

/// The current state of the key read in a transaction's failure branch, as the error to report.
fn conflict_or_missing(key: &str, responses: Vec<TxnOpResponse>) -> Error {
    let current = responses.into_iter().find_map(|r| match r {
        TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
        _ => None,
    });
    match current {
        Some(kv) => Error::Conflict {
            key: key.to_owned(),
            current_revision: kv.mod_revision(),
        },
        None => Error::NotFound { key: key.to_owned() },
    }
}

/// Compares that hold only when the key exists with exactly `expected` as its modification revision.
fn unchanged_since(key: &str, expected: Revision) -> Vec<Compare> {
    vec![
        Compare::mod_revision(key, CompareOp::Equal, expected),
        Compare::mod_revision(key, CompareOp::Greater, 0),
    ]
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<KeyValue> {
        validate::key(key)?;
        let span = tracing::debug_span!("etcd.get", key);
        async {
            let mut resp = self
                .inner
                .call(Kind::Read, |m| {
                    let mut kv = m.kv.clone();
                    async move { kv.get(key, None).await }
                })
                .await?;
            resp.take_kvs()
                .into_iter()
                .next()
                .map(into_kv)
                .ok_or_else(|| Error::NotFound { key: key.to_owned() })
        }
        .instrument(span)
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let start = validate::list(prefix, &opts)?;
        let span =
            tracing::debug_span!("etcd.list", prefix, start, revision = ?opts.revision, limit = ?opts.limit);
        async {
            let end = prefix_end(prefix);
            let revision = opts.revision.filter(|r| *r > 0);
            let limit = opts.limit.filter(|l| *l > 0);
            let mut options = GetOptions::new().with_range(end);
            if let Some(rev) = revision {
                options = options.with_revision(rev);
            }
            if let Some(limit) = limit {
                options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            }
            let result = self
                .inner
                .call(Kind::Read, |m| {
                    let (mut kv, options) = (m.kv.clone(), options.clone());
                    async move { kv.get(start, Some(options)).await }
                })
                .await;
            let mut resp = match result {
                Ok(resp) => resp,
                Err(e) => return Err(self.inner.complete(e.into(), revision, 0).await),
            };
            let served = revision.unwrap_or_else(|| header_revision(resp.header()));
            let (more, count) = (resp.more(), resp.count());
            let items: Vec<KeyValue> = resp.take_kvs().into_iter().map(into_kv).collect();
            let remaining = u64::try_from(count)
                .unwrap_or(0)
                .saturating_sub(items.len() as u64);
            let next_key = if more {
                items.last().map(|kv| validate::key_after(&kv.key))
            } else {
                None
            };
            Ok(ListResult {
                items,
                revision: served,
                more,
                next_key,
                remaining,
            })
        }
        .instrument(span)
        .await
    }

    async fn create(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<KeyValue> {
        validate::key(key)?;
        validate::value(&value)?;
        let span = tracing::debug_span!("etcd.create", key, size = value.len(), ?ttl);
        async {
            let inner = &self.inner;
            let result = inner
                .put_with_ttl(ttl, |lease| {
                    let value = &value;
                    async move {
                        let put = lease.map(|id| PutOptions::new().with_lease(id));
                        inner
                            .call(Kind::Write, |m| {
                                let mut kv = m.kv.clone();
                                let txn = Txn::new()
                                    .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
                                    .and_then([TxnOp::put(key, value.to_vec(), put.clone())]);
                                async move { kv.txn(txn).await }
                            })
                            .await
                    }
                })
                .await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => return Err(inner.complete(e, None, value.len()).await),
            };
            if !resp.succeeded() {
                return Err(Error::AlreadyExists { key: key.to_owned() });
            }
            let revision = header_revision(resp.header());
            Ok(KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            })
        }
        .instrument(span)
        .await
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
            "etcd.update",
            key,
            expected_mod_revision,
            size = value.len(),
            ?ttl
        );
        async {
            let inner = &self.inner;
            let result = inner
                .put_with_ttl(ttl, |lease| {
                    let value = &value;
                    async move {
                        let put = Some(
                            lease
                                .map_or(PutOptions::new(), |id| PutOptions::new().with_lease(id))
                                .with_prev_key(),
                        );
                        inner
                            .call(Kind::Write, |m| {
                                let mut kv = m.kv.clone();
                                let txn = Txn::new()
                                    .when(unchanged_since(key, expected_mod_revision))
                                    .and_then([TxnOp::put(key, value.to_vec(), put.clone())])
                                    .or_else([TxnOp::get(key, None)]);
                                async move { kv.txn(txn).await }
                            })
                            .await
                    }
                })
                .await;
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => return Err(inner.complete(e, None, value.len()).await),
            };
            if !resp.succeeded() {
                return Err(conflict_or_missing(key, resp.op_responses()));
            }
            let revision = header_revision(resp.header());
            let create_revision = resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                    _ => None,
                })
                .unwrap_or(revision);
            Ok(KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision,
                mod_revision: revision,
            })
        }
        .instrument(span)
        .await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate::key(key)?;
        let span = tracing::debug_span!("etcd.delete", key, ?expected_mod_revision);
        async {
            let delete = Some(DeleteOptions::new().with_prev_key());
            let resp = self
                .inner
                .call(Kind::Write, |m| {
                    let mut kv = m.kv.clone();
                    let mut txn = Txn::new();
                    if let Some(expected) = expected_mod_revision {
                        txn = txn.when(unchanged_since(key, expected));
                    }
                    let txn = txn
                        .and_then([TxnOp::delete(key, delete.clone())])
                        .or_else([TxnOp::get(key, None)]);
                    async move { kv.txn(txn).await }
                })
                .await?;
            if !resp.succeeded() {
                return Err(conflict_or_missing(key, resp.op_responses()));
            }
            let revision = header_revision(resp.header());
            let prev = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Delete(mut del) => del.take_prev_kvs().into_iter().next(),
                _ => None,
            });
            match prev {
                Some(prev) => Ok(Deleted {
                    prev: into_kv(prev),
                    revision,
                }),
                None => Err(Error::NotFound { key: key.to_owned() }),
            }
        }
        .instrument(span)
        .await
    }

    async fn watch(&self, key: &str, opts: WatchOptions) -> Result<WatchStream> {
        if opts.prefix {
            validate::prefix(key)?;
        } else {
            validate::key(key)?;
        }
        watch::start(self.inner.clone(), key.to_owned(), opts).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        let span = tracing::debug_span!("etcd.current_revision");
        async {
            let resp = self
                .inner
                .call(Kind::Read, |m| {
                    let mut kv = m.kv.clone();
                    async move {
                        kv.get(crate::KEY_PREFIX, Some(GetOptions::new().with_count_only()))
                            .await
                    }
                })
                .await?;
            Ok(header_revision(resp.header()))
        }
        .instrument(span)
        .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let span = tracing::debug_span!("etcd.compact", revision);
        async {
            let result = self
                .inner
                .call(Kind::Write, |m| {
                    let mut kv = m.kv.clone();
                    async move { kv.compact(revision, None).await }
                })
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) => Err(self.inner.complete(e.into(), Some(revision), 0).await),
            }
        }
        .instrument(span)
        .await
    }
}
