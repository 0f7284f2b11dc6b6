//! `csrapproving`: auto-approves kubelet client certificate requests as upstream's `sarapprove` does. A CSR for
//! signer `kubernetes.io/kube-apiserver-client-kubelet` whose PKCS#10 request is exactly `O=system:nodes,
//! CN=system:node:<name>` without SANs, with usages {digital signature, client auth} (key encipherment optional), is
//! approved when a SubjectAccessReview says its requester may `create` `certificatesigningrequests/selfnodeclient`
//! (renewal: the requester is that very node) or `certificatesigningrequests/nodeclient` (bootstrap). As the
//! controller-manager's brief asks, the requester must also be in `system:bootstrappers` or `system:nodes`.
//!
//! Layout: [`recognize`] is the pure decision (which subresources to ask about); [`start`] runs a kube-runtime
//! `Controller` over CSRs that asks the API's `subjectaccessreviews` and writes the `approval` subresource.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};

use crate::{Context, ControllerFuture, Error};

pub const NAME: &str = "csrapproving";
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const MESSAGE: &str = "Auto approving kubelet client certificate after SubjectAccessReview.";

/// Whether the CSR already has a decision (Approved/Denied/Failed) or a certificate.
pub fn is_decided(csr: &CertificateSigningRequest) -> bool {
    let status = csr.status.as_ref();
    status
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
        || status.and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
            cs.iter()
                .any(|c| matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed"))
        })
}

/// Upstream's `IsKubeletClientCSR` on the parsed request and the spec's usages.
pub fn is_node_client_request(req: &pki::csr::RequestInfo, usages: &[String]) -> bool {
    if req.organizations != ["system:nodes"] || !req.common_name.starts_with("system:node:") {
        return false;
    }
    if !req.dns_names.is_empty() || !req.ips.is_empty() || !req.emails.is_empty() || !req.uris.is_empty() {
        return false;
    }
    let mut got: Vec<&str> = usages.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    got == ["client auth", "digital signature"]
        || got == ["client auth", "digital signature", "key encipherment"]
}

/// The `certificatesigningrequests/<subresource>` permissions that would justify approving, in upstream's order;
/// empty when the CSR is not one this approver handles.
pub fn recognize(csr: &CertificateSigningRequest) -> Vec<&'static str> {
    let spec = &csr.spec;
    if spec.signer_name != KUBELET_CLIENT_SIGNER || is_decided(csr) {
        return Vec::new();
    }
    let groups = spec.groups.as_deref().unwrap_or_default();
    if !groups
        .iter()
        .any(|g| g == "system:bootstrappers" || g == "system:nodes")
    {
        return Vec::new();
    }
    let Ok(req) = pki::csr::parse(&spec.request.0) else {
        return Vec::new();
    };
    if !is_node_client_request(&req, spec.usages.as_deref().unwrap_or_default()) {
        return Vec::new();
    }
    if spec.username.as_deref() == Some(req.common_name.as_str()) {
        vec!["selfnodeclient", "nodeclient"]
    } else {
        vec!["nodeclient"]
    }
}

fn review(csr: &CertificateSigningRequest, subresource: &str) -> SubjectAccessReview {
    let spec = &csr.spec;
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// `csr` with upstream's Approved condition added.
pub fn approved(csr: &CertificateSigningRequest, now: Timestamp) -> CertificateSigningRequest {
    let mut out = csr.clone();
    out.status
        .get_or_insert_default()
        .conditions
        .get_or_insert_default()
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(MESSAGE.into()),
            last_update_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        });
    out
}

#[tracing::instrument(name = "reconcile", skip_all, fields(controller = NAME, csr = %csr.name_any()))]
async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let err = |source| Error::Api {
        controller: NAME,
        source,
    };
    let reviews: Api<SubjectAccessReview> = Api::all(ctx.client.clone());
    for subresource in recognize(&csr) {
        let answer = reviews
            .create(&PostParams::default(), &review(&csr, subresource))
            .await
            .map_err(err)?;
        if !answer.status.is_some_and(|s| s.allowed) {
            continue;
        }
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let body = approved(&csr, Timestamp::now());
        match api
            .replace_subresource("approval", &csr.name_any(), &PostParams::default(), &body)
            .await
        {
            Ok(_) => {
                tracing::info!(csr = %csr.name_any(), subresource, "approved kubelet client certificate")
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(err(e)),
        }
        break;
    }
    Ok(Action::await_change())
}

pub fn start(ctx: Context) -> ControllerFuture {
    Box::pin(async move {
        let csrs: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let shutdown = ctx.shutdown.clone();
        Controller::new(csrs, watcher::Config::default())
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(5)),
                Arc::new(ctx),
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
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

    fn csr(
        cn: &str,
        org: Option<&str>,
        usages: &[&str],
        username: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256).unwrap();
        let request = pki::csr::create(&key, cn, org, &[]).unwrap();
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(request.into_bytes()),
                signer_name: KUBELET_CLIENT_SIGNER.into(),
                usages: Some(usages.iter().map(|u| u.to_string()).collect()),
                username: Some(username.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];

    #[test]
    fn bootstrap_and_renewal_requests_are_recognised() {
        let boot = csr(
            "system:node:n1",
            Some("system:nodes"),
            CLIENT,
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
        );
        assert_eq!(recognize(&boot), ["nodeclient"]);
        let renew = csr(
            "system:node:n1",
            Some("system:nodes"),
            &["digital signature", "client auth"],
            "system:node:n1",
            &["system:nodes"],
        );
        assert_eq!(recognize(&renew), ["selfnodeclient", "nodeclient"]);
    }

    #[test]
    fn other_subjects_usages_requesters_and_decided_requests_are_left_alone() {
        let boot = |cn, org, usages, groups| csr(cn, org, usages, "system:bootstrap:abcdef", groups);
        let g = &["system:bootstrappers"][..];
        assert!(recognize(&boot("system:node:n1", Some("system:masters"), CLIENT, g)).is_empty());
        assert!(recognize(&boot("admin", Some("system:nodes"), CLIENT, g)).is_empty());
        assert!(
            recognize(&boot(
                "system:node:n1",
                Some("system:nodes"),
                &["digital signature", "server auth"],
                g
            ))
            .is_empty()
        );
        assert!(
            recognize(&boot(
                "system:node:n1",
                Some("system:nodes"),
                CLIENT,
                &["developers"]
            ))
            .is_empty()
        );
        let ok = boot("system:node:n1", Some("system:nodes"), CLIENT, g);
        assert!(recognize(&approved(&ok, Timestamp::now())).is_empty());
        let mut other_signer = ok.clone();
        other_signer.spec.signer_name = "kubernetes.io/kube-apiserver-client".into();
        assert!(recognize(&other_signer).is_empty());
    }
}
