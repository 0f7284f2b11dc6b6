//! `kubeadm join`: discovery (cluster-info fetched anonymously, its JWS signature checked with the token, the CA
//! pinned by public-key hash before any credential is sent), then for a control-plane node the certificates
//! (downloaded from `kubeadm-certs` with the certificate key, or copied by hand), its own leaf certificates and
//! kubeconfigs, the static pods and a new stacked etcd member (added as a learner and promoted once in sync, so
//! parallel joins cannot break quorum); then the kubelet with a bootstrap kubeconfig, waiting for its TLS bootstrap.
//!
//! Entry points: [`discover`], [`run`].

use crate::config::{Discovery, Etcd, HostFacts, InitConfig, InitFlags, JoinConfig};
use crate::etcd::PEER_PORT;
use crate::online::{CLUSTER_INFO, KUBEADM_CERTS, KUBEADM_CONFIG};
use crate::{
    Error, KUBERNETES_DIR, Layout, certs, controlplane, etcd, init, kubeconfig, kubelet, online, say,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

pub const BOOTSTRAP_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// How long discovery waits for the token's signature to appear in cluster-info.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// What `join` needs besides its configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub supervisor: PathBuf,
    pub host: HostFacts,
    pub path_env: String,
    pub timeout: Duration,
    pub progress: bool,
}

/// The trusted view of the cluster after discovery.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The API server address from cluster-info (the control-plane endpoint).
    pub server: String,
    pub ca: pki::Certificate,
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |e| Error::Api {
        what,
        error: Box::new(e),
    }
}

fn client_for(
    server: &str,
    ca: Option<&pki::Certificate>,
    token: Option<&str>,
) -> Result<kube::Client, Error> {
    let url = server
        .parse()
        .map_err(|e| usage(format!("invalid API server address {server:?}: {e}")))?;
    let mut config = kube::Config::new(url);
    match ca {
        Some(ca) => config.root_cert = Some(vec![ca.der().to_vec()]),
        // Only to read the public cluster-info before its CA is known; nothing secret is sent on this client.
        None => config.accept_invalid_certs = true,
    }
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_string().into());
    }
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).map_err(api_err("building a client"))
}

/// Token discovery as upstream: fetch `kube-public/cluster-info` without credentials, require a JWS signature by
/// this token over its kubeconfig, pin the CA, then fetch it again over TLS verified with that CA.
pub async fn discover(
    discovery: &Discovery,
    layout: &Layout,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<Discovered, Error> {
    let (endpoint, token, hashes, unsafe_skip) = match discovery {
        Discovery::File { path } => {
            let file = layout.host(path);
            let conf = pki::Kubeconfig::read(&file)?;
            return Ok(Discovered {
                server: conf.server()?.to_string(),
                ca: conf.ca_certificate()?,
            });
        }
        Discovery::Token {
            endpoint,
            token,
            ca_cert_hashes,
            unsafe_skip_ca_verification,
        } => (endpoint, token, ca_cert_hashes, *unsafe_skip_ca_verification),
    };
    let token = pki::BootstrapToken::parse(token)?;
    let url = format!("https://{endpoint}");
    say(
        out,
        format_args!("[discovery] Trying to connect to API Server {endpoint:?}"),
    )?;
    let insecure = client_for(&url, None, None)?;
    let signature_key = format!("jws-kubeconfig-{}", token.id);
    // A token created moments ago is signed by the controller-manager's bootstrap signer shortly after: retry for a
    // while, as upstream's discovery does, before calling the token invalid.
    let deadline = Instant::now() + timeout;
    let data = loop {
        let info: ConfigMap = match Api::namespaced(insecure.clone(), "kube-public")
            .get(CLUSTER_INFO)
            .await
        {
            Ok(info) => info,
            // A load balancer may still send us to a server that just went away: retry until the deadline.
            Err(e) if Instant::now() < deadline && !matches!(e, kube::Error::Api(_)) => {
                tracing::debug!(error = %e, "fetching cluster-info failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                return Err(api_err(format!(
                    "fetching the {CLUSTER_INFO} ConfigMap from {endpoint}"
                ))(e));
            }
        };
        let data = info.data.unwrap_or_default();
        if data.contains_key(&signature_key) || Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let kubeconfig = data
        .get("kubeconfig")
        .ok_or_else(|| usage(format!("the {CLUSTER_INFO} ConfigMap has no kubeconfig")))?;
    let signature = data.get(&signature_key).ok_or_else(|| {
        usage(format!(
            "there is no JWS signed token in the {CLUSTER_INFO} ConfigMap. This token id {:?} is invalid for this cluster, or it has expired. Use \"kubeadm token create\" on the control-plane node to create a new valid token",
            token.id
        ))
    })?;
    pki::jws::verify_detached(signature, kubeconfig.as_bytes(), &token).map_err(|e| {
        usage(format!(
            "failed to verify JWS signature of received cluster info object, can't trust this API Server: {e}"
        ))
    })?;
    let conf = pki::Kubeconfig::from_yaml(kubeconfig)?;
    let ca = conf.ca_certificate()?;
    if unsafe_skip {
        say(
            out,
            format_args!(
                "[discovery] Cluster info signature and contents are valid but no TLS pinning was specified, will use API Server {endpoint:?}"
            ),
        )?;
    } else if !pki::verify_pin(&ca, hashes)? {
        return Err(usage(format!(
            "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"{}\" are pinned",
            pki::ca_public_key_pin(&ca)?
        )));
    } else {
        say(
            out,
            format_args!(
                "[discovery] Cluster info signature and contents are valid and TLS certificate validates against pinned roots, will use API Server {endpoint:?}"
            ),
        )?;
    }
    // Fetch again over a verified connection, as upstream, so a man in the middle of the first fetch gains nothing.
    let secure = client_for(&url, Some(&ca), None)?;
    Api::<ConfigMap>::namespaced(secure, "kube-public")
        .get(CLUSTER_INFO)
        .await
        .map_err(api_err(format!(
            "fetching the {CLUSTER_INFO} ConfigMap again with the pinned CA"
        )))?;
    Ok(Discovered {
        server: conf.server()?.to_string(),
        ca,
    })
}

