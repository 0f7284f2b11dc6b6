//! REST verbs over the store for every registry kind: create, get, list, update, patch, delete,
//! deletecollection, and the subresources (`status`, `scale`, `binding`). Watches are in [`crate::watch`].
//!
//! Every write records its field manager in `metadata.managedFields` ([`api::managed::record_update`]); a PATCH
//! with `application/apply-patch+yaml` is server-side apply ([`api::managed::apply`]). `dryRun=All` runs a write
//! through admission and validation and answers with the result, storing nothing.

use std::collections::HashMap;
use std::time::Duration;

use api::{ApiError, FieldSelector, GroupResource, PatchType, ResourceInfo, Selector};
use base64::Engine;
use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};
use store::KeyValue;

use crate::error::store_error;
use crate::negotiate::Output;
use crate::state::AppState;
use crate::strategy;

/// One resolved resource request.
#[derive(Debug, Clone)]
pub struct Target {
    pub info: ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Who asks, for admission.
    pub user: crate::auth::UserInfo,
    /// The field manager of a write: `fieldManager`, else the User-Agent's product (upstream's default).
    pub manager: String,
}

impl Target {
    pub fn resource(&self) -> GroupResource {
        self.info.group_resource()
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    /// How this target's writes are recorded in managedFields.
    fn writer<'a>(&'a self, now: &'a str, api_version: &'a str) -> api::managed::Writer<'a> {
        let custom = self.info.custom.as_ref().and_then(|c| c.schema.as_ref());
        let scope = match self.subresource.as_deref() {
            Some("status") => api::managed::Scope::StatusOnly,
            _ if strategy::has_status_subresource(&self.info) => api::managed::Scope::NoStatus,
            _ => api::managed::Scope::All,
        };
        api::managed::Writer {
            manager: &self.manager,
            api_version,
            subresource: self.subresource.as_deref().unwrap_or(""),
            now,
            schema: api::managed::Schema::root(&self.info.group, &self.info.kind, custom),
            scope,
        }
    }

    fn key(&self) -> Result<String, ApiError> {
        self.info
            .storage_key(self.namespace.as_deref(), self.name())
            .ok_or_else(|| ApiError::internal("resource is not stored"))
    }
}

pub type Query = HashMap<String, String>;

/// A handler's successful answer: status code and body.
pub struct Reply {
    pub code: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self { code: 200, body }
    }
}

/// How long Events live, as upstream's `--event-ttl` default.
const EVENT_TTL: Duration = Duration::from_secs(3600);
/// Retries of read-modify-write cycles that lost a race against another writer.
const MAX_RETRIES: usize = 16;

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other}: supported values: \"All\""
        ))),
    }
}

/// Upstream's `Validate{Create,Update,Patch}Options` for what bulwark reads: `fieldManager` (required for
/// apply, at most 128 printable bytes) and `force` (apply only). `kind` is `CreateOptions`, ...
fn check_write_options(kind: &str, q: &Query, patch_type: Option<PatchType>) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    let manager = q.get("fieldManager").map(String::as_str).unwrap_or("");
    match patch_type {
        Some(PatchType::Apply) if manager.is_empty() => errs.push(api::FieldError::required(
            &api::FieldPath::new("fieldManager"),
            "is required for apply patch",
        )),
        Some(PatchType::Apply) => {}
        Some(_) if q.contains_key("force") => errs.push(api::FieldError::forbidden(
            &api::FieldPath::new("force"),
            "may not be specified for non-apply patch",
        )),
        _ => {}
    }
    errs.extend(api::managed::validate_manager(manager));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &api::GroupKind::new("meta.k8s.io", kind),
            "",
            errs,
        ))
    }
}

/// The object as clients see it: the store's revision as `metadata.resourceVersion`.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding stored object {}: {e}", kv.key)))?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_rv(obj: &mut Value, rev: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rev.to_string()));
    }
}

/// What goes into the store: no `resourceVersion`, which is the store's own revision.
/// The stored form: no `resourceVersion` (the store's revision is the version), and a custom object in its CRD's
/// storage version whichever version it was written through, as upstream keeps it (`None` conversion).
fn encode(info: &ResourceInfo, obj: &Value) -> Result<Bytes, ApiError> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    if let Some(custom) = &info.custom
        && obj.get("apiVersion").is_some()
    {
        obj["apiVersion"] = json!(format!("{}/{}", info.group, custom.storage_version));
    }
    serde_json::to_vec(&obj)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn new_uid() -> String {
    let mut b: [u8; 16] = rand::thread_rng().r#gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex_lower(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks `apiVersion`/`kind` of a body against the endpoint, filling them in when absent.
pub fn check_type(
    info: &ResourceInfo,
    expected_kind: &str,
    expected_api_version: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let mut obj = match body {
        Value::Object(m) => Value::Object(m),
        _ => {
            return Err(ApiError::bad_request(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
            ));
        }
    };
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if (!kind.is_empty() && kind != expected_kind) || (!av.is_empty() && av != expected_api_version) {
        let shown_av = if av.is_empty() { expected_api_version } else { &av };
        let shown_kind = if kind.is_empty() { expected_kind } else { &kind };
        return Err(ApiError::bad_request(format!(
            "{shown_kind} in version \"{}\" cannot be handled as a {expected_kind}: no kind \"{shown_kind}\" is registered for version \"{shown_av}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
            api::registry::split_api_version(shown_av).1
        )));
    }
    obj["kind"] = json!(expected_kind);
    obj["apiVersion"] = json!(expected_api_version);
    if !obj.get("metadata").is_some_and(Value::is_object) {
        if obj.get("metadata").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{expected_kind} in version \"{}\" cannot be handled as a {expected_kind}: metadata must be an object",
                info.version
            )));
        }
        obj["metadata"] = json!({});
    }
    Ok(obj)
}

fn check_namespace(t: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let body_ns = meta_str(obj, "namespace").to_string();
    if t.info.namespaced {
        let ns = t.namespace.clone().unwrap_or_default();
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
    } else if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("namespace");
    }
    Ok(())
}

