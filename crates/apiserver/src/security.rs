//! The request-security pipeline as wired from the flags: the authenticator chain, the authorizer chain
//! (`--authorization-mode`), the service-account token signer, and [`StoreReader`], the read access to stored
//! objects the authenticators and authorizers use.

use std::sync::Arc;

use api::{ApiError, GroupResource};
use async_trait::async_trait;
use serde_json::Value;
use store::Store;

use crate::auth::{self, Authenticator, Authorizer, ObjectReader};
use crate::config::ServerConfig;
use crate::error::{ServeError, store_error};

/// Reads objects for authentication, authorization and admission: from the watch cache when it is ready, as
/// upstream's informers do (RBAC would otherwise list every binding from the store on every request), and from
/// the store for what the cache does not have (yet).
pub struct StoreReader {
    pub store: Arc<dyn Store>,
    pub registry: Arc<api::Registry>,
    pub cache: Option<Arc<crate::cache::WatchCache>>,
}

impl StoreReader {
    fn info(&self, resource: &GroupResource) -> Result<&api::ResourceInfo, ApiError> {
        self.registry
            .iter()
            .find(|r| {
                r.group == resource.group && r.plural == resource.resource && r.storage_prefix.is_some()
            })
            .ok_or_else(|| ApiError::internal(format!("no stored resource {resource}")))
    }
}

#[async_trait]
impl ObjectReader for StoreReader {
    async fn get(
        &self,
        resource: &GroupResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        let info = self.info(resource)?;
        let key = info
            .storage_key(namespace, name)
            .ok_or_else(|| ApiError::internal("not stored"))?;
        if let (Some(cache), Some(prefix)) = (&self.cache, info.storage_list_prefix(None))
            && let Some((Some(obj), _)) = cache.cacher(&prefix, None).get(&key)
        {
            return Ok(Some(obj.value.clone()));
        }
        // A miss may be an object the cache has not seen yet: the store decides.
        match self.store.get(&key).await {
            Ok(kv) => crate::rest::decode(&kv).map(Some),
            Err(store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(resource, name, e)),
        }
    }

    async fn list(&self, resource: &GroupResource, namespace: Option<&str>) -> Result<Vec<Value>, ApiError> {
        let info = self.info(resource)?;
        let prefix = info
            .storage_list_prefix(namespace)
            .ok_or_else(|| ApiError::internal("not stored"))?;
        if let (Some(cache), Some(all)) = (&self.cache, info.storage_list_prefix(None))
            && let Some((objects, _)) = cache.cacher(&all, None).list(&prefix)
        {
            return Ok(objects.iter().map(|o| o.value.clone()).collect());
        }
        let page = self
            .store
            .list(&prefix, store::ListOptions::default())
            .await
            .map_err(|e| store_error(resource, "", e))?;
        page.items.iter().map(crate::rest::decode).collect()
    }
}

/// Everything a request needs to be authenticated and authorized, built once at startup.
pub struct Security {
    pub authenticator: Arc<dyn Authenticator>,
    pub authorizer: Arc<dyn Authorizer>,
    pub reader: Arc<dyn ObjectReader>,
    pub signer: Option<auth::serviceaccount::TokenSigner>,
    /// `--api-audiences`, defaulted to the first issuer as upstream.
    pub api_audiences: Vec<String>,
}

impl Security {
    pub fn from_config(config: &ServerConfig, reader: Arc<dyn ObjectReader>) -> Result<Self, ServeError> {
        let err = |e: auth::AuthError| ServeError::Config(e.to_string());
        let mut key_pems = auth::config::read_pem_files(&config.service_account_key_files).map_err(err)?;
        let signer = match &config.service_account_signing_key_file {
            Some(path) => {
                let pem = auth::config::read_pem_files(std::slice::from_ref(path)).map_err(err)?;
                let issuer = config
                    .service_account_issuers
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "https://kubernetes.default.svc.cluster.local".into());
                let text = pem.concat();
                if config.service_account_key_files.is_empty() {
                    // Without --service-account-key-file upstream verifies with the signing key.
                    key_pems.push(text.clone());
                }
                Some(auth::serviceaccount::TokenSigner::from_pem(&text, &issuer).map_err(err)?)
            }
            None => None,
        };
        let api_audiences: Vec<String> = config.service_account_issuers.iter().take(1).cloned().collect();
        let opts = auth::config::AuthenticationOptions {
            client_ca: config.client_ca_file.is_some(),
            enable_bootstrap_token_auth: config.enable_bootstrap_token_auth,
            service_account_key_pems: key_pems,
            service_account_issuers: config.service_account_issuers.clone(),
            api_audiences: api_audiences.clone(),
            anonymous_auth: config.anonymous_auth,
        };
        let authenticator =
            auth::config::build_authenticator(&opts, reader.clone(), auth::system_clock()).map_err(err)?;
        let modes = auth::authorizers::parse_modes(&config.authorization_modes.join(","))
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let authorizer = auth::authorizers::build(&modes, reader.clone());
        Ok(Self {
            authenticator: Arc::new(authenticator),
            authorizer: Arc::new(authorizer),
            reader,
            signer,
            api_audiences,
        })
    }

    /// The user behind the request's credentials; 401 when they are invalid or absent without anonymous auth.
    pub async fn authenticate(
        &self,
        peer_certificates: &[Vec<u8>],
        bearer_token: Option<&str>,
    ) -> Result<auth::UserInfo, ApiError> {
        let creds = auth::Credentials {
            peer_certificates,
            bearer_token,
        };
        match self.authenticator.authenticate(&creds).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(ApiError::Unauthorized(String::new())),
            Err(e) => {
                tracing::debug!(error = %e, "authentication failed");
                Err(ApiError::Unauthorized(String::new()))
            }
        }
    }

    /// 403 with upstream's message unless the authorizer chain allows.
    pub async fn authorize(&self, attrs: &auth::Attributes) -> Result<(), ApiError> {
        match self.authorizer.authorize_with_reason(attrs).await {
            (auth::Decision::Allow, _) => Ok(()),
            (auth::Decision::Unavailable(reason), _) => Err(ApiError::ServiceUnavailable(format!(
                "cannot authorize the request: {reason}"
            ))),
            (_, reason) => Err(auth::forbidden(attrs, &reason)),
        }
    }
}
