//! Content negotiation: which representation the client accepts (`Accept`) and how its body is encoded
//! (`Content-Type`). The server answers in JSON (protobuf-preferring clients also accept JSON and get it) and
//! reads JSON, YAML and protobuf bodies.

use api::ApiError;
use http::HeaderMap;
use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

/// What the response should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `meta.k8s.io/v1` (or v1beta1) `Table`.
    Table {
        beta: bool,
    },
}

struct MediaRange<'a> {
    essence: String,
    params: Vec<(&'a str, &'a str)>,
}

fn media_ranges(accept: &str) -> Vec<MediaRange<'_>> {
    accept
        .split(',')
        .map(|part| {
            let mut it = part.split(';');
            let essence = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let params = it
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            MediaRange { essence, params }
        })
        .collect()
}

fn json_compatible(essence: &str) -> bool {
    matches!(essence, "" | "*/*" | "application/*" | "application/json")
}

fn param<'a>(m: &MediaRange<'a>, key: &str) -> Option<&'a str> {
    m.params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

/// Chooses the representation of an object or list response.
pub fn output(headers: &HeaderMap) -> Result<Output, ApiError> {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Output::Json);
    }
    for m in media_ranges(accept) {
        if m.essence == "application/json" && param(&m, "as") == Some("Table") {
            if param(&m, "g") == Some("meta.k8s.io") {
                match param(&m, "v") {
                    Some("v1") => return Ok(Output::Table { beta: false }),
                    Some("v1beta1") => return Ok(Output::Table { beta: true }),
                    _ => {}
                }
            }
            continue;
        }
        if json_compatible(&m.essence) && param(&m, "as").is_none() {
            return Ok(Output::Json);
        }
    }
    Err(ApiError::NotAcceptable {
        accepted: vec!["application/json".into(), "application/yaml".into()],
    })
}

/// Which aggregated-discovery version the client asked for, if any (`v2` or `v2beta1`).
pub fn aggregated_discovery(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok())?;
    for m in media_ranges(accept) {
        if m.essence == "application/json"
            && param(&m, "g") == Some("apidiscovery.k8s.io")
            && param(&m, "as") == Some("APIGroupDiscoveryList")
        {
            match param(&m, "v") {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
        if json_compatible(&m.essence) && param(&m, "as").is_none() {
            return None;
        }
    }
    None
}

/// Decodes a request body as JSON or YAML according to its `Content-Type`.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let value: Value = match essence.as_str() {
        "application/yaml" | "application/apply-patch+yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?,
        "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json"
        | ""
        | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        crate::protobuf::CONTENT_TYPE => crate::protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("unable to decode protobuf request body: {e}")))?,
        _ => {
            return Err(ApiError::UnsupportedMediaType {
                accepted: vec![
                    "application/json".into(),
                    "application/yaml".into(),
                    crate::protobuf::CONTENT_TYPE.into(),
                ],
            });
        }
    };
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(output(&h).ok(), Some(Output::Table { beta: false }));
    }

    #[test]
    fn protobuf_clients_that_accept_anything_get_json_and_protobuf_only_is_not_acceptable() {
        assert_eq!(
            output(&accept("application/vnd.kubernetes.protobuf, */*")).ok(),
            Some(Output::Json)
        );
        assert!(output(&accept("application/vnd.kubernetes.protobuf")).is_err());
    }

    #[test]
    fn kubectl_1_33_discovery_asks_for_aggregated_v2() {
        let h = accept(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
        );
        assert_eq!(aggregated_discovery(&h), Some("v2"));
        assert_eq!(aggregated_discovery(&accept("application/json, */*")), None);
    }
}
