//! Contexts of a kubeconfig turned into clients, and kube-rs errors turned into messages that say which cluster,
//! which context and which step.
//!
//! The kubeconfig is found as kubectl finds it: `--kubeconfig`, else the files of `$KUBECONFIG` merged, else
//! `~/.kube/config`. Tokens, client certificates, `certificate-authority(-data)` and `insecure-skip-tls-verify` are
//! kube-rs's `Config::from_custom_kubeconfig`; this module only resolves the context first, so that an unknown
//! context is named before anything is touched.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig as File};

use crate::Error;

/// Which side of the federation a cluster is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Host,
    Joining,
    Unjoining,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Joining => "joining",
            Role::Unjoining => "unjoining",
        }
    }
}

/// A parsed kubeconfig and where it came from.
pub struct Kubeconfig {
    file: File,
    source_name: String,
}

/// What a context says about its cluster, before any connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextInfo {
    pub server: String,
    /// The cluster's CA as KubeFedCluster's `caBundle` carries it: base64 of the PEM, as `certificate-authority-data`.
    pub ca_bundle: Option<String>,
    pub insecure: bool,
    pub namespace: Option<String>,
}

impl Kubeconfig {
    /// `explicit` (`--kubeconfig`), else `$KUBECONFIG`, else `~/.kube/config`.
    pub fn load(explicit: Option<&Path>) -> Result<Self, Error> {
        if let Some(path) = explicit {
            return Self::read(path);
        }
        if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let source_name = format!("$KUBECONFIG ({})", value.to_string_lossy());
            return match File::from_env() {
                Ok(Some(file)) => Ok(Self { file, source_name }),
                Ok(None) => Ok(Self {
                    file: File::default(),
                    source_name,
                }),
                Err(e) => Err(Error::Kubeconfig {
                    source_name,
                    message: e.to_string(),
                }),
            };
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| Error::Kubeconfig {
                source_name: "~/.kube/config".into(),
                message: "HOME is not set; pass --kubeconfig".into(),
            })?;
        Self::read(&home.join(".kube/config"))
    }

    fn read(path: &Path) -> Result<Self, Error> {
        let source_name = path.display().to_string();
        let file = File::read_from(path).map_err(|e| Error::Kubeconfig {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        Ok(Self { file, source_name })
    }

    pub fn from_yaml(text: &str, source_name: &str) -> Result<Self, Error> {
        let file = File::from_yaml(text).map_err(|e| Error::Kubeconfig {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        Ok(Self {
            file,
            source_name: source_name.into(),
        })
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    pub fn current_context(&self) -> Option<&str> {
        self.file.current_context.as_deref().filter(|c| !c.is_empty())
    }

    /// `context`, or the current context when none is given (upstream's `--host-cluster-context` default).
    pub fn context_or_current(&self, context: Option<&str>) -> Result<String, Error> {
        match context.filter(|c| !c.is_empty()) {
            Some(c) => Ok(c.to_string()),
            None => self
                .current_context()
                .map(str::to_string)
                .ok_or_else(|| Error::Kubeconfig {
                    source_name: self.source_name.clone(),
                    message: "no --host-cluster-context given and no current-context set".into(),
                }),
        }
    }

    fn known_contexts(&self) -> String {
        let names: Vec<&str> = self.file.contexts.iter().map(|c| c.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// The server, CA and namespace `context` names; an unknown context is an error that names it.
    pub fn context_info(&self, context: &str) -> Result<ContextInfo, Error> {
        let unknown = || Error::UnknownContext {
            context: context.to_string(),
            source_name: self.source_name.clone(),
            known: self.known_contexts(),
        };
        let ctx = self
            .file
            .contexts
            .iter()
            .find(|c| c.name == context)
            .and_then(|c| c.context.as_ref())
            .ok_or_else(unknown)?;
        let bad = |message: String| Error::Kubeconfig {
            source_name: self.source_name.clone(),
            message: format!("context \"{context}\": {message}"),
        };
        let cluster = self
            .file
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .and_then(|c| c.cluster.as_ref())
            .ok_or_else(|| bad(format!("cluster \"{}\" is not defined", ctx.cluster)))?;
        let server = cluster
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("cluster \"{}\" has no server", ctx.cluster)))?;
        let ca_bundle = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) if !data.trim().is_empty() => Some(data.trim().to_string()),
            (_, Some(path)) if !path.is_empty() => {
                let pem =
                    std::fs::read(path).map_err(|e| bad(format!("certificate-authority {path}: {e}")))?;
                Some(STANDARD.encode(pem))
            }
            _ => None,
        };
        Ok(ContextInfo {
            server,
            ca_bundle,
            insecure: cluster.insecure_skip_tls_verify.unwrap_or(false),
            namespace: ctx.namespace.clone().filter(|n| !n.is_empty()),
        })
    }

    /// A client for `context`. Nothing is sent yet.
    pub async fn connect(&self, context: &str, role: Role) -> Result<Cluster, Error> {
        let info = self.context_info(context)?;
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..KubeConfigOptions::default()
        };
        let bad = |message: String| Error::Kubeconfig {
            source_name: self.source_name.clone(),
            message: format!("context \"{context}\": {message}"),
        };
        let mut config = kube::Config::from_custom_kubeconfig(self.file.clone(), &options)
            .await
            .map_err(|e| bad(chain(&e)))?;
        // A CLI should give up on a dead endpoint instead of hanging on it.
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        let client = kube::Client::try_from(config).map_err(|e| bad(chain(&e)))?;
        Ok(Cluster {
            role,
            context: context.to_string(),
            info,
            client,
        })
    }
}

/// A connected cluster and how to describe it in errors.
#[derive(Clone)]
pub struct Cluster {
    pub role: Role,
    pub context: String,
    pub info: ContextInfo,
    pub client: kube::Client,
}

impl Cluster {
    /// Turns a kube-rs error of `action` into one that names this cluster.
    pub fn error(&self, action: impl Into<String>, e: kube::Error) -> Error {
        let action = action.into();
        match e {
            kube::Error::Api(status) => {
                let mut message = if status.reason.is_empty() {
                    status.message.clone()
                } else {
                    format!("{} ({}): {}", status.reason, status.code, status.message)
                };
                if status.code == 403 {
                    message.push_str(
                        " — the credentials of this context lack the rights kubefedctl needs there",
                    );
                }
                Error::Api {
                    role: self.role.as_str(),
                    context: self.context.clone(),
                    action,
                    code: status.code,
                    message,
                }
            }
            other => Error::Unreachable {
                role: self.role.as_str(),
                context: self.context.clone(),
                server: self.info.server.clone(),
                action,
                message: chain(&other),
            },
        }
    }
}

/// An error and its sources on one line: kube-rs wraps the interesting part (connection refused, unknown CA)
/// several levels down.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: fedhost
clusters:
- name: kubernetes
  cluster: {server: "https://10.0.0.1:6443", certificate-authority-data: "Q0EK"}
- name: kubefed-remote-member1
  cluster: {server: "https://10.0.0.2:6443", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: abc}
contexts:
- name: fedhost
  context: {cluster: kubernetes, user: admin}
- name: member1
  context: {cluster: kubefed-remote-member1, user: admin, namespace: default}
- name: broken
  context: {cluster: nowhere, user: admin}
"#;

    #[test]
    fn contexts_resolve_to_their_server_and_ca_and_unknown_ones_are_named() {
        let kc = Kubeconfig::from_yaml(CONFIG, "test.conf").unwrap();
        assert_eq!(kc.context_or_current(None).unwrap(), "fedhost");
        assert_eq!(kc.context_or_current(Some("member1")).unwrap(), "member1");
        let host = kc.context_info("fedhost").unwrap();
        assert_eq!(host.server, "https://10.0.0.1:6443");
        assert_eq!(host.ca_bundle.as_deref(), Some("Q0EK"));
        assert!(!host.insecure);
        let member = kc.context_info("member1").unwrap();
        assert!(member.insecure && member.ca_bundle.is_none());
        assert_eq!(member.namespace.as_deref(), Some("default"));
        let err = kc.context_info("ghost").unwrap_err().to_string();
        assert!(
            err.contains("\"ghost\"") && err.contains("fedhost, member1, broken"),
            "{err}"
        );
        let err = kc.context_info("broken").unwrap_err().to_string();
        assert!(err.contains("cluster \"nowhere\" is not defined"), "{err}");
    }

    #[test]
    fn a_certificate_authority_file_becomes_a_base64_bundle() {
        let dir = std::env::temp_dir().join(format!("kubefedctl-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, "PEM\n").unwrap();
        let text = CONFIG.replace(
            "certificate-authority-data: \"Q0EK\"",
            &format!("certificate-authority: {}", ca.display()),
        );
        let kc = Kubeconfig::from_yaml(&text, "test.conf").unwrap();
        assert_eq!(
            kc.context_info("fedhost").unwrap().ca_bundle.as_deref(),
            Some("UEVNCg==")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
