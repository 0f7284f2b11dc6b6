//! The bodies of bulwark's fuzz targets: every parser that reads input a client or an operator controls.
//!
//! Each function takes arbitrary bytes, feeds them to one parser the way the server or `kubeadm` does, and checks
//! the invariants that must hold for whatever the input (no panic; what parses prints back to something that
//! parses to the same value). They live in a plain library so that two drivers share them:
//! - `fuzz/` at the repository root: cargo-fuzz targets (libFuzzer, nightly) for long coverage-guided runs,
//!   `cargo +nightly fuzz run <target>`; see `fuzz/README.md`.
//! - `tests/corpus.rs` here: on stable, in the normal test suite, each target runs over its seed inputs (`fuzz/seeds/`), the inputs
//!   that once found bugs, and a few thousand deterministic mutations of them.
//!
//! Entry points: [`TARGETS`] (name and function of every target), or the functions themselves.

// A broken invariant must abort the run so the fuzzer records the input: panicking is this crate's job.
#![allow(clippy::panic)]

use std::sync::{Arc, OnceLock};

use apiserver::auth::{Authenticator, Credentials, ObjectReader};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use serde_json::Value;

/// A fuzz target: a name (the directory of its seeds under `fuzz/seeds/`) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by the name its cargo-fuzz binary and corpus directory carry.
pub const TARGETS: &[Target] = &[
    ("request_body", request_body),
    ("label_selector", label_selector),
    ("field_selector", field_selector),
    ("patch", patch),
    ("server_side_apply", server_side_apply),
    ("bearer_token", bearer_token),
    ("client_certificate", client_certificate),
    ("pem", pem),
    ("kubeadm_config", kubeadm_config),
];

const BODY_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// The first byte picks one of `choices`; the rest is the input proper.
fn pick<'a, T>(data: &'a [u8], choices: &'a [T]) -> Option<(&'a T, &'a [u8])> {
    let (first, rest) = data.split_first()?;
    Some((choices.get(usize::from(*first) % choices.len())?, rest))
}

fn registry() -> &'static api::Registry {
    static REGISTRY: OnceLock<api::Registry> = OnceLock::new();
    REGISTRY.get_or_init(api::Registry::builtin)
}

/// A request body as the API server reads one: decoded by its `Content-Type` (JSON, YAML, protobuf), then, when
/// it names a built-in kind, defaulted, prepared and validated as a create.
pub fn request_body(data: &[u8]) {
    let Some((content_type, body)) = pick(data, BODY_TYPES) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let Ok(mut obj) = apiserver::negotiate::decode_body(&headers, body) else {
        return;
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let Some(info) = registry()
        .iter()
        .find(|i| i.group == group && i.version == version && i.kind == kind)
    else {
        return;
    };
    apiserver::strategy::apply_defaults(info, &mut obj);
    apiserver::strategy::prepare_for_create(info, &mut obj);
    let _ = apiserver::strategy::validate(info, &obj, None);
}

/// `?labelSelector=`: what parses prints back to a selector that parses to the same value.
pub fn label_selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = api::Selector::parse(text) else {
        return;
    };
    let printed = selector.to_string();
    match api::Selector::parse(&printed) {
        Ok(again) => assert_eq!(again, selector, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} parsed but its printed form {printed:?} does not: {e}"),
    }
}

/// `?fieldSelector=`: the same round trip, then resolved for pods and evaluated on an empty pod.
pub fn field_selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = api::FieldSelector::parse(text) else {
        return;
    };
    let printed = selector.to_string();
    match api::FieldSelector::parse(&printed) {
        Ok(again) => assert_eq!(again.to_string(), printed, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} parsed but its printed form {printed:?} does not: {e}"),
    }
    if let Ok(for_pods) = selector.for_kind("", "Pod") {
        let _ = for_pods.matches("", "Pod", &serde_json::json!({"metadata": {}, "spec": {}}));
    }
}

