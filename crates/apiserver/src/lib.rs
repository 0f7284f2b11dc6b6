//! `kube-apiserver`: the Kubernetes-compatible HTTPS API over a [`store::Store`].
//!
//! Entry points: [`run`] with a [`ServerConfig`] (opens the store, binds, serves until the cancellation token
//! fires) or [`serve`] on an already bound listener and store.
//!
//! Layout:
//! - [`server`]: TLS listener (rustls with `ring`; client certificates optional, verified against
//!   `--client-ca-file`), HTTP/1.1 + HTTP/2 per connection, graceful shutdown, startup objects (system
//!   namespaces, the `kubernetes` Service); [`endpoints`]: the `kubernetes` Endpoints list every live API server
//!   (upstream's lease reconciler).
//! - [`router`]: one span per request, the 3 MiB body limit, authentication, [`impersonation`], authorization,
//!   URL parsing into discovery, health, OpenAPI or a resource [`rest::Target`].
//! - [`rest`]: the REST verbs over the store (create/get/list/update/patch/delete/deletecollection, `status`,
//!   `scale`, `binding`), continue tokens, finalizers, `dryRun=All` on every write, `managedFields` and
//!   server-side apply (through [`api::managed`]); [`logs`]: `pods/log` proxied to the node's kubelet;
//!   [`watch`]: watch streams, served by [`cache`] (the watch cache: one store watch per resource, lists and
//!   gets at `resourceVersion=0`, RBAC's reads); [`strategy`]: per-kind defaulting
//!   and validation; [`reviews`]: access and token reviews.
//! - [`discovery`] (`/api`, `/apis`, aggregated discovery, `/version`), [`health`] (`/healthz`, `/livez`,
//!   `/readyz`), [`negotiate`] (Accept / Content-Type), [`protobuf`] (protobuf request bodies decoded against
//!   upstream's vendored `generated.proto` schemas).
//! - [`error`]: the one place where [`api::ApiError`] becomes an HTTP response.
//! - [`security`]: the authenticator and authorizer chains built from the flags, the service-account token
//!   signer, and `StoreReader` (the [`auth::ObjectReader`] over the store); [`auth`]: authenticators, RBAC and
//!   node authorizers, bootstrap policy; [`admission`]: the admission chain run on every write by [`rest`];
//!   [`openapi`]: `/openapi/v2` and `/openapi/v3` documents (routed by `openapi_routes`).
//! - [`crd`]: the registry following the CustomResourceDefinitions in the store, CRD validation and status,
//!   deletion of a CRD's objects with it.
//! - [`field_validation`]: unknown fields dropped, and refused or warned about per `fieldValidation`.
//! - [`metrics`]: `/metrics` (Prometheus text, upstream's names): requests, latency, in-flight and long-running
//!   requests, store latency per operation (the store is wrapped in `metrics::InstrumentedStore`), stored objects.
//! - Not yet: protobuf responses (clients that list protobuf also accept JSON and get it), duplicate-field
//!   detection in `fieldValidation`.
//!
//! No cluster state lives only in the process: the watch cache follows the store, so several API servers on one
//! etcd serve one cluster.

// `ApiError` is the one error every handler returns and it is rendered once per request; boxing it on every
// signature would cost clarity and buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod auth;
pub mod cache;
pub mod config;
pub mod crd;
pub mod discovery;
pub mod endpoints;
pub mod error;
pub mod field_validation;
pub mod health;
pub mod impersonation;
pub mod ipalloc;
pub mod logs;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
mod openapi_routes;
pub mod protobuf;
pub mod rest;
pub mod reviews;
pub mod router;
pub mod security;
pub mod server;
pub mod state;
pub mod strategy;
pub mod tls;
pub mod watch;

pub use config::{ServerConfig, StorageConfig};
pub use error::ServeError;
pub use server::{run, serve};
