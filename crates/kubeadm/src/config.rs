//! kubeadm's configuration API: `kubeadm.k8s.io/v1beta1` to `v1beta4` `InitConfiguration`, `ClusterConfiguration`
//! and `JoinConfiguration` in multi-document YAML, merged with command-line flags and defaulted into one
//! resolved [`InitConfig`] the phases work from.
//!
//! Versions differ in small ways (v1beta4 writes `extraArgs` as a list of `{name, value}`, older ones as a map;
//! `certificateKey` appeared in v1beta2); the document structs accept the union and the resolver normalises.
//! Fields this implementation does not know are reported as warnings, as kubeadm's non-strict decoding does.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const KUBEADM_GROUP: &str = "kubeadm.k8s.io";
pub const SUPPORTED_VERSIONS: &[&str] = &["v1beta1", "v1beta2", "v1beta3", "v1beta4"];
/// The Kubernetes version bulwark's components speak; `stable`, `latest` and friends resolve to it.
pub const KUBERNETES_VERSION: &str = "v1.33.0";
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/12";
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";
pub const DEFAULT_CERT_DIR: &str = "/etc/kubernetes/pki";
pub const DEFAULT_BIND_PORT: u16 = 6443;
pub const DEFAULT_CLUSTER_NAME: &str = "kubernetes";
pub const DEFAULT_ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

/// Flags kubeadm accepts together with `--config`; any other configuration flag next to `--config` is refused.
const ALLOWED_WITH_CONFIG: &[&str] = &[
    "config",
    "ignore-preflight-errors",
    "dry-run",
    "kubeconfig",
    "node-name",
    "kubeconfig-dir",
    "upload-certs",
    "feature-gates",
    "print-join-command",
    "patches",
    "rootfs",
    "v",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unable to read config from {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: line {line}, column {column}: {message}")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: document {doc}: {message}")]
    Document {
        file: String,
        doc: usize,
        message: String,
    },
    #[error("{file}: no InitConfiguration, ClusterConfiguration or JoinConfiguration found")]
    Empty { file: String },
    #[error("{}", invalid_message(.errors))]
    Invalid { errors: Vec<FieldError> },
    #[error("can not mix '--config' with arguments {}", format_flag_list(.0))]
    MixedArgs(Vec<String>),
}

fn format_flag_list(flags: &[String]) -> String {
    format!("[{}]", flags.join(" "))
}

fn invalid_message(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One validation failure, phrased like Kubernetes' field errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: Invalid value: {value:?}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub reason: String,
}

