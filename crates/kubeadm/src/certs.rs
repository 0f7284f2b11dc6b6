//! `kubeadm init phase certs`: the certificate set of a control-plane node, in kubeadm's file layout, subjects,
//! SANs and usages.
//!
//! Work happens in two steps so that bad input leaves nothing behind: [`plan`] loads what exists, validates it
//! and generates everything missing in memory; [`Plan::write`] then writes the new files, removing what it wrote
//! if any write fails. Existing valid files are reused, an existing CA signs new leaves, and a CA is never
//! overwritten.

use crate::config::{Etcd, InitConfig, first_service_ip, split_host_port};
use crate::{Error, Layout};
use pki::{CertSpec, Certificate, CertificateAuthority, KeyPair, Usage};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

/// How a certificate relates to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Authority,
    Leaf { ca: &'static str },
    ServiceAccountKey,
}

/// One entry of kubeadm's certificate list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertDef {
    /// The phase name (`init phase certs <name>`, `certs renew <name>`).
    pub name: &'static str,
    /// Path of the `.crt`/`.key` pair below the certificate directory, without extension.
    pub base: &'static str,
    pub role: Role,
    /// Only created for a stacked (local) etcd.
    pub local_etcd_only: bool,
    /// Wording of kubeadm's help and `certs renew` output.
    pub purpose: &'static str,
}

/// kubeadm's certificates in the order `init phase certs all` creates them.
pub const CERTS: &[CertDef] = &[
    CertDef {
        name: "ca",
        base: "ca",
        role: Role::Authority,
        local_etcd_only: false,
        purpose: "the self-signed Kubernetes CA to provision identities for other Kubernetes components",
    },
    CertDef {
        name: "apiserver",
        base: "apiserver",
        role: Role::Leaf { ca: "ca" },
        local_etcd_only: false,
        purpose: "serving the Kubernetes API",
    },
    CertDef {
        name: "apiserver-kubelet-client",
        base: "apiserver-kubelet-client",
        role: Role::Leaf { ca: "ca" },
        local_etcd_only: false,
        purpose: "the API server to connect to kubelet",
    },
    CertDef {
        name: "front-proxy-ca",
        base: "front-proxy-ca",
        role: Role::Authority,
        local_etcd_only: false,
        purpose: "the self-signed CA to provision identities for front proxy",
    },
    CertDef {
        name: "front-proxy-client",
        base: "front-proxy-client",
        role: Role::Leaf { ca: "front-proxy-ca" },
        local_etcd_only: false,
        purpose: "the front proxy client",
    },
    CertDef {
        name: "etcd-ca",
        base: "etcd/ca",
        role: Role::Authority,
        local_etcd_only: true,
        purpose: "the self-signed CA to provision identities for etcd",
    },
    CertDef {
        name: "etcd-server",
        base: "etcd/server",
        role: Role::Leaf { ca: "etcd-ca" },
        local_etcd_only: true,
        purpose: "serving etcd",
    },
    CertDef {
        name: "etcd-peer",
        base: "etcd/peer",
        role: Role::Leaf { ca: "etcd-ca" },
        local_etcd_only: true,
        purpose: "etcd nodes to communicate with each other",
    },
    CertDef {
        name: "etcd-healthcheck-client",
        base: "etcd/healthcheck-client",
        role: Role::Leaf { ca: "etcd-ca" },
        local_etcd_only: true,
        purpose: "liveness probes to healthcheck etcd",
    },
    CertDef {
        name: "apiserver-etcd-client",
        base: "apiserver-etcd-client",
        role: Role::Leaf { ca: "etcd-ca" },
        local_etcd_only: true,
        purpose: "the apiserver to access etcd",
    },
    CertDef {
        name: "sa",
        base: "sa",
        role: Role::ServiceAccountKey,
        local_etcd_only: false,
        purpose: "a private key for signing service account tokens along with its public key",
    },
];

pub fn find(name: &str) -> Option<&'static CertDef> {
    CERTS.iter().find(|c| c.name == name)
}

/// Common names of the CAs, as kubeadm sets them.
fn ca_common_name(name: &str) -> &'static str {
    match name {
        "front-proxy-ca" => "front-proxy-ca",
        "etcd-ca" => "etcd-ca",
        _ => "kubernetes",
    }
}