/// New objects may not enter a namespace that does not exist or is being deleted (upstream's NamespaceLifecycle).
async fn check_namespace_open(state: &AppState, t: &Target) -> Result<(), ApiError> {
    let Some(ns) = t.namespace.as_deref().filter(|_| t.info.namespaced) else {
        return Ok(());
    };
    let nsr = GroupResource::new("", "namespaces");
    let key = format!("/registry/namespaces/{ns}");
    // As upstream's NamespaceLifecycle reads its informer: an active namespace in the watch cache admits (a
    // linearizable etcd read per create would wait behind the writes in flight); a refusal is confirmed live.
    if let Some((Some(cached), _)) = state.watch_cache.cacher("/registry/namespaces/", None).get(&key)
        && cached.value.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")
    {
        return Ok(());
    }
    match state.store.get(&key).await {
        Ok(kv) => {
            let obj = decode(&kv)?;
            if obj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
                return Err(ApiError::ForbiddenMessage {
                    resource: t.resource(),
                    name: t.name.clone().unwrap_or_default(),
                    message: format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                });
            }
            Ok(())
        }
        Err(store::Error::NotFound { .. }) => Err(ApiError::not_found(&nsr, ns)),
        Err(e) => Err(store_error(&nsr, ns, e)),
    }
}

/// Runs the admission chain on a write; plugins may default (mutate `obj`) or reject.
/// The part of an object an RBAC escalation check is about: all but the metadata other than labels and
/// annotations, so that the garbage collector's and finalizers' metadata writes need no `bind`/`escalate`.
fn rbac_payload(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        let meta = m.remove("metadata").unwrap_or(Value::Null);
        m.insert("labels".into(), meta["labels"].clone());
        m.insert("annotations".into(), meta["annotations"].clone());
    }
    v
}

/// Upstream's RBAC escalation prevention on Role/ClusterRole and binding writes: a user grants only what they
/// hold unless they may `escalate` the role or `bind` the referenced role.
async fn confirm_rbac_write(
    state: &AppState,
    t: &Target,
    old: Option<&Value>,
    obj: &Value,
) -> Result<(), ApiError> {
    use crate::auth::escalation;
    if t.info.group != crate::auth::rbac::GROUP || t.subresource.is_some() {
        return Ok(());
    }
    if old.is_some_and(|o| rbac_payload(o) == rbac_payload(obj)) {
        return Ok(());
    }
    let authz = state.security.authorizer.as_ref();
    let ns = t.namespace.as_deref().unwrap_or("");
    match t.info.kind.as_str() {
        "ClusterRole"
            if obj.get("aggregationRule").is_some_and(|a| !a.is_null())
                && !t
                    .user
                    .groups
                    .iter()
                    .any(|g| g == crate::auth::authorizers::SYSTEM_PRIVILEGED_GROUP) =>
        {
            Err(ApiError::ForbiddenMessage {
                resource: t.resource(),
                name: meta_str(obj, "name").to_string(),
                message: "must have cluster-admin privileges to use the aggregationRule".into(),
            })
        }
        "Role" | "ClusterRole" => escalation::confirm_role_write(authz, &t.user, ns, obj).await,
        "RoleBinding" | "ClusterRoleBinding" => {
            escalation::confirm_binding_write(authz, state.security.reader.as_ref(), &t.user, ns, obj).await
        }
        _ => Ok(()),
    }
}

async fn admit(
    state: &AppState,
    t: &Target,
    operation: crate::admission::Operation,
    old: Option<&Value>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let name = match meta_str(obj, "name") {
        "" => t.name().to_string(),
        n => n.to_string(),
    };
    if matches!(
        operation,
        crate::admission::Operation::Create | crate::admission::Operation::Update
    ) {
        confirm_rbac_write(state, t, old, obj).await?;
    }
    let req = crate::admission::AdmissionRequest {
        operation,
        user: &t.user,
        resource: &t.info,
        subresource: t.subresource.as_deref().unwrap_or(""),
        namespace: t.namespace.as_deref().unwrap_or(""),
        name: &name,
        old,
    };
    state
        .admission
        .admit(&req, obj, state.security.reader.as_ref())
        .await
}

/// `GET` of one object with the request's `resourceVersion`: `0` (any) is served from the watch cache, as
/// upstream; anything else reads the store.
pub async fn get_as_of(state: &AppState, t: &Target, q: &Query) -> Result<Reply, ApiError> {
    if q.get("resourceVersion").map(String::as_str) == Some("0")
        && let Some(all) = t.info.storage_list_prefix(None)
        && let Some(cacher) = state.watch_cache.ready(&all).await
        && let Some((found, _)) = cacher.get(&t.key()?)
    {
        return match found {
            Some(obj) => Ok(Reply::ok(obj.value.clone())),
            None => Err(ApiError::not_found(&t.resource(), t.name())),
        };
    }
    get(state, t).await
}

pub async fn get(state: &AppState, t: &Target) -> Result<Reply, ApiError> {
    let kv = state
        .store
        .get(&t.key()?)
        .await
        .map_err(|e| store_error(&t.resource(), t.name(), e))?;
    Ok(Reply::ok(decode(&kv)?))
}

/// `POST` to a collection.
pub async fn create(state: &AppState, t: &Target, q: &Query, body: Value) -> Result<Reply, ApiError> {
    check_write_options("CreateOptions", q, None)?;
    create_object(state, t, q, body, false).await
}

