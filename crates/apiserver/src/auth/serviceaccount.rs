//! Service-account JWTs: verification (an [`Authenticator`]) and signing ([`TokenSigner`]).
//!
//! Two kinds of token, as upstream:
//! - legacy Secret tokens (issuer `kubernetes/serviceaccount`, claims `kubernetes.io/serviceaccount/...`), valid while
//!   the Secret still exists and holds this very token and the ServiceAccount still exists with the same uid;
//! - bound tokens from TokenRequest (`kubectl create token`, projected volumes), issued by `--service-account-issuer`
//!   with audiences, `exp`/`nbf`/`iat` (one minute leeway) and optional pod/secret/node binding, valid while the bound
//!   objects still exist with the uids in the token.
//!
//! Signatures are RS256 with ring. Keys: `--service-account-key-file` (PKIX `PUBLIC KEY` as kubeadm's `sa.pub`,
//! PKCS#1 or PKCS#8 private keys, certificates) via [`load_public_keys`]; `--service-account-signing-key-file`
//! (kubeadm's `sa.key`) via [`TokenSigner::from_pem`].

use super::bootstrap::secret_data;
use super::objects::{self, str_at};
use super::{AuthError, Authenticator, Clock, Credentials, ObjectReader, UserInfo};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use sha2::Digest;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
pub const USER_PREFIX: &str = "system:serviceaccount:";
pub const ALL_SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// go-jose's default leeway for `exp`, `nbf` and `iat`, which upstream uses.
const LEEWAY: Duration = Duration::from_secs(60);
const LEGACY_INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";

/// `system:serviceaccount:<ns>:<name>`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("{USER_PREFIX}{namespace}:{name}")
}

/// Splits `system:serviceaccount:<ns>:<name>` into namespace and name.
pub fn split_username(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user.strip_prefix(USER_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

/// The user a service account authenticates as, with upstream's groups.
pub fn user_info(namespace: &str, name: &str, uid: &str) -> UserInfo {
    UserInfo {
        name: username(namespace, name),
        uid: uid.into(),
        groups: vec![
            ALL_SERVICE_ACCOUNTS_GROUP.into(),
            format!("{ALL_SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        ],
        ..Default::default()
    }
}

/// An RSA public key (PKCS#1 `RSAPublicKey` DER, what ring verifies with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// Upstream's key id: base64url(SHA-256(PKIX DER)).
    pub fn key_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(spki_from_pkcs1(&self.0)))
    }
}

fn key_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::Internal(format!("service account key: {e}"))
}

/// Every PEM block of a file as (tag, DER).
fn pem_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, AuthError> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(tag) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((tag.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((tag, body)) = current.take() {
                blocks.push((tag, STANDARD.decode(body).map_err(key_error)?));
            }
        } else if let Some((_, body)) = current.as_mut()
            && !line.contains(':')
        {
            // Lines with a colon are RFC 1421 headers (`Proc-Type: ...`), not base64.
            body.push_str(line);
        }
    }
    Ok(blocks)
}

const RSA_ALGORITHM_ID: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else {
        let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

/// Wraps a PKCS#1 RSA public key in a PKIX SubjectPublicKeyInfo.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    let mut bit_string = vec![0x03];
    bit_string.extend(der_len(pkcs1.len() + 1));
    bit_string.push(0);
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(RSA_ALGORITHM_ID.len() + bit_string.len()));
    out.extend_from_slice(&RSA_ALGORITHM_ID);
    out.extend(bit_string);
    out
}

fn pkcs1_from_spki(spki: &[u8]) -> Result<Vec<u8>, AuthError> {
    use x509_parser::prelude::FromDer;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki).map_err(key_error)?;
    if info.algorithm.algorithm.to_id_string() != "1.2.840.113549.1.1.1" {
        return Err(key_error("only RSA keys are supported"));
    }
    Ok(info.subject_public_key.data.to_vec())
}

