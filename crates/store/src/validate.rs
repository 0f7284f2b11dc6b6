//! Input checks shared by every backend, run before any I/O so bad input never writes anything.

use crate::{Error, ListOptions, Result};

/// Every key lives under this prefix, as in Kubernetes.
pub const KEY_PREFIX: &str = "/registry/";

/// Largest value accepted: etcd's default request limit, which is also what Kubernetes objects are held to.
pub const MAX_VALUE_SIZE: usize = 1_572_864;

/// A key naming one object: `/registry/<resource>/...` with no empty segment and no trailing slash.
pub(crate) fn key(key: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return invalid("empty key");
    }
    let Some(rest) = key.strip_prefix(KEY_PREFIX) else {
        return invalid("keys must start with /registry/");
    };
    if rest.is_empty() {
        return invalid("the key names no resource");
    }
    if rest.split('/').any(str::is_empty) {
        return invalid("empty path segment or trailing slash");
    }
    if key.chars().any(char::is_control) {
        return invalid("control characters are not allowed");
    }
    Ok(())
}

/// A prefix to list or watch: `/registry/` itself or a valid key followed by `/`. Requiring the trailing slash
/// keeps `/registry/pods` from also matching `/registry/podtemplates`.
pub(crate) fn prefix(prefix: &str) -> Result<()> {
    if prefix == KEY_PREFIX {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some(parent) if !parent.is_empty() => key(parent).map_err(|e| match e {
            Error::InvalidKey { reason, .. } => Error::InvalidKey {
                key: prefix.to_owned(),
                reason,
            },
            other => other,
        }),
        _ => Err(Error::InvalidKey {
            key: prefix.to_owned(),
            reason: "a prefix must end with /",
        }),
    }
}

pub(crate) fn value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_SIZE {
        return Err(Error::ValueTooLarge {
            size: value.len(),
            limit: MAX_VALUE_SIZE,
        });
    }
    Ok(())
}

/// Checks a list request and returns the key the page starts at.
pub(crate) fn list<'a>(prefix_: &'a str, opts: &'a ListOptions) -> Result<&'a str> {
    prefix(prefix_)?;
    match opts.start_key.as_deref() {
        None => Ok(prefix_),
        Some(start) if start.starts_with(prefix_) => Ok(start),
        Some(start) => Err(Error::InvalidKey {
            key: start.to_owned(),
            reason: "the start key is outside the prefix",
        }),
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only reached for an all-0xff prefix, which validation never lets through; "\0" means "to the end" in etcd.
    vec![0]
}

/// The key a continuation starts at: the smallest key after `key`.
pub(crate) fn key_after(key: &str) -> String {
    let mut next = key.to_owned();
    next.push('\0');
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_non_empty_paths_under_registry() {
        assert!(key("/registry/pods/default/web").is_ok());
        assert!(key("/registry/namespaces/default").is_ok());
        for bad in [
            "",
            "/registry/",
            "/registry",
            "pods/x",
            "/other/pods/x",
            "/registry/pods/",
            "/registry//x",
        ] {
            assert!(
                matches!(key(bad), Err(Error::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn prefixes_end_with_a_slash() {
        assert!(prefix("/registry/").is_ok());
        assert!(prefix("/registry/pods/").is_ok());
        assert!(prefix("/registry/pods/default/").is_ok());
        for bad in ["", "/registry", "/registry/pods", "/registry//", "/x/"] {
            assert!(
                matches!(prefix(bad), Err(Error::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn values_up_to_the_limit_are_accepted() {
        assert!(value(&vec![0; MAX_VALUE_SIZE]).is_ok());
        assert_eq!(
            value(&vec![0; MAX_VALUE_SIZE + 1]),
            Err(Error::ValueTooLarge {
                size: MAX_VALUE_SIZE + 1,
                limit: MAX_VALUE_SIZE
            })
        );
    }

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
    }
}