/// The subject, SANs and usages kubeadm gives a leaf for this configuration.
pub fn leaf_spec(def: &CertDef, cfg: &InitConfig) -> Result<CertSpec, Error> {
    let node = &cfg.node;
    let client = |cn: &str, org: Option<&str>| CertSpec {
        common_name: cn.into(),
        organizations: org.map(|o| vec![o.to_string()]).unwrap_or_default(),
        usages: vec![Usage::ClientAuth],
        validity: pki::LEAF_VALIDITY,
        ..Default::default()
    };
    let etcd_serving = |extra: &[String]| -> Result<CertSpec, Error> {
        let mut spec = CertSpec {
            common_name: node.name.clone(),
            usages: vec![Usage::ServerAuth, Usage::ClientAuth],
            validity: pki::LEAF_VALIDITY,
            ..Default::default()
        };
        let mut sans = vec![
            node.name.clone(),
            "localhost".into(),
            node.advertise_address.to_string(),
        ];
        sans.extend(["127.0.0.1".to_string(), "::1".to_string()]);
        sans.extend(extra.iter().cloned());
        spec.add_sans(&sans)?;
        Ok(spec)
    };
    let local = match &cfg.cluster.etcd {
        Etcd::Local(local) => Some(local),
        Etcd::External(_) | Etcd::Embedded => None,
    };
    Ok(match def.name {
        "apiserver" => {
            let mut spec = CertSpec {
                common_name: "kube-apiserver".into(),
                usages: vec![Usage::ServerAuth],
                validity: pki::LEAF_VALIDITY,
                ..Default::default()
            };
            let domain = &cfg.cluster.dns_domain;
            let mut sans = vec![
                node.name.clone(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                format!("kubernetes.default.svc.{domain}"),
            ];
            if let Some(ip) = first_service_ip(&cfg.cluster.service_subnet) {
                sans.push(ip.to_string());
            }
            sans.push(node.advertise_address.to_string());
            if let Some(cpe) = &cfg.cluster.control_plane_endpoint
                && let Ok((host, _)) = split_host_port(cpe)
            {
                sans.push(host);
            }
            sans.extend(cfg.cluster.api_server_cert_sans.iter().cloned());
            spec.add_sans(&sans)?;
            spec
        }
        "apiserver-kubelet-client" => client("kube-apiserver-kubelet-client", Some("kubeadm:cluster-admins")),
        "front-proxy-client" => client("front-proxy-client", None),
        "etcd-server" => etcd_serving(local.map(|l| l.server_cert_sans.as_slice()).unwrap_or_default())?,
        "etcd-peer" => etcd_serving(local.map(|l| l.peer_cert_sans.as_slice()).unwrap_or_default())?,
        "etcd-healthcheck-client" => client("kube-etcd-healthcheck-client", None),
        "apiserver-etcd-client" => client("kube-apiserver-etcd-client", None),
        other => return Err(Error::Usage(format!("{other} is not a leaf certificate"))),
    })
}

/// A file pair a run will write.
enum Step {
    NewPair {
        def: &'static CertDef,
        cert: Certificate,
        key_pem: String,
    },
    NewServiceAccountKey {
        key_pem: String,
        public_pem: String,
    },
}

/// The outcome of planning: messages to print and files to write.
pub struct Plan {
    layout: Layout,
    cert_dir: String,
    steps: Vec<Step>,
    messages: Vec<String>,
}

/// A CA as found on disk or generated in this run; without a key it can only verify.
struct Authority {
    cert: Certificate,
    signer: Option<CertificateAuthority>,
}

struct Planner<'a> {
    cfg: &'a InitConfig,
    layout: &'a Layout,
    now: SystemTime,
    authorities: BTreeMap<&'static str, Authority>,
    /// Keys generated ahead, in parallel, for the certificates this run creates.
    keys: Vec<KeyPair>,
}

