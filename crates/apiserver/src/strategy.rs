//! Per-kind behaviour on create and update (upstream's "strategies"): defaults clients read back, validation
//! with field causes, what a status subresource owns, when `generation` moves.

use api::validation::{is_dns1123_label, name_rule_for, validate_object_meta};
use api::{ApiError, FieldError, FieldPath, ResourceInfo, Selector};
use serde_json::{Map, Value, json};

/// Whether the kind has a `status` subresource, so main-resource writes leave `status` alone.
pub fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.subresource("status").is_some()
}

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    if !v.is_object() {
        return None;
    }
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v.get_mut(key).and_then(Value::as_object_mut)
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.into(), value);
    }
}

/// Defaults applied on create and update, as upstream's `SetDefaults_*` do for what clients read back.
pub fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    // A custom object keeps only what its CRD's schema declares, then gets the schema's defaults, as upstream
    // prunes and defaults every custom object it stores.
    if let Some(schema) = info.custom.as_ref().and_then(|c| c.schema.as_ref()) {
        api::crd::schema::prune(schema, obj);
        api::crd::schema::apply_defaults(schema, obj);
        return;
    }
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "replicas", json!(1));
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
                default_update_strategy(
                    spec,
                    "strategy",
                    json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
                );
            }
            default_template(obj);
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "replicas", json!(1));
            }
            default_template(obj);
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "revisionHistoryLimit", json!(10));
                default_update_strategy(
                    spec,
                    "updateStrategy",
                    json!({"maxUnavailable": 1, "maxSurge": 0}),
                );
            }
            default_template(obj);
        }
        ("", "Service") => {
            let Some(spec) = obj_mut(obj, "spec") else { return };
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "Secret") if obj.get("type").is_none_or(Value::is_null) => {
            obj["type"] = json!("Opaque");
        }
        ("", "Namespace") => {
            if let Some(spec) = obj_mut(obj, "spec") {
                default(spec, "finalizers", json!(["kubernetes"]));
            }
            if let Some(status) = obj_mut(obj, "status") {
                default(status, "phase", json!("Active"));
            }
        }
        _ => {}
    }
}

/// `type: RollingUpdate` with its parameters, also inside an empty `{}` strategy as clients often send.
fn default_update_strategy(spec: &mut Map<String, Value>, field: &str, rolling: Value) {
    default(spec, field, json!({}));
    let Some(strategy) = spec.get_mut(field).and_then(Value::as_object_mut) else {
        return;
    };
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        default(strategy, "rollingUpdate", json!({}));
        if let (Some(r), Value::Object(d)) = (
            strategy.get_mut("rollingUpdate").and_then(Value::as_object_mut),
            rolling,
        ) {
            for (k, v) in d {
                default(r, &k, v);
            }
        }
    }
}

fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else { return };
    default(m, "restartPolicy", json!("Always"));
    default(m, "dnsPolicy", json!("ClusterFirst"));
    default(m, "schedulerName", json!("default-scheduler"));
    default(m, "terminationGracePeriodSeconds", json!(30));
    default(m, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let policy = if image_tag(image).is_none_or(|t| t == "latest") {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                default(c, "imagePullPolicy", json!(policy));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// The tag of an image reference, ignoring a registry port and a digest (a digest pins like a tag does).
fn image_tag(image: &str) -> Option<&str> {
    if image.contains('@') {
        return Some("@digest");
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

/// What upstream resets on create: status that only controllers may write.
pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            let qos = pod_qos(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        ("", "Node") | ("", "Namespace") | ("", "Service") => {}
        _ if has_status_subresource(info) => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
}

fn pod_qos(pod: &Value) -> &'static str {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array);
    let mut any = false;
    let mut guaranteed = true;
    for c in containers.into_iter().flatten() {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty()) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(r));
            let q = req.and_then(|m| m.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Whether an update changed what `generation` counts: everything but metadata and status.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for k in ["metadata", "status", "kind", "apiVersion"] {
                m.remove(k);
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// Whether this kind carries `metadata.generation`: kinds with a spec a controller works towards.
pub fn tracks_generation(info: &ResourceInfo) -> bool {
    info.custom.is_some() || (has_status_subresource(info) && info.kind != "Namespace")
}

/// Validation on create (`old` is `None`) and update: metadata rules plus per-kind required fields.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let rule = name_rule_for(&info.group, &info.kind);
    let mut errs = validate_object_meta(&meta, info.namespaced, rule);
    if old.is_some() {
        // Names were checked on create; generateName no longer matters.
        errs.retain(|e| e.field != "metadata.generateName");
    }
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => validate_pod_spec(obj.get("spec"), &FieldPath::new("spec"), &mut errs),
        ("apps", "Deployment") | ("apps", "ReplicaSet") | ("apps", "DaemonSet") => {
            validate_workload(obj, old, &mut errs)
        }
        _ if info.custom.is_some() => {
            if let Some(schema) = info.custom.as_ref().and_then(|c| c.schema.as_ref()) {
                api::crd::schema::validate(schema, obj, &FieldPath::default(), &mut errs);
            }
        }
        ("", "Service") => validate_service(obj, &mut errs),
        ("", "ConfigMap") | ("", "Secret") => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        if !is_config_key(k) {
                            errs.push(FieldError::invalid(
                                &FieldPath::new(field),
                                k.as_str(),
                                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                            ));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .or_else(|| meta.get("generateName").and_then(Value::as_str))
            .unwrap_or("");
        Err(ApiError::invalid(&info.group_kind(), name, errs))
    }
}

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn validate_pod_spec(spec: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    let cpath = path.child("containers");
    match containers {
        None => errs.push(FieldError::required(&cpath, "")),
        Some(cs) if cs.is_empty() => errs.push(FieldError::required(&cpath, "")),
        Some(cs) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let p = cpath.index(i);
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    errs.push(FieldError::required(&p.child("name"), ""));
                } else {
                    for m in is_dns1123_label(name) {
                        errs.push(FieldError::invalid(&p.child("name"), name, &m));
                    }
                    if !seen.insert(name.to_string()) {
                        errs.push(FieldError::duplicate(&p.child("name"), name));
                    }
                }
                if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
                    errs.push(FieldError::required(&p.child("image"), ""));
                }
            }
        }
    }
    if let Some(rp) = spec.and_then(|s| s.get("restartPolicy")).and_then(Value::as_str)
        && !["Always", "OnFailure", "Never"].contains(&rp)
    {
        errs.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        ));
    }
}

fn validate_workload(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = FieldPath::new("spec");
    let selector = obj.pointer("/spec/selector");
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    match selector {
        None | Some(Value::Null) => errs.push(FieldError::required(&spec.child("selector"), "")),
        Some(sel) => match Selector::from_label_selector_json(Some(sel)) {
            Err(e) => errs.push(FieldError::invalid(
                &spec.child("selector"),
                sel.clone(),
                &e.to_string(),
            )),
            Ok(s) if s.is_everything() => errs.push(FieldError::invalid(
                &spec.child("selector"),
                sel.clone(),
                "empty selector is invalid for deployment",
            )),
            Ok(s) => {
                let tmpl = json!({"metadata": {"labels": labels}});
                if !s.matches_object(&tmpl) {
                    errs.push(FieldError::invalid(
                        &spec.child("template").child("metadata").child("labels"),
                        labels.clone(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    if let Some(old) = old
        && old.pointer("/spec/selector") != selector
    {
        errs.push(FieldError::invalid(
            &spec.child("selector"),
            selector.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
    if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid(
            &spec.child("replicas"),
            r,
            "must be greater than or equal to 0",
        ));
    }
    validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        &spec.child("template").child("spec"),
        errs,
    );
}

fn validate_service(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = FieldPath::new("spec");
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let allowed = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    if !allowed.contains(&ty) {
        errs.push(FieldError::not_supported(&spec.child("type"), ty, &allowed));
    }
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    if ty != "ExternalName" && !headless && ports.is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(&spec.child("ports"), ""));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                &spec.child("ports").index(i).child("port"),
                port,
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}
