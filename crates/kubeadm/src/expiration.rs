//! `kubeadm certs check-expiration` and `kubeadm certs renew`: the leaf certificates on disk and those embedded in
//! kubeconfig files. `kubelet.conf` is left out as upstream does: the kubelet rotates its own client certificate.

use crate::certs::{self, CertDef, Role};
use crate::config::{Etcd, InitConfig};
use crate::kubeconfig::{self, KubeconfigDef};
use crate::{Error, Layout};
use pki::{CertSpec, Certificate, Kubeconfig};
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

/// A renewable certificate: a file pair or a kubeconfig's embedded client certificate.
#[derive(Debug, Clone, Copy)]
enum Item {
    File(&'static CertDef),
    Kubeconfig(&'static KubeconfigDef),
}

impl Item {
    fn name(&self) -> &'static str {
        match self {
            Item::File(def) => def.name,
            Item::Kubeconfig(def) => def.file,
        }
    }

    fn ca(&self) -> &'static str {
        match self {
            Item::File(CertDef {
                role: Role::Leaf { ca },
                ..
            }) => ca,
            _ => "ca",
        }
    }

    fn description(&self) -> String {
        match self {
            Item::File(def) => format!("certificate for {}", def.purpose),
            Item::Kubeconfig(def) => {
                format!("certificate embedded in the kubeconfig file for {}", def.purpose)
            }
        }
    }
}

fn items(cfg: &InitConfig) -> Vec<Item> {
    let no_local_etcd = !matches!(cfg.cluster.etcd, Etcd::Local(_));
    let mut items: Vec<Item> = certs::CERTS
        .iter()
        .filter(|d| matches!(d.role, Role::Leaf { .. }) && !(no_local_etcd && d.local_etcd_only))
        .map(Item::File)
        .chain(
            kubeconfig::KUBECONFIGS
                .iter()
                .filter(|k| k.name != "kubelet")
                .map(Item::Kubeconfig),
        )
        .collect();
    items.sort_by_key(|i| i.name());
    items
}

struct Paths<'a> {
    layout: &'a Layout,
    cert_dir: String,
    kubeconfig_dir: String,
}

impl Paths<'_> {
    fn cert(&self, base: &str) -> (PathBuf, PathBuf) {
        let host = self
            .layout
            .host(format!("{}/{base}", self.cert_dir.trim_end_matches('/')));
        (host.with_extension("crt"), host.with_extension("key"))
    }

    fn kubeconfig(&self, file: &str) -> PathBuf {
        self.layout
            .host(format!("{}/{file}", self.kubeconfig_dir.trim_end_matches('/')))
    }

    /// The certificate of an item, `None` if its file is missing.
    fn load(&self, item: Item) -> Result<Option<Certificate>, Error> {
        match item {
            Item::File(def) => {
                let (crt, _) = self.cert(def.base);
                if crt.exists() {
                    Ok(Some(pki::read_cert(&crt)?))
                } else {
                    Ok(None)
                }
            }
            Item::Kubeconfig(def) => {
                let path = self.kubeconfig(def.file);
                if path.exists() {
                    let config = Kubeconfig::read(&path)?;
                    Ok(Some(config.client_certificate().map_err(|e| e.in_file(&path))?))
                } else {
                    Ok(None)
                }
            }
        }
    }
}

/// Go's `duration.ShortHumanDuration`, as kubeadm prints residual time.
pub fn short_human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s if s < 86400 * 365 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

fn format_expiry(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    t.format(&fmt).unwrap_or_else(|_| t.to_string())
}