fn field_error(field: &str, value: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Documents as written in files.

/// `extraArgs` as a map (v1beta1-3) or a list of `{name, value}` (v1beta4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
enum ArgsDoc {
    #[default]
    None,
    Map(BTreeMap<String, String>),
    List(Vec<ArgDoc>),
}

#[derive(Debug, Clone, Deserialize)]
struct ArgDoc {
    name: String,
    #[serde(default)]
    value: String,
}

impl ArgsDoc {
    fn into_args(self) -> Vec<(String, String)> {
        match self {
            ArgsDoc::None => Vec::new(),
            ArgsDoc::Map(m) => m.into_iter().collect(),
            ArgsDoc::List(l) => l.into_iter().map(|a| (a.name, a.value)).collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ClusterConfigurationDoc {
    api_version: String,
    kind: String,
    etcd: EtcdDoc,
    networking: NetworkingDoc,
    kubernetes_version: Option<String>,
    control_plane_endpoint: Option<String>,
    api_server: ComponentDoc,
    controller_manager: ComponentDoc,
    scheduler: ComponentDoc,
    dns: serde_yaml::Value,
    certificates_dir: Option<String>,
    image_repository: Option<String>,
    cluster_name: Option<String>,
    encryption_algorithm: Option<String>,
    feature_gates: BTreeMap<String, bool>,
    use_hyper_kube_image: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct EtcdDoc {
    local: Option<LocalEtcdDoc>,
    external: Option<ExternalEtcdDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LocalEtcdDoc {
    image_repository: Option<String>,
    image_tag: Option<String>,
    data_dir: Option<String>,
    extra_args: ArgsDoc,
    extra_envs: serde_yaml::Value,
    #[serde(rename = "serverCertSANs")]
    server_cert_sans: Vec<String>,
    #[serde(rename = "peerCertSANs")]
    peer_cert_sans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ExternalEtcdDoc {
    endpoints: Vec<String>,
    ca_file: String,
    cert_file: String,
    key_file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NetworkingDoc {
    service_subnet: Option<String>,
    pod_subnet: Option<String>,
    dns_domain: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ComponentDoc {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
    extra_args: ArgsDoc,
    extra_volumes: serde_yaml::Value,
    extra_envs: serde_yaml::Value,
    timeout_for_control_plane: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct InitConfigurationDoc {
    api_version: String,
    kind: String,
    bootstrap_tokens: Vec<BootstrapTokenDoc>,
    node_registration: NodeRegistrationDoc,
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: ApiEndpointDoc,
    certificate_key: Option<String>,
    skip_phases: Vec<String>,
    patches: PatchesDoc,
    timeouts: serde_yaml::Value,
    dry_run: Option<bool>,
}

/// `patches` (v1beta3+): the directory of per-node patches (see [`crate::patches`]).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PatchesDoc {
    directory: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BootstrapTokenDoc {
    token: Option<String>,
    description: Option<String>,
    ttl: Option<String>,
    expires: Option<String>,
    usages: Option<Vec<String>>,
    groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NodeRegistrationDoc {
    name: Option<String>,
    cri_socket: Option<String>,
    taints: Option<Vec<TaintDoc>>,
    kubelet_extra_args: ArgsDoc,
    ignore_preflight_errors: Vec<String>,
    image_pull_policy: Option<String>,
    image_pull_serial: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TaintDoc {
    key: String,
    value: Option<String>,
    effect: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ApiEndpointDoc {
    advertise_address: Option<String>,
    bind_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct JoinConfigurationDoc {
    api_version: String,
    kind: String,
    ca_cert_path: Option<String>,
    discovery: DiscoveryDoc,
    node_registration: NodeRegistrationDoc,
    control_plane: Option<JoinControlPlaneDoc>,
    skip_phases: Vec<String>,
    patches: PatchesDoc,
    timeouts: serde_yaml::Value,
    dry_run: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DiscoveryDoc {
    bootstrap_token: Option<BootstrapTokenDiscoveryDoc>,
    file: Option<FileDiscoveryDoc>,
    tls_bootstrap_token: Option<String>,
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BootstrapTokenDiscoveryDoc {
    token: Option<String>,
    api_server_endpoint: Option<String>,
    ca_cert_hashes: Vec<String>,
    unsafe_skip_ca_verification: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct FileDiscoveryDoc {
    kube_config_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct JoinControlPlaneDoc {
    #[serde(rename = "localAPIEndpoint")]
    local_api_endpoint: ApiEndpointDoc,
    certificate_key: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Resolved configuration.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Etcd {
    Local(LocalEtcd),
    External(ExternalEtcd),
    /// bulwark's single-node mode: the API server keeps the cluster in its embedded SQLite store
    /// (`apiServer.extraArgs: storage-backend: sqlite`), so there is no etcd to run, certify or join.
    Embedded,
}

/// The `kube-apiserver --storage-backend` value that selects bulwark's embedded store (upstream knows `etcd3`).
pub const EMBEDDED_STORAGE_BACKEND: &str = "sqlite";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalEtcd {
    pub data_dir: String,
    pub extra_args: Vec<(String, String)>,
    pub server_cert_sans: Vec<String>,
    pub peer_cert_sans: Vec<String>,
    pub image_repository: Option<String>,
    pub image_tag: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub kubernetes_version: String,
    pub control_plane_endpoint: Option<String>,
    pub cluster_name: String,
    pub certificates_dir: String,
    pub service_subnet: String,
    pub pod_subnet: Option<String>,
    pub dns_domain: String,
    pub api_server_cert_sans: Vec<String>,
    pub api_server_extra_args: Vec<(String, String)>,
    pub controller_manager_extra_args: Vec<(String, String)>,
    pub scheduler_extra_args: Vec<(String, String)>,
    pub image_repository: String,
    pub etcd: Etcd,
    pub encryption_algorithm: pki::KeyAlgorithm,
    pub feature_gates: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapTokenConfig {
    /// `None` means "generate one".
    pub token: Option<String>,
    pub description: Option<String>,
    pub ttl_secs: u64,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

impl Default for BootstrapTokenConfig {
    fn default() -> Self {
        BootstrapTokenConfig {
            token: None,
            description: None,
            ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            usages: vec!["signing".into(), "authentication".into()],
            groups: vec!["system:bootstrappers:kubeadm:default-node-token".into()],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    pub cri_socket: Option<String>,
    pub taints: Vec<Taint>,
    pub kubelet_extra_args: Vec<(String, String)>,
    pub ignore_preflight_errors: Vec<String>,
    pub certificate_key: Option<String>,
    pub skip_phases: Vec<String>,
    pub bootstrap_tokens: Vec<BootstrapTokenConfig>,
    /// `--patches` / `patches.directory`: per-node patches of the manifests and the kubelet configuration.
    pub patches_dir: Option<PathBuf>,
}

/// Everything `kubeadm init` and its phases need, resolved and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitConfig {
    pub cluster: ClusterConfig,
    pub node: NodeConfig,
    /// Non-fatal findings (unknown fields), printed by the CLI.
    pub warnings: Vec<String>,
}

/// The configuration flags of `kubeadm init` and its phases; `None` means the flag was not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitFlags {
    pub apiserver_advertise_address: Option<String>,
    pub apiserver_bind_port: Option<u16>,
    pub apiserver_cert_extra_sans: Option<Vec<String>>,
    pub cert_dir: Option<String>,
    pub control_plane_endpoint: Option<String>,
    pub service_cidr: Option<String>,
    pub pod_network_cidr: Option<String>,
    pub service_dns_domain: Option<String>,
    pub kubernetes_version: Option<String>,
    pub node_name: Option<String>,
    pub certificate_key: Option<String>,
    pub token: Option<String>,
    pub token_ttl_secs: Option<u64>,
    pub cri_socket: Option<String>,
    pub image_repository: Option<String>,
    pub skip_phases: Option<Vec<String>>,
    pub ignore_preflight_errors: Option<Vec<String>>,
    pub patches: Option<PathBuf>,
}

impl InitFlags {
    /// Names of the given flags that may not be combined with `--config`.
    fn conflicting_with_config(&self) -> Vec<String> {
        let given = [
            (
                "apiserver-advertise-address",
                self.apiserver_advertise_address.is_some(),
            ),
            ("apiserver-bind-port", self.apiserver_bind_port.is_some()),
            (
                "apiserver-cert-extra-sans",
                self.apiserver_cert_extra_sans.is_some(),
            ),
            ("cert-dir", self.cert_dir.is_some()),
            ("control-plane-endpoint", self.control_plane_endpoint.is_some()),
            ("service-cidr", self.service_cidr.is_some()),
            ("pod-network-cidr", self.pod_network_cidr.is_some()),
            ("service-dns-domain", self.service_dns_domain.is_some()),
            ("kubernetes-version", self.kubernetes_version.is_some()),
            ("node-name", self.node_name.is_some()),
            ("certificate-key", self.certificate_key.is_some()),
            ("token", self.token.is_some()),
            ("token-ttl", self.token_ttl_secs.is_some()),
            ("cri-socket", self.cri_socket.is_some()),
            ("image-repository", self.image_repository.is_some()),
            ("ignore-preflight-errors", self.ignore_preflight_errors.is_some()),
        ];
        given
            .into_iter()
            .filter(|(name, set)| *set && !ALLOWED_WITH_CONFIG.contains(name) && !name.starts_with("skip-"))
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

/// Facts about the host that defaults depend on; injected so tests do not depend on the machine.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub hostname: String,
    /// The address of the interface holding the default route, if any.
    pub default_address: Option<IpAddr>,
}

impl HostFacts {
    /// Reads the real host: its hostname and the source address the kernel would pick for the default route.
    pub fn detect() -> HostFacts {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_else(|_| "localhost".into());
        // Connecting a UDP socket sends nothing; it only asks the routing table which source address it would use.
        let default_address = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:9").and_then(|_| s.local_addr()))
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified() && !ip.is_loopback());
        HostFacts {
            hostname,
            default_address,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Loading.

#[derive(Default)]
struct Documents {
    init: Option<InitConfigurationDoc>,
    cluster: Option<ClusterConfigurationDoc>,
    join: Option<JoinConfigurationDoc>,
    warnings: Vec<String>,
}

fn yaml_error(file: &str, err: serde_yaml::Error) -> ConfigError {
    let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
    let mut message = err.to_string();
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    ConfigError::Yaml {
        file: file.into(),
        line,
        column,
        message,
    }
}

fn parse_documents(file: &str, text: &str) -> Result<Documents, ConfigError> {
    let mut docs = Documents::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc_no = index + 1;
        let value = serde_yaml::Value::deserialize(document).map_err(|e| yaml_error(file, e))?;
        if value.is_null() {
            continue;
        }
        let get = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind) = (get("apiVersion"), get("kind"));
        if api_version.is_empty() || kind.is_empty() {
            return Err(ConfigError::Document {
                file: file.into(),
                doc: doc_no,
                message: "'apiVersion' and 'kind' are required".into(),
            });
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
        if group != KUBEADM_GROUP {
            // KubeletConfiguration, KubeProxyConfiguration and the like belong to other components.
            if !matches!(group, "kubelet.config.k8s.io" | "kubeproxy.config.k8s.io") {
                docs.warnings.push(format!(
                    "{file}: document {doc_no}: ignoring unknown kind {kind:?} ({api_version})"
                ));
            }
            continue;
        }
        if !SUPPORTED_VERSIONS.contains(&version) {
            return Err(ConfigError::Document {
                file: file.into(),
                doc: doc_no,
                message: format!(
                    "unknown apiVersion {api_version:?}; supported: {}",
                    SUPPORTED_VERSIONS
                        .iter()
                        .map(|v| format!("{KUBEADM_GROUP}/{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let mut ignored = Vec::new();
        let decode_err = |e: serde_yaml::Error| ConfigError::Document {
            file: file.into(),
            doc: doc_no,
            message: format!("{kind}: {e}"),
        };
        macro_rules! decode {
            ($slot:expr) => {{
                if $slot.is_some() {
                    return Err(ConfigError::Document {
                        file: file.into(),
                        doc: doc_no,
                        message: format!("{kind} appears more than once"),
                    });
                }
                $slot = Some(
                    serde_ignored::deserialize(value.clone(), |p| ignored.push(p.to_string()))
                        .map_err(decode_err)?,
                );
            }};
        }
        match kind.as_str() {
            "InitConfiguration" => decode!(docs.init),
            "ClusterConfiguration" => decode!(docs.cluster),
            "JoinConfiguration" => decode!(docs.join),
            "ResetConfiguration" | "UpgradeConfiguration" => {}
            other => {
                return Err(ConfigError::Document {
                    file: file.into(),
                    doc: doc_no,
                    message: format!(
                        "unknown kind {other:?} for {api_version}; expected InitConfiguration, ClusterConfiguration or JoinConfiguration"
                    ),
                });
            }
        }
        for path in ignored {
            docs.warnings
                .push(format!("{file}: {kind}: unknown field {path:?}"));
        }
    }
    Ok(docs)
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })
}

/// Reads `--config` (if given), merges `flags`, applies kubeadm's defaults and validates.
pub fn load_init(
    config: Option<&Path>,
    flags: &InitFlags,
    host: &HostFacts,
) -> Result<InitConfig, ConfigError> {
    match config {
        Some(path) => {
            let conflicts = flags.conflicting_with_config();
            if !conflicts.is_empty() {
                return Err(ConfigError::MixedArgs(conflicts));
            }
            parse_init(&path.display().to_string(), &read_file(path)?, flags, host)
        }
        None => resolve(Documents::default(), flags, host),
    }
}

/// Parses the text of a configuration file named `file` (for messages) and resolves it with `flags`.
pub fn parse_init(
    file: &str,
    text: &str,
    flags: &InitFlags,
    host: &HostFacts,
) -> Result<InitConfig, ConfigError> {
    let docs = parse_documents(file, text)?;
    if docs.init.is_none() && docs.cluster.is_none() && docs.join.is_none() {
        return Err(ConfigError::Empty { file: file.into() });
    }
    resolve(docs, flags, host)
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn resolve(docs: Documents, flags: &InitFlags, host: &HostFacts) -> Result<InitConfig, ConfigError> {
    let init = docs.init.unwrap_or_default();
    let cluster = docs.cluster.unwrap_or_default();
    let mut errors = Vec::new();

    let kubernetes_version = match non_empty(flags.kubernetes_version.clone().or(cluster.kubernetes_version))
    {
        None => KUBERNETES_VERSION.to_string(),
        Some(v) if v.starts_with("stable") || v.starts_with("latest") || v.starts_with("ci/") => {
            KUBERNETES_VERSION.to_string()
        }
        Some(v) => {
            let normal = if v.starts_with('v') {
                v.clone()
            } else {
                format!("v{v}")
            };
            if !is_version(&normal) {
                errors.push(field_error(
                    "ClusterConfiguration.kubernetesVersion",
                    v,
                    "not a Kubernetes version",
                ));
            }
            normal
        }
    };

    let etcd = match (cluster.etcd.local, cluster.etcd.external) {
        (Some(_), Some(_)) => {
            errors.push(field_error(
                "ClusterConfiguration.etcd",
                "local and external",
                "etcd.local and etcd.external are mutually exclusive",
            ));
            Etcd::Local(LocalEtcd::default())
        }
        (_, Some(ext)) => {
            validate_external_etcd(&ext, &mut errors);
            Etcd::External(ExternalEtcd {
                endpoints: ext.endpoints,
                ca_file: ext.ca_file,
                cert_file: ext.cert_file,
                key_file: ext.key_file,
            })
        }
        (local, None) => {
            let local = local.unwrap_or_default();
            for (i, san) in local.server_cert_sans.iter().enumerate() {
                validate_san(
                    &format!("ClusterConfiguration.etcd.local.serverCertSANs[{i}]"),
                    san,
                    &mut errors,
                );
            }
            for (i, san) in local.peer_cert_sans.iter().enumerate() {
                validate_san(
                    &format!("ClusterConfiguration.etcd.local.peerCertSANs[{i}]"),
                    san,
                    &mut errors,
                );
            }
            Etcd::Local(LocalEtcd {
                data_dir: non_empty(local.data_dir).unwrap_or_else(|| DEFAULT_ETCD_DATA_DIR.into()),
                extra_args: local.extra_args.into_args(),
                server_cert_sans: local.server_cert_sans,
                peer_cert_sans: local.peer_cert_sans,
                image_repository: local.image_repository,
                image_tag: local.image_tag,
            })
        }
    };

    let embedded = cluster
        .api_server
        .extra_args
        .clone()
        .into_args()
        .iter()
        .rev()
        .find(|(k, _)| k == "storage-backend")
        .is_some_and(|(_, v)| v == EMBEDDED_STORAGE_BACKEND);
    let etcd = match etcd {
        Etcd::External(_) if embedded => {
            errors.push(field_error(
                "ClusterConfiguration.apiServer.extraArgs.storage-backend",
                EMBEDDED_STORAGE_BACKEND,
                "the embedded store and etcd.external are mutually exclusive",
            ));
            etcd
        }
        _ if embedded => Etcd::Embedded,
        etcd => etcd,
    };

    let service_subnet = non_empty(flags.service_cidr.clone().or(cluster.networking.service_subnet))
        .unwrap_or_else(|| DEFAULT_SERVICE_SUBNET.into());
    for (i, subnet) in service_subnet.split(',').enumerate() {
        if parse_cidr(subnet).is_none() {
            errors.push(field_error(
                &format!("ClusterConfiguration.networking.serviceSubnet[{i}]"),
                subnet,
                "couldn't parse subnet",
            ));
        }
    }
    let pod_subnet = non_empty(flags.pod_network_cidr.clone().or(cluster.networking.pod_subnet));
    if let Some(pods) = &pod_subnet {
        for (i, subnet) in pods.split(',').enumerate() {
            if parse_cidr(subnet).is_none() {
                errors.push(field_error(
                    &format!("ClusterConfiguration.networking.podSubnet[{i}]"),
                    subnet,
                    "couldn't parse subnet",
                ));
            }
        }
    }
    let dns_domain = non_empty(flags.service_dns_domain.clone().or(cluster.networking.dns_domain))
        .unwrap_or_else(|| DEFAULT_DNS_DOMAIN.into());
    if !pki::cert::is_dns_name(&dns_domain) {
        errors.push(field_error(
            "ClusterConfiguration.networking.dnsDomain",
            &dns_domain,
            "not a DNS domain",
        ));
    }

    let control_plane_endpoint = non_empty(
        flags
            .control_plane_endpoint
            .clone()
            .or(cluster.control_plane_endpoint),
    );
    if let Some(cpe) = &control_plane_endpoint
        && let Err(reason) = split_host_port(cpe)
    {
        errors.push(field_error(
            "ClusterConfiguration.controlPlaneEndpoint",
            cpe,
            reason,
        ));
    }

    let mut api_server_cert_sans = cluster.api_server.cert_sans;
    if let Some(extra) = &flags.apiserver_cert_extra_sans {
        api_server_cert_sans.extend(
            extra
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    for (i, san) in api_server_cert_sans.iter().enumerate() {
        validate_san(
            &format!("ClusterConfiguration.apiServer.certSANs[{i}]"),
            san,
            &mut errors,
        );
    }

    let encryption_algorithm = match cluster.encryption_algorithm.as_deref() {
        None => pki::KeyAlgorithm::default(),
        Some(alg) => pki::KeyAlgorithm::parse(alg).unwrap_or_else(|| {
            errors.push(field_error(
                "ClusterConfiguration.encryptionAlgorithm",
                alg,
                "supported values: RSA-2048, RSA-3072, RSA-4096, ECDSA-P256",
            ));
            pki::KeyAlgorithm::default()
        }),
    };

    let certificates_dir = non_empty(flags.cert_dir.clone().or(cluster.certificates_dir))
        .unwrap_or_else(|| DEFAULT_CERT_DIR.into());
    if !certificates_dir.starts_with('/') {
        errors.push(field_error(
            "ClusterConfiguration.certificatesDir",
            &certificates_dir,
            "must be an absolute path",
        ));
    }

    let name =
        non_empty(flags.node_name.clone().or(init.node_registration.name)).unwrap_or(host.hostname.clone());
    if !pki::cert::is_dns_name(&name) || name.contains('*') {
        errors.push(field_error(
            "InitConfiguration.nodeRegistration.name",
            &name,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
        ));
    }

    let advertise_address = match non_empty(flags.apiserver_advertise_address.clone())
        .or(non_empty(init.local_api_endpoint.advertise_address))
    {
        Some(addr) => match addr.parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => ip,
            _ => {
                errors.push(field_error(
                    "InitConfiguration.localAPIEndpoint.advertiseAddress",
                    &addr,
                    "must be a valid, non-wildcard IP address",
                ));
                IpAddr::from([127, 0, 0, 1])
            }
        },
        None => match host.default_address {
            Some(ip) => ip,
            None => {
                errors.push(field_error(
                    "InitConfiguration.localAPIEndpoint.advertiseAddress",
                    "",
                    "no default route to choose an address from; set --apiserver-advertise-address",
                ));
                IpAddr::from([127, 0, 0, 1])
            }
        },
    };
    let bind_port = flags
        .apiserver_bind_port
        .or(init.local_api_endpoint.bind_port)
        .unwrap_or(DEFAULT_BIND_PORT);
    if bind_port == 0 {
        errors.push(field_error(
            "InitConfiguration.localAPIEndpoint.bindPort",
            "0",
            "must be between 1 and 65535",
        ));
    }

    let certificate_key = non_empty(flags.certificate_key.clone().or(init.certificate_key));
    if let Some(key) = &certificate_key
        && let Err(e) = pki::CertificateKey::parse(key)
    {
        errors.push(field_error(
            "InitConfiguration.certificateKey",
            "<redacted>",
            e.to_string(),
        ));
    }

    let mut bootstrap_tokens = Vec::new();
    for (i, doc) in init.bootstrap_tokens.into_iter().enumerate() {
        let mut token = BootstrapTokenConfig::default();
        if let Some(t) = non_empty(doc.token) {
            if let Err(e) = pki::BootstrapToken::parse(&t) {
                errors.push(field_error(
                    &format!("InitConfiguration.bootstrapTokens[{i}].token"),
                    "<redacted>",
                    e.to_string(),
                ));
            }
            token.token = Some(t);
        }
        token.description = doc.description;
        if let Some(ttl) = doc.ttl {
            match parse_duration(&ttl) {
                Some(secs) => token.ttl_secs = secs,
                None => errors.push(field_error(
                    &format!("InitConfiguration.bootstrapTokens[{i}].ttl"),
                    ttl,
                    "not a duration",
                )),
            }
        }
        if let Some(usages) = doc.usages {
            token.usages = usages;
        }
        if let Some(groups) = doc.groups {
            token.groups = groups;
        }
        bootstrap_tokens.push(token);
    }
    if bootstrap_tokens.is_empty() {
        bootstrap_tokens.push(BootstrapTokenConfig::default());
    }
    if let Some(t) = &flags.token {
        if let Err(e) = pki::BootstrapToken::parse(t) {
            errors.push(field_error("token", "<redacted>", e.to_string()));
        }
        bootstrap_tokens[0].token = Some(t.clone());
    }
    if let Some(ttl) = flags.token_ttl_secs {
        bootstrap_tokens[0].ttl_secs = ttl;
    }

    let taints = match init.node_registration.taints {
        Some(taints) => taints
            .into_iter()
            .map(|t| Taint {
                key: t.key,
                value: t.value,
                effect: t.effect,
            })
            .collect(),
        None => vec![Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: None,
            effect: "NoSchedule".into(),
        }],
    };

    if !errors.is_empty() {
        return Err(ConfigError::Invalid { errors });
    }

    Ok(InitConfig {
        cluster: ClusterConfig {
            kubernetes_version,
            control_plane_endpoint,
            cluster_name: non_empty(cluster.cluster_name).unwrap_or_else(|| DEFAULT_CLUSTER_NAME.into()),
            certificates_dir,
            service_subnet,
            pod_subnet,
            dns_domain,
            api_server_cert_sans,
            api_server_extra_args: cluster.api_server.extra_args.into_args(),
            controller_manager_extra_args: cluster.controller_manager.extra_args.into_args(),
            scheduler_extra_args: cluster.scheduler.extra_args.into_args(),
            image_repository: non_empty(flags.image_repository.clone().or(cluster.image_repository))
                .unwrap_or_else(|| "registry.k8s.io".into()),
            etcd,
            encryption_algorithm,
            feature_gates: cluster.feature_gates,
        },
        node: NodeConfig {
            name,
            advertise_address,
            bind_port,
            cri_socket: non_empty(flags.cri_socket.clone().or(init.node_registration.cri_socket)),
            taints,
            kubelet_extra_args: init.node_registration.kubelet_extra_args.into_args(),
            ignore_preflight_errors: flags
                .ignore_preflight_errors
                .clone()
                .unwrap_or(init.node_registration.ignore_preflight_errors),
            certificate_key,
            skip_phases: flags.skip_phases.clone().unwrap_or(init.skip_phases),
            bootstrap_tokens,
            patches_dir: flags
                .patches
                .clone()
                .or(non_empty(init.patches.directory).map(PathBuf::from)),
        },
        warnings: docs.warnings,
    })
}

fn validate_san(field: &str, san: &str, errors: &mut Vec<FieldError>) {
    if san.parse::<IpAddr>().is_err() && !pki::cert::is_dns_name(san) {
        errors.push(field_error(
            field,
            san,
            "must be a valid IP address or a valid RFC-1123 DNS subdomain",
        ));
    }
}

fn validate_external_etcd(ext: &ExternalEtcdDoc, errors: &mut Vec<FieldError>) {
    if ext.endpoints.is_empty() {
        errors.push(field_error(
            "ClusterConfiguration.etcd.external.endpoints",
            "",
            "at least one endpoint is required",
        ));
    }
    let mut tls = false;
    for (i, endpoint) in ext.endpoints.iter().enumerate() {
        match endpoint.split_once("://") {
            Some(("https", rest)) if split_host_port(rest.trim_end_matches('/')).is_ok() => tls = true,
            Some(("http", rest)) if split_host_port(rest.trim_end_matches('/')).is_ok() => {}
            _ => errors.push(field_error(
                &format!("ClusterConfiguration.etcd.external.endpoints[{i}]"),
                endpoint,
                "must be an http:// or https:// URL with host and port",
            )),
        }
    }
    if tls {
        for (field, value) in [
            ("caFile", &ext.ca_file),
            ("certFile", &ext.cert_file),
            ("keyFile", &ext.key_file),
        ] {
            if value.is_empty() {
                errors.push(field_error(
                    &format!("ClusterConfiguration.etcd.external.{field}"),
                    "",
                    format!("{field} is required when using TLS"),
                ));
            }
        }
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets); the port is optional, as in kubeadm's controlPlaneEndpoint.
pub fn split_host_port(endpoint: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        match after.strip_prefix(':') {
            Some(p) => (host.to_string(), Some(p)),
            None if after.is_empty() => (host.to_string(), None),
            None => return Err("unexpected text after IPv6 address".into()),
        }
    } else {
        match endpoint.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (endpoint.to_string(), None),
        }
    };
    if host.parse::<IpAddr>().is_err() && !pki::cert::is_dns_name(&host) {
        return Err("the host must be a valid IP address or DNS name".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("invalid port {p:?}")),
        },
    };
    Ok((host, port))
}

/// Parses `10.96.0.0/12` into the network address and prefix length.
pub fn parse_cidr(cidr: &str) -> Option<(IpAddr, u8)> {
    let (ip, prefix) = cidr.trim().split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((ip, prefix))
}

/// The first usable address of a CIDR: the API server's ClusterIP (`10.96.0.1` for `10.96.0.0/12`).
pub fn first_service_ip(service_subnet: &str) -> Option<IpAddr> {
    let first = service_subnet.split(',').next()?;
    let (ip, prefix) = parse_cidr(first)?;
    match ip {
        IpAddr::V4(v4) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            Some(IpAddr::from(((u32::from(v4) & mask) + 1).to_be_bytes()))
        }
        IpAddr::V6(v6) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            Some(IpAddr::from(((u128::from(v6) & mask) + 1).to_be_bytes()))
        }
    }
}

fn is_version(v: &str) -> bool {
    let core = v
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()
        .unwrap_or_default();
    let parts: Vec<_> = core.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses Go durations as kubeadm writes them (`24h0m0s`, `2h`, `30m`, `90s`).
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    let mut saw_unit = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        // A TTL too large for u64 seconds is not a duration (Go's ParseDuration refuses it too).
        total = total.checked_add(n.checked_mul(unit)?)?;
        saw_unit = true;
    }
    (number.is_empty() && saw_unit).then_some(total)
}

impl InitConfig {
    /// The URL every client of the cluster uses: the control-plane endpoint (with the bind port if it has none),
    /// or this node's advertise address.
    pub fn control_plane_url(&self) -> String {
        match &self.cluster.control_plane_endpoint {
            Some(cpe) => match split_host_port(cpe) {
                Ok((_, Some(_))) => format!("https://{cpe}"),
                _ => format!(
                    "https://{}",
                    join_host_port(cpe.trim_matches(['[', ']']), self.node.bind_port)
                ),
            },
            None => self.local_url(),
        }
    }

    /// This node's own API server URL.
    pub fn local_url(&self) -> String {
        format!(
            "https://{}",
            join_host_port(&self.node.advertise_address.to_string(), self.node.bind_port)
        )
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// How a joining node finds and trusts the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `--token` (or `--discovery-token`) against `endpoint`, the CA pinned by `ca_cert_hashes`.
    Token {
        endpoint: String,
        token: String,
        ca_cert_hashes: Vec<String>,
        unsafe_skip_ca_verification: bool,
    },
    /// `--discovery-file`: a kubeconfig whose cluster entry is trusted as is.
    File { path: String },
}

/// `kubeadm join`'s configuration, resolved from flags and an optional `JoinConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    pub discovery: Discovery,
    /// The token the kubelet's TLS bootstrap authenticates with.
    pub tls_bootstrap_token: Option<String>,
    pub node_name: Option<String>,
    pub cri_socket: Option<String>,
    pub kubelet_extra_args: Vec<(String, String)>,
    /// `Some` for `--control-plane`.
    pub control_plane: Option<JoinControlPlane>,
    pub skip_phases: Vec<String>,
    pub ignore_preflight_errors: Vec<String>,
    /// `--patches` / `patches.directory`.
    pub patches_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinControlPlane {
    pub advertise_address: Option<IpAddr>,
    pub bind_port: u16,
    pub certificate_key: Option<String>,
}

/// The flags of `kubeadm join`; `None`/empty means not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinFlags {
    pub endpoint: Option<String>,
    pub token: Option<String>,
    pub discovery_token: Option<String>,
    pub tls_bootstrap_token: Option<String>,
    pub ca_cert_hashes: Vec<String>,
    pub unsafe_skip_ca_verification: bool,
    pub discovery_file: Option<String>,
    pub control_plane: bool,
    pub certificate_key: Option<String>,
    pub apiserver_advertise_address: Option<String>,
    pub apiserver_bind_port: Option<u16>,
    pub node_name: Option<String>,
    pub cri_socket: Option<String>,
    pub skip_phases: Vec<String>,
    pub ignore_preflight_errors: Vec<String>,
    pub patches: Option<PathBuf>,
}

/// Reads `--config` (a `JoinConfiguration`) if given, merges the flags and validates, as `kubeadm join` does.
pub fn load_join(config: Option<&Path>, flags: &JoinFlags) -> Result<JoinConfig, ConfigError> {
    let doc = match config {
        Some(path) => {
            let mut conflicts = Vec::new();
            for (name, set) in [
                ("token", flags.token.is_some()),
                ("discovery-token", flags.discovery_token.is_some()),
                ("discovery-token-ca-cert-hash", !flags.ca_cert_hashes.is_empty()),
                ("discovery-file", flags.discovery_file.is_some()),
                ("tls-bootstrap-token", flags.tls_bootstrap_token.is_some()),
                ("certificate-key", flags.certificate_key.is_some()),
                (
                    "apiserver-advertise-address",
                    flags.apiserver_advertise_address.is_some(),
                ),
                ("apiserver-bind-port", flags.apiserver_bind_port.is_some()),
                ("cri-socket", flags.cri_socket.is_some()),
            ] {
                if set {
                    conflicts.push(name.to_string());
                }
            }
            if !conflicts.is_empty() {
                return Err(ConfigError::MixedArgs(conflicts));
            }
            let file = path.display().to_string();
            let docs = parse_documents(&file, &read_file(path)?)?;
            docs.join.ok_or(ConfigError::Document {
                file,
                doc: 1,
                message: "no JoinConfiguration found".into(),
            })?
        }
        None => JoinConfigurationDoc::default(),
    };
    let mut errors = Vec::new();
    let token_doc = doc.discovery.bootstrap_token.unwrap_or_default();
    let token = flags
        .discovery_token
        .clone()
        .or(flags.token.clone())
        .or(token_doc.token);
    let file = flags
        .discovery_file
        .clone()
        .or(doc.discovery.file.map(|f| f.kube_config_path))
        .filter(|f| !f.is_empty());
    let endpoint = flags.endpoint.clone().or(token_doc.api_server_endpoint);
    let mut hashes = flags.ca_cert_hashes.clone();
    hashes.extend(token_doc.ca_cert_hashes);
    let unsafe_skip = flags.unsafe_skip_ca_verification || token_doc.unsafe_skip_ca_verification;
    let discovery = match (file, token, endpoint) {
        (Some(path), _, _) => Discovery::File { path },
        (None, Some(token), Some(endpoint)) => {
            if let Err(e) = pki::BootstrapToken::parse(&token) {
                errors.push(field_error(
                    "discovery.bootstrapToken.token",
                    token.clone(),
                    e.to_string(),
                ));
            }
            if let Err(e) = split_host_port(&endpoint) {
                errors.push(field_error(
                    "discovery.bootstrapToken.apiServerEndpoint",
                    endpoint.clone(),
                    e,
                ));
            }
            if hashes.is_empty() && !unsafe_skip {
                errors.push(field_error(
                    "discovery.bootstrapToken.caCertHashes",
                    "",
                    "using token-based discovery without caCertHashes can be unsafe. Set \
                     unsafeSkipCAVerification as true in your kubeadm config file or pass \
                     --discovery-token-unsafe-skip-ca-verification flag to continue",
                ));
            }
            for hash in &hashes {
                if let Err(e) = pki::parse_pin(hash) {
                    errors.push(field_error(
                        "discovery.bootstrapToken.caCertHashes",
                        hash.clone(),
                        e.to_string(),
                    ));
                }
            }
            Discovery::Token {
                endpoint,
                token,
                ca_cert_hashes: hashes,
                unsafe_skip_ca_verification: unsafe_skip,
            }
        }
        (None, None, _) => {
            errors.push(field_error(
                "discovery",
                "",
                "bootstrapToken or file must be set (use --token with the control-plane endpoint, or --discovery-file)",
            ));
            Discovery::File { path: String::new() }
        }
        (None, Some(_), None) => {
            errors.push(field_error(
                "discovery.bootstrapToken.apiServerEndpoint",
                "",
                "the control-plane endpoint to discover the cluster from is required (kubeadm join <endpoint> ...)",
            ));
            Discovery::File { path: String::new() }
        }
    };
    let tls_bootstrap_token = flags
        .tls_bootstrap_token
        .clone()
        .or(doc.discovery.tls_bootstrap_token)
        .or(flags.token.clone())
        .or(match &discovery {
            Discovery::Token { token, .. } => Some(token.clone()),
            Discovery::File { .. } => None,
        });
    let control_plane = if flags.control_plane || doc.control_plane.is_some() {
        let cp = doc.control_plane.unwrap_or_default();
        let address = flags
            .apiserver_advertise_address
            .clone()
            .or(cp.local_api_endpoint.advertise_address)
            .filter(|a| !a.is_empty());
        let advertise_address = match address {
            None => None,
            Some(a) => match a.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    errors.push(field_error(
                        "controlPlane.localAPIEndpoint.advertiseAddress",
                        a,
                        "must be a valid IP address",
                    ));
                    None
                }
            },
        };
        Some(JoinControlPlane {
            advertise_address,
            bind_port: flags
                .apiserver_bind_port
                .or(cp.local_api_endpoint.bind_port)
                .unwrap_or(6443),
            certificate_key: flags.certificate_key.clone().or(cp.certificate_key),
        })
    } else {
        None
    };
    if let Some(key) = control_plane.as_ref().and_then(|c| c.certificate_key.as_ref())
        && let Err(e) = pki::CertificateKey::parse(key)
    {
        errors.push(field_error(
            "controlPlane.certificateKey",
            key.clone(),
            e.to_string(),
        ));
    }
    if !errors.is_empty() {
        return Err(ConfigError::Invalid { errors });
    }
    let mut skip_phases = flags.skip_phases.clone();
    skip_phases.extend(doc.skip_phases);
    let mut ignore = flags.ignore_preflight_errors.clone();
    ignore.extend(doc.node_registration.ignore_preflight_errors);
    Ok(JoinConfig {
        discovery,
        tls_bootstrap_token,
        node_name: non_empty(flags.node_name.clone().or(doc.node_registration.name)),
        cri_socket: non_empty(flags.cri_socket.clone().or(doc.node_registration.cri_socket)),
        kubelet_extra_args: doc.node_registration.kubelet_extra_args.into_args(),
        control_plane,
        skip_phases,
        ignore_preflight_errors: ignore,
        patches_dir: flags
            .patches
            .clone()
            .or(non_empty(doc.patches.directory).map(PathBuf::from)),
    })
}

fn args_list(args: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Array(
        args.iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect(),
    )
}

/// The resolved cluster-wide configuration as a `kubeadm.k8s.io/v1beta4` `ClusterConfiguration` document, as
/// `upload-config` stores it in the `kubeadm-config` ConfigMap for joining nodes to read back with [`parse_init`].
pub fn cluster_configuration_yaml(cfg: &InitConfig) -> Result<String, crate::Error> {
    use serde_json::json;
    let c = &cfg.cluster;
    let component = |args: &[(String, String)]| {
        if args.is_empty() {
            json!({})
        } else {
            json!({"extraArgs": args_list(args)})
        }
    };
    let mut api_server = component(&c.api_server_extra_args);
    if !c.api_server_cert_sans.is_empty() {
        api_server["certSANs"] = json!(c.api_server_cert_sans);
    }
    let etcd = match &c.etcd {
        Etcd::Local(local) => {
            let mut l = json!({"dataDir": local.data_dir});
            if !local.extra_args.is_empty() {
                l["extraArgs"] = args_list(&local.extra_args);
            }
            if !local.server_cert_sans.is_empty() {
                l["serverCertSANs"] = json!(local.server_cert_sans);
            }
            if !local.peer_cert_sans.is_empty() {
                l["peerCertSANs"] = json!(local.peer_cert_sans);
            }
            json!({"local": l})
        }
        Etcd::External(e) => json!({"external": {
            "endpoints": e.endpoints, "caFile": e.ca_file, "certFile": e.cert_file, "keyFile": e.key_file
        }}),
        // Selected by the API server's storage-backend argument, which is written with it.
        Etcd::Embedded => json!({}),
    };
    let mut networking = json!({"dnsDomain": c.dns_domain, "serviceSubnet": c.service_subnet});
    if let Some(pods) = &c.pod_subnet {
        networking["podSubnet"] = json!(pods);
    }
    let encryption = match c.encryption_algorithm {
        pki::KeyAlgorithm::Rsa2048 => "RSA-2048",
        pki::KeyAlgorithm::Rsa3072 => "RSA-3072",
        pki::KeyAlgorithm::Rsa4096 => "RSA-4096",
        pki::KeyAlgorithm::EcdsaP256 => "ECDSA-P256",
    };
    let mut doc = json!({
        "apiServer": api_server,
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "caCertificateValidityPeriod": "87600h0m0s",
        "certificateValidityPeriod": "8760h0m0s",
        "certificatesDir": c.certificates_dir,
        "clusterName": c.cluster_name,
        "controllerManager": component(&c.controller_manager_extra_args),
        "dns": {},
        "encryptionAlgorithm": encryption,
        "etcd": etcd,
        "imageRepository": c.image_repository,
        "kind": "ClusterConfiguration",
        "kubernetesVersion": c.kubernetes_version,
        "networking": networking,
        "proxy": {},
        "scheduler": component(&c.scheduler_extra_args),
    });
    if let Some(cpe) = &c.control_plane_endpoint {
        doc["controlPlaneEndpoint"] = json!(cpe);
    }
    serde_yaml::to_string(&doc)
        .map_err(|e| crate::Error::Usage(format!("cannot render ClusterConfiguration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_too_large_for_seconds_is_not_a_duration() {
        assert_eq!(parse_duration("24h0m0s"), Some(86_400));
        assert_eq!(parse_duration("9999999999999999999h"), None);
        assert_eq!(parse_duration("18446744073709551615s1s"), None);
    }

    fn host() -> HostFacts {
        HostFacts {
            hostname: "node-a".into(),
            default_address: Some("192.168.0.10".parse().unwrap()),
        }
    }

    fn load_text(text: &str, flags: &InitFlags) -> Result<InitConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeadm-config.yaml");
        std::fs::write(&path, text).unwrap();
        load_init(Some(&path), flags, &host())
    }

    #[test]
    fn flags_alone_get_kubeadms_defaults() {
        let cfg = load_init(None, &InitFlags::default(), &host()).unwrap();
        assert_eq!(cfg.cluster.service_subnet, "10.96.0.0/12");
        assert_eq!(cfg.cluster.dns_domain, "cluster.local");
        assert_eq!(cfg.cluster.certificates_dir, "/etc/kubernetes/pki");
        assert_eq!(cfg.cluster.cluster_name, "kubernetes");
        assert_eq!(cfg.node.name, "node-a");
        assert_eq!(cfg.node.advertise_address.to_string(), "192.168.0.10");
        assert_eq!(cfg.node.bind_port, 6443);
        assert!(matches!(cfg.cluster.etcd, Etcd::Local(ref l) if l.data_dir == "/var/lib/etcd"));
        assert_eq!(cfg.node.bootstrap_tokens.len(), 1);
        assert_eq!(cfg.node.taints[0].key, "node-role.kubernetes.io/control-plane");
        assert_eq!(cfg.control_plane_url(), "https://192.168.0.10:6443");
    }

    #[test]
    fn guide_b_v1beta1_host_config_is_understood() {
        let cfg = load_text(
            r#"
apiVersion: "kubeadm.k8s.io/v1beta1"
kind: ClusterConfiguration
etcd:
    local:
        serverCertSANs:
        - "10.0.0.6"
        peerCertSANs:
        - "10.0.0.6"
        extraArgs:
            initial-cluster: infra0=https://10.0.0.6:2380,infra1=https://10.0.0.7:2380,infra2=https://10.0.0.8:2380
            initial-cluster-state: new
            name: infra0
            listen-peer-urls: https://10.0.0.6:2380
            listen-client-urls: https://10.0.0.6:2379
            advertise-client-urls: https://10.0.0.6:2379
            initial-advertise-peer-urls: https://10.0.0.6:2380
"#,
            &InitFlags::default(),
        )
        .unwrap();
        let Etcd::Local(local) = &cfg.cluster.etcd else {
            panic!("expected local etcd")
        };
        assert_eq!(local.server_cert_sans, vec!["10.0.0.6"]);
        assert_eq!(local.peer_cert_sans, vec!["10.0.0.6"]);
        assert!(local.extra_args.contains(&("name".into(), "infra0".into())));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn guide_a_external_etcd_config_in_v1beta2_and_v1beta3() {
        for version in ["v1beta2", "v1beta3"] {
            let cfg = load_text(
                &format!(
                    r#"
apiVersion: kubeadm.k8s.io/{version}
kind: ClusterConfiguration
kubernetesVersion: stable
controlPlaneEndpoint: "lb.example.com:6443"
etcd:
  external:
    endpoints:
      - https://10.0.0.6:2379
      - https://10.0.0.7:2379
      - https://10.0.0.8:2379
    caFile: /etc/kubernetes/pki/etcd/ca.crt
    certFile: /etc/kubernetes/pki/apiserver-etcd-client.crt
    keyFile: /etc/kubernetes/pki/apiserver-etcd-client.key
"#
                ),
                &InitFlags::default(),
            )
            .unwrap();
            let Etcd::External(ext) = &cfg.cluster.etcd else {
                panic!("expected external etcd")
            };
            assert_eq!(ext.endpoints.len(), 3);
            assert_eq!(ext.key_file, "/etc/kubernetes/pki/apiserver-etcd-client.key");
            assert_eq!(cfg.cluster.kubernetes_version, KUBERNETES_VERSION);
            assert_eq!(cfg.control_plane_url(), "https://lb.example.com:6443");
        }
    }

    #[test]
    fn init_and_cluster_documents_combine_and_v1beta4_list_args_work() {
        let cfg = load_text(
            r#"
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 10.1.2.3
  bindPort: 7443
nodeRegistration:
  name: cp-1
certificateKey: "e6a2eb8581237ab72a4f494f30285ec12a9694d750b9785706a83bfcbbbd2204"
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
apiServer:
  extraArgs:
  - name: v
    value: "2"
networking:
  podSubnet: 10.244.0.0/16
"#,
            &InitFlags::default(),
        )
        .unwrap();
        assert_eq!(cfg.node.name, "cp-1");
        assert_eq!(cfg.node.advertise_address.to_string(), "10.1.2.3");
        assert_eq!(cfg.control_plane_url(), "https://10.1.2.3:7443");
        assert_eq!(
            cfg.cluster.api_server_extra_args,
            vec![("v".to_string(), "2".to_string())]
        );
        assert_eq!(cfg.cluster.pod_subnet.as_deref(), Some("10.244.0.0/16"));
        assert!(cfg.node.certificate_key.is_some());
    }

    #[test]
    fn storage_backend_sqlite_selects_the_embedded_store_which_survives_the_kubeadm_config_round_trip() {
        let text = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  extraArgs:\n  - name: storage-backend\n    value: sqlite\n";
        let cfg = load_text(text, &InitFlags::default()).unwrap();
        assert_eq!(cfg.cluster.etcd, Etcd::Embedded);
        let stored = cluster_configuration_yaml(&cfg).unwrap();
        let again = load_text(&stored, &InitFlags::default()).unwrap();
        assert_eq!(again.cluster.etcd, Etcd::Embedded, "{stored}");

        let apiserver = crate::controlplane::apiserver_command(&cfg);
        assert!(apiserver.contains(&"--storage-dir=/var/lib/bulwark/apiserver".to_string()));
        assert!(
            !apiserver.iter().any(|a| a.starts_with("--etcd-")),
            "{apiserver:?}"
        );
        let manifest = crate::controlplane::manifest(&cfg, crate::controlplane::APISERVER).unwrap();
        assert!(
            manifest.contains("path: /var/lib/bulwark/apiserver"),
            "{manifest}"
        );

        let external = format!("{text}etcd:\n  external:\n    endpoints: [https://10.0.0.1:2379]\n");
        let err = load_text(&external, &InitFlags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("apiServer.extraArgs.storage-backend"), "{err}");
    }

    #[test]
    fn malformed_yaml_names_the_file_and_line() {
        let err = load_text(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\netcd: [\n",
            &InitFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("kubeadm-config.yaml: line"), "{err}");
    }

    #[test]
    fn unknown_api_version_and_kind_are_refused() {
        let err = load_text(
            "apiVersion: kubeadm.k8s.io/v1beta9\nkind: ClusterConfiguration\n",
            &InitFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown apiVersion \"kubeadm.k8s.io/v1beta9\""),
            "{err}"
        );
        let err = load_text(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: Frobnicator\n",
            &InitFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown kind \"Frobnicator\""), "{err}");
        let err = load_text("foo: bar\n", &InitFlags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("'apiVersion' and 'kind' are required"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = load_text(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: InitConfiguration\nlocalAPIEndpoint:\n  bindPort: lots\n",
            &InitFlags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bindPort") || err.contains("invalid"), "{err}");
        assert!(err.contains("kubeadm-config.yaml"), "{err}");
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let cfg = load_text(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nnetworkin:\n  podSubnet: 10.0.0.0/8\n",
            &InitFlags::default(),
        )
        .unwrap();
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].contains("networkin"), "{:?}", cfg.warnings);
    }

    #[test]
    fn invalid_values_are_reported_together_with_their_fields() {
        let flags = InitFlags {
            apiserver_cert_extra_sans: Some(vec!["good.example.com".into(), "bad_name".into()]),
            service_cidr: Some("10.96.0.0/99".into()),
            apiserver_advertise_address: Some("0.0.0.0".into()),
            ..Default::default()
        };
        let err = load_init(None, &flags, &host()).unwrap_err().to_string();
        assert!(
            err.contains("apiServer.certSANs[1]: Invalid value: \"bad_name\""),
            "{err}"
        );
        assert!(err.contains("serviceSubnet[0]"), "{err}");
        assert!(err.contains("advertiseAddress"), "{err}");
    }

    #[test]
    fn config_and_certificate_key_cannot_be_mixed() {
        let flags = InitFlags {
            certificate_key: Some("00".repeat(32)),
            node_name: Some("allowed".into()),
            ..Default::default()
        };
        let err = load_text(
            "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n",
            &flags,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "can not mix '--config' with arguments [certificate-key]"
        );
    }

    #[test]
    fn a_bad_certificate_key_is_refused_without_echoing_it() {
        let flags = InitFlags {
            certificate_key: Some("abc123".into()),
            ..Default::default()
        };
        let err = load_init(None, &flags, &host()).unwrap_err().to_string();
        assert!(
            err.contains("certificateKey") && err.contains("64 hexadecimal"),
            "{err}"
        );
        assert!(!err.contains("abc123"), "{err}");
    }

    #[test]
    fn helpers_follow_go_and_kubeadm_conventions() {
        assert_eq!(first_service_ip("10.96.0.0/12").unwrap().to_string(), "10.96.0.1");
        assert_eq!(first_service_ip("fd00::/108").unwrap().to_string(), "fd00::1");
        assert_eq!(parse_duration("24h0m0s"), Some(86400));
        assert_eq!(parse_duration("2h"), Some(7200));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(split_host_port("lb:6443").unwrap(), ("lb".into(), Some(6443)));
        assert_eq!(split_host_port("[::1]:6443").unwrap(), ("::1".into(), Some(6443)));
        assert_eq!(split_host_port("10.0.0.1").unwrap(), ("10.0.0.1".into(), None));
        assert!(split_host_port("lb:http").is_err());
    }

    #[test]
    fn join_flags_resolve_to_token_discovery_and_refuse_unpinned_or_mixed_input() {
        let hash = format!("sha256:{}", "a".repeat(64));
        let flags = JoinFlags {
            endpoint: Some("lb:6443".into()),
            token: Some("abcdef.0123456789abcdef".into()),
            ca_cert_hashes: vec![hash.clone()],
            control_plane: true,
            ..JoinFlags::default()
        };
        let jc = load_join(None, &flags).unwrap();
        assert_eq!(
            jc.discovery,
            Discovery::Token {
                endpoint: "lb:6443".into(),
                token: "abcdef.0123456789abcdef".into(),
                ca_cert_hashes: vec![hash],
                unsafe_skip_ca_verification: false,
            }
        );
        assert_eq!(jc.tls_bootstrap_token.as_deref(), Some("abcdef.0123456789abcdef"));
        assert_eq!(jc.control_plane.unwrap().bind_port, 6443);

        let unpinned = JoinFlags {
            ca_cert_hashes: Vec::new(),
            ..flags.clone()
        };
        let err = load_join(None, &unpinned).unwrap_err().to_string();
        assert!(err.contains("unsafeSkipCAVerification"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("join.yaml");
        std::fs::write(
            &path,
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n",
        )
        .unwrap();
        let err = load_join(Some(&path), &flags).unwrap_err().to_string();
        assert!(
            err.contains("can not mix '--config' with arguments [token discovery-token-ca-cert-hash]"),
            "{err}"
        );
    }
}