/// A create; `applied` when server-side apply made the object (its managedFields are already settled).
async fn create_object(
    state: &AppState,
    t: &Target,
    q: &Query,
    body: Value,
    applied: bool,
) -> Result<Reply, ApiError> {
    let info = &t.info;
    let mut obj = check_type(info, &info.kind, &info.api_version(), body)?;
    check_namespace(t, &mut obj)?;
    let dry = dry_run(q)?;
    let applied_fields = if applied {
        obj["metadata"].get("managedFields").cloned()
    } else {
        None
    };
    let now = state.now_string();
    let mut generated_from: Option<String> = None;
    {
        let meta = obj["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("metadata"))?;
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty)
            && let Some(base) = meta
                .get("generateName")
                .and_then(Value::as_str)
                .filter(|b| !b.is_empty())
        {
            let base = base.to_string();
            let name = api::validation::generate_name(&base, &mut rand::thread_rng());
            meta.insert("name".into(), json!(name));
            generated_from = Some(base);
        }
    }
    strategy::apply_defaults(info, &mut obj);
    strategy::prepare_for_create(info, &mut obj);
    // Upstream's CSR strategy records the requester: approvers trust these fields, so they never come from the body.
    if info.group == "certificates.k8s.io"
        && info.kind == "CertificateSigningRequest"
        && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("username".into(), json!(t.user.name));
        spec.insert("uid".into(), json!(t.user.uid));
        spec.insert("groups".into(), json!(t.user.groups));
        spec.insert("extra".into(), json!(t.user.extra));
    }
    if strategy::tracks_generation(info) {
        obj["metadata"]["generation"] = json!(1);
    }
    admit(state, t, crate::admission::Operation::Create, None, &mut obj).await?;
    crate::crd::on_crd_write(info, &mut obj, None, &now)?;
    strategy::validate(info, &obj, None)?;
    match applied_fields {
        Some(fields) => obj["metadata"]["managedFields"] = fields,
        None if applied => {}
        None => {
            let api_version = info.api_version();
            api::managed::record_update(None, &mut obj, &t.writer(&now, &api_version));
        }
    }
    let name = meta_str(&obj, "name").to_string();
    let t = Target {
        name: Some(name.clone()),
        ..t.clone()
    };
    check_namespace_open(state, &t).await?;
    let allocated = if info.group.is_empty() && info.kind == "Service" && !dry {
        allocate_cluster_ip(state, &mut obj).await?
    } else {
        None
    };
    if dry {
        return Ok(Reply { code: 201, body: obj });
    }
    let ttl = (info.kind == "Event").then_some(EVENT_TTL);
    let (mut t, mut name) = (t, name);
    let mut attempts = 1;
    loop {
        match state.store.create(&t.key()?, encode(&t.info, &obj)?, ttl).await {
            Ok(kv) => {
                set_rv(&mut obj, kv.mod_revision);
                return Ok(Reply { code: 201, body: obj });
            }
            // As upstream (RetryGenerateName): a generated name that is taken is generated again, a few times.
            Err(store::Error::AlreadyExists { .. })
                if attempts < GENERATE_NAME_ATTEMPTS
                    && let Some(base) = &generated_from =>
            {
                attempts += 1;
                name = api::validation::generate_name(base, &mut rand::thread_rng());
                obj["metadata"]["name"] = json!(name);
                t.name = Some(name.clone());
            }
            Err(e) => {
                if let Some(ip) = allocated {
                    state.service_ips.release(state.store.as_ref(), &ip).await;
                }
                return Err(match e {
                    store::Error::AlreadyExists { .. } if generated_from.is_some() => {
                        ApiError::GenerateNameConflict {
                            resource: t.resource(),
                            name,
                            retry_after_seconds: 1,
                        }
                    }
                    e => store_error(&t.resource(), &name, e),
                });
            }
        }
    }
}

/// Upstream's `maxNameGenerationCreateAttempts`.
const GENERATE_NAME_ATTEMPTS: u32 = 8;

async fn allocate_cluster_ip(state: &AppState, obj: &mut Value) -> Result<Option<String>, ApiError> {
    if obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
        return Ok(None);
    }
    let owner = format!("{}/{}", meta_str(obj, "namespace"), meta_str(obj, "name"));
    let requested = obj
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ip = match requested.as_str() {
        "None" => {
            obj["spec"]["clusterIPs"] = json!(["None"]);
            return Ok(None);
        }
        "" => state.service_ips.allocate(state.store.as_ref(), &owner).await?,
        fixed => {
            let field = api::FieldPath::new("spec").child("clusterIPs").index(0);
            let kind = api::GroupKind::new("", "Service");
            let name = meta_str(obj, "name").to_string();
            let ip: std::net::Ipv4Addr = fixed.parse().map_err(|_| {
                ApiError::invalid(
                    &kind,
                    &name,
                    vec![api::FieldError::invalid(
                        &field,
                        fixed,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )],
                )
            })?;
            if !state.service_ips.contains(ip) && ip != state.service_ips.first() {
                return Err(ApiError::invalid(
                    &kind,
                    &name,
                    vec![api::FieldError::invalid(
                        &field,
                        fixed,
                        "failed to allocate IP: the provided IP is not in the valid range",
                    )],
                ));
            }
            if !state
                .service_ips
                .reserve(state.store.as_ref(), ip, &owner)
                .await?
            {
                return Err(ApiError::invalid(
                    &kind,
                    &name,
                    vec![api::FieldError::invalid(
                        &field,
                        fixed,
                        "failed to allocate IP: provided IP is already allocated",
                    )],
                ));
            }
            ip
        }
    };
    let ip = ip.to_string();
    obj["spec"]["clusterIP"] = json!(ip);
    obj["spec"]["clusterIPs"] = json!([ip]);
    obj["spec"]["ipFamilies"] = json!(["IPv4"]);
    obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    Ok(Some(ip))
}

