//! kubeconfig files (`apiVersion: v1, kind: Config`) with the field names kubectl writes, credentials embedded as
//! base64 `*-data` fields the way kubeadm writes `admin.conf` and friends.

use crate::{Certificate, Error, KeyPair, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default = "v1")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub current_context: String,
    #[serde(default = "config_kind")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub preferences: serde_yaml::Mapping,
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedUser>,
}

/// kubectl and kubeadm write `contexts: null` / `users: null` (the cluster-info kubeconfig has no users).
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn v1() -> String {
    "v1".into()
}

fn config_kind() -> String {
    "Config".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub cluster: Cluster,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedContext {
    pub context: Context,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedUser {
    pub name: String,
    pub user: User,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Kubeconfig {
    fn single(cluster_name: &str, cluster: Cluster, user_name: &str, user: User) -> Kubeconfig {
        let context_name = format!("{user_name}@{cluster_name}");
        Kubeconfig {
            api_version: v1(),
            clusters: vec![NamedCluster {
                cluster,
                name: cluster_name.into(),
            }],
            contexts: vec![NamedContext {
                context: Context {
                    cluster: cluster_name.into(),
                    namespace: None,
                    user: user_name.into(),
                },
                name: context_name.clone(),
            }],
            current_context: context_name,
            kind: config_kind(),
            preferences: Default::default(),
            users: vec![NamedUser {
                name: user_name.into(),
                user,
            }],
        }
    }

    /// A kubeconfig with an embedded client certificate, as kubeadm writes `admin.conf` (context
    /// `<user>@<cluster>`).
    pub fn for_client_cert(
        cluster_name: &str,
        server: &str,
        ca: &Certificate,
        user_name: &str,
        cert: &Certificate,
        key: &KeyPair,
    ) -> Result<Kubeconfig> {
        let cluster = Cluster {
            certificate_authority_data: Some(STANDARD.encode(ca.pem())),
            server: server.into(),
            ..Default::default()
        };
        let user = User {
            client_certificate_data: Some(STANDARD.encode(cert.pem())),
            client_key_data: Some(STANDARD.encode(key.to_pem()?)),
            ..Default::default()
        };
        Ok(Self::single(cluster_name, cluster, user_name, user))
    }

    /// A kubeconfig authenticating with a bearer token (bootstrap kubeconfig, federation members).
    pub fn for_token(
        cluster_name: &str,
        server: &str,
        ca: &Certificate,
        user_name: &str,
        token: &str,
    ) -> Kubeconfig {
        let cluster = Cluster {
            certificate_authority_data: Some(STANDARD.encode(ca.pem())),
            server: server.into(),
            ..Default::default()
        };
        Self::single(
            cluster_name,
            cluster,
            user_name,
            User {
                token: Some(token.into()),
                ..Default::default()
            },
        )
    }

    pub fn to_yaml(&self) -> Result<String> {
        serde_yaml::to_string(self).map_err(|e| Error::BadKubeconfig(e.to_string()))
    }

    pub fn from_yaml(text: &str) -> Result<Kubeconfig> {
        serde_yaml::from_str(text).map_err(|e| Error::BadKubeconfig(e.to_string()))
    }

    pub fn read(path: &Path) -> Result<Kubeconfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| e.in_file(path))
    }

    /// Writes the file 0600: it holds credentials.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::write_private(path, self.to_yaml()?.as_bytes())
    }

    fn current(&self) -> Result<(&Cluster, &User)> {
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| Error::BadKubeconfig(format!("no context named {:?}", self.current_context)))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)
            .ok_or_else(|| Error::BadKubeconfig(format!("no cluster named {:?}", context.context.cluster)))?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == context.context.user)
            .ok_or_else(|| Error::BadKubeconfig(format!("no user named {:?}", context.context.user)))?;
        Ok((&cluster.cluster, &user.user))
    }

    /// The current context's cluster; without contexts (the cluster-info kubeconfig) its only cluster.
    fn current_cluster(&self) -> Result<&Cluster> {
        if self.current_context.is_empty() && self.contexts.is_empty() {
            return self
                .clusters
                .first()
                .map(|c| &c.cluster)
                .ok_or_else(|| Error::BadKubeconfig("no clusters".into()));
        }
        Ok(self.current()?.0)
    }

    /// The API server URL of the current context.
    pub fn server(&self) -> Result<&str> {
        Ok(&self.current_cluster()?.server)
    }

    /// The embedded CA certificate of the current context's cluster.
    pub fn ca_certificate(&self) -> Result<Certificate> {
        let data = self
            .current_cluster()?
            .certificate_authority_data
            .as_deref()
            .ok_or_else(|| {
                Error::BadKubeconfig("the current cluster has no certificate-authority-data".into())
            })?;
        Certificate::from_pem(&decode(data)?)
    }

    /// The embedded client certificate of the current context's user.
    pub fn client_certificate(&self) -> Result<Certificate> {
        let data = self
            .current()?
            .1
            .client_certificate_data
            .as_deref()
            .ok_or_else(|| Error::BadKubeconfig("the current user has no client-certificate-data".into()))?;
        Certificate::from_pem(&decode(data)?)
    }

    /// Replaces the current user's embedded client certificate and key (certificate renewal).
    pub fn set_client_credentials(&mut self, cert: &Certificate, key: &KeyPair) -> Result<()> {
        let user_name = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .map(|c| c.context.user.clone())
            .ok_or_else(|| Error::BadKubeconfig(format!("no context named {:?}", self.current_context)))?;
        let user = self
            .users
            .iter_mut()
            .find(|u| u.name == user_name)
            .ok_or_else(|| Error::BadKubeconfig(format!("no user named {user_name:?}")))?;
        user.user.client_certificate_data = Some(STANDARD.encode(cert.pem()));
        user.user.client_key_data = Some(STANDARD.encode(key.to_pem()?));
        Ok(())
    }
}