/// The cluster's configuration from the `kubeadm-config` ConfigMap, resolved for this node.
/// The local source address the kernel would use to reach `server` (a UDP connect sends nothing).
fn address_towards(server: &str) -> Option<std::net::IpAddr> {
    let authority = server.trim_start_matches("https://").split('/').next()?;
    let (host, port) = crate::config::split_host_port(authority).ok()?;
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port.unwrap_or(443)))
        .ok()?
        .next()?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

async fn cluster_config(
    client: &kube::Client,
    server: &str,
    jc: &JoinConfig,
    host: &HostFacts,
    out: &mut dyn Write,
) -> Result<InitConfig, Error> {
    say(
        out,
        format_args!(
            "[preflight] Reading configuration from the \"{KUBEADM_CONFIG}\" ConfigMap in namespace \"kube-system\"..."
        ),
    )?;
    say(
        out,
        format_args!(
            "[preflight] Use 'kubeadm init phase upload-config --config your-config-file' to re-upload it."
        ),
    )?;
    let cm: ConfigMap = Api::namespaced(client.clone(), "kube-system")
        .get(KUBEADM_CONFIG)
        .await
        .map_err(api_err(format!("reading the {KUBEADM_CONFIG} ConfigMap")))?;
    let text = cm
        .data
        .unwrap_or_default()
        .remove("ClusterConfiguration")
        .ok_or_else(|| {
            usage(format!(
                "the {KUBEADM_CONFIG} ConfigMap has no ClusterConfiguration"
            ))
        })?;
    let cp = jc.control_plane.as_ref();
    // Without an address given, this node is known by the address it reaches the control plane from (a host with
    // no default route still joins).
    let address = cp
        .and_then(|c| c.advertise_address)
        .or(host.default_address)
        .or_else(|| address_towards(server));
    let flags = InitFlags {
        node_name: jc.node_name.clone(),
        apiserver_advertise_address: address.map(|a| a.to_string()),
        apiserver_bind_port: cp.map(|c| c.bind_port),
        cri_socket: jc.cri_socket.clone(),
        ignore_preflight_errors: Some(jc.ignore_preflight_errors.clone()),
        ..InitFlags::default()
    };
    let mut cfg = crate::config::parse_init("the kubeadm-config ConfigMap", &text, &flags, host)?;
    cfg.node.kubelet_extra_args = jc.kubelet_extra_args.clone();
    cfg.node.patches_dir = jc.patches_dir.clone();
    Ok(cfg)
}