impl Planner<'_> {
    fn take_key(&mut self) -> Result<KeyPair, Error> {
        match self.keys.pop() {
            Some(key) => Ok(key),
            None => Ok(KeyPair::generate(self.cfg.cluster.encryption_algorithm)?),
        }
    }

    /// How many new certificate keys `defs` will need: those whose files are all missing.
    fn keys_needed(&self, defs: &[&CertDef]) -> usize {
        defs.iter()
            .filter(|d| d.role != Role::ServiceAccountKey)
            .filter(|d| {
                let (crt, key, _) = self.paths(d);
                !crt.exists() && !key.exists()
            })
            .count()
    }

    fn paths(&self, def: &CertDef) -> (PathBuf, PathBuf, String) {
        let logical = format!(
            "{}/{}",
            self.cfg.cluster.certificates_dir.trim_end_matches('/'),
            def.base
        );
        let host = self.layout.host(&logical);
        (host.with_extension("crt"), host.with_extension("key"), logical)
    }

    fn authority(&mut self, name: &'static str) -> Result<&Authority, Error> {
        if !self.authorities.contains_key(name) {
            let def = find(name).ok_or_else(|| Error::Usage(format!("unknown CA {name}")))?;
            let (crt, key, _) = self.paths(def);
            if !crt.exists() {
                return Err(Error::Certs(format!(
                    "failure loading {name} certificate authority: couldn't load the certificate file {}: no such file; create it first with `kubeadm init phase certs {name}`",
                    self.layout.display(&crt)
                )));
            }
            let cert = pki::read_cert(&crt)?;
            let signer = if key.exists() {
                Some(
                    CertificateAuthority::from_parts(cert.clone(), pki::read_key(&key)?)
                        .map_err(|e| e.in_file(&key))?,
                )
            } else {
                None
            };
            self.authorities.insert(name, Authority { cert, signer });
        }
        self.authorities
            .get(name)
            .ok_or_else(|| Error::Usage(format!("unknown CA {name}")))
    }

    fn plan_authority(&mut self, def: &'static CertDef, plan: &mut Plan) -> Result<(), Error> {
        let (crt, key, _) = self.paths(def);
        match (crt.exists(), key.exists()) {
            (true, _) => {
                self.authority(def.name)?;
                plan.messages.push(format!(
                    "[certs] Using existing {} certificate authority",
                    def.base
                ));
            }
            (false, true) => {
                return Err(Error::Certs(format!(
                    "{} exists but {} does not; refusing to overwrite a CA key. Restore the certificate or remove the key",
                    self.layout.display(&key),
                    self.layout.display(&crt)
                )));
            }
            (false, false) => {
                let key = self.take_key()?;
                let ca = CertificateAuthority::self_signed(
                    ca_common_name(def.name),
                    key,
                    pki::CA_VALIDITY,
                    self.now,
                )?;
                plan.messages
                    .push(format!("[certs] Generating \"{}\" certificate and key", def.base));
                let cert = ca.certificate().clone();
                plan.steps.push(Step::NewPair {
                    def,
                    cert: cert.clone(),
                    key_pem: ca.key().to_pem()?,
                });
                self.authorities.insert(
                    def.name,
                    Authority {
                        cert,
                        signer: Some(ca),
                    },
                );
            }
        }
        Ok(())
    }

    fn plan_leaf(
        &mut self,
        def: &'static CertDef,
        ca_name: &'static str,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        let spec = leaf_spec(def, self.cfg)?;
        let (crt, key_path, _) = self.paths(def);
        let now = self.now;
        let layout = self.layout.clone();
        let ca_key_path = self
            .paths(find(ca_name).ok_or_else(|| Error::Usage(ca_name.into()))?)
            .1;
        let ca = self.authority(ca_name)?;
        let (ca_cert, can_sign) = (ca.cert.clone(), ca.signer.is_some());
        match (crt.exists(), key_path.exists()) {
            (true, true) => {
                let cert = pki::read_cert(&crt)?;
                let key = pki::read_key(&key_path)?;
                validate_existing(def, &cert, &key, &ca_cert, &spec, now).map_err(|reason| {
                    Error::Certs(format!(
                        "certificate {} ({}) is invalid: {reason}",
                        def.base,
                        layout.display(&crt)
                    ))
                })?;
                plan.messages.push(format!(
                    "[certs] Using existing {} certificate and key on disk",
                    def.base
                ));
            }
            (true, false) | (false, true) => {
                let (present, missing) = if crt.exists() {
                    (&crt, &key_path)
                } else {
                    (&key_path, &crt)
                };
                return Err(Error::Certs(format!(
                    "{} exists but {} is missing; remove the first or restore the second",
                    layout.display(present),
                    layout.display(missing)
                )));
            }
            (false, false) => {
                if !can_sign {
                    return Err(Error::Certs(format!(
                        "unable to create the {} certificate: the {ca_name} key {} is missing (with an external CA every leaf certificate must be provided)",
                        def.base,
                        layout.display(&ca_key_path)
                    )));
                }
                let key = self.take_key()?;
                let signer = self
                    .authorities
                    .get(ca_name)
                    .and_then(|a| a.signer.as_ref())
                    .ok_or_else(|| Error::Usage(format!("no signer for {ca_name}")))?;
                let cert = signer.issue(&spec, &key, now)?;
                plan.messages
                    .push(format!("[certs] Generating \"{}\" certificate and key", def.base));
                if spec.usages.contains(&Usage::ServerAuth) {
                    let mut dns = spec.dns_names.clone();
                    dns.sort();
                    let ips: Vec<String> = spec.ips.iter().map(IpAddr::to_string).collect();
                    plan.messages.push(format!(
                        "[certs] {} serving cert is signed for DNS names [{}] and IPs [{}]",
                        def.base,
                        dns.join(" "),
                        ips.join(" ")
                    ));
                }
                plan.steps.push(Step::NewPair {
                    def,
                    cert,
                    key_pem: key.to_pem()?,
                });
            }
        }
        Ok(())
    }

    fn plan_service_account(&mut self, def: &'static CertDef, plan: &mut Plan) -> Result<(), Error> {
        let dir = self.layout.host(&self.cfg.cluster.certificates_dir);
        let (key, public) = (dir.join("sa.key"), dir.join("sa.pub"));
        if key.exists() {
            let existing = pki::read_key(&key)?;
            if public.exists() {
                let text = std::fs::read_to_string(&public).map_err(|source| Error::Io {
                    path: public.clone(),
                    source,
                })?;
                if text.trim() != existing.public_key_pem().trim() {
                    return Err(Error::Certs(format!(
                        "{} does not match {}",
                        self.layout.display(&public),
                        self.layout.display(&key)
                    )));
                }
            }
            plan.messages
                .push(format!("[certs] Using the existing \"{}\" key", def.name));
        } else {
            plan.messages
                .push(format!("[certs] Generating \"{}\" key and public key", def.name));
            let key = KeyPair::generate(pki::KeyAlgorithm::Rsa2048)?;
            plan.steps.push(Step::NewServiceAccountKey {
                key_pem: key.to_pem()?,
                public_pem: key.public_key_pem(),
            });
        }
        Ok(())
    }
}