/// Continue tokens as upstream: base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key suffix>\u0000"}`.
fn encode_continue(prefix: &str, next_key: &str, rev: i64) -> String {
    let start = next_key.strip_prefix(prefix).unwrap_or(next_key);
    let token = json!({"v": "meta.k8s.io/v1", "rv": rev, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(prefix: &str, token: &str) -> Result<(String, i64), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
        return Err(bad());
    }
    let rev = v
        .get("rv")
        .and_then(Value::as_i64)
        .filter(|r| *r > 0)
        .ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((format!("{prefix}{start}"), rev))
}

/// Label and field selectors of a list or watch, checked against the kind.
pub struct Filter {
    pub labels: Selector,
    pub fields: FieldSelector,
    group: String,
    kind: String,
}

impl Filter {
    pub fn from_query(info: &ResourceInfo, q: &Query) -> Result<Self, ApiError> {
        let labels = match q.get("labelSelector") {
            Some(s) => Selector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => Selector::everything(),
        };
        let fields = match q.get("fieldSelector") {
            Some(s) => FieldSelector::parse(s)
                .and_then(|f| f.for_kind(&info.group, &info.kind))
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => FieldSelector::everything(),
        };
        Ok(Self {
            labels,
            fields,
            group: info.group.clone(),
            kind: info.kind.clone(),
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(&self.group, &self.kind, obj)
    }
}

/// Lists a collection as of one revision, in pages when `limit` is given.
pub async fn list(state: &AppState, t: &Target, q: &Query, output: Output) -> Result<Reply, ApiError> {
    let info = &t.info;
    let filter = Filter::from_query(info, q)?;
    let prefix =
        info.storage_list_prefix(t.namespace.as_deref())
            .ok_or_else(|| ApiError::MethodNotAllowed {
                resource: t.resource(),
                action: "list".into(),
            })?;
    let limit = parse_limit(q)?;
    let (mut start_key, mut revision) = (None, None);
    if let Some(c) = q.get("continue").filter(|c| !c.is_empty()) {
        let (k, r) = decode_continue(&prefix, c)?;
        start_key = Some(k);
        revision = Some(r);
    } else if q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
        let rv = q
            .get("resourceVersion")
            .and_then(|r| r.parse::<i64>().ok())
            .filter(|r| *r > 0)
            .ok_or_else(|| ApiError::bad_request("resourceVersionMatch: Exact requires a resourceVersion"))?;
        revision = Some(rv);
    }
    if let Some(items) = list_from_cache(state, t, q, limit, &prefix, &filter).await {
        let (items, rev) = items;
        return list_reply(
            state,
            info,
            items,
            json!({"resourceVersion": rev.to_string()}),
            q,
            output,
        );
    }
    let continuing = start_key.is_some();
    let mut items = Vec::new();
    let mut list_rev;
    let mut next: Option<String> = None;
    let mut remaining = 0;
    loop {
        let page = state
            .store
            .list(
                &prefix,
                store::ListOptions {
                    revision,
                    limit: (limit > 0).then_some(limit.max(1)),
                    start_key: start_key.clone(),
                },
            )
            .await
            .map_err(|e| match e {
                store::Error::Compacted { .. } if continuing => ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into()),
                e => store_error(&t.resource(), "", e),
            })?;
        list_rev = page.revision;
        revision = Some(page.revision);
        let mut stopped_at = None;
        for kv in &page.items {
            if limit > 0 && items.len() >= limit {
                stopped_at = Some(kv.key.clone());
                break;
            }
            let obj = decode(kv)?;
            if filter.matches(&obj) {
                items.push(obj);
            }
        }
        if let Some(k) = stopped_at {
            next = Some(k);
            remaining = 1;
            break;
        }
        if !page.more || limit == 0 {
            break;
        }
        if items.len() >= limit {
            next = page.next_key.clone();
            remaining = page.remaining;
            break;
        }
        start_key = page.next_key.clone();
        if start_key.is_none() {
            break;
        }
    }
    let mut meta = json!({"resourceVersion": list_rev.to_string()});
    if let Some(k) = &next {
        meta["continue"] = json!(encode_continue(&prefix, k, list_rev));
        if filter.labels.is_everything() && filter.fields.is_everything() && remaining > 0 {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    list_reply(state, info, items, meta, q, output)
}

/// A list served from the watch cache when the request allows, as upstream: `resourceVersion=0` (any freshness;
/// `limit` is ignored, the whole list fits in one answer), or `resourceVersion=N` without a limit when the cache
/// is at N or later. `None` sends the request to the store.
async fn cached_objects(
    state: &AppState,
    t: &Target,
    q: &Query,
    limit: usize,
    prefix: &str,
) -> Option<(Vec<std::sync::Arc<crate::cache::CachedObject>>, i64)> {
    if q.get("continue").is_some_and(|c| !c.is_empty()) {
        return None;
    }
    let rv_match = q.get("resourceVersionMatch").map(String::as_str).unwrap_or("");
    if !matches!(rv_match, "" | "NotOlderThan") {
        return None;
    }
    let not_older_than = match q.get("resourceVersion").map(String::as_str) {
        Some("0") => 0,
        Some(n) if limit == 0 => n.parse::<i64>().ok().filter(|n| *n > 0)?,
        _ => return None,
    };
    let all = t.info.storage_list_prefix(None)?;
    let cacher = state.watch_cache.ready(&all).await?;
    let (objects, rev) = cacher.list(prefix)?;
    (rev >= not_older_than).then_some((objects, rev))
}

async fn list_from_cache(
    state: &AppState,
    t: &Target,
    q: &Query,
    limit: usize,
    prefix: &str,
    filter: &Filter,
) -> Option<(Vec<Value>, i64)> {
    let (objects, rev) = cached_objects(state, t, q, limit, prefix).await?;
    let items = objects
        .iter()
        .filter(|o| filter.matches(&o.value))
        .map(|o| o.value.clone())
        .collect();
    Some((items, rev))
}

/// A plain JSON list from the watch cache, assembled from each object's memoized serialization instead of
/// copying and serializing every object on every request (a 10,000-pod list is megabytes). `None` when the
/// request is not for the cache or wants a Table or a custom resource (whose apiVersion depends on the URL).
pub async fn list_cached_json(
    state: &AppState,
    t: &Target,
    q: &Query,
    output: Output,
) -> Result<Option<Bytes>, ApiError> {
    if !matches!(output, Output::Json) || t.info.custom.is_some() {
        return Ok(None);
    }
    let filter = Filter::from_query(&t.info, q)?;
    let limit = parse_limit(q)?;
    let Some(prefix) = t.info.storage_list_prefix(t.namespace.as_deref()) else {
        return Ok(None);
    };
    let Some((objects, rev)) = cached_objects(state, t, q, limit, &prefix).await else {
        return Ok(None);
    };
    let head = json!({"kind": t.info.list_kind(), "apiVersion": t.info.api_version(),
        "metadata": {"resourceVersion": rev.to_string()}})
    .to_string();
    let mut out = Vec::with_capacity(objects.len() * 1024 + head.len() + 16);
    // `{...,"metadata":{...}}` becomes `{...,"metadata":{...},"items":[...]}`.
    out.extend_from_slice(head.trim_end_matches('}').as_bytes());
    out.extend_from_slice(b"},\"items\":[");
    let mut first = true;
    for o in objects.iter().filter(|o| filter.matches(&o.value)) {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(o.list_item_json());
    }
    out.extend_from_slice(b"]}");
    Ok(Some(Bytes::from(out)))
}

fn parse_limit(q: &Query) -> Result<usize, ApiError> {
    match q.get("limit").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(l) => l
            .parse::<i64>()
            .map(|l| l.max(0) as usize)
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}"))),
    }
}

/// The list body (or Table) around `items`.
fn list_reply(
    state: &AppState,
    info: &ResourceInfo,
    mut items: Vec<Value>,
    meta: Value,
    q: &Query,
    output: Output,
) -> Result<Reply, ApiError> {
    match output {
        Output::Table { beta } => Ok(Reply::ok(table(state, info, &items, meta, q, beta)?)),
        Output::Json => {
            for i in &mut items {
                if let Some(m) = i.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
            }
            Ok(Reply::ok(json!({
                "kind": info.list_kind(),
                "apiVersion": info.api_version(),
                "metadata": meta,
                "items": items,
            })))
        }
    }
}

pub fn table(
    state: &AppState,
    info: &ResourceInfo,
    items: &[Value],
    meta: Value,
    q: &Query,
    beta: bool,
) -> Result<Value, ApiError> {
    let include = match q.get("includeObject") {
        Some(s) => api::IncludeObject::parse(s)
            .ok_or_else(|| ApiError::bad_request(format!("invalid includeObject: {s}")))?,
        None => api::IncludeObject::default(),
    };
    let mut t = match &info.custom {
        Some(c) => api::table::custom_table(&c.printer_columns, items, state.now(), include),
        None => api::to_table(&info.group, &info.kind, items, state.now(), include),
    };
    if let Value::Object(m) = meta {
        t.metadata = m;
    }
    if beta {
        t.api_version = "meta.k8s.io/v1beta1".into();
    }
    Ok(t.to_value())
}

/// Field-level rules of an update: what the client may not change, what it cannot see.
fn prepare_update(
    state: &AppState,
    info: &ResourceInfo,
    old: &Value,
    new: &mut Value,
    subresource: Option<&str>,
) {
    let _ = state;
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    api::managed::resolve_incoming(Some(old), new);
    let managed_fields = new["metadata"].get("managedFields").cloned();
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("selfLink");
    }
    if info.namespaced {
        new["metadata"]["namespace"] = old["metadata"]["namespace"].clone();
    }
    match subresource {
        Some("status") => {
            // A status write owns status only; everything else stays as it was.
            let status = new.get("status").cloned();
            let rv = new["metadata"].get("resourceVersion").cloned();
            *new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(rv) = rv {
                new["metadata"]["resourceVersion"] = rv;
            }
        }
        _ => {
            if strategy::has_status_subresource(info) && info.kind != "Namespace" {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            if info.kind == "Namespace" {
                new["status"] = old
                    .get("status")
                    .cloned()
                    .unwrap_or_else(|| json!({"phase": "Active"}));
            }
        }
    }
    // A status write starts again from the stored object; the managedFields settled above still hold.
    if let Some(m) = new["metadata"].as_object_mut() {
        match managed_fields {
            Some(f) => m.insert("managedFields".into(), f),
            None => m.remove("managedFields"),
        };
    }
    strategy::apply_defaults(info, new);
    if strategy::tracks_generation(info) && strategy::spec_changed(old, new) {
        let g = old["metadata"]
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        new["metadata"]["generation"] = json!(g + 1);
    }
}

/// Writes `new` over `old_kv` if nobody else wrote first; deletes instead when the last finalizer of an object
/// being deleted went away.
async fn commit_update(
    state: &AppState,
    t: &Target,
    old_kv: &KeyValue,
    mut new: Value,
    dry: bool,
) -> Result<Value, store::Error> {
    let deleting = !meta_str(&new, "deletionTimestamp").is_empty();
    let finalizers_left = new["metadata"]
        .get("finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
        || (t.info.kind == "Namespace"
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty()));
    if dry {
        return Ok(new);
    }
    let key = old_kv.key.clone();
    if deleting && !finalizers_left {
        let deleted = state.store.delete(&key, Some(old_kv.mod_revision)).await?;
        release_resources(state, t, &new).await;
        set_rv(&mut new, deleted.revision);
        return Ok(new);
    }
    let bytes = encode(&t.info, &new).map_err(|e| store::Error::Internal(e.to_string()))?;
    let ttl = (t.info.kind == "Event").then_some(EVENT_TTL);
    let kv = state.store.update(&key, bytes, old_kv.mod_revision, ttl).await?;
    set_rv(&mut new, kv.mod_revision);
    Ok(new)
}

fn precondition_rv(new: &Value) -> Result<Option<i64>, ApiError> {
    match meta_str(new, "resourceVersion") {
        "" => Ok(None),
        rv => rv
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}"))),
    }
}

