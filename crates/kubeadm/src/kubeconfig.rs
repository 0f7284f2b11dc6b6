//! `kubeadm init phase kubeconfig`: the kubeconfig files of a control-plane node, each with a client certificate
//! signed by the cluster CA.

use crate::config::InitConfig;
use crate::{Error, Layout};
use pki::{CertSpec, Kubeconfig, Usage};
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeconfigDef {
    /// The phase name (`init phase kubeconfig <name>`).
    pub name: &'static str,
    pub file: &'static str,
    /// Uses this node's own API server rather than the control-plane endpoint.
    pub local: bool,
    pub purpose: &'static str,
}

pub const KUBECONFIGS: &[KubeconfigDef] = &[
    KubeconfigDef {
        name: "admin",
        file: "admin.conf",
        local: false,
        purpose: "the admin to use and for kubeadm itself",
    },
    KubeconfigDef {
        name: "super-admin",
        file: "super-admin.conf",
        local: false,
        purpose: "the super-admin",
    },
    KubeconfigDef {
        name: "kubelet",
        file: "kubelet.conf",
        local: false,
        purpose: "the kubelet to use (only for cluster bootstrapping purposes)",
    },
    KubeconfigDef {
        name: "controller-manager",
        file: "controller-manager.conf",
        local: true,
        purpose: "the controller manager to use",
    },
    KubeconfigDef {
        name: "scheduler",
        file: "scheduler.conf",
        local: true,
        purpose: "the scheduler manager to use",
    },
];

pub fn find(name: &str) -> Option<&'static KubeconfigDef> {
    KUBECONFIGS.iter().find(|k| k.name == name || k.file == name)
}

/// The client identity kubeadm puts in each file: (user name = CN, organization).
pub fn identity(def: &KubeconfigDef, node_name: &str) -> (String, Option<&'static str>) {
    match def.name {
        "admin" => ("kubernetes-admin".into(), Some("kubeadm:cluster-admins")),
        "super-admin" => ("kubernetes-super-admin".into(), Some("system:masters")),
        "kubelet" => (format!("system:node:{node_name}"), Some("system:nodes")),
        "controller-manager" => ("system:kube-controller-manager".into(), None),
        _ => ("system:kube-scheduler".into(), None),
    }
}

/// `kubeadm init phase kubeconfig <name>` (or `all`). Existing files are kept when they point at the same CA and
/// server, and refused otherwise.
pub fn run(
    cfg: &InitConfig,
    layout: &Layout,
    kubeconfig_dir: &str,
    name: &str,
    now: SystemTime,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let defs: Vec<&KubeconfigDef> = if name == "all" {
        KUBECONFIGS.iter().collect()
    } else {
        vec![find(name).ok_or_else(|| Error::Usage(format!("unknown kubeconfig {name:?}")))?]
    };
    let cert_dir = layout.host(&cfg.cluster.certificates_dir);
    let ca_cert = pki::read_cert(&cert_dir.join("ca.crt"))?;
    let ca_key_path = cert_dir.join("ca.key");
    let print = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|source| Error::Io {
            path: "<stdout>".into(),
            source,
        })
    };
    // Plan first so that an error leaves nothing written.
    let mut to_write: Vec<(PathBuf, Kubeconfig, String)> = Vec::new();
    let mut messages = vec![format!("[kubeconfig] Using kubeconfig folder {kubeconfig_dir:?}")];
    let file_path = |def: &KubeconfigDef| {
        let logical = format!("{}/{}", kubeconfig_dir.trim_end_matches('/'), def.file);
        (layout.host(&logical), logical)
    };
    // Keys for the files this run writes, generated up front on every core.
    let mut keys = pki::KeyPair::generate_many(
        cfg.cluster.encryption_algorithm,
        defs.iter().filter(|d| !file_path(d).0.exists()).count(),
    )?;
    let mut ca = None;
    for def in defs {
        let (path, logical) = file_path(def);
        let server = if def.local {
            cfg.local_url()
        } else {
            cfg.control_plane_url()
        };
        if path.exists() {
            let existing = Kubeconfig::read(&path)?;
            if existing.ca_certificate()? != ca_cert {
                return Err(Error::Kubeconfig(format!(
                    "a kubeconfig file {logical:?} exists already but has got the wrong CA cert"
                )));
            }
            if existing.server()? != server {
                return Err(Error::Kubeconfig(format!(
                    "a kubeconfig file {logical:?} exists already but has got the wrong API Server URL: {} instead of {server}",
                    existing.server()?
                )));
            }
            messages.push(format!(
                "[kubeconfig] Using existing kubeconfig file: {logical:?}"
            ));
            continue;
        }
        if ca.is_none() {
            ca = Some(
                pki::CertificateAuthority::from_parts(ca_cert.clone(), pki::read_key(&ca_key_path)?)
                    .map_err(|e| e.in_file(&ca_key_path))?,
            );
        }
        let Some(signer) = &ca else { continue };
        let (user, org) = identity(def, &cfg.node.name);
        let spec = CertSpec {
            common_name: user.clone(),
            organizations: org.map(|o| vec![o.to_string()]).unwrap_or_default(),
            usages: vec![Usage::ClientAuth],
            validity: pki::LEAF_VALIDITY,
            ..Default::default()
        };
        let key = match keys.pop() {
            Some(key) => key,
            None => pki::KeyPair::generate(cfg.cluster.encryption_algorithm)?,
        };
        let cert = signer.issue(&spec, &key, now)?;
        let config =
            Kubeconfig::for_client_cert(&cfg.cluster.cluster_name, &server, &ca_cert, &user, &cert, &key)?;
        messages.push(format!("[kubeconfig] Writing {:?} kubeconfig file", def.file));
        to_write.push((path, config, logical));
    }
    let mut written = Vec::new();
    for (path, config, _) in &to_write {
        if let Err(e) = config.write(path) {
            for p in written {
                let _ = std::fs::remove_file(p);
            }
            return Err(e.into());
        }
        written.push(path.clone());
    }
    for line in messages {
        print(out, line)?;
    }
    Ok(())
}
