//! `kubelet`: the node agent (registration, lease, pod workers over a `Runtime`, static and mirror pods).
//!
//! Not built yet: the binary reports this personality as unavailable.
