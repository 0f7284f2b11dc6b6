//! `kube-scheduler`: filter, score and bind pods through the HTTP API.
//!
//! Not built yet: the binary reports this personality as unavailable.
