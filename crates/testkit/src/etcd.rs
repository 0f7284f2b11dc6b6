//! Real etcd processes for tests: one plain-HTTP member on 127.0.0.1, or a TLS cluster whose members listen on
//! their own loopback addresses (127.0.0.11, .12, ...) with certificates from the `pki` crate. Ports are free
//! ports picked at start, data lives in a temporary directory, and dropping the fixture kills every process and
//! removes the directory.
//!
//! Members run with short raft timers (50 ms heartbeat, 500 ms election) so failover tests are quick, and with a
//! 2 MiB request limit so the store's full 1.5 MiB values fit.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tempfile::TempDir;
use tokio::time::Instant;

/// What can go wrong while running etcd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificates: {0}")]
    Pki(#[from] pki::Error),
    #[error("etcd member {name} exited early; its log ends with:\n{log}")]
    Exited { name: String, log: String },
    #[error("etcd member {name} not ready after {waited:?}: {last}")]
    NotReady {
        name: String,
        waited: Duration,
        last: String,
    },
    #[error("no leader among the running members after {0:?}")]
    NoLeader(Duration),
    #[error("member {0} is {1}")]
    BadMember(usize, &'static str),
    #[error("etcd client: {0}")]
    Client(#[from] etcd_client::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// The client-side TLS files, as kube-apiserver's `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REQUEST_BYTES: &str = "2097152";

struct Member {
    name: String,
    ip: IpAddr,
    client_port: u16,
    args: Vec<String>,
    log_file: PathBuf,
    child: Option<Child>,
    id: u64,
}

impl Member {
    fn spawn(&mut self) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(io(format!("open {}", self.log_file.display())))?;
        let log_err = log.try_clone().map_err(io("duplicate log handle"))?;
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(io("start etcd (is the etcd-server package installed?)"))?;
        tracing::debug!(member = %self.name, pid = child.id(), "etcd started");
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: the member gets no chance to hand over leadership or flush anything.
            let _ = child.kill();
            let _ = child.wait();
            tracing::debug!(member = %self.name, "etcd killed");
        }
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => false,
            Some(_) => {
                self.child = None;
                true
            }
            None => true,
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log_file) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A running etcd cluster (possibly of one member).
pub struct EtcdCluster {
    members: Vec<Member>,
    tls: Option<ClientTls>,
    scheme: &'static str,
    dir: TempDir,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("endpoints", &self.endpoints())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl EtcdCluster {
    /// One member speaking plain HTTP on 127.0.0.1.
    pub async fn start_single() -> Result<Self> {
        Self::start(1, false).await
    }

    /// `size` members with TLS for clients and peers (client certificates required on both), member `i` on
    /// 127.0.0.(11 + i).
    pub async fn start_tls(size: usize) -> Result<Self> {
        Self::start(size, true).await
    }

    async fn start(size: usize, tls: bool) -> Result<Self> {
        // A port picked as free can be taken by someone else before etcd binds it: try again with new ports.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(size, tls).await {
                Err(Error::Exited { name, log }) if attempt < 3 => {
                    tracing::warn!(%name, %log, "etcd failed to start; retrying with other ports");
                }
                other => return other,
            }
        }
    }

    async fn try_start(size: usize, tls: bool) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-etcd-")
            .tempdir()
            .map_err(io("create temp dir"))?;
        let ips: Vec<IpAddr> = (0..size)
            .map(|i| {
                if tls {
                    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11 + i as u8))
                } else {
                    IpAddr::V4(Ipv4Addr::LOCALHOST)
                }
            })
            .collect();
        // Hold every listener until all ports are chosen so no two members get the same one.
        let mut held = Vec::new();
        let mut ports = Vec::new();
        for ip in &ips {
            let client = TcpListener::bind((*ip, 0)).map_err(io(format!("bind {ip}")))?;
            let peer = TcpListener::bind((*ip, 0)).map_err(io(format!("bind {ip}")))?;
            ports.push((port_of(&client)?, port_of(&peer)?));
            held.push((client, peer));
        }
        let scheme = if tls { "https" } else { "http" };
        let names: Vec<String> = (0..size).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .zip(&ips)
            .zip(&ports)
            .map(|((name, ip), (_, peer))| format!("{name}={scheme}://{ip}:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let certs = if tls {
            Some(write_pki(dir.path(), &names, &ips)?)
        } else {
            None
        };
        let token = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        let mut members = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let (ip, (client_port, peer_port)) = (ips[i], ports[i]);
            let client_url = format!("{scheme}://{ip}:{client_port}");
            let peer_url = format!("{scheme}://{ip}:{peer_port}");
            let data_dir = dir.path().join(name);
            let mut args: Vec<String> = [
                "--name",
                name,
                "--data-dir",
                &data_dir.to_string_lossy(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--max-request-bytes",
                MAX_REQUEST_BYTES,
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some((ca, _)) = &certs {
                let cert = dir.path().join("pki").join(format!("{name}.crt"));
                let key = dir.path().join("pki").join(format!("{name}.key"));
                for (flag, path) in [
                    ("--cert-file", &cert),
                    ("--key-file", &key),
                    ("--trusted-ca-file", ca),
                    ("--peer-cert-file", &cert),
                    ("--peer-key-file", &key),
                    ("--peer-trusted-ca-file", ca),
                ] {
                    args.push(flag.into());
                    args.push(path.to_string_lossy().into_owned());
                }
                args.push("--client-cert-auth".into());
                args.push("--peer-client-cert-auth".into());
            }
            members.push(Member {
                name: name.clone(),
                ip,
                client_port,
                args,
                log_file: dir.path().join(format!("{name}.log")),
                child: None,
                id: 0,
            });
        }
        let mut cluster = EtcdCluster {
            members,
            tls: certs.map(|(_, client)| client),
            scheme,
            dir,
        };
        drop(held);
        for member in &mut cluster.members {
            member.spawn()?;
        }
        for i in 0..size {
            cluster.wait_serving(i).await?;
        }
        cluster.wait_for_leader(READY_TIMEOUT).await?;
        Ok(cluster)
    }

    /// Client URLs of all members, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("{}://{}:{}", self.scheme, m.ip, m.client_port)
    }

    /// Client TLS files, for a TLS cluster.
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// The directory holding data dirs, logs (`m<i>.log`) and certificates (`pki/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        !self.members[i].exited()
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data directory and waits until it answers (not until it has a leader: with
    /// quorum lost it cannot have one yet).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        if !self.members[i].exited() {
            return Err(Error::BadMember(i, "still running"));
        }
        self.members[i].spawn()?;
        self.wait_serving(i).await
    }

    /// Connection options for this cluster's endpoints (TLS files included).
    pub fn connect_options(&self) -> Result<ConnectOptions> {
        let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
        if let Some(tls) = &self.tls {
            let read = |p: &PathBuf| std::fs::read(p).map_err(io(format!("read {}", p.display())));
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(read(&tls.ca_file)?))
                    .identity(Identity::from_pem(read(&tls.cert_file)?, read(&tls.key_file)?)),
            );
        }
        Ok(options)
    }

    /// A raw etcd client on every endpoint.
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.endpoints(), Some(self.connect_options()?)).await?)
    }

    /// `(member id, leader id)` as member `i` sees them; leader 0 means none.
    async fn status(&self, i: usize) -> Result<(u64, u64)> {
        let mut client = Client::connect([self.endpoint(i)], Some(self.connect_options()?)).await?;
        let status = tokio::time::timeout(Duration::from_secs(2), client.status())
            .await
            .map_err(|_| etcd_client::Error::Internal("status timed out".into()))??;
        Ok((status.header().map_or(0, |h| h.member_id()), status.leader()))
    }

    async fn wait_serving(&mut self, i: usize) -> Result<()> {
        let start = Instant::now();
        let mut last = String::from("not asked yet");
        while start.elapsed() < READY_TIMEOUT {
            if self.members[i].exited() {
                return Err(Error::Exited {
                    name: self.members[i].name.clone(),
                    log: self.members[i].log_tail(),
                });
            }
            match self.status(i).await {
                Ok((id, _)) => {
                    self.members[i].id = id;
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::NotReady {
            name: self.members[i].name.clone(),
            waited: start.elapsed(),
            last,
        })
    }

    /// Index of the current leader, as the running members report it.
    pub async fn leader(&mut self) -> Result<Option<usize>> {
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                continue;
            }
            if let Ok((_, leader)) = self.status(i).await
                && leader != 0
            {
                return Ok(self.members.iter().position(|m| m.id == leader));
            }
        }
        Ok(None)
    }

    /// Waits until the running members agree on a running leader; returns its index.
    pub async fn wait_for_leader(&mut self, timeout: Duration) -> Result<usize> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let mut seen = Vec::new();
            for i in 0..self.members.len() {
                if self.is_running(i) {
                    seen.push(self.status(i).await.map(|(_, leader)| leader).unwrap_or(0));
                }
            }
            if let Some(&leader) = seen.first()
                && leader != 0
                && seen.iter().all(|l| *l == leader)
                && let Some(index) = self.members.iter().position(|m| m.id == leader)
                && self.is_running(index)
            {
                return Ok(index);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::NoLeader(timeout))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // Processes first: the temporary directory goes after them, when the fields drop.
        for member in &mut self.members {
            member.kill();
        }
    }
}

