//! Leader election on `coordination.k8s.io/v1` Leases, as client-go's `leaderelection` package does it.
//!
//! One elector for the whole project: the controller-manager, the scheduler and the federation controllers each run
//! their work inside [`run`], so that of several replicas exactly one is active and a standby takes over when the
//! leader stops renewing.
//!
//! Semantics follow upstream:
//! - a candidate takes the Lease when it does not exist, when it holds it already, when the holder released it (empty
//!   `holderIdentity`), or when the Lease has not changed for `leaseDurationSeconds` *as observed locally* (the remote
//!   `renewTime` is never compared with the local clock, so clock skew between nodes cannot cause two leaders);
//! - every write is a compare-and-swap on `resourceVersion`, so two candidates racing cannot both win;
//! - the leader renews every `retry_period`; when it cannot renew for `renew_deadline` it stops leading
//!   ([`Error::LostLease`]) - upstream components exit then, and so do ours;
//! - on a clean shutdown the leader releases the Lease (empty holder, 1 s duration) so a standby takes over at once.
//!
//! Entry points: [`Config`] (upstream's defaults 15 s / 10 s / 2 s), [`LeaseLock`], [`run`], [`identity`].

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Why an election ended other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lost the lease {lease}: could not renew it within {deadline:?}")]
    LostLease { lease: String, deadline: Duration },
    #[error("invalid leader election configuration: {0}")]
    Config(String),
}

/// Timings of an election; [`Config::default`] is upstream's (`--leader-elect-lease-duration=15s`,
/// `--leader-elect-renew-deadline=10s`, `--leader-elect-retry-period=2s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    /// Release the Lease when shutting down (upstream's `ReleaseOnCancel`).
    pub release_on_cancel: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }
}

impl Config {
    /// Upstream refuses timings where a leader could lose the Lease before noticing it.
    pub fn validate(&self) -> Result<(), Error> {
        if self.lease_duration <= self.renew_deadline {
            return Err(Error::Config(
                "leaseDuration must be greater than renewDeadline".into(),
            ));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(Error::Config(
                "renewDeadline must be greater than retryPeriod".into(),
            ));
        }
        if self.retry_period.is_zero() {
            return Err(Error::Config("retryPeriod must be greater than zero".into()));
        }
        Ok(())
    }
}

/// The Lease contended for and who contends.
#[derive(Debug, Clone)]
pub struct LeaseLock {
    pub namespace: String,
    pub name: String,
    pub identity: String,
}

/// Upstream's identity shape: `<hostname>_<random>`, unique per process so that a restarted component is a new
/// candidate rather than a ghost of the old leader.
pub fn identity(hostname: &str, random: u128) -> String {
    format!("{hostname}_{:032x}", random)
}

/// Runs `lead` while this candidate holds the Lease.
///
/// Waits until the Lease is acquired (or `shutdown` fires), then runs `lead` with a token that is cancelled when
/// leadership ends. Returns `Ok(())` after a shutdown (the Lease released if configured), or [`Error::LostLease`]
/// when renewal failed; in both cases `lead`'s future has completed.
pub async fn run<F, Fut>(
    client: kube::Client,
    lock: LeaseLock,
    config: Config,
    shutdown: CancellationToken,
    lead: F,
) -> Result<(), Error>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    config.validate()?;
    let span = info_span!("leader_election", lease = %format!("{}/{}", lock.namespace, lock.name), identity = %lock.identity);
    async move {
        let mut elector = Elector::new(Api::namespaced(client, &lock.namespace), lock, config);
        // Acquire.
        loop {
            if elector.try_acquire_or_renew().await {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(elector.config.retry_period) => {}
            }
        }
        info!("became leader");
        let leading = shutdown.child_token();
        let mut work = tokio::spawn(lead(leading.clone()));
        let mut last_renew = Instant::now();
        let outcome = loop {
            tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                _ = &mut work => {
                    // The work ended on its own: nothing left to lead for; hand over.
                    break Ok(());
                }
                () = tokio::time::sleep(elector.config.retry_period) => {
                    if elector.try_acquire_or_renew().await {
                        last_renew = Instant::now();
                    } else if last_renew.elapsed() >= elector.config.renew_deadline {
                        warn!("failed to renew the lease within the renew deadline; stepping down");
                        break Err(Error::LostLease {
                            lease: format!("{}/{}", elector.lock.namespace, elector.lock.name),
                            deadline: elector.config.renew_deadline,
                        });
                    }
                }
            }
        };
        leading.cancel();
        if !work.is_finished() {
            let _ = work.await;
        }
        if outcome.is_ok() && elector.config.release_on_cancel {
            elector.release().await;
        }
        outcome
    }
    .instrument(span)
    .await
}

