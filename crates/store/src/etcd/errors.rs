//! Sorting etcd client failures into what the retry loop may do with them and which typed error they become.

use std::error::Error as _;

use tonic::Code;

use crate::Error;

/// What a failed attempt means for the request.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request never reached a member that could act on it (connection refused, member without a leader,
    /// proposal dropped): retrying on another endpoint is safe even for writes.
    NotSent(String),
    /// The request may or may not have been applied (connection lost mid-call): reads are retried, writes report
    /// [`Error::Unavailable`] so the caller decides.
    Ambiguous(String),
    /// etcd gave up waiting for the cluster; like `Ambiguous`, but reported as [`Error::Timeout`] for writes.
    TimedOut(String),
    /// etcd's lease for a TTL key expired between grant and put: get a new lease and try again.
    LeaseNotFound,
    /// A definite answer.
    Final(Error),
}

/// Placeholder compaction revision, filled in by the caller that can ask etcd for the real one.
pub(crate) const UNKNOWN_COMPACT_REVISION: i64 = 0;

pub(crate) fn classify(err: etcd_client::Error) -> Failure {
    match err {
        etcd_client::Error::GRpcStatus(status) => classify_status(&status),
        etcd_client::Error::TransportError(e) => Failure::NotSent(e.to_string()),
        etcd_client::Error::IoError(e) => Failure::Ambiguous(e.to_string()),
        etcd_client::Error::WatchError(e) => Failure::Ambiguous(e),
        etcd_client::Error::LeaseKeepAliveError(e) => Failure::Ambiguous(e),
        etcd_client::Error::InvalidArgs(e) => Failure::Final(Error::Config(e)),
        etcd_client::Error::InvalidUri(e) => Failure::Final(Error::Config(e.to_string())),
        other => Failure::Final(Error::Internal(other.to_string())),
    }
}

fn classify_status(status: &tonic::Status) -> Failure {
    let message = status.message();
    let reason = format!("{:?}: {message}", status.code());
    if caused_by_connect_error(status) {
        return Failure::NotSent(reason);
    }
    match status.code() {
        Code::Unavailable | Code::Unknown
            if message.contains("no leader")
                || message.contains("proposal dropped")
                || message.contains("not capable") =>
        {
            Failure::NotSent(reason)
        }
        Code::Unavailable if message.contains("timed out") => Failure::TimedOut(reason),
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::Aborted => {
            Failure::Ambiguous(reason)
        }
        Code::DeadlineExceeded => Failure::TimedOut(reason),
        Code::ResourceExhausted if message.contains("too many requests") => Failure::NotSent(reason),
        Code::ResourceExhausted if message.contains("larger than max") => Failure::Final(too_large()),
        Code::InvalidArgument if message.contains("too large") => Failure::Final(too_large()),
        Code::OutOfRange if message.contains("compacted") => Failure::Final(Error::Compacted {
            compact_revision: UNKNOWN_COMPACT_REVISION,
        }),
        Code::OutOfRange if message.contains("future revision") => {
            Failure::Final(Error::FutureRevision { requested: 0 })
        }
        Code::NotFound if message.contains("lease not found") => Failure::LeaseNotFound,
        _ => Failure::Final(Error::Internal(reason)),
    }
}

/// Sizes are filled in by the caller, which knows the value it sent.
fn too_large() -> Error {
    Error::ValueTooLarge {
        size: 0,
        limit: crate::MAX_VALUE_SIZE,
    }
}

fn caused_by_connect_error(status: &tonic::Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}