/// `download-certs`: the shared CA and service-account keys from `kubeadm-certs`, decrypted with `key`.
async fn download_certs(
    client: &kube::Client,
    cfg: &InitConfig,
    layout: &Layout,
    key: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    say(
        out,
        format_args!(
            "[download-certs] Downloading the certificates in Secret \"{KUBEADM_CERTS}\" in the \"kube-system\" Namespace"
        ),
    )?;
    let key = pki::CertificateKey::parse(key)?;
    let secret = Api::<Secret>::namespaced(client.clone(), "kube-system")
        .get_opt(KUBEADM_CERTS)
        .await
        .map_err(api_err(format!("reading the {KUBEADM_CERTS} Secret")))?
        .ok_or_else(|| {
            usage(format!(
                "Secret {KUBEADM_CERTS:?} was not found in the \"kube-system\" Namespace. This Secret might have expired (uploaded certificates live two hours). Please, run `kubeadm init phase upload-certs --upload-certs` on a control plane to generate a new one"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let mut files = Vec::new();
    for (name, logical) in online::shared_certs(cfg) {
        let sealed = data
            .get(&name)
            .ok_or_else(|| usage(format!("the {KUBEADM_CERTS} Secret has no {name:?}")))?;
        let plain = key.open(&sealed.0).map_err(|_| {
            usage(format!(
                "the certificate key does not decrypt {name:?} in Secret {KUBEADM_CERTS:?}: the key is wrong, or the certificates were uploaded again with another key. Use the key printed by `kubeadm init phase upload-certs --upload-certs`"
            ))
        })?;
        files.push((logical, plain));
    }
    say(
        out,
        format_args!(
            "[download-certs] Saving the certificates to the folder: {:?}",
            cfg.cluster.certificates_dir
        ),
    )?;
    for (logical, plain) in files {
        let path = layout.host(&logical);
        if logical.ends_with(".key") {
            pki::write_private(&path, &plain)?;
        } else {
            pki::write_public(&path, &plain)?;
        }
    }
    Ok(())
}

/// With certificates copied by hand (guide A's manual distribution), every shared file must be there.
fn check_shared_certs(cfg: &InitConfig, layout: &Layout) -> Result<(), Error> {
    let missing: Vec<String> = online::shared_certs(cfg)
        .into_iter()
        .map(|(_, logical)| logical)
        .filter(|logical| !layout.host(logical).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "joining a control-plane node without --certificate-key needs the cluster's shared certificates and keys copied from a control-plane node; missing: {}",
        missing.join(", ")
    )))
}

/// An etcd client for the existing members, with the health-check client certificate as upstream.
async fn etcd_client(
    cfg: &InitConfig,
    layout: &Layout,
    endpoints: &[String],
) -> Result<etcd_client::Client, Error> {
    etcd_client_with(&cfg.cluster.certificates_dir, layout, endpoints).await
}

async fn etcd_client_with(
    cert_dir: &str,
    layout: &Layout,
    endpoints: &[String],
) -> Result<etcd_client::Client, Error> {
    let pki = cert_dir.trim_end_matches('/');
    let read = |logical: String| {
        let path = layout.host(&logical);
        std::fs::read(&path).map_err(|source| Error::Io { path, source })
    };
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(format!(
            "{pki}/etcd/ca.crt"
        ))?))
        .identity(etcd_client::Identity::from_pem(
            read(format!("{pki}/etcd/healthcheck-client.crt"))?,
            read(format!("{pki}/etcd/healthcheck-client.key"))?,
        ));
    let options = etcd_client::ConnectOptions::new()
        .with_tls(tls)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    etcd_client::Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| usage(format!("connecting to etcd at {}: {e}", endpoints.join(","))))
}

