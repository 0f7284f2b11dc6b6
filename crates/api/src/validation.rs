//! Metadata validation and name generation, worded as upstream so `Invalid` errors read the same.
//!
//! The string checks return lists of messages (upstream's `[]string` style) so callers can
//! attach them to whichever field path they validate; [`validate_object_meta`] does that for
//! `metadata` of a create, with the name rule of the kind from [`name_rule_for`].

use rand::Rng;
use serde_json::Value;

use crate::status::{FieldError, FieldPath};

pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
pub const DNS1035_LABEL_MAX_LENGTH: usize = 63;
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Upstream's `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Upstream's `RegexError`: the message, examples and the regex, in that exact punctuation.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let ex: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        ex.join(" or ")
    )
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1035_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1035_LABEL_MAX_LENGTH));
    }
    let ok = matches_dns1123_label(value) && value.as_bytes()[0].is_ascii_lowercase();
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Names that become one URL path segment (RBAC objects): no `.`/`..`, no `/` or `%`.
pub fn is_path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    is_path_segment_prefix(name)
}

pub fn is_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// A label key / qualified name: optional DNS-subdomain prefix and `/`, then a name part.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A label key; the same rules as a qualified name.
pub fn is_label_key(value: &str) -> Vec<String> {
    is_qualified_name(value)
}

pub fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// How a kind's `metadata.name` is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds: up to 253 characters of lower-case alphanumerics, `-` and `.`.
    Dns1123Subdomain,
    /// Namespaces: one DNS label, no dots, at most 63 characters.
    Dns1123Label,
    /// Services: a DNS-1035 label (starts with a letter) because the name becomes a DNS name.
    Dns1035Label,
    /// RBAC objects: anything usable as one path segment (`system:node` is fine).
    PathSegment,
    /// No rule (certificate signing requests, as upstream: "we don't care what you call them").
    Any,
}

impl NameRule {
    /// Messages for `name`; with `prefix` the value is a `generateName` whose trailing `-` is allowed.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        let masked;
        // Upstream masks the dash by replacing the last two bytes with `a`; kept for identical verdicts.
        let name = if prefix
            && self != Self::PathSegment
            && name.len() > 1
            && name.ends_with('-')
            && name.is_char_boundary(name.len() - 2)
        {
            masked = format!("{}a", &name[..name.len() - 2]);
            masked.as_str()
        } else {
            name
        };
        match self {
            Self::Dns1123Subdomain => is_dns1123_subdomain(name),
            Self::Dns1123Label => is_dns1123_label(name),
            Self::Dns1035Label => is_dns1035_label(name),
            Self::PathSegment if prefix => is_path_segment_prefix(name),
            Self::PathSegment => is_path_segment_name(name),
            Self::Any => vec![],
        }
    }
}

/// The name rule upstream applies to a kind; unknown kinds (custom resources) are subdomains.
pub fn name_rule_for(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        ("certificates.k8s.io", "CertificateSigningRequest") => NameRule::Any,
        _ => NameRule::Dns1123Subdomain,
    }
}

/// Label map validation: each key a qualified name, each value a label value.
pub fn validate_labels(labels: &serde_json::Map<String, Value>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for m in is_label_key(k) {
            errs.push(FieldError::invalid(path, k.as_str(), &m));
        }
        match v.as_str() {
            Some(s) => {
                for m in is_label_value(s) {
                    errs.push(FieldError::invalid(path, s, &m));
                }
            }
            None => errs.push(FieldError::invalid(&path.key(k), v.clone(), "must be a string")),
        }
    }
    errs
}

