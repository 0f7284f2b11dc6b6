//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into the JSON the rest of
//! the server works with.
//!
//! kubectl >= 1.32 sends the objects its generator commands build (`create configmap|secret|deployment|...`,
//! `create token`, `auth can-i`) as protobuf. The wire format is upstream's envelope: the magic `k8s\0`, then a
//! `runtime.Unknown` whose `typeMeta` names the kind and whose `raw` is the object's message.
//!
//! The message schemas are upstream's `generated.proto` files, vendored under `proto/` and compiled by `build.rs`
//! into a descriptor set embedded here; [`decode`] walks the wire format against it. Field names in those files
//! are the JSON names, so the walk yields JSON directly, with upstream's JSON forms for the special messages
//! (`Time`, `MicroTime`, `Duration`, `Quantity`, `IntOrString`, `RawExtension`, `FieldsV1`, list wrappers such as
//! `ExtraValue`).
//!
//! Go writes every non-pointer field, so zero values on the wire usually mean "unset": they are dropped as Go's
//! `omitempty` would, except for the pointer fields whose zero is meaningful ([`KEEP_ZERO`], e.g. `replicas: 0`).

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use prost::Message;
use serde_json::{Map, Value};

/// The envelope's magic prefix.
pub const MAGIC: &[u8] = b"k8s\0";

/// The media type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

static DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s.descriptor.pb"));

/// Why a protobuf body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("provided object does not start with the Kubernetes protobuf magic number")]
    NoMagic,
    #[error("truncated or malformed protobuf data")]
    Malformed,
    #[error("no protobuf schema for {0}")]
    UnknownKind(String),
    #[error("the embedded protobuf schema could not be read")]
    Schema,
}

/// Pointer fields in upstream's Go types whose zero value differs from "unset", so a zero on the wire is kept.
pub const KEEP_ZERO: &[&str] = &[
    "replicas",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "hostUsers",
    "priority",
    "immutable",
    "expirationSeconds",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "fsGroup",
    "privileged",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "defaultMode",
    "mode",
    "optional",
    "parallelism",
    "completions",
    "backoffLimit",
    "suspend",
    "ttlSecondsAfterFinished",
    "gracePeriodSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
    "storageClassName",
    "allowed",
    "denied",
    "authenticated",
    "tolerationSeconds",
    "partition",
    "maxUnavailable",
    "maxSurge",
    "orphanDependents",
    "seconds",
];

// Just the parts of descriptor.proto this decoder reads.
#[derive(Clone, PartialEq, Message)]
struct FileDescriptorSet {
    #[prost(message, repeated, tag = "1")]
    file: Vec<FileDescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct FileDescriptorProto {
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(message, repeated, tag = "4")]
    message_type: Vec<DescriptorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct DescriptorProto {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    field: Vec<FieldDescriptorProto>,
    #[prost(message, repeated, tag = "3")]
    nested_type: Vec<DescriptorProto>,
    #[prost(message, optional, tag = "7")]
    options: Option<MessageOptions>,
}

#[derive(Clone, PartialEq, Message)]
struct MessageOptions {
    #[prost(bool, optional, tag = "7")]
    map_entry: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct FieldDescriptorProto {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(int32, optional, tag = "3")]
    number: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    label: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    r#type: Option<i32>,
    #[prost(string, optional, tag = "6")]
    type_name: Option<String>,
}

const LABEL_REPEATED: i32 = 3;
// descriptor.proto's FieldDescriptorProto.Type values.
const T_DOUBLE: i32 = 1;
const T_FLOAT: i32 = 2;
const T_INT64: i32 = 3;
const T_UINT64: i32 = 4;
const T_INT32: i32 = 5;
const T_FIXED64: i32 = 6;
const T_FIXED32: i32 = 7;
const T_BOOL: i32 = 8;
const T_STRING: i32 = 9;
const T_MESSAGE: i32 = 11;
const T_BYTES: i32 = 12;
const T_UINT32: i32 = 13;
const T_ENUM: i32 = 14;
const T_SFIXED32: i32 = 15;
const T_SFIXED64: i32 = 16;
const T_SINT32: i32 = 17;
const T_SINT64: i32 = 18;

#[derive(Debug)]
struct Field {
    name: String,
    repeated: bool,
    ty: i32,
    type_name: String,
}

#[derive(Debug, Default)]
struct MessageSchema {
    fields: HashMap<u64, Field>,
    map_entry: bool,
}

/// Message schemas by fully qualified name (`.k8s.io.api.core.v1.Pod`).
struct Schema {
    messages: HashMap<String, MessageSchema>,
}

fn add_message(prefix: &str, d: &DescriptorProto, out: &mut HashMap<String, MessageSchema>) {
    let full = format!("{prefix}.{}", d.name.as_deref().unwrap_or(""));
    for nested in &d.nested_type {
        add_message(&full, nested, out);
    }
    let fields = d
        .field
        .iter()
        .map(|f| {
            (
                f.number.unwrap_or(0) as u64,
                Field {
                    name: f.name.clone().unwrap_or_default(),
                    repeated: f.label == Some(LABEL_REPEATED),
                    ty: f.r#type.unwrap_or(0),
                    type_name: f.type_name.clone().unwrap_or_default(),
                },
            )
        })
        .collect();
    out.insert(
        full,
        MessageSchema {
            fields,
            map_entry: d.options.as_ref().and_then(|o| o.map_entry).unwrap_or(false),
        },
    );
}

fn schema() -> Result<&'static Schema, ProtoError> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let set = FileDescriptorSet::decode(DESCRIPTOR).ok()?;
            let mut messages = HashMap::new();
            for file in &set.file {
                let prefix = format!(".{}", file.package.as_deref().unwrap_or(""));
                for m in &file.message_type {
                    add_message(&prefix, m, &mut messages);
                }
            }
            Some(Schema { messages })
        })
        .as_ref()
        .ok_or(ProtoError::Schema)
}