/// `PUT` of an object or its `status`.
pub async fn update(state: &AppState, t: &Target, q: &Query, body: Value) -> Result<Reply, ApiError> {
    let info = &t.info;
    let mut new = check_type(info, &info.kind, &info.api_version(), body)?;
    let body_name = meta_str(&new, "name");
    if body_name.is_empty() {
        new["metadata"]["name"] = json!(t.name());
    } else if body_name != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    check_namespace(t, &mut new)?;
    check_write_options("UpdateOptions", q, None)?;
    let dry = dry_run(q)?;
    let key = t.key()?;
    let old_kv = state
        .store
        .get(&key)
        .await
        .map_err(|e| store_error(&t.resource(), t.name(), e))?;
    let old = decode(&old_kv)?;
    let (_, written) = write_update(state, t, &old_kv, &old, new, dry, true).await?;
    let out = written.map_err(|e| store_error(&t.resource(), t.name(), e))?;
    Ok(Reply::ok(out))
}

/// The part update and patch share once the new object is known: the `resourceVersion` precondition,
/// update-time defaults, admission, validation, then the write. Returns whether the object pinned a
/// `resourceVersion` (a pinned write is never retried) and the store's answer, so patch can retry conflicts.
async fn write_update(
    state: &AppState,
    t: &Target,
    old_kv: &KeyValue,
    old: &Value,
    mut new: Value,
    dry: bool,
    record: bool,
) -> Result<(bool, Result<Value, store::Error>), ApiError> {
    let pinned = precondition_rv(&new)?;
    if let Some(rv) = pinned
        && rv != old_kv.mod_revision
    {
        return Err(ApiError::conflict(&t.resource(), t.name()));
    }
    prepare_update(state, &t.info, old, &mut new, t.subresource.as_deref());
    admit(state, t, crate::admission::Operation::Update, Some(old), &mut new).await?;
    if t.subresource.is_none() {
        crate::crd::on_crd_write(&t.info, &mut new, Some(old), &state.now_string())?;
    }
    strategy::validate(&t.info, &new, Some(old))?;
    if record {
        let (now, api_version) = (state.now_string(), t.info.api_version());
        api::managed::record_update(Some(old), &mut new, &t.writer(&now, &api_version));
    }
    Ok((pinned.is_some(), commit_update(state, t, old_kv, new, dry).await))
}