/// Annotation keys are qualified names (case-insensitively); all of them together stay under 256 KiB.
pub fn validate_annotations(
    annotations: &serde_json::Map<String, Value>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations {
        for m in is_qualified_name(&k.to_ascii_lowercase()) {
            errs.push(FieldError::invalid(path, k.as_str(), &m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Validates `metadata` of an object being created, as upstream's `ValidateObjectMeta`:
/// name (or generateName), namespace presence and form, labels, annotations, finalizers.
pub fn validate_object_meta(meta: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let path = FieldPath::new("metadata");
    let mut errs = Vec::new();
    let s = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
    let generate_name = s("generateName");
    if !generate_name.is_empty() {
        for m in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                &path.child("generateName"),
                generate_name,
                &m,
            ));
        }
    }
    let name = s("name");
    if name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for m in rule.check(name, false) {
            errs.push(FieldError::invalid(&path.child("name"), name, &m));
        }
    }
    let namespace = s("namespace");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(&path.child("namespace"), ""));
        } else {
            for m in NameRule::Dns1123Label.check(namespace, false) {
                errs.push(FieldError::invalid(&path.child("namespace"), namespace, &m));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        errs.extend(validate_labels(labels, &path.child("labels")));
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        errs.extend(validate_annotations(annotations, &path.child("annotations")));
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        let fpath = path.child("finalizers");
        for (i, f) in finalizers.iter().enumerate() {
            let f = f.as_str().unwrap_or("");
            for m in is_qualified_name(f) {
                errs.push(FieldError::invalid(&fpath.index(i), f, &m));
            }
        }
    }
    errs
}

/// Upstream's name-generator alphabet: no vowels (no accidental words) and no look-alike digits.
pub const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const GENERATED_SUFFIX_LENGTH: usize = 5;
const MAX_NAME_LENGTH: usize = 63;

