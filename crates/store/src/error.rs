//! The one error type every backend returns, so the API server maps storage failures to HTTP status codes in a
//! single place whatever the backend.

use crate::Revision;

/// What can go wrong in a storage call. Bad input (`InvalidKey`, `ValueTooLarge`) is rejected before anything is
/// written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The key does not exist (get, update, delete).
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// `create` found the key already present.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    /// The expected modification revision did not match: someone else wrote the key first.
    #[error("key {key:?} was modified concurrently (current revision {current_revision})")]
    Conflict { key: String, current_revision: Revision },
    /// The requested revision is older than the oldest history kept (Kubernetes answers 410 Gone).
    #[error("revision compacted: the oldest revision available is {compact_revision}")]
    Compacted { compact_revision: Revision },
    /// The requested revision has not happened yet.
    #[error("revision {requested} is in the future")]
    FutureRevision { requested: Revision },
    /// No endpoint could serve the call: members unreachable, quorum lost, the store shut down.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The call did not complete within its deadline; a write may or may not have been applied.
    #[error("storage request timed out: {0}")]
    Timeout(String),
    /// The key is empty, outside `/registry/`, or malformed.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// The value is larger than [`crate::MAX_VALUE_SIZE`].
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    /// The backend could not be set up from its configuration (unreadable TLS file, bad endpoint, bad path).
    #[error("storage configuration: {0}")]
    Config(String),
    /// Anything else the backend reported; not retryable by the caller.
    #[error("storage backend error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying the same call later may succeed without any change by the caller.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable(_) | Error::Timeout(_))
    }
}