fn port_of(listener: &TcpListener) -> Result<u16> {
    Ok(listener.local_addr().map_err(io("local address"))?.port())
}

/// Writes a CA, one serving+peer certificate per member and a client certificate under `dir/pki`; returns the CA
/// path and the client files.
fn write_pki(dir: &Path, names: &[String], ips: &[IpAddr]) -> Result<(PathBuf, ClientTls)> {
    let pki_dir = dir.join("pki");
    std::fs::create_dir_all(&pki_dir).map_err(io("create pki dir"))?;
    let now = SystemTime::now();
    let ca = pki::CertificateAuthority::self_signed(
        "etcd-ca",
        pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?,
        pki::CA_VALIDITY,
        now,
    )?;
    let write = |name: &str, text: &str| {
        let path = pki_dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
        Ok::<_, Error>(path)
    };
    let ca_file = write("ca.crt", ca.certificate().pem())?;
    let issue = |file: &str, common_name: &str, ips: Vec<IpAddr>, usages: Vec<pki::Usage>| {
        let key = pki::KeyPair::generate(pki::KeyAlgorithm::EcdsaP256)?;
        let spec = pki::CertSpec {
            common_name: common_name.into(),
            organizations: vec![],
            dns_names: vec!["localhost".into()],
            ips,
            usages,
            validity: pki::LEAF_VALIDITY,
        };
        let cert = ca.issue(&spec, &key, now)?;
        Ok::<_, Error>((
            write(&format!("{file}.crt"), cert.pem())?,
            write(&format!("{file}.key"), &key.to_pem()?)?,
        ))
    };
    for (name, ip) in names.iter().zip(ips) {
        let sans = vec![*ip, IpAddr::V4(Ipv4Addr::LOCALHOST)];
        issue(
            name,
            name,
            sans,
            vec![pki::Usage::ServerAuth, pki::Usage::ClientAuth],
        )?;
    }
    let (cert_file, key_file) = issue(
        "client",
        "kube-apiserver-etcd-client",
        vec![],
        vec![pki::Usage::ClientAuth],
    )?;
    Ok((
        ca_file,
        ClientTls {
            ca_file: pki_dir.join("ca.crt"),
            cert_file,
            key_file,
        },
    ))
}