/// `generateName` + 5 random characters; the base is cut so the result fits in 63 characters.
pub fn generate_name<R: Rng + ?Sized>(base: &str, rng: &mut R) -> String {
    let max_base = MAX_NAME_LENGTH - GENERATED_SUFFIX_LENGTH;
    let mut cut = base.len().min(max_base);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + GENERATED_SUFFIX_LENGTH);
    out.push_str(&base[..cut]);
    for _ in 0..GENERATED_SUFFIX_LENGTH {
        let i = rng.gen_range(0..GENERATE_NAME_ALPHABET.len());
        out.push(char::from(GENERATE_NAME_ALPHABET[i]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use serde_json::json;

    #[test]
    fn dns_labels_accept_lowercase_and_reject_dots_and_capitals() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(is_dns1123_label("a.b"), ["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("My_Name"),
            [
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
        let long = "a".repeat(64);
        assert_eq!(is_dns1123_label(&long), ["must be no more than 63 characters"]);
    }

    #[test]
    fn dns_subdomains_allow_dots_up_to_253_characters() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert!(is_dns1123_subdomain("kube-proxy-x2f4k").is_empty());
        assert_eq!(
            is_dns1123_subdomain("-bad"),
            [
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(is_dns1123_subdomain("a..b").len(), 1);
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            ["must be no more than 253 characters"]
        );
    }

    #[test]
    fn dns1035_labels_must_start_with_a_letter() {
        assert!(is_dns1035_label("web").is_empty());
        assert_eq!(is_dns1035_label("1web").len(), 1);
        assert!(is_dns1035_label("1web")[0].starts_with("a DNS-1035 label must consist"));
    }

    #[test]
    fn path_segment_names_forbid_slash_percent_and_dots() {
        assert!(is_path_segment_name("system:node").is_empty());
        assert_eq!(is_path_segment_name(".."), ["may not be '..'"]);
        assert_eq!(
            is_path_segment_name("a/b%c"),
            ["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn qualified_names_check_prefix_and_name_parts() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("app.kubernetes.io/name").is_empty());
        assert!(is_qualified_name("node-role.kubernetes.io/control-plane").is_empty());
        assert_eq!(is_qualified_name("/a"), ["prefix part must be non-empty"]);
        assert_eq!(
            is_qualified_name("a/"),
            [
                "name part must be non-empty",
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ]
        );
        assert!(
            is_qualified_name("Bad_Prefix/a")[0].starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert!(is_qualified_name("a/b/c")[0].starts_with("a valid label key must consist of"));
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            ["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn label_values_may_be_empty_but_not_malformed() {
        assert!(is_label_value("").is_empty());
        assert!(is_label_value("v1.2_3-x").is_empty());
        assert_eq!(
            is_label_value("-x"),
            [
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
            ]
        );
        assert_eq!(
            is_label_value(&"a".repeat(64)),
            ["must be no more than 63 characters"]
        );
    }

    #[test]
    fn kinds_use_upstream_name_rules() {
        assert_eq!(name_rule_for("", "Namespace"), NameRule::Dns1123Label);
        assert_eq!(name_rule_for("", "Service"), NameRule::Dns1035Label);
        assert_eq!(name_rule_for("", "Pod"), NameRule::Dns1123Subdomain);
        assert_eq!(
            name_rule_for("rbac.authorization.k8s.io", "ClusterRole"),
            NameRule::PathSegment
        );
        assert_eq!(
            name_rule_for("certificates.k8s.io", "CertificateSigningRequest"),
            NameRule::Any
        );
        assert_eq!(
            name_rule_for("stable.example.com", "CronTab"),
            NameRule::Dns1123Subdomain
        );
        assert!(
            NameRule::PathSegment
                .check("system:controller:job-controller", false)
                .is_empty()
        );
    }

    #[test]
    fn generate_name_prefixes_may_end_with_a_dash() {
        assert!(NameRule::Dns1123Subdomain.check("web-", true).is_empty());
        assert!(!NameRule::Dns1123Subdomain.check("web-", false).is_empty());
        assert!(NameRule::Dns1123Label.check("ns-", true).is_empty());
    }

    #[test]
    fn object_meta_requires_a_name_and_a_namespace_for_namespaced_kinds() {
        let errs = validate_object_meta(&json!({}), true, NameRule::Dns1123Subdomain);
        let strs: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            strs,
            [
                "metadata.name: Required value: name or generateName is required",
                "metadata.namespace: Required value"
            ]
        );
        let errs = validate_object_meta(
            &json!({"name": "n1", "namespace": "x"}),
            false,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }

    #[test]
    fn object_meta_reports_bad_names_labels_and_annotations_with_paths() {
        let meta = json!({
            "name": "Web",
            "namespace": "default",
            "labels": {"app": "-bad", "ok/k": "v"},
            "annotations": {"a b": "x"},
        });
        let errs = validate_object_meta(&meta, true, NameRule::Dns1123Subdomain);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["metadata.name", "metadata.labels", "metadata.annotations"]
        );
        assert!(
            errs[0]
                .to_string()
                .starts_with("metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain")
        );
        assert!(
            errs[1]
                .to_string()
                .starts_with("metadata.labels: Invalid value: \"-bad\": a valid label")
        );
    }

    #[test]
    fn generate_name_only_is_accepted_and_validated() {
        assert!(
            validate_object_meta(
                &json!({"generateName": "web-", "namespace": "d"}),
                true,
                NameRule::Dns1123Subdomain
            )
            .iter()
            .all(|e| e.field == "metadata.name")
        );
        let errs = validate_object_meta(
            &json!({"generateName": "Web-", "name": "web-x", "namespace": "d"}),
            true,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.generateName");
    }

    #[test]
    fn annotations_over_256kib_are_too_long() {
        let mut m = serde_json::Map::new();
        m.insert(
            "big".into(),
            Value::String("x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)),
        );
        let errs = validate_annotations(&m, &FieldPath::new("metadata").child("annotations"));
        assert_eq!(
            errs[0].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn generated_names_use_the_upstream_alphabet_and_fit_63_characters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = generate_name("web-", &mut rng);
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(n[4..].bytes().all(|c| GENERATE_NAME_ALPHABET.contains(&c)));
        let long = generate_name(&"x".repeat(100), &mut rng);
        assert_eq!(long.len(), 63);
        assert!(is_dns1123_subdomain(&long).is_empty());
        // the same seed gives the same name: randomness is injected, not global
        let a = generate_name("a-", &mut rand::rngs::StdRng::seed_from_u64(1));
        let b = generate_name("a-", &mut rand::rngs::StdRng::seed_from_u64(1));
        assert_eq!(a, b);
    }
}