/// Why an existing leaf can't be reused, if it can't.
fn validate_existing(
    def: &CertDef,
    cert: &Certificate,
    key: &KeyPair,
    ca: &Certificate,
    spec: &CertSpec,
    now: SystemTime,
) -> Result<(), String> {
    let info = cert.info().map_err(|e| e.to_string())?;
    if !cert.matches_key(key).map_err(|e| e.to_string())? {
        return Err(format!(
            "the private key {}.key does not match the certificate",
            def.base
        ));
    }
    if !cert.is_signed_by(ca).map_err(|e| e.to_string())? {
        return Err("it is not signed by the current CA".into());
    }
    if info.not_after <= now {
        return Err("it has expired; renew it with `kubeadm certs renew`".into());
    }
    for dns in &spec.dns_names {
        if !info.dns_names.contains(dns) {
            return Err(format!("it is not valid for {dns}"));
        }
    }
    for ip in &spec.ips {
        if !info.ips.contains(ip) {
            return Err(format!("it is not valid for {ip}"));
        }
    }
    for usage in &spec.usages {
        if !info.usages.contains(usage) {
            return Err(format!("it lacks the {usage:?} extended key usage"));
        }
    }
    Ok(())
}

/// Works out what `init phase certs <names>` will do, generating new material in memory only.
pub fn plan(cfg: &InitConfig, layout: &Layout, names: &[&str], now: SystemTime) -> Result<Plan, Error> {
    let cert_dir = cfg.cluster.certificates_dir.clone();
    let host_dir = layout.host(&cert_dir);
    check_dir(layout, &host_dir)?;
    let mut plan = Plan {
        layout: layout.clone(),
        cert_dir,
        steps: Vec::new(),
        messages: Vec::new(),
    };
    // etcd's certificates exist only where kubeadm runs etcd itself.
    let no_local_etcd = !matches!(cfg.cluster.etcd, Etcd::Local(_));
    let mode = match cfg.cluster.etcd {
        Etcd::Embedded => "Embedded store mode",
        _ => "External etcd mode",
    };
    let mut defs = Vec::new();
    for name in names {
        defs.push(find(name).ok_or_else(|| Error::Usage(format!("unknown certificate {name:?}")))?);
    }
    let mut planner = Planner {
        cfg,
        layout,
        now,
        authorities: BTreeMap::new(),
        keys: Vec::new(),
    };
    let wanted: Vec<&CertDef> = defs
        .iter()
        .copied()
        .filter(|d| !(d.local_etcd_only && no_local_etcd))
        .collect();
    planner.keys = KeyPair::generate_many(cfg.cluster.encryption_algorithm, planner.keys_needed(&wanted))?;
    for def in defs {
        if def.local_etcd_only && no_local_etcd {
            let what = if def.role == Role::Authority {
                "certificate authority"
            } else {
                "certificate"
            };
            plan.messages
                .push(format!("[certs] {mode}: Skipping {} {what} generation", def.base));
            continue;
        }
        match def.role {
            Role::Authority => planner.plan_authority(def, &mut plan)?,
            Role::Leaf { ca } => planner.plan_leaf(def, ca, &mut plan)?,
            Role::ServiceAccountKey => planner.plan_service_account(def, &mut plan)?,
        }
    }
    Ok(plan)
}