/// Reads the verification keys of a `--service-account-key-file`: public keys, private keys (their public half)
/// and certificates, any number per file.
pub fn load_public_keys(pem_text: &str) -> Result<Vec<PublicKey>, AuthError> {
    use ring::signature::KeyPair;
    let mut keys = Vec::new();
    for (tag, der) in pem_blocks(pem_text)? {
        let pkcs1 = match tag.as_str() {
            "PUBLIC KEY" => pkcs1_from_spki(&der)?,
            "RSA PUBLIC KEY" => der,
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
                .map_err(key_error)?
                .public_key()
                .as_ref()
                .to_vec(),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der)
                .map_err(key_error)?
                .public_key()
                .as_ref()
                .to_vec(),
            "CERTIFICATE" => {
                let cert = pki::Certificate::from_der(der).map_err(key_error)?;
                pkcs1_from_spki(&cert.public_key_der().map_err(key_error)?)?
            }
            _ => continue,
        };
        keys.push(PublicKey(pkcs1));
    }
    if keys.is_empty() {
        return Err(key_error("no RSA public key found"));
    }
    Ok(keys)
}

/// Signs service-account tokens with `--service-account-signing-key-file`.
pub struct TokenSigner {
    key: RsaKeyPair,
    key_id: String,
    issuer: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// An object a bound token is tied to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundObject {
    pub name: String,
    pub uid: String,
}

/// What a TokenRequest asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoundTokenRequest {
    pub namespace: String,
    pub service_account_name: String,
    pub service_account_uid: String,
    /// Empty means the API server's own audiences (the caller substitutes them, as upstream does).
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub pod: Option<BoundObject>,
    pub secret: Option<BoundObject>,
    /// The node a pod-bound token's pod runs on, or the node a node-bound token is for.
    pub node: Option<BoundObject>,
}

impl TokenSigner {
    /// `pem_text`: the signing key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8); `issuer`: the first
    /// `--service-account-issuer`.
    pub fn from_pem(pem_text: &str, issuer: &str) -> Result<Self, AuthError> {
        use ring::signature::KeyPair;
        let key = pem_blocks(pem_text)?
            .into_iter()
            .find_map(|(tag, der)| match tag.as_str() {
                "RSA PRIVATE KEY" => Some(RsaKeyPair::from_der(&der)),
                "PRIVATE KEY" => Some(RsaKeyPair::from_pkcs8(&der)),
                _ => None,
            })
            .ok_or_else(|| key_error("no RSA private key found"))?
            .map_err(key_error)?;
        let key_id = PublicKey(key.public_key().as_ref().to_vec()).key_id();
        Ok(Self {
            key,
            key_id,
            issuer: issuer.into(),
        })
    }