/// The protobuf package holding `apiVersion`'s kinds: `apps/v1` -> `.k8s.io.api.apps.v1`,
/// `rbac.authorization.k8s.io/v1` -> `.k8s.io.api.rbac.v1`, `v1` -> `.k8s.io.api.core.v1`.
fn package_of(api_version: &str) -> String {
    match api_version.split_once('/') {
        None => format!(".k8s.io.api.core.{api_version}"),
        Some((group, version)) => {
            let short = group.split('.').next().unwrap_or(group);
            format!(".k8s.io.api.{short}.{version}")
        }
    }
}

/// Whether the schema knows `apiVersion`/`kind`, i.e. whether [`decode`] can read such a body.
pub fn knows(api_version: &str, kind: &str) -> bool {
    message_name(api_version, kind).is_ok()
}

fn message_name(api_version: &str, kind: &str) -> Result<String, ProtoError> {
    let s = schema()?;
    let typed = format!("{}.{kind}", package_of(api_version));
    if s.messages.contains_key(&typed) {
        return Ok(typed);
    }
    // Options kinds (DeleteOptions, ...) live in meta/v1 whatever group the request is for.
    let meta = format!(".k8s.io.apimachinery.pkg.apis.meta.v1.{kind}");
    if s.messages.contains_key(&meta) {
        return Ok(meta);
    }
    Err(ProtoError::UnknownKind(format!("{api_version}, Kind={kind}")))
}