const PATCH_TYPES: &[(api::PatchType, &str, &str)] = &[
    (api::PatchType::Json, "apps", "Deployment"),
    (api::PatchType::Merge, "apps", "Deployment"),
    (api::PatchType::StrategicMerge, "apps", "Deployment"),
    (api::PatchType::StrategicMerge, "", "Pod"),
    (api::PatchType::StrategicMerge, "", "Service"),
];

/// A `PATCH`: the first byte picks the patch type and kind, the rest is `original` NUL `patch`, both JSON. An
/// unparsable original is an empty object, as for a patch that creates.
pub fn patch(data: &[u8]) {
    let Some(((kind, group, object_kind), rest)) = pick(data, PATCH_TYPES) else {
        return;
    };
    let (original, body) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&[][..], rest),
    };
    let original: Value = serde_json::from_slice(original).unwrap_or_else(|_| serde_json::json!({}));
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    if let Ok(patched) = api::apply_patch(*kind, group, object_kind, &original, &body) {
        // The result is stored and served: it must serialize.
        let _ = serde_json::to_vec(&patched);
    }
}

/// Splits `data` at NUL bytes into at most `N` JSON documents; missing or unparsable ones are empty objects.
fn documents<const N: usize>(data: &[u8]) -> [Value; N] {
    let mut parts = data.splitn(N, |b| *b == 0);
    std::array::from_fn(|_| {
        parts
            .next()
            .and_then(|p| serde_json::from_slice(p).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    })
}

const APPLY_KINDS: &[(&str, &str, &str)] = &[
    ("apps", "Deployment", "apps/v1"),
    ("", "Pod", "v1"),
    ("", "Service", "v1"),
    ("", "ConfigMap", "v1"),
];

/// Server-side apply by two managers: the first byte picks the kind, whether the second forces, and the
/// subresource scope; the rest is `live` NUL `applied by a` NUL `applied by b`. A forced apply never conflicts, and
/// every result records its manager and serializes.
pub fn server_side_apply(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let (group, kind, api_version) = APPLY_KINDS[usize::from(*first) % APPLY_KINDS.len()];
    let force = first & 0x10 != 0;
    let scope = if first & 0x20 != 0 {
        api::managed::Scope::StatusOnly
    } else {
        api::managed::Scope::NoStatus
    };
    let [mut live, by_a, by_b] = documents::<3>(rest);
    let writer = |manager| api::managed::Writer {
        manager,
        api_version,
        subresource: if scope == api::managed::Scope::StatusOnly {
            "status"
        } else {
            ""
        },
        now: "2026-01-01T00:00:00Z",
        schema: api::managed::Schema::root(group, kind, None),
        scope,
    };
    let old = live.clone();
    api::managed::resolve_incoming(Some(&old), &mut live);
    api::managed::record_update(Some(&old), &mut live, &writer("updater"));
    let Ok(after_a) = api::managed::apply(&live, &by_a, &writer("a"), false) else {
        return;
    };
    match api::managed::apply(&after_a, &by_b, &writer("b"), force) {
        Ok(after_b) => {
            let _ = serde_json::to_vec(&after_b);
        }
        Err(conflicts) => {
            assert!(!force, "a forced apply conflicted: {:?}", conflicts.0);
            let _ = conflicts.to_api_error();
        }
    }
}

/// Answers every lookup with "not found": the fuzzer controls the token, not the store.
struct NothingStored;

#[async_trait::async_trait]
impl ObjectReader for NothingStored {
    async fn get(
        &self,
        _: &api::GroupResource,
        _: Option<&str>,
        _: &str,
    ) -> Result<Option<Value>, api::ApiError> {
        Ok(None)
    }
    async fn list(&self, _: &api::GroupResource, _: Option<&str>) -> Result<Vec<Value>, api::ApiError> {
        Ok(Vec::new())
    }
}

fn token_authenticators() -> &'static [Box<dyn Authenticator>] {
    static AUTHENTICATORS: OnceLock<Vec<Box<dyn Authenticator>>> = OnceLock::new();
    AUTHENTICATORS.get_or_init(|| {
        let reader: Arc<dyn ObjectReader> = Arc::new(NothingStored);
        let clock = apiserver::auth::system_clock();
        let mut list: Vec<Box<dyn Authenticator>> = vec![Box::new(
            apiserver::auth::bootstrap::BootstrapTokenAuthenticator::new(reader.clone(), clock.clone()),
        )];
        // A real key, so that well-formed tokens reach the signature check and past it the claims.
        let keys = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)
            .ok()
            .and_then(|k| apiserver::auth::serviceaccount::load_public_keys(&k.public_key_pem()).ok())
            .unwrap_or_default();
        list.push(Box::new(
            apiserver::auth::serviceaccount::ServiceAccountAuthenticator::new(
                keys,
                vec!["https://kubernetes.default.svc.cluster.local".into()],
                Vec::new(),
                reader,
                clock,
            ),
        ));
        list
    })
}