    /// The verification key matching this signer.
    pub fn public_key(&self) -> PublicKey {
        use ring::signature::KeyPair;
        PublicKey(self.key.public_key().as_ref().to_vec())
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn sign(&self, claims: &Value) -> Result<String, AuthError> {
        let header = json!({"alg": "RS256", "kid": self.key_id});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        // PKCS#1 v1.5 signatures are deterministic; ring only uses the RNG for blinding.
        self.key
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(key_error)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// A legacy Secret-based token (what the tokens controller writes into `kubernetes.io/service-account-token`
    /// Secrets): no expiry, valid while the Secret exists.
    pub fn sign_legacy(
        &self,
        namespace: &str,
        sa_name: &str,
        sa_uid: &str,
        secret_name: &str,
    ) -> Result<String, AuthError> {
        self.sign(&json!({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": sa_name,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
            "sub": username(namespace, sa_name),
        }))
    }

    /// A bound token for TokenRequest; returns the token and its expiry. `jti` comes from [`new_jti`].
    pub fn sign_bound(
        &self,
        req: &BoundTokenRequest,
        now: SystemTime,
        jti: &str,
    ) -> Result<(String, SystemTime), AuthError> {
        let iat = objects::unix_seconds(now);
        let exp = iat + req.expiration_seconds;
        let mut k8s = json!({
            "namespace": req.namespace,
            "serviceaccount": {"name": req.service_account_name, "uid": req.service_account_uid},
        });
        let obj = |o: &BoundObject| json!({"name": o.name, "uid": o.uid});
        if let Some(p) = &req.pod {
            k8s["pod"] = obj(p);
        }
        if let Some(s) = &req.secret {
            k8s["secret"] = obj(s);
        }
        if let Some(n) = &req.node {
            k8s["node"] = obj(n);
        }
        let token = self.sign(&json!({
            "aud": req.audiences,
            "exp": exp,
            "iat": iat,
            "iss": self.issuer,
            "jti": jti,
            "kubernetes.io": k8s,
            "nbf": iat,
            "sub": username(&req.namespace, &req.service_account_name),
        }))?;
        Ok((token, objects::from_unix_seconds(exp)))
    }
}

/// A random UUID (version 4) for a token's `jti`.
pub fn new_jti(rng: &mut dyn rand::RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Shortest and longest lifetimes a TokenRequest may ask for (upstream's validation).
pub const MIN_TOKEN_SECONDS: i64 = 600;
pub const MAX_TOKEN_SECONDS: i64 = 1 << 32;
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// Serves `POST .../serviceaccounts/<name>/token`: defaults and validates the TokenRequest `request` (audiences
/// default to `api_audiences`, `expirationSeconds` to 3600, at least 600), resolves its `boundObjectRef` (Pod,
/// Secret or Node, whose uid must match when given; a pod also binds its node), signs the token, and returns the
/// TokenRequest to send back with `spec` defaulted and `status.token` / `status.expirationTimestamp` set.
pub async fn serve_token_request(
    signer: &TokenSigner,
    reader: &dyn ObjectReader,
    service_account: &Value,
    request: &Value,
    api_audiences: &[String],
    now: SystemTime,
    jti: &str,
) -> Result<Value, api::ApiError> {
    let namespace = str_at(service_account, &["metadata", "namespace"]);
    let sa_name = objects::name(service_account);
    let kind = api::GroupKind::new("authentication.k8s.io", "TokenRequest");
    let invalid = |field: &str, value: Value, detail: &str| {
        api::ApiError::invalid(
            &kind,
            sa_name,
            vec![api::FieldError::invalid(
                &api::FieldPath::new(field),
                value,
                detail,
            )],
        )
    };
    let mut audiences = objects::strings_at(request, &["spec", "audiences"]);
    if audiences.is_empty() {
        audiences = api_audiences.to_vec();
    }
    let seconds = request
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_TOKEN_SECONDS);
    if seconds < MIN_TOKEN_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            json!(seconds),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_TOKEN_SECONDS {
        return Err(invalid(
            "spec.expirationSeconds",
            json!(seconds),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let mut req = BoundTokenRequest {
        namespace: namespace.into(),
        service_account_name: sa_name.into(),
        service_account_uid: objects::uid(service_account).into(),
        audiences: audiences.clone(),
        expiration_seconds: seconds,
        ..Default::default()
    };
    if let Some(r) = request.pointer("/spec/boundObjectRef").filter(|r| r.is_object()) {
        let (ref_kind, ref_name, ref_uid) = (str_at(r, &["kind"]), str_at(r, &["name"]), str_at(r, &["uid"]));
        let (resource, ns) = match ref_kind {
            "Pod" => (objects::pods(), Some(namespace)),
            "Secret" => (objects::secrets(), Some(namespace)),
            "Node" => (objects::nodes(), None),
            other => {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    json!(other),
                    "supported values: \"Pod\", \"Secret\", \"Node\"",
                ));
            }
        };
        let obj = reader
            .get(&resource, ns, ref_name)
            .await?
            .ok_or_else(|| api::ApiError::not_found(&resource, ref_name))?;
        if !ref_uid.is_empty() && objects::uid(&obj) != ref_uid {
            return Err(api::ApiError::Conflict {
                resource,
                name: ref_name.into(),
                reason: format!(
                    "the UID in the bound object reference ({ref_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            });
        }
        let bound = BoundObject {
            name: ref_name.into(),
            uid: objects::uid(&obj).into(),
        };
        match ref_kind {
            "Pod" => {
                let node_name = str_at(&obj, &["spec", "nodeName"]);
                if !node_name.is_empty() {
                    let node = reader.get(&objects::nodes(), None, node_name).await?;
                    req.node = Some(BoundObject {
                        name: node_name.into(),
                        uid: node
                            .as_ref()
                            .map(|n| objects::uid(n).to_string())
                            .unwrap_or_default(),
                    });
                }
                req.pod = Some(bound);
            }
            "Secret" => req.secret = Some(bound),
            _ => req.node = Some(bound),
        }
    }
    let (token, expires) = signer.sign_bound(&req, now, jti)?;
    let mut out = request.clone();
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenRequest");
    out["spec"]["audiences"] = json!(audiences);
    out["spec"]["expirationSeconds"] = json!(seconds);
    out["status"] = json!({"token": token, "expirationTimestamp": objects::format_rfc3339(expires)});
    Ok(out)
}

/// Verifies service-account tokens (legacy and bound).
#[derive(Clone)]
pub struct ServiceAccountAuthenticator {
    keys: Vec<PublicKey>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    reader: Arc<dyn ObjectReader>,
    clock: Clock,
}

impl std::fmt::Debug for ServiceAccountAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountAuthenticator")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: impl Into<String>) -> AuthError {
    AuthError::Invalid(msg.into())
}

fn claim_time(claims: &Value, key: &str) -> Option<SystemTime> {
    claims.get(key)?.as_i64().map(objects::from_unix_seconds)
}

impl ServiceAccountAuthenticator {
    /// `keys`: [`load_public_keys`] of every `--service-account-key-file`; `issuers`: every
    /// `--service-account-issuer`; `api_audiences`: `--api-audiences`, upstream defaults it to the first issuer.
    pub fn new(
        keys: Vec<PublicKey>,
        issuers: Vec<String>,
        api_audiences: Vec<String>,
        reader: Arc<dyn ObjectReader>,
        clock: Clock,
    ) -> Self {
        let audiences = if api_audiences.is_empty() {
            issuers.iter().take(1).cloned().collect()
        } else {
            api_audiences
        };
        Self {
            keys,
            issuers,
            audiences,
            reader,
            clock,
        }
    }

    async fn get(
        &self,
        r: &api::GroupResource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, AuthError> {
        self.reader
            .get(r, ns, name)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// The stored object if it exists with `uid` and is not being deleted for more than the leeway.
    async fn bound_object(
        &self,
        r: &api::GroupResource,
        ns: Option<&str>,
        what: &str,
        name: &str,
        uid: &str,
    ) -> Result<Value, AuthError> {
        let Some(obj) = self.get(r, ns, name).await? else {
            return Err(invalid(format!("{what} {name:?} not found")));
        };
        if !uid.is_empty() && objects::uid(&obj) != uid {
            return Err(invalid(format!(
                "{what} {name:?} UID ({}) does not match claim ({uid})",
                objects::uid(&obj)
            )));
        }
        let deleted_at = objects::parse_rfc3339(str_at(&obj, &["metadata", "deletionTimestamp"]));
        if deleted_at.is_some_and(|t| t + LEEWAY < (self.clock)()) {
            return Err(invalid(format!("{what} {name:?} is marked for deletion")));
        }
        Ok(obj)
    }

    async fn legacy(&self, token: &str, claims: &Value) -> Result<UserInfo, AuthError> {
        let claim = |k: &str| str_at(claims, &[k]).to_string();
        let ns = claim("kubernetes.io/serviceaccount/namespace");
        let secret_name = claim("kubernetes.io/serviceaccount/secret.name");
        let sa_name = claim("kubernetes.io/serviceaccount/service-account.name");
        let sa_uid = claim("kubernetes.io/serviceaccount/service-account.uid");
        for (value, what) in [
            (&ns, "namespace"),
            (&secret_name, "secretName"),
            (&sa_name, "serviceAccountName"),
            (&sa_uid, "serviceAccountUID"),
        ] {
            if value.is_empty() {
                return Err(invalid(format!("{what} claim is missing")));
            }
        }
        let secret = self
            .bound_object(&objects::secrets(), Some(&ns), "secret", &secret_name, "")
            .await
            .map_err(|_| invalid("token has been invalidated"))?;
        let stored = secret_data(&secret, "token");
        if !objects::constant_time_eq(stored.as_bytes(), token.as_bytes()) {
            return Err(invalid("token does not match secret; token has been invalidated"));
        }
        if secret
            .pointer(&format!(
                "/metadata/labels/{}",
                LEGACY_INVALID_SINCE_LABEL.replace('/', "~1")
            ))
            .is_some()
        {
            return Err(invalid("token has been invalidated"));
        }
        self.bound_object(
            &objects::service_accounts(),
            Some(&ns),
            "service account",
            &sa_name,
            &sa_uid,
        )
        .await?;
        Ok(user_info(&ns, &sa_name, &sa_uid))
    }

    async fn bound(&self, claims: &Value) -> Result<UserInfo, AuthError> {
        let now = (self.clock)();
        match claim_time(claims, "exp") {
            Some(exp) if now <= exp + LEEWAY => {}
            Some(_) => return Err(invalid("service account token has expired")),
            None => return Err(invalid("service account token has no expiry")),
        }
        if claim_time(claims, "nbf").is_some_and(|nbf| now + LEEWAY < nbf) {
            return Err(invalid("service account token is not valid yet"));
        }
        if claim_time(claims, "iat").is_some_and(|iat| now + LEEWAY < iat) {
            return Err(invalid("service account token is issued in the future"));
        }
        let token_auds: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            _ => objects::strings_at(claims, &["aud"]),
        };
        if !token_auds.iter().any(|a| self.audiences.contains(a)) {
            return Err(invalid(format!(
                "token audiences {token_auds:?} is invalid for the target audiences {:?}",
                self.audiences
            )));
        }
        let k8s = claims.get("kubernetes.io").cloned().unwrap_or(Value::Null);
        let ns = str_at(&k8s, &["namespace"]);
        let sa_name = str_at(&k8s, &["serviceaccount", "name"]);
        let sa_uid = str_at(&k8s, &["serviceaccount", "uid"]);
        if ns.is_empty() || sa_name.is_empty() {
            return Err(invalid("service account token claims are incomplete"));
        }
        if str_at(claims, &["sub"]) != username(ns, sa_name) {
            return Err(invalid("service account token subject does not match its claims"));
        }
        self.bound_object(
            &objects::service_accounts(),
            Some(ns),
            "service account",
            sa_name,
            sa_uid,
        )
        .await?;
        let mut user = user_info(ns, sa_name, sa_uid);
        let mut extra = |k: &str, v: &str| {
            if !v.is_empty() {
                user.extra
                    .insert(format!("authentication.kubernetes.io/{k}"), vec![v.to_string()]);
            }
        };
        if k8s.get("pod").is_some() {
            let (name, uid) = (str_at(&k8s, &["pod", "name"]), str_at(&k8s, &["pod", "uid"]));
            self.bound_object(&objects::pods(), Some(ns), "pod", name, uid)
                .await?;
            extra("pod-name", name);
            extra("pod-uid", uid);
        }
        if k8s.get("secret").is_some() {
            let (name, uid) = (
                str_at(&k8s, &["secret", "name"]),
                str_at(&k8s, &["secret", "uid"]),
            );
            self.bound_object(&objects::secrets(), Some(ns), "secret", name, uid)
                .await?;
        }
        if k8s.get("node").is_some() {
            let (name, uid) = (str_at(&k8s, &["node", "name"]), str_at(&k8s, &["node", "uid"]));
            // A pod-bound token names its pod's node for information; only a node-bound token depends on it.
            if k8s.get("pod").is_none() {
                self.bound_object(&objects::nodes(), None, "node", name, uid)
                    .await?;
            }
            extra("node-name", name);
            extra("node-uid", uid);
        }
        let jti = str_at(claims, &["jti"]);
        if !jti.is_empty() {
            extra("credential-id", &format!("JTI={jti}"));
        }
        Ok(user)
    }
}

#[async_trait]
impl Authenticator for ServiceAccountAuthenticator {
    async fn authenticate(&self, creds: &Credentials<'_>) -> Result<Option<UserInfo>, AuthError> {
        let Some(token) = creds.bearer_token else {
            return Ok(None);
        };
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let decode_json =
            |p: &str| -> Option<Value> { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok() };
        let (Some(header), Some(claims)) = (decode_json(h), decode_json(c)) else {
            return Ok(None);
        };
        // Tokens of other issuers belong to other authenticators.
        let issuer = str_at(&claims, &["iss"]);
        let legacy = issuer == LEGACY_ISSUER;
        if !legacy && !self.issuers.iter().any(|i| i == issuer) {
            return Ok(None);
        }
        if str_at(&header, &["alg"]) != "RS256" {
            return Err(invalid(format!(
                "unsupported signing algorithm {:?}",
                str_at(&header, &["alg"])
            )));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| invalid("invalid signature encoding"))?;
        let signing_input = &token[..h.len() + 1 + c.len()];
        let verified = self.keys.iter().any(|k| {
            UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &k.0)
                .verify(signing_input.as_bytes(), &sig)
                .is_ok()
        });
        if !verified {
            return Err(invalid("crypto/rsa: verification error"));
        }
        let user = if legacy {
            self.legacy(token, &claims).await?
        } else {
            self.bound(&claims).await?
        };
        Ok(Some(user))
    }
}

impl From<AuthError> for api::ApiError {
    fn from(e: AuthError) -> Self {
        api::ApiError::internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testutil::MemoryReader;
    use std::sync::OnceLock;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    /// RSA key generation is slow; every test shares two keys.
    fn keys() -> &'static (String, String) {
        static KEYS: OnceLock<(String, String)> = OnceLock::new();
        KEYS.get_or_init(|| {
            let generate = || {
                pki::KeyPair::generate(pki::KeyAlgorithm::Rsa2048)
                    .unwrap()
                    .to_pem()
                    .unwrap()
            };
            (generate(), generate())
        })
    }

    fn now() -> SystemTime {
        objects::parse_rfc3339("2030-01-01T00:00:00Z").unwrap()
    }

    fn reader() -> MemoryReader {
        let r = MemoryReader::new();
        r.put(
            "",
            "serviceaccounts",
            json!({"metadata": {"namespace": "default", "name": "builder", "uid": "sa-uid"}}),
        );
        r.put(
            "",
            "pods",
            json!({"metadata": {"namespace": "default", "name": "web", "uid": "pod-uid"}}),
        );
        r
    }

    fn authenticator(reader: MemoryReader, at: SystemTime) -> ServiceAccountAuthenticator {
        // sa.pub as kubeadm writes it: the PKIX public key.
        let public_pem = pki::KeyPair::from_pem(&keys().0).unwrap().public_key_pem();
        ServiceAccountAuthenticator::new(
            load_public_keys(&public_pem).unwrap(),
            vec![ISSUER.into()],
            vec![],
            Arc::new(reader),
            Arc::new(move || at),
        )
    }

    fn signer() -> TokenSigner {
        TokenSigner::from_pem(&keys().0, ISSUER).unwrap()
    }

    fn request() -> BoundTokenRequest {
        BoundTokenRequest {
            namespace: "default".into(),
            service_account_name: "builder".into(),
            service_account_uid: "sa-uid".into(),
            audiences: vec![ISSUER.into()],
            expiration_seconds: 3600,
            ..Default::default()
        }
    }

    async fn auth(a: &ServiceAccountAuthenticator, token: &str) -> Result<Option<UserInfo>, AuthError> {
        a.authenticate(&Credentials {
            bearer_token: Some(token),
            ..Default::default()
        })
        .await
    }

    #[tokio::test]
    async fn a_bound_token_authenticates_the_service_account_with_its_groups_and_credential_id() {
        let (token, exp) = signer().sign_bound(&request(), now(), "the-jti").unwrap();
        assert_eq!(exp, now() + Duration::from_secs(3600));
        let user = auth(&authenticator(reader(), now()), &token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:default"]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            vec!["JTI=the-jti"]
        );
    }

    #[tokio::test]
    async fn the_token_header_names_the_key_id_of_the_pkix_public_key() {
        let token = signer()
            .sign_legacy("default", "builder", "sa-uid", "builder-token")
            .unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        let spki = pki::KeyPair::from_pem(&keys().0).unwrap().public_key_der();
        assert_eq!(header["kid"], URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(spki)));
        assert_eq!(header["alg"], "RS256");
    }

    #[tokio::test]
    async fn an_expired_bound_token_is_rejected_after_the_leeway() {
        let (token, _) = signer().sign_bound(&request(), now(), "j").unwrap();
        let late = authenticator(reader(), now() + Duration::from_secs(3600 + 61));
        assert_eq!(
            auth(&late, &token).await,
            Err(invalid("service account token has expired"))
        );
        let within_leeway = authenticator(reader(), now() + Duration::from_secs(3600 + 59));
        assert!(auth(&within_leeway, &token).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_token_signed_by_another_key_is_rejected() {
        let other = TokenSigner::from_pem(&keys().1, ISSUER).unwrap();
        let (token, _) = other.sign_bound(&request(), now(), "j").unwrap();
        assert_eq!(
            auth(&authenticator(reader(), now()), &token).await,
            Err(invalid("crypto/rsa: verification error"))
        );
    }

    #[tokio::test]
    async fn a_tampered_token_is_rejected() {
        let (token, _) = signer().sign_bound(&request(), now(), "j").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert!(auth(&authenticator(reader(), now()), &forged).await.is_err());
    }

    #[tokio::test]
    async fn a_token_of_another_issuer_is_left_to_other_authenticators() {
        let (token, _) = TokenSigner::from_pem(&keys().0, "https://elsewhere")
            .unwrap()
            .sign_bound(&request(), now(), "j")
            .unwrap();
        assert_eq!(auth(&authenticator(reader(), now()), &token).await, Ok(None));
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_rejected() {
        let mut req = request();
        req.audiences = vec!["vault".into()];
        let (token, _) = signer().sign_bound(&req, now(), "j").unwrap();
        let err = auth(&authenticator(reader(), now()), &token).await.unwrap_err();
        assert!(
            err.to_string().contains("is invalid for the target audiences"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_pod_bound_token_dies_with_its_pod() {
        let mut req = request();
        req.pod = Some(BoundObject {
            name: "web".into(),
            uid: "pod-uid".into(),
        });
        req.node = Some(BoundObject {
            name: "node-1".into(),
            uid: "node-uid".into(),
        });
        let (token, _) = signer().sign_bound(&req, now(), "j").unwrap();
        let user = auth(&authenticator(reader(), now()), &token)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], vec!["web"]);
        assert_eq!(
            user.extra["authentication.kubernetes.io/node-name"],
            vec!["node-1"]
        );

        let recreated = reader();
        recreated.put(
            "",
            "pods",
            json!({"metadata": {"namespace": "default", "name": "web", "uid": "other"}}),
        );
        assert!(auth(&authenticator(recreated, now()), &token).await.is_err());
    }

    #[tokio::test]
    async fn a_token_for_a_deleted_service_account_is_rejected() {
        let (token, _) = signer().sign_bound(&request(), now(), "j").unwrap();
        assert!(
            auth(&authenticator(MemoryReader::new(), now()), &token)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_legacy_token_is_valid_while_its_secret_holds_it() {
        let token = signer()
            .sign_legacy("default", "builder", "sa-uid", "builder-token-x")
            .unwrap();
        let r = reader();
        r.put(
            "",
            "secrets",
            json!({
                "metadata": {"namespace": "default", "name": "builder-token-x"},
                "type": "kubernetes.io/service-account-token",
                "data": {"token": STANDARD.encode(&token)}
            }),
        );
        let user = auth(&authenticator(r, now()), &token).await.unwrap().unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert_eq!(
            auth(&authenticator(reader(), now()), &token).await,
            Err(invalid("token has been invalidated"))
        );
    }

    #[tokio::test]
    async fn a_token_request_bound_to_a_pod_defaults_its_spec_and_carries_the_pod_and_node() {
        let r = reader();
        let sa = json!({"metadata": {"namespace": "default", "name": "builder", "uid": "sa-uid"}});
        let mut pod = json!({"metadata": {"namespace": "default", "name": "web", "uid": "pod-uid"}, "spec": {"nodeName": "node-1"}});
        r.put("", "pods", pod.clone());
        r.put(
            "",
            "nodes",
            json!({"metadata": {"name": "node-1", "uid": "node-uid"}}),
        );
        let request = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "pod-uid"}}});
        let out = serve_token_request(&signer(), &r, &sa, &request, &[ISSUER.into()], now(), "j")
            .await
            .unwrap();
        assert_eq!(out["spec"]["expirationSeconds"], 3600);
        assert_eq!(out["spec"]["audiences"], json!([ISSUER]));
        assert_eq!(out["status"]["expirationTimestamp"], "2030-01-01T01:00:00Z");
        let token = out["status"]["token"].as_str().unwrap();
        let user = auth(&authenticator(r, now()), token).await.unwrap().unwrap();
        assert_eq!(
            user.extra["authentication.kubernetes.io/node-uid"],
            vec!["node-uid"]
        );

        pod["metadata"]["uid"] = json!("other");
        let stale = json!({"spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "old"}}});
        let r2 = reader();
        r2.put("", "pods", pod);
        let err = serve_token_request(&signer(), &r2, &sa, &stale, &[], now(), "j")
            .await
            .unwrap_err();
        assert_eq!(err.code(), 409);
        let short = json!({"spec": {"expirationSeconds": 60}});
        let err = serve_token_request(&signer(), &reader(), &sa, &short, &[], now(), "j")
            .await
            .unwrap_err();
        assert_eq!(err.code(), 422);
    }

    #[test]
    fn jti_is_a_version_4_uuid() {
        use rand::SeedableRng;
        let jti = new_jti(&mut rand::rngs::StdRng::seed_from_u64(7));
        assert_eq!(jti.len(), 36);
        assert_eq!(&jti[14..15], "4");
    }

    #[test]
    fn service_account_user_names_split_into_namespace_and_name() {
        assert_eq!(
            split_username("system:serviceaccount:kube-system:default"),
            Some(("kube-system", "default"))
        );
        assert_eq!(split_username("system:node:a"), None);
    }
}