/// Decodes an enveloped protobuf body into the object's JSON, `apiVersion` and `kind` included.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::NoMagic)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut r = Reader(rest);
    while let Some((num, wire)) = r.tag()? {
        match (num, wire) {
            (1, 2) => {
                let mut tm = Reader(r.bytes()?);
                while let Some((n, w)) = tm.tag()? {
                    match (n, w) {
                        (1, 2) => api_version = tm.string()?,
                        (2, 2) => kind = tm.string()?,
                        _ => tm.skip(w)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            // contentEncoding and contentType are empty for objects clients send.
            _ => r.skip(wire)?,
        }
    }
    let name = message_name(&api_version, &kind)?;
    let mut obj = match decode_message(schema()?, &name, raw)? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version));
    out.insert("kind".into(), Value::String(kind));
    out.append(&mut obj);
    Ok(Value::Object(out))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first().ok_or(ProtoError::Malformed)?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ProtoError::Malformed)
    }

    fn tag(&mut self) -> Result<Option<(u64, u8)>, ProtoError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let t = self.varint()?;
        Ok(Some((t >> 3, (t & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if n > self.0.len() {
            return Err(ProtoError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = usize::try_from(self.varint()?).map_err(|_| ProtoError::Malformed)?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, ProtoError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| ProtoError::Malformed)
    }

    fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn fixed32(&mut self) -> Result<u32, ProtoError> {
        let b = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_le_bytes(a))
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtoError> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.take(8).map(|_| ()),
            2 => self.bytes().map(|_| ()),
            5 => self.take(4).map(|_| ()),
            _ => Err(ProtoError::Malformed),
        }
    }
}

fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// One scalar of type `ty` from a reader positioned at its value (wire type already consumed).
fn scalar(r: &mut Reader<'_>, ty: i32) -> Result<Value, ProtoError> {
    Ok(match ty {
        T_DOUBLE => number(f64::from_bits(r.fixed64()?)),
        T_FLOAT => number(f64::from(f32::from_bits(r.fixed32()?))),
        T_FIXED64 => Value::from(r.fixed64()?),
        T_SFIXED64 => Value::from(r.fixed64()? as i64),
        T_FIXED32 => Value::from(r.fixed32()?),
        T_SFIXED32 => Value::from(r.fixed32()? as i32),
        T_INT64 => Value::from(r.varint()? as i64),
        T_INT32 | T_ENUM => Value::from(r.varint()? as i64 as i32),
        T_UINT64 => Value::from(r.varint()?),
        T_UINT32 => Value::from(r.varint()? as u32),
        T_BOOL => Value::Bool(r.varint()? != 0),
        T_SINT32 | T_SINT64 => {
            let v = r.varint()?;
            Value::from(((v >> 1) as i64) ^ -((v & 1) as i64))
        }
        T_STRING => Value::String(r.string()?),
        T_BYTES => Value::String(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
        _ => return Err(ProtoError::Malformed),
    })
}

fn packable(ty: i32) -> bool {
    !matches!(ty, T_STRING | T_BYTES | T_MESSAGE)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

const META: &str = ".k8s.io.apimachinery.pkg.apis.meta.v1";

/// Decodes one message; `None` when upstream's JSON would leave the field out (a zero `Time`).
fn decode_message(s: &Schema, name: &str, buf: &[u8]) -> Result<Option<Value>, ProtoError> {
    let msg = s
        .messages
        .get(name)
        .ok_or_else(|| ProtoError::UnknownKind(name.trim_start_matches('.').to_string()))?;
    let mut fields: Map<String, Value> = Map::new();
    let mut r = Reader(buf);
    while let Some((num, wire)) = r.tag()? {
        let Some(f) = msg.fields.get(&num) else {
            r.skip(wire)?;
            continue;
        };
        if f.ty == T_MESSAGE {
            if wire != 2 {
                return Err(ProtoError::Malformed);
            }
            let sub = r.bytes()?;
            let map_entry = s.messages.get(&f.type_name).is_some_and(|m| m.map_entry);
            if map_entry {
                let (k, v) = decode_map_entry(s, &f.type_name, sub)?;
                let obj = fields
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(o) = obj {
                    o.insert(k, v);
                }
                continue;
            }
            let v = decode_message(s, &f.type_name, sub)?;
            if f.repeated {
                push(&mut fields, &f.name, v.unwrap_or(Value::Null));
            } else if let Some(v) = v {
                fields.insert(f.name.clone(), v);
            }
            continue;
        }
        if f.repeated && wire == 2 && packable(f.ty) {
            let mut packed = Reader(r.bytes()?);
            while !packed.0.is_empty() {
                let v = scalar(&mut packed, f.ty)?;
                push(&mut fields, &f.name, v);
            }
            continue;
        }
        let v = scalar(&mut r, f.ty)?;
        if f.repeated {
            push(&mut fields, &f.name, v);
        } else if !is_zero(&v) || KEEP_ZERO.contains(&f.name.as_str()) {
            fields.insert(f.name.clone(), v);
        } else {
            fields.remove(&f.name);
        }
    }
    special(name, fields)
}

fn push(fields: &mut Map<String, Value>, name: &str, v: Value) {
    let arr = fields
        .entry(name.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = arr {
        a.push(v);
    }
}

fn decode_map_entry(s: &Schema, name: &str, buf: &[u8]) -> Result<(String, Value), ProtoError> {
    let msg = s.messages.get(name).ok_or(ProtoError::Malformed)?;
    let mut key = String::new();
    let mut value: Option<Value> = None;
    let mut r = Reader(buf);
    while let Some((num, wire)) = r.tag()? {
        let Some(f) = msg.fields.get(&num) else {
            r.skip(wire)?;
            continue;
        };
        let v = if f.ty == T_MESSAGE {
            decode_message(s, &f.type_name, r.bytes()?)?.unwrap_or(Value::Null)
        } else {
            scalar(&mut r, f.ty)?
        };
        match num {
            1 => key = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
            _ => value = Some(v),
        }
    }
    // A map value equal to its type's default is left off the wire.
    let value = match value {
        Some(v) => v,
        None => match msg.fields.get(&2) {
            Some(f) if f.ty == T_MESSAGE => decode_message(s, &f.type_name, &[])?.unwrap_or(Value::Null),
            Some(f) if f.ty == T_STRING || f.ty == T_BYTES => Value::String(String::new()),
            Some(f) if f.ty == T_BOOL => Value::Bool(false),
            _ => Value::from(0),
        },
    };
    Ok((key, value))
}

/// Upstream's JSON forms of the messages that are not plain structs.
fn special(name: &str, mut fields: Map<String, Value>) -> Result<Option<Value>, ProtoError> {
    let int = |f: &Map<String, Value>, k: &str| f.get(k).and_then(Value::as_i64).unwrap_or(0);
    let Some((pkg, short)) = name.rsplit_once('.') else {
        return Ok(Some(Value::Object(fields)));
    };
    Ok(Some(match (pkg, short) {
        (META, "Time") => {
            let secs = int(&fields, "seconds");
            if secs == 0 && int(&fields, "nanos") == 0 {
                return Ok(None);
            }
            Value::String(rfc3339(secs, None))
        }
        (META, "MicroTime") => {
            let secs = int(&fields, "seconds");
            let nanos = int(&fields, "nanos");
            if secs == 0 && nanos == 0 {
                return Ok(None);
            }
            Value::String(rfc3339(secs, Some(nanos)))
        }
        (META, "Duration") => Value::String(go_duration(int(&fields, "duration"))),
        (".k8s.io.apimachinery.pkg.api.resource", "Quantity") => fields
            .remove("string")
            .unwrap_or_else(|| Value::String("0".into())),
        (".k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => {
            if int(&fields, "type") == 1 {
                fields
                    .remove("strVal")
                    .unwrap_or_else(|| Value::String(String::new()))
            } else {
                Value::from(int(&fields, "intVal"))
            }
        }
        (".k8s.io.apimachinery.pkg.runtime", "RawExtension") | (META, "FieldsV1") => {
            let raw = fields
                .get("raw")
                .or_else(|| fields.get("Raw"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|_| ProtoError::Malformed)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            serde_json::from_slice(&bytes).map_err(|_| ProtoError::Malformed)?
        }
        // Named slices (`ExtraValue`, `Verbs`) are single-field wrappers on the wire and plain arrays in JSON.
        (_, "ExtraValue" | "Verbs") => fields.remove("items").unwrap_or_else(|| Value::Array(Vec::new())),
        _ => Value::Object(fields),
    }))
}

fn rfc3339(secs: i64, micro_from_nanos: Option<i64>) -> String {
    let ts =
        k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    match micro_from_nanos {
        None => format!("{base}Z"),
        Some(n) => format!("{base}.{:06}Z", n / 1000),
    }
}

/// Go's `time.Duration.String()`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let frac = |v: u64, unit: u64, suffix: &str| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let digits = unit.ilog10() as usize;
            let f = format!("{rest:0digits$}");
            format!("{whole}.{}{suffix}", f.trim_end_matches('0'))
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}", frac(u, 1_000, "µs"));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}", frac(u, 1_000_000, "ms"));
    }
    let secs_part = u % 60_000_000_000;
    let mins = u / 60_000_000_000;
    let (h, m) = (mins / 60, mins % 60);
    let s = frac(secs_part, 1_000_000_000, "s");
    if h > 0 {
        format!("{sign}{h}h{m}m{s}")
    } else if m > 0 {
        format!("{sign}{m}m{s}")
    } else {
        format!("{sign}{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal protobuf writer for building test bodies.
    #[derive(Default)]
    struct W(Vec<u8>);
    impl W {
        fn varint(mut self, mut v: u64) -> Self {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(b);
                    return self;
                }
                self.0.push(b | 0x80);
            }
        }
        fn tag(self, n: u64, w: u64) -> Self {
            self.varint(n << 3 | w)
        }
        fn bytes(self, n: u64, b: &[u8]) -> Self {
            let mut s = self.tag(n, 2).varint(b.len() as u64);
            s.0.extend_from_slice(b);
            s
        }
        fn str(self, n: u64, v: &str) -> Self {
            self.bytes(n, v.as_bytes())
        }
        fn int(self, n: u64, v: u64) -> Self {
            self.tag(n, 0).varint(v)
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let tm = W::default().str(1, api_version).str(2, kind);
        let unknown = W::default().bytes(1, &tm.0).bytes(2, raw);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&unknown.0);
        out
    }

    #[test]
    fn a_configmap_decodes_with_its_data_and_without_go_zero_values() {
        let entry = W::default().str(1, "k").str(2, "v");
        let empty = W::default().str(1, "blank");
        let meta = W::default()
            .str(1, "cm")
            .str(2, "")
            .str(3, "default")
            .int(7, 0)
            .bytes(8, &[]);
        let cm = W::default()
            .bytes(1, &meta.0)
            .bytes(2, &entry.0)
            .bytes(2, &empty.0);
        let v = decode(&envelope("v1", "ConfigMap", &cm.0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm", "namespace": "default"},
                "data": {"k": "v", "blank": ""}
            })
        );
    }

    #[test]
    fn a_deployment_keeps_zero_replicas_and_decodes_int_or_string_and_quantities() {
        let container = W::default()
            .str(1, "web")
            .str(2, "nginx")
            .bytes(
                8,
                &W::default()
                    .bytes(
                        1,
                        &W::default()
                            .str(1, "cpu")
                            .bytes(2, &W::default().str(1, "100m").0)
                            .0,
                    )
                    .0,
            )
            .int(16, 0);
        let pod_spec = W::default().bytes(2, &container.0).int(11, 0);
        let template = W::default()
            .bytes(
                1,
                &W::default()
                    .bytes(11, &W::default().str(1, "app").str(2, "web").0)
                    .0,
            )
            .bytes(2, &pod_spec.0);
        let rolling = W::default().bytes(1, &W::default().int(1, 1).str(3, "25%").0);
        let strategy = W::default().str(1, "RollingUpdate").bytes(2, &rolling.0);
        let spec = W::default().int(1, 0).bytes(3, &template.0).bytes(4, &strategy.0);
        let dep = W::default()
            .bytes(1, &W::default().str(1, "web").0)
            .bytes(2, &spec.0)
            .bytes(3, &[]);
        let v = decode(&envelope("apps/v1", "Deployment", &dep.0)).unwrap();
        assert_eq!(v["spec"]["replicas"], 0);
        assert_eq!(v["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx");
        assert_eq!(c["resources"]["limits"]["cpu"], "100m");
        assert!(c.get("stdin").is_none(), "{c}");
        assert!(v["spec"]["template"]["spec"].get("hostNetwork").is_none());
        assert_eq!(v["status"], serde_json::json!({}));
    }

    #[test]
    fn times_list_wrappers_and_meta_kinds_take_their_json_forms() {
        let t = W::default().int(1, 1_700_000_000);
        let meta = W::default().str(1, "x").bytes(8, &t.0);
        let extra = W::default()
            .str(1, "scopes")
            .bytes(2, &W::default().str(1, "a").str(1, "b").0);
        let spec = W::default().bytes(1, &W::default().str(1, "default").str(2, "get").str(5, "pods").0);
        let sar = W::default()
            .bytes(1, &meta.0)
            .bytes(2, &[spec.0, W::default().bytes(5, &extra.0).0].concat());
        let v = decode(&envelope(
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            &sar.0,
        ))
        .unwrap();
        assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "get");
        assert_eq!(v["spec"]["extra"]["scopes"], serde_json::json!(["a", "b"]));

        let opts = W::default().str(4, "Foreground");
        let v = decode(&envelope("v1", "DeleteOptions", &opts.0)).unwrap();
        assert_eq!(v["propagationPolicy"], "Foreground");
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(matches!(decode(b"{}"), Err(ProtoError::NoMagic)));
        assert!(decode(&envelope("v1", "Nope", &[])).is_err());
        let mut truncated = envelope("v1", "ConfigMap", &W::default().str(1, "abc").0);
        truncated.pop();
        assert!(decode(&truncated).is_err());
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
    }
}