/// The certificate directory must be a readable, writable directory if it exists at all.
fn check_dir(layout: &Layout, dir: &std::path::Path) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(Error::Certs(format!(
            "the certificate directory {} is not a directory",
            layout.display(dir)
        ))),
        Ok(_) => std::fs::read_dir(dir).map(|_| ()).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

impl Plan {
    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    /// Writes the new files; on failure removes the ones this call wrote, so nothing partial is left.
    pub fn write(self, out: &mut dyn Write) -> Result<(), Error> {
        let dir = self.layout.host(&self.cert_dir);
        let mut written: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for step in &self.steps {
                match step {
                    Step::NewPair { def, cert, key_pem } => {
                        let base = dir.join(def.base);
                        let (crt, key_path) = (base.with_extension("crt"), base.with_extension("key"));
                        written.push(key_path.clone());
                        pki::write_private(&key_path, key_pem.as_bytes())?;
                        written.push(crt.clone());
                        pki::write_public(&crt, cert.pem().as_bytes())?;
                    }
                    Step::NewServiceAccountKey { key_pem, public_pem } => {
                        let (priv_path, pub_path) = (dir.join("sa.key"), dir.join("sa.pub"));
                        written.push(priv_path.clone());
                        pki::write_private(&priv_path, key_pem.as_bytes())?;
                        written.push(pub_path.clone());
                        pki::write_public(&pub_path, public_pem.as_bytes())?;
                    }
                }
            }
            Ok::<(), Error>(())
        })();
        if let Err(e) = result {
            for path in written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        for message in &self.messages {
            writeln!(out, "{message}").map_err(|source| Error::Io {
                path: "<stdout>".into(),
                source,
            })?;
        }
        Ok(())
    }
}

/// `kubeadm init phase certs <name>` (or `all`): plan, then write, printing kubeadm's messages.
pub fn run(
    cfg: &InitConfig,
    layout: &Layout,
    name: &str,
    now: SystemTime,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let names: Vec<&str> = if name == "all" {
        CERTS.iter().map(|c| c.name).collect()
    } else {
        vec![name]
    };
    let plan = plan(cfg, layout, &names, now)?;
    if name == "all" {
        writeln!(
            out,
            "[certs] Using certificateDir folder {:?}",
            cfg.cluster.certificates_dir
        )
        .map_err(|source| Error::Io {
            path: "<stdout>".into(),
            source,
        })?;
    }
    plan.write(out)
}