/// `kubeadm reset`'s `remove-etcd-member`: when this node runs a stacked etcd member (its manifest is there), the
/// member leaves the cluster so that the others keep their quorum and the machine can join again. Returns whether
/// a member was removed; the last member is left alone (the cluster goes with it).
pub async fn remove_etcd_member(layout: &Layout, cert_dir: &str, out: &mut dyn Write) -> Result<bool, Error> {
    let manifest = layout.host(format!("{}/etcd.yaml", crate::etcd::MANIFESTS_DIR));
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Ok(false);
    };
    let Some(peer_url) = text
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '"' || c == '\'')
                .strip_prefix("--initial-advertise-peer-urls=")
        })
        .map(str::to_string)
    else {
        return Ok(false);
    };
    // The member's own client URL, which it listens on whatever patches changed about loopback.
    let local = text
        .split_whitespace()
        .find_map(|w| {
            w.trim_matches(|c| c == '"' || c == '\'')
                .strip_prefix("--advertise-client-urls=")
        })
        .and_then(|urls| urls.split(',').next())
        .map(str::to_string)
        .unwrap_or_else(|| format!("https://127.0.0.1:{}", crate::etcd::CLIENT_PORT));
    let mut etcd = etcd_client_with(cert_dir, layout, &[local]).await?;
    let members = etcd
        .member_list()
        .await
        .map_err(|e| usage(format!("listing etcd members: {e}")))?;
    let Some(own) = members
        .members()
        .iter()
        .find(|m| m.peer_urls().iter().any(|u| u == &peer_url))
    else {
        return Ok(false);
    };
    if members.members().len() < 2 {
        return Ok(false);
    }
    let (id, name) = (own.id(), own.name().to_string());
    while_unhealthy(|| {
        let mut etcd = etcd.clone();
        async move { etcd.member_remove(id).await }
    })
    .await
    .map_err(|e| usage(format!("removing etcd member {name} ({id:x}): {e}")))?;
    say(
        out,
        format_args!("[reset] Removed member {name} ({peer_url}) from the etcd cluster"),
    )?;
    Ok(true)
}

/// The client URLs of the stacked etcd members, from the etcd static pods' annotation, as upstream reads them.
async fn etcd_endpoints(client: &kube::Client) -> Result<Vec<String>, Error> {
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("component=etcd,tier=control-plane"))
        .await
        .map_err(api_err("listing the etcd pods"))?;
    let endpoints: Vec<String> = pods
        .items
        .iter()
        .filter_map(|p| {
            p.metadata
                .annotations
                .as_ref()?
                .get("kubeadm.kubernetes.io/etcd.advertise-client-urls")
                .cloned()
        })
        .collect();
    // Members that are gone (a reset node's mirror pod lingers) would fail the client's requests: keep those that
    // accept a connection.
    let mut reachable = Vec::new();
    for url in endpoints {
        let authority = url
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_string();
        let connect = tokio::net::TcpStream::connect(authority);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            reachable.push(url);
        }
    }
    if reachable.is_empty() {
        return Err(usage(
            "no reachable etcd member: no etcd pod in kube-system with a kubeadm.kubernetes.io/etcd.advertise-client-urls annotation accepts connections (is etcd stacked?)",
        ));
    }
    Ok(reachable)
}

/// Adds this node as an etcd learner and returns the `initial-cluster` value naming every member.
async fn add_etcd_member(
    etcd: &mut etcd_client::Client,
    cfg: &InitConfig,
    out: &mut dyn Write,
) -> Result<(u64, String), Error> {
    let address = cfg.node.advertise_address.to_string();
    let peer_url = format!("https://{}", crate::config::join_host_port(&address, PEER_PORT));
    let members = etcd
        .member_list()
        .await
        .map_err(|e| usage(format!("listing etcd members: {e}")))?;
    // A member left behind by an earlier attempt on this address is replaced, as upstream does on rejoin.
    let stale = members
        .members()
        .iter()
        .find(|m| m.peer_urls().iter().any(|u| u == &peer_url))
        .map(|m| m.id());
    if let Some(id) = stale {
        while_unhealthy(|| {
            let mut etcd = etcd.clone();
            async move { etcd.member_remove(id).await }
        })
        .await
        .map_err(|e| usage(format!("removing the stale etcd member {id:x}: {e}")))?;
    }
    // A proposal whose answer timed out may still have been applied: a member with this peer URL found on a retry
    // is the one this join added, not a stale one.
    let (id, members) = while_unhealthy(|| {
        let (mut etcd, url) = (etcd.clone(), peer_url.clone());
        async move {
            let listed = etcd.member_list().await?;
            let peers = |members: &[etcd_client::Member]| -> Vec<(u64, String, Option<String>)> {
                members
                    .iter()
                    .map(|m| (m.id(), m.name().to_string(), m.peer_urls().first().cloned()))
                    .collect()
            };
            if let Some(own) = listed
                .members()
                .iter()
                .find(|m| m.peer_urls().iter().any(|u| u == &url))
            {
                return Ok((own.id(), peers(listed.members())));
            }
            let learner = etcd_client::MemberAddOptions::new().with_is_learner();
            let added = etcd.member_add([url], Some(learner)).await?;
            let id = added.member().map(|m| m.id()).unwrap_or_default();
            Ok((id, peers(added.member_list())))
        }
    })
    .await
    .map_err(|e| usage(format!("adding etcd member {peer_url}: {e}")))?;
    let mut initial: Vec<String> = members
        .into_iter()
        .filter_map(|(member, name, url)| {
            let name = if member == id { cfg.node.name.clone() } else { name };
            let url = url?;
            (!name.is_empty()).then(|| format!("{name}={url}"))
        })
        .collect();
    initial.sort();
    say(
        out,
        format_args!("[etcd] Announced new etcd member joining to the existing etcd cluster"),
    )?;
    Ok((id, initial.join(",")))
}

