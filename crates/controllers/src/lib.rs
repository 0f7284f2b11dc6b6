//! `kube-controller-manager`: leader election and one module per controller, talking to the cluster only
//! through the HTTP API.
//!
//! Not built yet: the binary reports this personality as unavailable.