/// `PATCH`: apply to the current object and write back, retrying when another writer got in between (unless
/// the patch pins a `resourceVersion`).
pub async fn patch(
    state: &AppState,
    t: &Target,
    q: &Query,
    patch_type: PatchType,
    body: Value,
) -> Result<Reply, ApiError> {
    let info = &t.info;
    check_write_options("PatchOptions", q, Some(patch_type))?;
    if patch_type == PatchType::Apply {
        return server_side_apply(state, t, q, body).await;
    }
    let dry = dry_run(q)?;
    let key = t.key()?;
    // Only a resourceVersion in the patch itself pins it; the patched object always carries the one it was read at.
    let body_pins = match &body {
        Value::Array(ops) => ops
            .iter()
            .any(|op| op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")),
        other => other.pointer("/metadata/resourceVersion").is_some(),
    };
    for _ in 0..MAX_RETRIES {
        let old_kv = state
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(&t.resource(), t.name(), e))?;
        let old = decode(&old_kv)?;
        let patched = api::apply_patch(patch_type, &info.group, &info.kind, &old, &body)
            .map_err(|e| e.to_api_error(&info.group_kind(), t.name()))?;
        let new = check_type(info, &info.kind, &info.api_version(), patched)?;
        if meta_str(&new, "name") != t.name() {
            return Err(ApiError::invalid(
                &info.group_kind(),
                t.name(),
                vec![api::FieldError::invalid(
                    &api::FieldPath::new("metadata").child("name"),
                    meta_str(&new, "name"),
                    "field is immutable",
                )],
            ));
        }
        match write_update(state, t, &old_kv, &old, new, dry, true).await? {
            (_, Ok(out)) => return Ok(Reply::ok(out)),
            (_, Err(store::Error::Conflict { .. })) if !body_pins => continue,
            (_, Err(e)) => return Err(store_error(&t.resource(), t.name(), e)),
        }
    }
    Err(ApiError::conflict(&t.resource(), t.name()))
}

/// `PATCH` with `application/apply-patch+yaml`: merges the applied configuration into the live object (or
/// creates it), owned by the `fieldManager`; conflicts with other managers answer 409 unless `force=true`.
async fn server_side_apply(state: &AppState, t: &Target, q: &Query, body: Value) -> Result<Reply, ApiError> {
    let info = &t.info;
    let force = match q.get("force").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("invalid force value: {other}"))),
    };
    let mut applied = check_type(info, &info.kind, &info.api_version(), body)?;
    if applied
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let body_name = meta_str(&applied, "name");
    if body_name.is_empty() {
        applied["metadata"]["name"] = json!(t.name());
    } else if body_name != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    check_namespace(t, &mut applied)?;
    let pinned = precondition_rv(&applied)?;
    let dry = dry_run(q)?;
    let key = t.key()?;
    let api_version = info.api_version();
    for _ in 0..MAX_RETRIES {
        let now = state.now_string();
        let w = t.writer(&now, &api_version);
        let old_kv = match state.store.get(&key).await {
            Ok(kv) => kv,
            Err(store::Error::NotFound { .. }) if pinned.is_none() && t.subresource.is_none() => {
                let obj =
                    api::managed::apply(&json!({}), &applied, &w, force).map_err(|c| c.to_api_error())?;
                match create_object(state, t, q, obj, true).await {
                    Err(ApiError::AlreadyExists { .. }) => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(store_error(&t.resource(), t.name(), e)),
        };
        let old = decode(&old_kv)?;
        if let Some(rv) = pinned
            && rv != old_kv.mod_revision
        {
            return Err(ApiError::conflict(&t.resource(), t.name()));
        }
        let new = api::managed::apply(&old, &applied, &w, force).map_err(|c| c.to_api_error())?;
        match write_update(state, t, &old_kv, &old, new, dry, false).await? {
            (_, Ok(out)) => return Ok(Reply::ok(out)),
            (_, Err(store::Error::Conflict { .. })) if pinned.is_none() => continue,
            (_, Err(e)) => return Err(store_error(&t.resource(), t.name(), e)),
        }
    }
    Err(ApiError::conflict(&t.resource(), t.name()))
}

/// Options of a delete, from the body (`DeleteOptions`) or the query.
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    rv: Option<String>,
    dry: bool,
}