/// Why a membership change may succeed when tried again: "unhealthy cluster" (with its default strict
/// reconfiguration check etcd refuses until every voting member has been connected for its health interval, which
/// a member added or promoted moments ago has not), "too many learner members" (etcd allows one learner at a time,
/// so control planes joining in parallel take turns), and a request that timed out or reached a member that cannot
/// serve it yet (one still starting, or a learner): the next try may reach another member.
const PASSING: &[&str] = &[
    "unhealthy cluster",
    "too many learner members",
    "Timeout expired",
    "timed out",
    "transport error",
    "Unavailable",
    "leader changed",
    "not supported for learner",
];

/// Runs a membership change, retrying for the [`PASSING`] reasons for up to two minutes, as upstream kubeadm
/// retries with backoff.
async fn while_unhealthy<T, F, Fut>(mut op: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match op().await {
            Err(e)
                if Instant::now() < deadline
                    && PASSING.iter().any(|reason| e.to_string().contains(reason)) =>
            {
                tracing::debug!(error = %e, "etcd refused a membership change; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            done => return done,
        }
    }
}

/// Promotes the learner once it has caught up (etcd refuses until then).
async fn promote(etcd: &mut etcd_client::Client, id: u64, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match etcd.member_promote(id).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "learner not promotable yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(usage(format!("promoting etcd learner {id:x}: {e}"))),
        }
    }
}

