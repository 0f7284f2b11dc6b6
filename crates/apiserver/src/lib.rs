//! `kube-apiserver`: the Kubernetes-compatible HTTPS API over a `store::Store`.
//!
//! Not built yet: the binary reports this personality as unavailable.