fn decode(data: &str) -> Result<String> {
    let bytes = STANDARD
        .decode(data.trim())
        .map_err(|e| Error::BadKubeconfig(format!("bad base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| Error::BadKubeconfig("embedded PEM is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CA_VALIDITY, CertSpec, CertificateAuthority, KeyAlgorithm, LEAF_VALIDITY, Usage};
    use std::time::SystemTime;

    #[test]
    fn null_lists_as_in_the_cluster_info_kubeconfig_read_as_empty() {
        let text = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: \"\"\n\
                    contexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n";
        let config = Kubeconfig::from_yaml(text).unwrap();
        assert!(config.contexts.is_empty() && config.users.is_empty());
        assert_eq!(config.server().unwrap(), "https://10.0.0.1:6443");
    }

    #[test]
    fn a_client_cert_kubeconfig_has_kubectls_shape_and_reads_back() {
        let now = SystemTime::now();
        let ca_key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = CertificateAuthority::self_signed("kubernetes", ca_key, CA_VALIDITY, now).unwrap();
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let spec = CertSpec {
            common_name: "kubernetes-admin".into(),
            organizations: vec!["kubeadm:cluster-admins".into()],
            usages: vec![Usage::ClientAuth],
            validity: LEAF_VALIDITY,
            ..Default::default()
        };
        let cert = ca.issue(&spec, &key, now).unwrap();
        let config = Kubeconfig::for_client_cert(
            "kubernetes",
            "https://10.0.0.1:6443",
            ca.certificate(),
            "kubernetes-admin",
            &cert,
            &key,
        )
        .unwrap();
        let yaml = config.to_yaml().unwrap();
        for needle in [
            "apiVersion: v1",
            "kind: Config",
            "current-context: kubernetes-admin@kubernetes",
            "certificate-authority-data:",
            "client-certificate-data:",
            "client-key-data:",
            "server: https://10.0.0.1:6443",
            "preferences: {}",
        ] {
            assert!(yaml.contains(needle), "{needle} missing in\n{yaml}");
        }
        let back = Kubeconfig::from_yaml(&yaml).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.server().unwrap(), "https://10.0.0.1:6443");
        assert_eq!(back.ca_certificate().unwrap(), *ca.certificate());
        assert_eq!(back.client_certificate().unwrap(), cert);
    }
}
