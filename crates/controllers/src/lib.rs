//! `kube-controller-manager`: one module per controller, talking to the cluster only through the HTTP API (kube-rs),
//! run under the project's one leader elector (`client::leader`).
//!
//! Layout: [`Context`] is what every controller gets (client, shutdown, settings from the command line);
//! [`CONTROLLERS`] names each controller as upstream's `--controllers` flag does and how to start it; [`run`] starts the
//! enabled ones and returns when shutdown fires or one of them fails.

pub mod bootstrapsigner;
pub mod csrapproving;
pub mod csrsigning;
pub mod daemonset;
pub mod deployment;
pub mod endpoint;
pub mod garbagecollector;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod root_ca;
pub mod serviceaccount;
pub mod serviceaccount_token;
pub mod tokencleaner;
pub mod util;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Why a controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{controller}: {source}")]
    Api {
        controller: &'static str,
        source: kube::Error,
    },
    #[error("{controller}: {message}")]
    Other {
        controller: &'static str,
        message: String,
    },
}

/// Settings from upstream's flags that controllers read.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--cluster-signing-cert-file` / `--cluster-signing-key-file`: the CA that signs approved CSRs.
    pub cluster_signing_cert_file: Option<PathBuf>,
    pub cluster_signing_key_file: Option<PathBuf>,
    /// `--cluster-signing-duration` (upstream default one year).
    pub cluster_signing_duration: Duration,
    /// `--root-ca-file`: published as `kube-root-ca.crt` and put in legacy token Secrets.
    pub root_ca_file: Option<PathBuf>,
    /// `--service-account-private-key-file`: signs legacy service-account token Secrets.
    pub service_account_private_key_file: Option<PathBuf>,
    /// `--node-monitor-grace-period` (upstream default 40 s in 1.33).
    pub node_monitor_grace_period: Duration,
    /// `--node-monitor-period` (upstream default 5 s).
    pub node_monitor_period: Duration,
    /// `--concurrent-*-syncs` collapsed into one worker count per controller.
    pub workers: usize,
    /// `--cluster-name` (upstream default `kubernetes`).
    pub cluster_name: String,
    /// `--cluster-cidr`, when node CIDRs are allocated.
    pub cluster_cidr: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cluster_signing_cert_file: None,
            cluster_signing_key_file: None,
            cluster_signing_duration: Duration::from_secs(365 * 24 * 3600),
            root_ca_file: None,
            service_account_private_key_file: None,
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            workers: 5,
            cluster_name: "kubernetes".into(),
            cluster_cidr: None,
        }
    }
}

/// What every controller gets.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub shutdown: CancellationToken,
    pub settings: std::sync::Arc<Settings>,
}

pub type ControllerFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// How a controller starts: it runs until `ctx.shutdown` fires.
pub type Start = fn(Context) -> ControllerFuture;

/// Upstream's controller names (as `--controllers` spells them), how to start each, and the ServiceAccount it runs
/// as under `--use-service-account-credentials` (upstream's names; `None`: the controller-manager's own identity,
/// as upstream's tokens controller).
pub const CONTROLLERS: &[(&str, Start, Option<&str>)] = &[
    ("deployment", deployment::start, Some("deployment-controller")),
    ("replicaset", replicaset::start, Some("replicaset-controller")),
    ("daemonset", daemonset::start, Some("daemon-set-controller")),
    (
        "garbagecollector",
        garbagecollector::start,
        Some("generic-garbage-collector"),
    ),
    ("namespace", namespace::start, Some("namespace-controller")),
    ("nodelifecycle", nodelifecycle::start, Some("node-controller")),
    (
        "serviceaccount",
        serviceaccount::start,
        Some("service-account-controller"),
    ),
    ("serviceaccount-token", serviceaccount_token::start, None),
    (
        "root-ca-cert-publisher",
        root_ca::start,
        Some("root-ca-cert-publisher"),
    ),
    (
        "bootstrapsigner",
        bootstrapsigner::start,
        Some("bootstrap-signer"),
    ),
    ("tokencleaner", tokencleaner::start, Some("token-cleaner")),
    (
        "csrapproving",
        csrapproving::start,
        Some("certificate-controller"),
    ),
    ("csrsigning", csrsigning::start, Some("certificate-controller")),
    ("endpoint", endpoint::start, Some("endpoint-controller")),
];

