//! The kubelet's client-side load balancer over the API servers (k3s's agent does the same): workers survive the
//! loss of any control-plane node even when the kubeconfig names one API server, or an external balancer that
//! points at one.
//!
//! An embedded [`lb::Balancer`] listens on `127.0.0.1:<ephemeral>` (several kubelets can share a machine), with the
//! kubeconfig's server as its first backend. The kubelet's client talks to that port ([`route_through`]) with
//! `tls_server_name` set to the configured server's host, so TLS still verifies the configured endpoint's name
//! against the cluster CA whichever API server answers. [`ApiLoadBalancer::follow_endpoints`] reads the
//! `default/kubernetes` Endpoints, which list every live API server, and makes them the backends
//! ([`backends_from_endpoints`]), the configured server always among them. Health checks (`GET /readyz` every
//! second, down after two failures) take a dead server out of rotation within about 2 s, and its connections are
//! closed so the pod watch and other long requests reconnect to a live one.
//!
//! A node may only `get` Endpoints (upstream's node rules), so they are polled, not watched; the Endpoints lag a
//! dead server by its lease's 15 s anyway, and the health checks cover that gap.
//!
//! Pods keep `KUBERNETES_SERVICE_HOST`/`_PORT` pointing at the configured server: a 127.0.0.1 port of the kubelet
//! would mean nothing inside pods on other addresses or nodes.
//!
//! Entry points: [`ApiLoadBalancer::start`], [`ApiLoadBalancer::route`], [`ApiLoadBalancer::follow_endpoints`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Endpoints;
use kube::api::Api;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum ApiLbError {
    #[error("the API server URL {0} names no host")]
    NoHost(String),
    #[error("resolving the API server {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server {0} resolves to no address")]
    NoAddress(String),
    #[error("listening on 127.0.0.1: {0}")]
    Listen(#[source] std::io::Error),
    #[error("the load balancer's URL: {0}")]
    Url(String),
    #[error(transparent)]
    Balancer(#[from] lb::Error),
}

/// How often the `kubernetes` Endpoints are read.
pub const ENDPOINTS_PERIOD: Duration = Duration::from_secs(5);

/// A client-side balancer in front of the API servers, running until the shutdown token given to
/// [`ApiLoadBalancer::start`] is cancelled. Cheap to clone.
#[derive(Clone)]
pub struct ApiLoadBalancer {
    balancer: lb::Balancer,
    local: SocketAddr,
    configured: Vec<SocketAddr>,
}

/// The balancer's settings: checks every second so a dead server leaves rotation within about two seconds, a
/// single passed check brings one back (the kubelet would rather retry a recovering server early than wait), and
/// a short drain grace so watches move over quickly.
pub fn balancer_config(backends: Vec<SocketAddr>) -> lb::Config {
    lb::Config {
        backends,
        check: lb::Check::Https {
            path: "/readyz".into(),
        },
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        rise: 1,
        fall: 2,
        connect_timeout: Duration::from_secs(2),
        balance: lb::Balance::RoundRobin,
        drain_grace: Some(Duration::from_secs(1)),
    }
}

impl ApiLoadBalancer {
    /// Starts a balancer over the server of `cluster_url` (every address its host resolves to) on an ephemeral
    /// loopback port.
    pub async fn start(cluster_url: &str, shutdown: CancellationToken) -> Result<Self, ApiLbError> {
        let (host, port) = host_port(cluster_url).ok_or_else(|| ApiLbError::NoHost(cluster_url.into()))?;
        let configured: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|source| ApiLbError::Resolve {
                    host: host.clone(),
                    source,
                })?
                .collect(),
        };
        if configured.is_empty() {
            return Err(ApiLbError::NoAddress(host));
        }
        let balancer = lb::Balancer::new(balancer_config(configured.clone()))?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(ApiLbError::Listen)?;
        let local = listener.local_addr().map_err(ApiLbError::Listen)?;
        let span = tracing::info_span!("api_load_balancer", %local, server = %cluster_url);
        let running = balancer.clone();
        tokio::spawn(
            async move {
                if let Err(e) = running.run(listener, shutdown).await {
                    tracing::error!(error = %e, "the client-side load balancer stopped");
                }
            }
            .instrument(span),
        );
        Ok(Self {
            balancer,
            local,
            configured,
        })
    }

    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn status(&self) -> lb::Status {
        self.balancer.status()
    }

    /// `config` talking through this balancer, see [`route_through`].
    pub fn route(&self, config: kube::Config) -> Result<kube::Config, ApiLbError> {
        route_through(config, self.local)
    }

    /// Reads the `kubernetes` Endpoints every `period` until `shutdown` and makes the API servers they list
    /// (and the configured one) the backends.
    pub async fn follow_endpoints(self, client: kube::Client, period: Duration, shutdown: CancellationToken) {
        let endpoints: Api<Endpoints> = Api::namespaced(client, "default");
        let mut current: Vec<SocketAddr> = self.configured.clone();
        let mut last_error = String::new();
        loop {
            let span = tracing::info_span!("api_endpoints", local = %self.local);
            let poll = async {
                match endpoints.get("kubernetes").await {
                    Ok(found) => {
                        last_error.clear();
                        let backends = backends_from_endpoints(&found, &self.configured);
                        if backends != current {
                            tracing::info!(?backends, "API servers learned from the kubernetes Endpoints");
                            self.balancer.set_backends(backends.clone());
                            current = backends;
                        }
                    }
                    Err(e) => {
                        // Every few seconds for as long as it lasts: once per distinct failure is enough.
                        let error = e.to_string();
                        if error != last_error {
                            tracing::warn!(%error, "cannot read the kubernetes Endpoints; keeping the known API servers");
                            last_error = error;
                        }
                    }
                }
            }
            .instrument(span);
            // A read stuck on a dying server must hold up neither shutdown nor the next read, which the balancer
            // sends to a live server.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = poll => {}
                () = tokio::time::sleep(period.max(Duration::from_secs(1)) * 2) => {
                    tracing::warn!("reading the kubernetes Endpoints timed out; trying again");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    }
}

/// The backends for `endpoints`: the configured server's addresses first (it may be an external balancer, or a
/// server the Endpoints do not list yet), then every ready address with the `https` port (or the only port).
pub fn backends_from_endpoints(endpoints: &Endpoints, configured: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = configured.to_vec();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|p| p.name.as_deref() == Some("https"))
            .or(match ports {
                [only] => Some(only),
                _ => None,
            })
            .and_then(|p| u16::try_from(p.port).ok());
        let Some(port) = port else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                let addr = SocketAddr::new(ip, port);
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
    }
    out
}

