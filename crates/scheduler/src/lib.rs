//! `kube-scheduler`: filter, score and bind pods through the HTTP API, as upstream's default profile does.
//!
//! Layout:
//! - [`resources`]: quantities as integers, a pod's effective request, a node's allocatable.
//! - [`filters`]: may a pod run on a node (unschedulable, taints, node selector and affinity, host ports, resources),
//!   with upstream's reason texts; pure functions over k8s-openapi types.
//! - [`scores`]: least allocated, spreading of a controller's pods, preferred node affinity, PreferNoSchedule taints.
//! - [`cache`]: nodes and the pods placed on them (assumed or bound), and the placement algorithm.
//! - [`queue`]: pending pods: active (priority order), backoff (1 s .. 10 s), unschedulable (until the cluster changes).
//! - [`engine`]: the running scheduler: node and pod watches, one task deciding, bindings and failure reports
//!   (`FailedScheduling` events, `PodScheduled=False`) sent concurrently.
//! - [`config`]: `KubeSchedulerConfiguration` files and Go durations.
//!
//! Entry points: [`run`] with a [`Config`], normally inside `client::leader::run` (the CLI does that).

pub mod cache;
pub mod config;
pub mod engine;
pub mod filters;
pub mod queue;
pub mod resources;
pub mod scores;

pub use engine::{Config, DEFAULT_SCHEDULER, run};