fn delete_options(q: &Query, body: Option<&Value>) -> Result<DeleteOptions, ApiError> {
    let b = |k: &str| body.and_then(|b| b.get(k));
    let grace = match b("gracePeriodSeconds").and_then(Value::as_i64) {
        Some(g) => Some(g),
        None => q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()),
    };
    let mut propagation = b("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned());
    if b("orphanDependents").and_then(Value::as_bool) == Some(true)
        || q.get("orphanDependents").map(String::as_str) == Some("true")
    {
        propagation = Some("Orphan".into());
    }
    if let Some(p) = &propagation
        && !["Orphan", "Background", "Foreground"].contains(&p.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "DeleteOptions.propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    let dry_body = b("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace,
        propagation,
        uid: b("preconditions")
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string),
        rv: b("preconditions")
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string),
        dry: dry_body || dry_run(q)?,
    })
}

/// Frees what an object held outside itself (a Service's cluster IP).
async fn release_resources(state: &AppState, t: &Target, obj: &Value) {
    if t.info.group.is_empty()
        && t.info.kind == "Service"
        && let Some(ip) = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .filter(|ip| *ip != "None" && !ip.is_empty())
    {
        state.service_ips.release(state.store.as_ref(), ip).await;
    }
}

/// `DELETE` of one object: marks it when finalizers (or a graceful pod deletion) must run first, removes it
/// otherwise.
pub async fn delete(
    state: &AppState,
    t: &Target,
    q: &Query,
    body: Option<&Value>,
) -> Result<Reply, ApiError> {
    let opts = delete_options(q, body)?;
    let key = t.key()?;
    let resource = t.resource();
    for _ in 0..MAX_RETRIES {
        let kv = state
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(&resource, t.name(), e))?;
        let mut obj = decode(&kv)?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&obj, "uid")
        {
            return Err(ApiError::Conflict {
                resource: resource.clone(),
                name: t.name().into(),
                reason: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&obj, "uid")
                ),
            });
        }
        if let Some(rv) = &opts.rv
            && rv != meta_str(&obj, "resourceVersion")
        {
            return Err(ApiError::Conflict {
                resource: resource.clone(),
                name: t.name().into(),
                reason: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&obj, "resourceVersion")
                ),
            });
        }
        admit(
            state,
            t,
            crate::admission::Operation::Delete,
            Some(&obj),
            &mut obj.clone(),
        )
        .await?;
        let now = state.now_string();
        let mut finalizers: Vec<Value> = obj["metadata"]
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let first_mark = meta_str(&obj, "deletionTimestamp").is_empty();
        match opts.propagation.as_deref() {
            Some("Foreground") if first_mark && !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push(json!("foregroundDeletion"))
            }
            Some("Orphan") if first_mark && !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push(json!("orphan"))
            }
            _ => {}
        }
        let is_ns = t.info.group.is_empty() && t.info.kind == "Namespace";
        let ns_finalizers = is_ns
            && obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        let graceful_pod = t.info.group.is_empty()
            && t.info.kind == "Pod"
            && !obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            && opts.grace != Some(0)
            && first_mark;
        if !finalizers.is_empty() || ns_finalizers || graceful_pod {
            if !first_mark {
                return Ok(Reply::ok(obj));
            }
            let grace = if graceful_pod {
                opts.grace
                    .or_else(|| {
                        obj.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                    })
                    .unwrap_or(30)
            } else {
                0
            };
            let when = state
                .now()
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(grace))
                .map(|t| t.to_string())
                .unwrap_or(now);
            obj["metadata"]["deletionTimestamp"] = json!(when);
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            if !finalizers.is_empty() {
                obj["metadata"]["finalizers"] = json!(finalizers);
            }
            if is_ns {
                obj["status"]["phase"] = json!("Terminating");
            }
            if opts.dry {
                return Ok(Reply::ok(obj));
            }
            let bytes = encode(&t.info, &obj)?;
            match state.store.update(&key, bytes, kv.mod_revision, None).await {
                Ok(kv) => {
                    set_rv(&mut obj, kv.mod_revision);
                    return Ok(Reply::ok(obj));
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(store_error(&resource, t.name(), e)),
            }
        }
        if opts.dry {
            return Ok(Reply::ok(obj));
        }
        crate::crd::delete_objects(state.store.as_ref(), &t.info, &obj).await?;
        match state.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(d) => {
                release_resources(state, t, &obj).await;
                if t.info.kind == "Pod" {
                    set_rv(&mut obj, d.revision);
                    return Ok(Reply::ok(obj));
                }
                let status = api::Status::success(&resource, t.name(), meta_str(&obj, "uid"));
                return Ok(Reply::ok(status.to_value()));
            }
            Err(store::Error::Conflict { .. }) => continue,
            Err(store::Error::NotFound { .. }) => return Err(ApiError::not_found(&resource, t.name())),
            Err(e) => return Err(store_error(&resource, t.name(), e)),
        }
    }
    Err(ApiError::conflict(&resource, t.name()))
}

/// `DELETE` of a collection: every object the selectors match, one by one.
pub async fn delete_collection(
    state: &AppState,
    t: &Target,
    q: &Query,
    body: Option<&Value>,
) -> Result<Reply, ApiError> {
    let listed = list(state, t, q, Output::Json).await?;
    let items = listed
        .body
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut deleted = Vec::new();
    for item in items {
        let target = Target {
            name: Some(meta_str(&item, "name").to_string()),
            namespace: Some(meta_str(&item, "namespace").to_string()).filter(|n| !n.is_empty()),
            ..t.clone()
        };
        match delete(state, &target, q, body).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => deleted.push(item),
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(json!({
        "kind": t.info.list_kind(),
        "apiVersion": t.info.api_version(),
        "metadata": listed.body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "items": deleted,
    })))
}

