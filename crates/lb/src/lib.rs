//! TCP load balancer with active health checks, used as `bulwark lb` and inside the kubelet.
//!
//! Not built yet: the binary reports this personality as unavailable.
