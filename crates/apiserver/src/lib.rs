//! `kube-apiserver`: the Kubernetes-compatible HTTPS API over a [`store::Store`].
//!
//! Layout (being built):
//! - [`auth`]: authentication (x509, bootstrap tokens, service-account JWTs, anonymous), authorization (RBAC with
//!   upstream's bootstrap policy, the node authorizer).
//! - [`admission`]: admission plugins (namespace lifecycle, service accounts, default tolerations, node restriction).
//! - [`openapi`]: `/openapi/v2` (JSON and protobuf) and `/openapi/v3` built from k8s-openapi's schemas.

pub mod admission;
pub mod auth;
pub mod openapi;