/// `autoscaling/v1 Scale` view of a deployment or replica set.
fn scale_of(obj: &Value) -> Value {
    let selector = api::Selector::from_label_selector_json(obj.pointer("/spec/selector"))
        .map(|s| s.to_string())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta_str(obj, "name"),
            "namespace": meta_str(obj, "namespace"),
            "uid": meta_str(obj, "uid"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
            "creationTimestamp": meta_str(obj, "creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// `GET`/`PUT`/`PATCH` of `.../scale`.
pub async fn scale(
    state: &AppState,
    t: &Target,
    q: &Query,
    change: Option<(Option<PatchType>, Value)>,
) -> Result<Reply, ApiError> {
    let key = t.key()?;
    let dry = dry_run(q)?;
    let gk = api::GroupKind::new("autoscaling", "Scale");
    for _ in 0..MAX_RETRIES {
        let kv = state
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(&t.resource(), t.name(), e))?;
        let obj = decode(&kv)?;
        let current = scale_of(&obj);
        let Some((patch_type, body)) = &change else {
            return Ok(Reply::ok(current));
        };
        let wanted = match patch_type {
            // Scale has no lists, so a strategic merge patch is a merge patch.
            Some(pt) => {
                let pt = match pt {
                    PatchType::StrategicMerge => PatchType::Merge,
                    other => *other,
                };
                api::apply_patch(pt, "autoscaling", "Scale", &current, body)
                    .map_err(|e| e.to_api_error(&gk, t.name()))?
            }
            None => check_type(&t.info, "Scale", "autoscaling/v1", body.clone())?,
        };
        let pinned = precondition_rv(&wanted)?;
        if let Some(rv) = pinned
            && rv != kv.mod_revision
        {
            return Err(ApiError::conflict(&t.resource(), t.name()));
        }
        let replicas = match wanted.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .filter(|r| *r >= 0 && *r <= i64::from(i32::MAX))
                .ok_or_else(|| {
                    ApiError::invalid(
                        &gk,
                        t.name(),
                        vec![api::FieldError::invalid(
                            &api::FieldPath::new("spec").child("replicas"),
                            v.clone(),
                            "must be greater than or equal to 0",
                        )],
                    )
                })?,
        };
        let mut new = obj.clone();
        new["spec"]["replicas"] = json!(replicas);
        let plain = Target {
            subresource: None,
            ..t.clone()
        };
        prepare_update(state, &t.info, &obj, &mut new, None);
        let (now, api_version) = (state.now_string(), t.info.api_version());
        api::managed::record_update(Some(&obj), &mut new, &t.writer(&now, &api_version));
        match commit_update(state, &plain, &kv, new, dry).await {
            Ok(out) => return Ok(Reply::ok(scale_of(&out))),
            Err(store::Error::Conflict { .. }) if pinned.is_none() => continue,
            Err(e) => return Err(store_error(&t.resource(), t.name(), e)),
        }
    }
    Err(ApiError::conflict(&t.resource(), t.name()))
}

/// Upstream's `UpdatePodCondition` with `PodScheduled: True`: the condition is replaced (a scheduler's
/// `Unschedulable` reason and message go), its transition time kept only when it was `True` already.
fn mark_scheduled(pod: &mut Value, now: &str) {
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else {
        return;
    };
    let old = conditions.iter().position(|c| c["type"] == "PodScheduled");
    let transition = match old.map(|i| &conditions[i]) {
        Some(c) if c["status"] == "True" && c["lastTransitionTime"].is_string() => {
            c["lastTransitionTime"].clone()
        }
        _ => json!(now),
    };
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    });
    match old {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// `POST pods/<name>/binding` (or `bindings`): assigns the pod to a node once.
pub async fn bind(
    state: &AppState,
    pods: &ResourceInfo,
    namespace: &str,
    pod_name: &str,
    q: &Query,
    body: Value,
) -> Result<Reply, ApiError> {
    let dry = dry_run(q)?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let gk = api::GroupKind::new("", "Binding");
    if node.is_empty() {
        return Err(ApiError::invalid(
            &gk,
            pod_name,
            vec![api::FieldError::required(
                &api::FieldPath::new("target").child("name"),
                "",
            )],
        ));
    }
    let t = Target {
        info: pods.clone(),
        namespace: Some(namespace.into()),
        name: Some(pod_name.into()),
        subresource: None,
        user: Default::default(),
        manager: String::new(),
    };
    let key = t.key()?;
    for _ in 0..MAX_RETRIES {
        let kv = state
            .store
            .get(&key)
            .await
            .map_err(|e| store_error(&t.resource(), pod_name, e))?;
        let mut pod = decode(&kv)?;
        if !meta_str(&pod, "deletionTimestamp").is_empty() {
            return Err(ApiError::Conflict {
                resource: t.resource(),
                name: pod_name.into(),
                reason: format!("pod {pod_name} is being deleted, cannot be assigned to a host"),
            });
        }
        let current = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::Conflict {
                resource: t.resource(),
                name: pod_name.into(),
                reason: format!("pod {pod_name} is already assigned to node \"{current}\""),
            });
        }
        pod["spec"]["nodeName"] = json!(node);
        // Upstream's binding storage copies the Binding's annotations onto the pod and marks it scheduled.
        if let Some(annotations) = body.pointer("/metadata/annotations").and_then(Value::as_object) {
            for (k, v) in annotations {
                pod["metadata"]["annotations"][k] = v.clone();
            }
        }
        mark_scheduled(&mut pod, &state.now_string());
        let created = Reply {
            code: 201,
            body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        };
        if dry {
            return Ok(created);
        }
        match state
            .store
            .update(&key, encode(&t.info, &pod)?, kv.mod_revision, None)
            .await
        {
            Ok(_) => return Ok(created),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(store_error(&t.resource(), pod_name, e)),
        }
    }
    Err(ApiError::conflict(&t.resource(), pod_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_marks_the_pod_scheduled_replacing_an_unschedulable_condition() {
        let mut pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes",
             "lastTransitionTime": "2024-01-01T00:00:00Z"},
            {"type": "Other", "status": "True"},
        ]}});
        mark_scheduled(&mut pod, "2024-01-02T00:00:00Z");
        let conditions = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            conditions[0],
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                   "lastTransitionTime": "2024-01-02T00:00:00Z"})
        );
        // Already True: the transition time stays.
        mark_scheduled(&mut pod, "2024-01-03T00:00:00Z");
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2024-01-02T00:00:00Z"
        );
        // A pod without status gets one.
        let mut bare = json!({"metadata": {"name": "p"}});
        mark_scheduled(&mut bare, "2024-01-02T00:00:00Z");
        assert_eq!(bare["status"]["conditions"][0]["status"], "True");
    }
}
