//! Per-controller credentials, as kube-controller-manager's `--use-service-account-credentials` gives them: each
//! controller runs as its own ServiceAccount in `kube-system` (`deployment-controller`, `node-controller`, ...), so
//! RBAC's `system:controller:*` roles apply to it, instead of the controller-manager's own, narrow identity.
//!
//! [`ServiceAccountClients::client`] makes sure the ServiceAccount exists, asks the TokenRequest API for a token and
//! returns a client that sends it; a task renews the token at 80% of its life until shutdown. The token never
//! touches the disk: a request layer reads the current one from memory.
//!
//! Lists and watches of whole collections go out with the controller-manager's own identity instead, as upstream's
//! shared informers do (role `system:kube-controller-manager` may list and watch everything; the per-controller
//! roles mostly may not): the returned client routes each request by its path.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

/// How long each token is asked to live (upstream's controller tokens: one hour).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Retry pause when a renewal fails.
const RETRY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ServiceAccount {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "ServiceAccount {namespace}/{name}: the API server returned a token that is not a valid header value"
    )]
    BadToken { namespace: String, name: String },
}

/// Makes clients that authenticate as ServiceAccounts of one namespace, with the server and CA of `config`.
#[derive(Clone)]
pub struct ServiceAccountClients {
    /// The controller-manager's own client, which creates the ServiceAccounts and requests their tokens.
    pub root: kube::Client,
    /// Where the API server is and which CA it has; its credentials are dropped.
    pub config: kube::Config,
    pub namespace: String,
    pub shutdown: CancellationToken,
}

impl ServiceAccountClients {
    /// A client acting as ServiceAccount `name`, its token renewed until shutdown.
    pub async fn client(&self, name: &str) -> Result<kube::Client, Error> {
        self.ensure(name).await?;
        let (token, lifetime) = self.token(name).await?;
        let header = Arc::new(RwLock::new(token));
        let renewal = Renewal {
            accounts: self.clone(),
            name: name.to_string(),
            header: header.clone(),
        };
        tokio::spawn(
            renewal
                .run(lifetime)
                .instrument(info_span!("token-renewal", serviceaccount = %name)),
        );
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo::default();
        let layer = tower::util::MapRequestLayer::new(move |mut req: http::Request<kube::client::Body>| {
            if let Ok(value) = header.read() {
                req.headers_mut()
                    .insert(http::header::AUTHORIZATION, value.clone());
            }
            req
        });
        let builder =
            kube::client::ClientBuilder::try_from(config).map_err(|source| self.err(name, source))?;
        let own = builder.with_layer(&layer).build();
        let root = self.root.clone();
        let routed = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let client = if reads_collection(&req) {
                root.clone()
            } else {
                own.clone()
            };
            async move { client.send(req).await }
        });
        Ok(kube::Client::new(routed, self.config.default_namespace.clone()))
    }

    fn err(&self, name: &str, source: kube::Error) -> Error {
        Error::Api {
            namespace: self.namespace.clone(),
            name: name.to_string(),
            source,
        }
    }

    async fn ensure(&self, name: &str) -> Result<(), Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.root.clone(), &self.namespace);
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(self.err(name, e)),
        }
    }

    /// A fresh `Bearer` header value and how long it is good for.
    async fn token(&self, name: &str) -> Result<(http::HeaderValue, Duration), Error> {
        let api: Api<ServiceAccount> = Api::namespaced(self.root.clone(), &self.namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: i64::try_from(TOKEN_LIFETIME.as_secs()).ok(),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let issued = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|e| self.err(name, e))?;
        let status = issued.status.unwrap_or_default();
        let lifetime = status
            .expiration_timestamp
            .and_then(|at| {
                at.0.duration_since(k8s_openapi::jiff::Timestamp::now())
                    .try_into()
                    .ok()
            })
            .unwrap_or(TOKEN_LIFETIME);
        let token = status.token.unwrap_or_default();
        let mut value =
            http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::BadToken {
                namespace: self.namespace.clone(),
                name: name.to_string(),
            })?;
        value.set_sensitive(true);
        Ok((value, lifetime))
    }
}

/// Whether `req` lists or watches a collection (`GET /api/v1/pods`, `GET /apis/apps/v1/namespaces/ns/deployments`)
/// rather than touching one object.
fn reads_collection<B>(req: &http::Request<B>) -> bool {
    if req.method() != http::Method::GET {
        return false;
    }
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return false,
    };
    matches!(rest, [_resource] | ["namespaces", _, _resource])
}

struct Renewal {
    accounts: ServiceAccountClients,
    name: String,
    header: Arc<RwLock<http::HeaderValue>>,
}

impl Renewal {
    async fn run(self, mut lifetime: Duration) {
        loop {
            let wait = lifetime.mul_f64(0.8);
            tokio::select! {
                () = self.accounts.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.accounts.token(&self.name).await {
                Ok((value, next)) => {
                    if let Ok(mut current) = self.header.write() {
                        *current = value;
                    }
                    lifetime = next;
                }
                Err(e) => {
                    warn!(error = %e, "renewing the token failed; retrying");
                    lifetime = RETRY.mul_f64(1.25);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> http::Request<()> {
        http::Request::get(path).body(()).unwrap_or_default()
    }

    #[test]
    fn collection_reads_are_told_from_object_requests() {
        assert!(reads_collection(&get("/api/v1/pods?watch=true")));
        assert!(reads_collection(&get("/api/v1/namespaces")));
        assert!(reads_collection(&get(
            "/apis/apps/v1/namespaces/default/replicasets"
        )));
        assert!(!reads_collection(&get("/api/v1/namespaces/default")));
        assert!(!reads_collection(&get(
            "/apis/apps/v1/namespaces/default/replicasets/web"
        )));
        assert!(!reads_collection(&get("/api/v1/nodes/n1/status")));
        let post = http::Request::post("/api/v1/namespaces/default/pods")
            .body(())
            .unwrap_or_default();
        assert!(!reads_collection(&post));
    }
}