/// `config` with its requests sent to `local` (the balancer) and TLS still verifying the configured server's
/// name, unless the kubeconfig already names another (`tls-server-name`).
pub fn route_through(mut config: kube::Config, local: SocketAddr) -> Result<kube::Config, ApiLbError> {
    let url = config.cluster_url.to_string();
    let (host, _) = host_port(&url).ok_or_else(|| ApiLbError::NoHost(url.clone()))?;
    if config.tls_server_name.is_none() {
        config.tls_server_name = Some(host);
    }
    let path = config
        .cluster_url
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| *p != "/")
        .unwrap_or_default();
    config.cluster_url = format!("https://{local}{path}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| ApiLbError::Url(e.to_string()))?;
    Ok(config)
}

/// Host and port of an `https://host:port` server URL (443 without a port; IPv6 without its brackets).
pub fn host_port(server: &str) -> Option<(String, u16)> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn subset(ips: &[&str], not_ready: &[&str], ports: &[(Option<&str>, i32)]) -> EndpointSubset {
        let addresses = |ips: &[&str]| {
            Some(
                ips.iter()
                    .map(|ip| EndpointAddress {
                        ip: (*ip).into(),
                        ..Default::default()
                    })
                    .collect(),
            )
        };
        EndpointSubset {
            addresses: addresses(ips),
            not_ready_addresses: addresses(not_ready),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port)| EndpointPort {
                        name: name.map(str::to_string),
                        port: *port,
                        ..Default::default()
                    })
                    .collect(),
            ),
        }
    }

    fn endpoints(subsets: Vec<EndpointSubset>) -> Endpoints {
        Endpoints {
            subsets: Some(subsets),
            ..Default::default()
        }
    }

    #[test]
    fn every_listed_api_server_becomes_a_backend_after_the_configured_one() {
        let configured = [addr("10.0.0.1:6443")];
        let found = endpoints(vec![subset(
            &["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            &["10.0.0.9"],
            &[(Some("https"), 6443)],
        )]);
        assert_eq!(
            backends_from_endpoints(&found, &configured),
            [
                addr("10.0.0.1:6443"),
                addr("10.0.0.2:6443"),
                addr("10.0.0.3:6443")
            ]
        );
    }

    #[test]
    fn an_external_balancer_in_the_kubeconfig_stays_a_backend_beside_the_servers() {
        let configured = [addr("10.0.0.100:6443")];
        let found = endpoints(vec![subset(&["10.0.0.1", "fd00::2"], &[], &[(None, 8443)])]);
        assert_eq!(
            backends_from_endpoints(&found, &configured),
            [
                addr("10.0.0.100:6443"),
                addr("10.0.0.1:8443"),
                addr("[fd00::2]:8443")
            ]
        );
    }

    #[test]
    fn endpoints_without_servers_or_a_usable_port_leave_only_the_configured_server() {
        let configured = [addr("10.0.0.1:6443")];
        for found in [
            Endpoints::default(),
            endpoints(vec![]),
            endpoints(vec![subset(
                &["10.0.0.2"],
                &[],
                &[(Some("a"), 1), (Some("b"), 2)],
            )]),
            endpoints(vec![subset(&["10.0.0.2"], &[], &[(Some("https"), 70000)])]),
            endpoints(vec![subset(&["not-an-ip"], &[], &[(Some("https"), 6443)])]),
        ] {
            assert_eq!(
                backends_from_endpoints(&found, &configured),
                configured,
                "{found:?}"
            );
        }
    }

    fn config(url: &str) -> kube::Config {
        kube::Config::new(url.parse().unwrap())
    }

    #[test]
    fn the_client_talks_to_the_balancer_and_verifies_the_configured_servers_name() {
        let local = addr("127.0.0.1:40123");
        let routed = route_through(config("https://api.example:6443"), local).unwrap();
        assert_eq!(routed.cluster_url.to_string(), "https://127.0.0.1:40123/");
        assert_eq!(routed.tls_server_name.as_deref(), Some("api.example"));
        let routed = route_through(config("https://[fd00::1]:6443/prefix"), local).unwrap();
        assert_eq!(routed.cluster_url.to_string(), "https://127.0.0.1:40123/prefix");
        assert_eq!(routed.tls_server_name.as_deref(), Some("fd00::1"));
        let mut named = config("https://10.0.0.1:6443");
        named.tls_server_name = Some("kubernetes".into());
        let routed = route_through(named, local).unwrap();
        assert_eq!(routed.tls_server_name.as_deref(), Some("kubernetes"));
    }

    /// GET `/healthz` with `config`'s client.
    async fn healthz(config: kube::Config) -> Result<String, kube::Error> {
        let request = http::Request::get("/healthz").body(Vec::new()).unwrap();
        kube::Client::try_from(config)?.request_text(request).await
    }

    #[tokio::test]
    async fn tls_verifies_the_configured_servers_ip_address_whatever_address_the_client_connects_to() {
        let dir = tempfile::tempdir().unwrap();
        // A certificate for 127.0.0.9 only, served on 127.0.0.1: as an API server behind the balancer is reached.
        let (cert_file, key_file) =
            crate::server::ensure_serving_cert(dir.path(), "api", "127.0.0.9").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        let shutdown = CancellationToken::new();
        let server = crate::server::ServerConfig {
            addr: local,
            cert_file: cert_file.clone(),
            key_file,
            client_ca_pem: None,
            anonymous: true,
            log_dir: dir.path().into(),
        };
        tokio::spawn(crate::server::serve(server, shutdown.clone()));
        let mut configured = config(&format!("https://127.0.0.9:{port}"));
        let roots = std::fs::read(&cert_file).unwrap();
        configured.root_cert = Some(
            <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(&roots)
                .map(|c| c.unwrap().to_vec())
                .collect(),
        );
        let routed = route_through(configured, local).unwrap();
        let answer = testkit::eventually::eventually(Duration::from_secs(10), || healthz(routed.clone()))
            .await
            .unwrap();
        assert_eq!(answer, "ok");
        // The control: verifying the address connected to fails, so the name above is what was checked.
        let mut unnamed = routed;
        unnamed.tls_server_name = None;
        let error = healthz(unnamed).await.unwrap_err();
        assert!(format!("{error:?}").contains("NotValidForName"), "{error:?}");
        shutdown.cancel();
    }

    #[test]
    fn the_api_servers_host_and_port_come_from_its_url() {
        assert_eq!(
            host_port("https://10.0.0.1:6443"),
            Some(("10.0.0.1".into(), 6443))
        );
        assert_eq!(
            host_port("https://api.example/"),
            Some(("api.example".into(), 443))
        );
        assert_eq!(
            host_port("https://[fd00::1]:6443"),
            Some(("fd00::1".into(), 6443))
        );
        assert_eq!(host_port("https://:x"), None);
    }
}