/// Reads one object the way upstream's controllers read from their informer caches: as a list of the collection
/// (field selector `metadata.name`), which under `--use-service-account-credentials` goes out with the
/// controller-manager's list permission; the per-controller roles often allow writing an object but not `get`.
pub async fn lookup<K>(api: &kube::Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = kube::api::ListParams::default().fields(&format!("metadata.name={name}"));
    Ok(api.list(&params).await?.items.into_iter().next())
}

/// How long controllers may take to stop after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Controllers `*` leaves off; they run only when named (kubeadm passes `*,bootstrapsigner,tokencleaner`).
pub const DISABLED_BY_DEFAULT: &[&str] = &["bootstrapsigner", "tokencleaner"];

/// Whether `--controllers` (upstream syntax: `*`, `name`, `-name`) enables `name`.
pub fn enabled(flags: &[String], name: &str) -> bool {
    let mut on = false;
    for flag in flags {
        if flag == name {
            return true;
        }
        if flag.strip_prefix('-') == Some(name) {
            return false;
        }
        if flag == "*" && !DISABLED_BY_DEFAULT.contains(&name) {
            on = true;
        }
    }
    on
}

/// Runs the enabled controllers until `ctx.shutdown` fires. With `accounts`, each controller gets a client of its
/// own ServiceAccount. A controller that cannot start or stops with an error is reported and the others keep
/// running, as upstream skips a controller it cannot start; the first error is returned once all have ended.
pub async fn run(
    ctx: Context,
    flags: &[String],
    accounts: Option<&client::serviceaccount::ServiceAccountClients>,
) -> Result<(), Error> {
    let mut set = tokio::task::JoinSet::new();
    let mut result = Ok(());
    for (name, start, account) in CONTROLLERS {
        if !enabled(flags, name) {
            continue;
        }
        let mut own = ctx.clone();
        if let (Some(accounts), Some(account)) = (accounts, account) {
            match accounts.client(account).await {
                Ok(client) => own.client = client,
                Err(e) => {
                    tracing::error!(controller = name, error = %e, "skipping controller: no credentials");
                    if result.is_ok() {
                        result = Err(Error::Other {
                            controller: name,
                            message: e.to_string(),
                        });
                    }
                    continue;
                }
            }
        }
        tracing::info!(controller = name, "starting controller");
        set.spawn(start(own));
    }
    // A controller stuck in a watch backoff may not notice the shutdown; it gets a grace period, then is dropped.
    let grace = {
        let shutdown = ctx.shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    tokio::pin!(grace);
    loop {
        let done = tokio::select! {
            done = set.join_next() => done,
            () = &mut grace => {
                tracing::warn!(left = set.len(), "controllers still running after the shutdown grace period; stopping them");
                set.abort_all();
                break;
            }
        };
        let Some(done) = done else { break };
        let err = match done {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => err,
            Err(join) => Error::Other {
                controller: "controller-manager",
                message: join.to_string(),
            },
        };
        tracing::error!(error = %err, "controller stopped");
        if result.is_ok() {
            result = Err(err);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_flag_follows_upstream_syntax() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(enabled(&f(&["*"]), "deployment"));
        assert!(!enabled(&f(&["*", "-deployment"]), "deployment"));
        assert!(!enabled(&f(&["*"]), "tokencleaner"));
        assert!(enabled(&f(&["*", "bootstrapsigner"]), "bootstrapsigner"));
        assert!(enabled(&f(&["deployment"]), "deployment"));
        assert!(!enabled(&f(&["replicaset"]), "deployment"));
    }
}