struct Elector {
    api: Api<Lease>,
    lock: LeaseLock,
    config: Config,
    /// The Lease as last seen and when it was last seen to change (local monotonic time).
    observed: Option<(Lease, Instant)>,
}

impl Elector {
    fn new(api: Api<Lease>, lock: LeaseLock, config: Config) -> Self {
        Elector {
            api,
            lock,
            config,
            observed: None,
        }
    }

    fn lease_duration_secs(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    /// One attempt, as client-go's `tryAcquireOrRenew`: true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = MicroTime(Timestamp::now());
        let current = match self.api.get_opt(&self.lock.name).await {
            Ok(current) => current,
            Err(err) => {
                debug!(error = %err, "reading the lease failed");
                return false;
            }
        };
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lock.name.clone()),
                    namespace: Some(self.lock.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.lock.identity.clone()),
                    lease_duration_seconds: Some(self.lease_duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observed = Some((created, Instant::now()));
                    true
                }
                Err(err) => {
                    debug!(error = %err, "creating the lease failed");
                    false
                }
            };
        };

        // Track when the record last changed, by our own clock.
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|(seen, _)| seen.spec != current.spec);
        if changed {
            self.observed = Some((current.clone(), Instant::now()));
        }
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = holder == self.lock.identity;
        if !held_by_me && !holder.is_empty() {
            let duration =
                Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0));
            let seen_at = self.observed.as_ref().map_or_else(Instant::now, |(_, at)| *at);
            if seen_at.elapsed() < duration {
                return false;
            }
        }

        let mut next = current.clone();
        let mut new_spec = spec.clone();
        if held_by_me {
            new_spec.renew_time = Some(now);
        } else {
            new_spec.holder_identity = Some(self.lock.identity.clone());
            new_spec.acquire_time = Some(now.clone());
            new_spec.renew_time = Some(now);
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.lease_duration_seconds = Some(self.lease_duration_secs());
        next.spec = Some(new_spec);
        match self
            .api
            .replace(&self.lock.name, &PostParams::default(), &next)
            .await
        {
            Ok(updated) => {
                if !held_by_me {
                    info!(previous = %holder, "acquired the lease");
                }
                self.observed = Some((updated, Instant::now()));
                true
            }
            Err(err) => {
                debug!(error = %err, "updating the lease failed");
                false
            }
        }
    }

    /// Hands the Lease over: an empty holder and a 1 s duration, as client-go's `release`.
    async fn release(&mut self) {
        let Some((lease, _)) = self.observed.clone() else {
            return;
        };
        let mut next = lease;
        let mut spec = next.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.lock.identity.as_str()) {
            return;
        }
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        next.spec = Some(spec);
        match self
            .api
            .replace(&self.lock.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => info!("released the lease"),
            Err(err) => warn!(error = %err, "releasing the lease failed; a successor waits for it to expire"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_defaults_are_valid_and_inverted_timings_are_refused() {
        assert!(Config::default().validate().is_ok());
        let bad = Config {
            renew_deadline: Duration::from_secs(20),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
        let bad = Config {
            retry_period: Duration::from_secs(10),
            ..Config::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn identities_are_hostname_then_random() {
        let id = identity("cp-1", 0xabc);
        assert!(id.starts_with("cp-1_"));
        assert_eq!(id.len(), "cp-1_".len() + 32);
    }
}
