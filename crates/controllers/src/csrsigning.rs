//! `csrsigning`: issues certificates for approved CSRs of the built-in signers upstream's controller-manager runs
//! with `--cluster-signing-cert-file`/`--cluster-signing-key-file`: `kubernetes.io/kube-apiserver-client-kubelet`,
//! `kubernetes.io/kube-apiserver-client` and `kubernetes.io/kubelet-serving` (`kubernetes.io/legacy-unknown` is never
//! signed). The certificate lives for min(`spec.expirationSeconds`, `--cluster-signing-duration`) and is written to
//! `status.certificate`; a request a signer may not honour gets a `Failed` condition (`SignerValidationFailure`).
//!
//! Layout: [`plan`] is the pure decision (sign with which lifetime, fail why, or skip); [`start`] loads the CA and
//! runs a kube-runtime `Controller` over CSRs writing through `certificatesigningrequests/<name>/status`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};

use crate::csrapproving::is_node_client_request;
use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "csrsigning";
pub const SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kubelet-serving",
];

/// What to do with a CSR.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Skip,
    Sign(Duration),
    Fail(String),
}

fn condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn usage_set(usages: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = usages.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Upstream's per-signer checks on what is asked; `Err` says why the signer refuses.
fn validate(signer: &str, req: &pki::csr::RequestInfo, usages: &[String]) -> Result<(), String> {
    let set = usage_set(usages);
    match signer {
        "kubernetes.io/kube-apiserver-client-kubelet" if !is_node_client_request(req, usages) => {
            Err("CSR is not a valid kubelet client certificate request".into())
        }
        "kubernetes.io/kubelet-serving" => {
            let ok_usages = set == ["digital signature", "server auth"]
                || set == ["digital signature", "key encipherment", "server auth"];
            if req.organizations != ["system:nodes"] || !req.common_name.starts_with("system:node:") {
                Err("subject must be O=system:nodes, CN=system:node:<name>".into())
            } else if req.dns_names.is_empty() && req.ips.is_empty() {
                Err("at least one DNS or IP subjectAltName is required".into())
            } else if !req.emails.is_empty() || !req.uris.is_empty() {
                Err("only DNS and IP subjectAltNames are allowed".into())
            } else if !ok_usages {
                Err(format!(
                    "usages {set:?} are not allowed for kubelet serving certificates"
                ))
            } else {
                Ok(())
            }
        }
        "kubernetes.io/kube-apiserver-client" => {
            let allowed = ["client auth", "digital signature", "key encipherment"];
            if !set.contains(&"client auth") || set.iter().any(|u| !allowed.contains(u)) {
                Err(format!("usages {set:?} are not allowed for client certificates"))
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The decision for `csr` with `--cluster-signing-duration` `max`.
pub fn plan(csr: &CertificateSigningRequest, max: Duration) -> Plan {
    let spec = &csr.spec;
    let has_cert = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !SIGNERS.contains(&spec.signer_name.as_str())
        || !condition(csr, "Approved")
        || condition(csr, "Denied")
        || condition(csr, "Failed")
        || has_cert
    {
        return Plan::Skip;
    }
    let req = match pki::csr::parse(&spec.request.0) {
        Ok(r) => r,
        Err(e) => return Plan::Fail(format!("unable to parse csr: {e}")),
    };
    if let Err(why) = validate(
        &spec.signer_name,
        &req,
        spec.usages.as_deref().unwrap_or_default(),
    ) {
        return Plan::Fail(why);
    }
    let asked = spec
        .expiration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    // Upstream never issues for less than ten minutes, whatever is asked.
    let lifetime = asked.map_or(max, |a| a.max(Duration::from_secs(600)).min(max));
    Plan::Sign(lifetime)
}

struct State {
    ctx: Context,
    ca: pki::CertificateAuthority,
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, csr = %csr.name_any()))]
async fn reconcile(csr: Arc<CertificateSigningRequest>, st: Arc<State>) -> Result<Action, Error> {
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let mut updated = (*csr).clone();
    match plan(&csr, st.ctx.settings.cluster_signing_duration) {
        Plan::Skip => return Ok(Action::await_change()),
        Plan::Sign(lifetime) => {
            let spec = &csr.spec;
            let cert = st
                .ca
                .sign_request(
                    &spec.request.0,
                    spec.usages.as_deref().unwrap_or_default(),
                    lifetime,
                    SystemTime::now(),
                )
                .map_err(|e| Error::Other {
                    controller: NAME,
                    message: e.to_string(),
                })?;
            updated.status.get_or_insert_default().certificate =
                Some(ByteString(cert.pem().as_bytes().to_vec()));
        }
        Plan::Fail(message) => {
            let now = Time(Timestamp::now());
            updated
                .status
                .get_or_insert_default()
                .conditions
                .get_or_insert_default()
                .push(CertificateSigningRequestCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some("SignerValidationFailure".into()),
                    message: Some(message),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                });
        }
    }
    let api: Api<CertificateSigningRequest> = Api::all(st.ctx.client.clone());
    match api
        .replace_status(&csr.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            tracing::info!(csr = %csr.name_any(), signer = %csr.spec.signer_name, "wrote signing result")
        }
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
        Err(e) => return Err(err(e)),
    }
    Ok(Action::await_change())
}

fn load_ca(ctx: &Context) -> Result<pki::CertificateAuthority, Error> {
    let other = |message: String| Error::Other {
        controller: NAME,
        message,
    };
    let (Some(cert), Some(key)) = (
        &ctx.settings.cluster_signing_cert_file,
        &ctx.settings.cluster_signing_key_file,
    ) else {
        return Err(other(
            "--cluster-signing-cert-file and --cluster-signing-key-file are required".into(),
        ));
    };
    let cert = pki::read_cert(cert).map_err(|e| other(e.to_string()))?;
    let key = pki::read_key(key).map_err(|e| other(e.to_string()))?;
    pki::CertificateAuthority::from_parts(cert, key).map_err(|e| other(e.to_string()))
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let ca = load_ca(&ctx)?;
        let csrs: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let shutdown = ctx.shutdown.clone();
        Controller::new(csrs, watcher::Config::default())
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                Arc::new(State { ctx, ca }),
            )
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::warn!(controller = NAME, error = %e, "reconcile failed");
                }
            })
            .await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

    fn csr(
        signer: &str,
        sans: &[String],
        usages: &[&str],
        expiration: Option<i32>,
    ) -> CertificateSigningRequest {
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256).unwrap();
        let request = pki::csr::create(&key, "system:node:n1", Some("system:nodes"), sans).unwrap();
        let c = CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                expiration_seconds: expiration,
                ..Default::default()
            },
            ..Default::default()
        };
        crate::csrapproving::approved(&c, Timestamp::now())
    }

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    #[test]
    fn approved_requests_of_known_signers_are_signed_for_the_shorter_lifetime() {
        let client = ["digital signature", "client auth"];
        let kubelet = "kubernetes.io/kube-apiserver-client-kubelet";
        assert_eq!(plan(&csr(kubelet, &[], &client, None), YEAR), Plan::Sign(YEAR));
        assert_eq!(
            plan(&csr(kubelet, &[], &client, Some(3600)), YEAR),
            Plan::Sign(Duration::from_secs(3600))
        );
        assert_eq!(
            plan(&csr(kubelet, &[], &client, Some(60)), YEAR),
            Plan::Sign(Duration::from_secs(600))
        );
        let serving = csr(
            "kubernetes.io/kubelet-serving",
            &["n1".into()],
            &["digital signature", "server auth"],
            None,
        );
        assert_eq!(
            plan(&serving, Duration::from_secs(60)),
            Plan::Sign(Duration::from_secs(60))
        );
    }

    #[test]
    fn unapproved_unknown_signer_or_invalid_requests_are_not_signed() {
        let client = ["digital signature", "client auth"];
        let mut pending = csr("kubernetes.io/kube-apiserver-client-kubelet", &[], &client, None);
        pending.status = None;
        assert_eq!(plan(&pending, YEAR), Plan::Skip);
        assert_eq!(
            plan(&csr("kubernetes.io/legacy-unknown", &[], &client, None), YEAR),
            Plan::Skip
        );
        assert!(matches!(
            plan(&csr("kubernetes.io/kubelet-serving", &[], &client, None), YEAR),
            Plan::Fail(_)
        ));
        let server_usage = ["digital signature", "server auth"];
        assert!(matches!(
            plan(
                &csr(
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    &[],
                    &server_usage,
                    None
                ),
                YEAR
            ),
            Plan::Fail(_)
        ));
    }
}