/// An `Authorization: Bearer` token, as the bootstrap-token and service-account authenticators read it, and the
/// token formats `kubeadm` parses from its command line (bootstrap token, CA pin, certificate key).
pub fn bearer_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let creds = Credentials {
        peer_certificates: &[],
        bearer_token: Some(token),
    };
    for authenticator in token_authenticators() {
        // Nothing in these authenticators waits: with a reader that answers at once they finish on first poll.
        let _ = authenticator.authenticate(&creds).now_or_never();
    }
    if let Ok(parsed) = pki::BootstrapToken::parse(token) {
        let printed = parsed.to_string();
        assert!(
            pki::BootstrapToken::parse(&printed).ok() == Some(parsed),
            "bootstrap token {token:?} parsed but did not survive printing"
        );
    }
    let _ = pki::parse_pin(token);
    // The certificate key opens the `kubeadm-certs` Secret; a joining node also checks cluster-info's JWS with
    // its token. Both read bytes another node sent.
    if let Ok(key) = pki::CertificateKey::parse(token) {
        let _ = key.open(data);
    }
    if let Ok(key) = pki::CertificateKey::parse(&"ab".repeat(32)) {
        let _ = key.open(data);
    }
    if let Ok(known) = pki::BootstrapToken::parse("abcdef.0123456789abcdef") {
        let _ = pki::jws::verify_detached(token, data, &known);
    }
}

/// A certificate a client presents (DER, read by the x509 authenticator) or a certificate signing request a node
/// submits (PEM or DER, read by the CSR signer and approver).
pub fn client_certificate(data: &[u8]) {
    let chain = [data.to_vec()];
    let creds = Credentials {
        peer_certificates: &chain,
        bearer_token: None,
    };
    let _ = apiserver::auth::x509::X509Authenticator
        .authenticate(&creds)
        .now_or_never();
    let _ = pki::csr::parse(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cert) = pki::Certificate::from_pem(text)
    {
        let _ = cert.info();
    }
}

/// Certificates, keys and kubeconfig files, which arrive from disk and from other nodes.
pub fn pem(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cert) = pki::Certificate::from_pem(text) {
        let _ = cert.info();
        let _ = pki::ca_public_key_pin(&cert);
        let _ = cert.is_signed_by(&cert);
    }
    let _ = pki::KeyPair::from_pem(text);
    if let Ok(config) = pki::Kubeconfig::from_yaml(text) {
        let _ = config.server();
        let _ = config.ca_certificate();
        let _ = config.client_certificate();
    }
}

/// A `kubeadm init`/`join --config` file: every document kind kubeadm reads, resolved with no flags, then what
/// init derives from it (the endpoint, etcd's command line, every leaf certificate's names).
pub fn kubeadm_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = kubeadm::config::HostFacts {
        hostname: "node-1".into(),
        default_address: Some(std::net::IpAddr::from([10, 0, 0, 1])),
    };
    let Ok(config) =
        kubeadm::config::parse_init("fuzz.yaml", text, &kubeadm::config::InitFlags::default(), &host)
    else {
        return;
    };
    let _ = config.control_plane_url();
    let _ = kubeadm::etcd::command(&config);
    for def in kubeadm::certs::CERTS {
        if matches!(def.role, kubeadm::certs::Role::Leaf { .. }) {
            let _ = kubeadm::certs::leaf_spec(def, &config);
        }
    }
}