fn residual(not_after: SystemTime, now: SystemTime) -> String {
    match not_after.duration_since(now) {
        Ok(d) => short_human_duration(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        Err(_) => "<invalid>".into(),
    }
}

/// Go's text/tabwriter as kubeadm configures it (minwidth 10, padding 3): every column but the last is padded.
fn tabulate(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

pub fn check_expiration(
    cfg: &InitConfig,
    layout: &Layout,
    kubeconfig_dir: &str,
    now: SystemTime,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let paths = Paths {
        layout,
        cert_dir: cfg.cluster.certificates_dir.clone(),
        kubeconfig_dir: kubeconfig_dir.into(),
    };
    let ca_key_exists = |name: &str| certs::find(name).is_some_and(|d| paths.cert(d.base).1.exists());
    let mut rows = vec![
        [
            "CERTIFICATE",
            "EXPIRES",
            "RESIDUAL TIME",
            "CERTIFICATE AUTHORITY",
            "EXTERNALLY MANAGED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for item in items(cfg) {
        match paths.load(item)? {
            Some(cert) => {
                let info = cert.info()?;
                let external = if ca_key_exists(item.ca()) { "no" } else { "yes" };
                rows.push(vec![
                    item.name().into(),
                    format_expiry(info.not_after),
                    residual(info.not_after, now),
                    item.ca().into(),
                    external.into(),
                ]);
            }
            None => rows.push(vec![format!("!MISSING! {}", item.name()), String::new()]),
        }
    }
    let mut ca_rows = vec![
        [
            "CERTIFICATE AUTHORITY",
            "EXPIRES",
            "RESIDUAL TIME",
            "EXTERNALLY MANAGED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let no_local_etcd = !matches!(cfg.cluster.etcd, Etcd::Local(_));
    let mut authorities: Vec<&CertDef> = certs::CERTS
        .iter()
        .filter(|d| d.role == Role::Authority && !(no_local_etcd && d.local_etcd_only))
        .collect();
    authorities.sort_by_key(|d| d.name);
    for def in authorities {
        let (crt, key) = paths.cert(def.base);
        if crt.exists() {
            let info = pki::read_cert(&crt)?.info()?;
            let external = if key.exists() { "no" } else { "yes" };
            ca_rows.push(vec![
                def.name.into(),
                format_expiry(info.not_after),
                residual(info.not_after, now),
                external.into(),
            ]);
        } else {
            ca_rows.push(vec![format!("!MISSING! {}", def.name), String::new()]);
        }
    }
    write!(out, "\n{}\n{}", tabulate(&rows), tabulate(&ca_rows)).map_err(|source| Error::Io {
        path: "<stdout>".into(),
        source,
    })
}

/// Names `kubeadm certs renew` accepts, besides `all`.
pub fn renewable_names(cfg: &InitConfig) -> Vec<&'static str> {
    items(cfg).iter().map(Item::name).collect()
}

/// Re-issues certificates with the same subject, SANs and usages, a new key and a fresh year of validity.
pub fn renew(
    cfg: &InitConfig,
    layout: &Layout,
    kubeconfig_dir: &str,
    name: &str,
    now: SystemTime,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let paths = Paths {
        layout,
        cert_dir: cfg.cluster.certificates_dir.clone(),
        kubeconfig_dir: kubeconfig_dir.into(),
    };
    let all = items(cfg);
    let selected: Vec<Item> = if name == "all" {
        all
    } else {
        vec![*all.iter().find(|i| i.name() == name).ok_or_else(|| {
            Error::Usage(format!(
                "unknown certificate {name:?}; expected all or one of: {}",
                renewable_names(cfg).join(", ")
            ))
        })?]
    };
    let print = |out: &mut dyn Write, line: &str| {
        writeln!(out, "{line}").map_err(|source| Error::Io {
            path: "<stdout>".into(),
            source,
        })
    };
    for item in selected {
        let Some(cert) = paths.load(item)? else {
            if name == "all" {
                print(out, &format!("MISSING! {}", item.description()))?;
                continue;
            }
            return Err(Error::Certs(format!(
                "{} is missing; nothing to renew",
                item.name()
            )));
        };
        let ca_def = certs::find(item.ca()).ok_or_else(|| Error::Usage(item.ca().into()))?;
        let (ca_crt, ca_key) = paths.cert(ca_def.base);
        if !ca_key.exists() {
            return Err(Error::Certs(format!(
                "unable to renew {}: the {} key {} is missing (an external CA renews its own certificates)",
                item.name(),
                ca_def.name,
                layout.display(&ca_key)
            )));
        }
        let ca = pki::CertificateAuthority::from_parts(pki::read_cert(&ca_crt)?, pki::read_key(&ca_key)?)
            .map_err(|e| e.in_file(&ca_key))?;
        let info = cert.info()?;
        let spec = CertSpec {
            common_name: info.common_name,
            organizations: info.organizations,
            dns_names: info.dns_names,
            ips: info.ips,
            usages: info.usages,
            validity: pki::LEAF_VALIDITY,
        };
        let key = pki::KeyPair::generate(cfg.cluster.encryption_algorithm)?;
        let renewed = ca.issue(&spec, &key, now)?;
        match item {
            Item::File(def) => pki::write_cert_and_key(
                &layout.host(&cfg.cluster.certificates_dir),
                def.base,
                &renewed,
                &key,
            )?,
            Item::Kubeconfig(def) => {
                let path = paths.kubeconfig(def.file);
                let mut config = Kubeconfig::read(&path)?;
                config.set_client_credentials(&renewed, &key)?;
                config.write(&path)?;
            }
        }
        print(out, &format!("{} renewed", item.description()))?;
    }
    print(
        out,
        "\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_time_reads_like_kubeadms() {
        assert_eq!(short_human_duration(59), "59s");
        assert_eq!(short_human_duration(3599), "59m");
        assert_eq!(short_human_duration(86399), "23h");
        assert_eq!(short_human_duration(364 * 86400), "364d");
        assert_eq!(short_human_duration(10 * 365 * 86400 - 1), "9y");
        assert_eq!(short_human_duration(-1), "<invalid>");
    }

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let table = tabulate(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long-name-here".into(), "x".into(), "y".into()],
        ]);
        assert_eq!(
            table,
            "A                BB        C\nlong-name-here   x         y\n"
        );
    }
}