/// Waits for the kubelet's TLS bootstrap to write kubelet.conf, then removes the bootstrap kubeconfig.
async fn wait_tls_bootstrap(layout: &Layout, timeout: Duration, out: &mut dyn Write) -> Result<(), Error> {
    say(
        out,
        format_args!("[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap"),
    )?;
    let deadline = Instant::now() + timeout;
    let kubeconfig = layout.host(KUBELET_KUBECONFIG);
    while !kubeconfig.exists() {
        if Instant::now() > deadline {
            return Err(usage(format!(
                "timed out waiting for the kubelet's TLS bootstrap ({KUBELET_KUBECONFIG} not written); see {}",
                kubelet::LOG_FILE
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bootstrap = layout.host(BOOTSTRAP_KUBECONFIG);
    std::fs::remove_file(&bootstrap).map_err(|source| Error::Io {
        path: bootstrap,
        source,
    })
}

fn skipped(jc: &JoinConfig, phase: &str) -> bool {
    jc.skip_phases
        .iter()
        .any(|s| s == phase || phase.starts_with(&format!("{s}/")))
}

/// Runs `kubeadm join`. On failure the first value names the phase.
pub async fn run(
    jc: &JoinConfig,
    layout: &Layout,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<(), (String, Error)> {
    let at = |phase: &'static str| move |e: Error| (phase.to_string(), e);
    say(out, format_args!("[preflight] Running pre-flight checks")).map_err(at("preflight"))?;
    let found = discover(&jc.discovery, layout, DISCOVERY_TIMEOUT.min(opts.timeout), out)
        .await
        .map_err(at("preflight"))?;
    let token = jc
        .tls_bootstrap_token
        .clone()
        .ok_or_else(|| usage("a TLS bootstrap token is required (--token or --tls-bootstrap-token)"))
        .map_err(at("preflight"))?;
    let bootstrap = client_for(&found.server, Some(&found.ca), Some(&token)).map_err(at("preflight"))?;
    let cfg = cluster_config(&bootstrap, &found.server, jc, &opts.host, out)
        .await
        .map_err(at("preflight"))?;
    let control_plane = jc.control_plane.is_some();
    if !skipped(jc, "preflight") {
        let probe = crate::preflight::Host {
            layout,
            path_env: opts.path_env.clone(),
        };
        if control_plane {
            say(
                out,
                format_args!(
                    "[preflight] Running pre-flight checks before initializing the new control plane instance"
                ),
            )
            .map_err(at("preflight"))?;
        }
        crate::preflight::report(
            crate::preflight::join_checks(&cfg, control_plane, &probe),
            &jc.ignore_preflight_errors,
            out,
        )
        .map_err(at("preflight"))?;
    }

    let mut member = None;
    if let Some(cp) = &jc.control_plane {
        if let Etcd::Embedded = cfg.cluster.etcd {
            return Err((
                "preflight".into(),
                usage(
                    "unable to add a new control plane instance to a cluster whose API server keeps its data in its embedded store (apiServer.extraArgs storage-backend: sqlite): it has exactly one control-plane node; build the cluster on etcd (local or external) to join control-plane nodes",
                ),
            ));
        }
        if cfg.cluster.control_plane_endpoint.is_none() {
            return Err((
                "preflight".into(),
                usage(
                    "unable to add a new control plane instance to a cluster that doesn't have a stable controlPlaneEndpoint address (set it with kubeadm init --control-plane-endpoint)",
                ),
            ));
        }
        match &cp.certificate_key {
            Some(key) if !skipped(jc, "control-plane-prepare/download-certs") => {
                download_certs(&bootstrap, &cfg, layout, key, out)
                    .await
                    .map_err(at("control-plane-prepare/download-certs"))?;
            }
            _ => check_shared_certs(&cfg, layout).map_err(at("control-plane-prepare/certs"))?,
        }
        let now = SystemTime::now();
        certs::run(&cfg, layout, "all", now, out).map_err(at("control-plane-prepare/certs"))?;
        say(out, format_args!("[kubeconfig] Generating kubeconfig files"))
            .map_err(at("control-plane-prepare/kubeconfig"))?;
        for name in ["admin", "controller-manager", "scheduler"] {
            kubeconfig::run(&cfg, layout, KUBERNETES_DIR, name, now, out)
                .map_err(at("control-plane-prepare/kubeconfig"))?;
        }
        controlplane::run(&cfg, layout, "all", out).map_err(at("control-plane-prepare/control-plane"))?;
        if let Etcd::Local(_) = &cfg.cluster.etcd {
            say(
                out,
                format_args!("[check-etcd] Checking that the etcd cluster is healthy"),
            )
            .map_err(at("check-etcd"))?;
            let admin = init::admin_client(&cfg, layout, false)
                .await
                .map_err(at("check-etcd"))?;
            let endpoints = etcd_endpoints(&admin).await.map_err(at("check-etcd"))?;
            let mut etcd = etcd_client(&cfg, layout, &endpoints)
                .await
                .map_err(at("check-etcd"))?;
            let (id, initial) = add_etcd_member(&mut etcd, &cfg, out)
                .await
                .map_err(at("control-plane-join/etcd"))?;
            let mut joining = cfg.clone();
            if let Etcd::Local(local) = &mut joining.cluster.etcd {
                local
                    .extra_args
                    .retain(|(k, _)| k != "initial-cluster" && k != "initial-cluster-state");
                local.extra_args.push(("initial-cluster".into(), initial));
                local
                    .extra_args
                    .push(("initial-cluster-state".into(), "existing".into()));
            }
            say(
                out,
                format_args!("[etcd] Creating static Pod manifest for \"etcd\""),
            )
            .map_err(at("control-plane-join/etcd"))?;
            etcd::run_local(&joining, layout, &mut std::io::sink()).map_err(at("control-plane-join/etcd"))?;
            member = Some((etcd, id));
        }
    }

    if !skipped(jc, "kubelet-start") {
        let phase = "kubelet-start";
        let bootstrap_conf = pki::Kubeconfig::for_token(
            &cfg.cluster.cluster_name,
            &found.server,
            &found.ca,
            "tls-bootstrap-token-user",
            &token,
        );
        bootstrap_conf
            .write(&layout.host(BOOTSTRAP_KUBECONFIG))
            .map_err(|e| (phase.to_string(), e.into()))?;
        let ca_path = layout.host(format!(
            "{}/ca.crt",
            cfg.cluster.certificates_dir.trim_end_matches('/')
        ));
        if !ca_path.exists() {
            pki::write_public(&ca_path, found.ca.pem().as_bytes())
                .map_err(|e| (phase.to_string(), e.into()))?;
        }
        kubelet::write_files(&cfg, layout, &opts.host.hostname, out).map_err(at(phase))?;
        kubelet::start(layout, &opts.supervisor, out).map_err(at(phase))?;
        wait_kubelet(layout, opts.timeout, out).await.map_err(at(phase))?;
        wait_tls_bootstrap(layout, opts.timeout, out)
            .await
            .map_err(at(phase))?;
    }

    if let Some((mut etcd, id)) = member {
        say(
            out,
            format_args!(
                "[etcd] Waiting for the new etcd member to join the cluster. This can take up to {}s",
                opts.timeout.as_secs()
            ),
        )
        .map_err(at("control-plane-join/etcd"))?;
        promote(&mut etcd, id, opts.timeout)
            .await
            .map_err(at("control-plane-join/etcd"))?;
    }
    if control_plane {
        let admin = init::cluster_admin_client(&cfg, layout, true)
            .await
            .map_err(at("control-plane-join/mark-control-plane"))?;
        wait_local_apiserver(&admin, opts.timeout)
            .await
            .map_err(at("control-plane-join/mark-control-plane"))?;
        if !skipped(jc, "control-plane-join/mark-control-plane") {
            online::mark_control_plane(&admin, &cfg, out)
                .await
                .map_err(at("control-plane-join/mark-control-plane"))?;
        }
    }
    summary(control_plane, out).map_err(at("show-join-command"))
}

async fn wait_kubelet(layout: &Layout, timeout: Duration, out: &mut dyn Write) -> Result<(), Error> {
    let (host, port) = kubelet::healthz_endpoint(layout);
    say(
        out,
        format_args!(
            "[kubelet-check] Waiting for a healthy kubelet at http://{}/healthz. This can take up to {}s",
            crate::config::join_host_port(&host, port),
            timeout.as_secs()
        ),
    )?;
    let start = Instant::now();
    while !init::kubelet_healthy(layout).await {
        if start.elapsed() > timeout {
            return Err(usage(format!(
                "timed out waiting for the kubelet; see its log in {}",
                kubelet::LOG_FILE
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(
        out,
        format_args!(
            "[kubelet-check] The kubelet is healthy after {:.3}s",
            start.elapsed().as_secs_f64()
        ),
    )
}

/// The local API server answers (it starts once its etcd member does).
async fn wait_local_apiserver(client: &kube::Client, timeout: Duration) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        match client.apiserver_version().await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > timeout => {
                return Err(api_err("waiting for the local kube-apiserver")(e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn summary(control_plane: bool, out: &mut dyn Write) -> Result<(), Error> {
    if control_plane {
        say(
            out,
            format_args!(
                "\nThis node has joined the cluster and a new control plane instance was created:\n\n\
* Certificate signing request was sent to apiserver and approval was received.\n\
* The Kubelet was informed of the new secure connection details.\n\
* Control plane label and taint were applied to the new node.\n\
* The Kubernetes control plane instances scaled up.\n\
* A new etcd member was added to the local/stacked etcd cluster.\n\n\
To start administering your cluster from this node, you need to run the following as a regular user:\n\n\
\tmkdir -p $HOME/.kube\n\
\tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n\
\tsudo chown $(id -u):$(id -g) $HOME/.kube/config\n\n\
Run 'kubectl get nodes' to see this node join the cluster.\n"
            ),
        )
    } else {
        say(
            out,
            format_args!(
                "\nThis node has joined the cluster:\n\
* Certificate signing request was sent to apiserver and a response was received.\n\
* The Kubelet was informed of the new secure connection details.\n\n\
Run 'kubectl get nodes' on the control-plane to see this node join the cluster.\n"
            ),
        )
    }
}
