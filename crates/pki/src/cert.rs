//! Certificates and certificate authorities, as kubeadm makes them: CAs for ten years, leaves for one, both
//! backdated a few minutes so that small clock skew between nodes does not reject a fresh certificate.

use crate::{Error, KeyPair, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const DAY: u64 = 24 * 60 * 60;
/// kubeadm's CA lifetime.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * DAY);
/// kubeadm's leaf certificate lifetime.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * DAY);
/// How far NotBefore is set back from "now" (kubeadm's CertificateBackdate).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Extended key usages kubeadm gives its leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Usage {
    ServerAuth,
    ClientAuth,
}

/// What a leaf certificate should say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSpec {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usages: Vec<Usage>,
    pub validity: Duration,
}

impl CertSpec {
    /// Adds SANs given as strings (IP addresses or DNS names, wildcards allowed), keeping the first occurrence
    /// of each. Rejects anything that is neither, the way kubeadm validates `--apiserver-cert-extra-sans`.
    pub fn add_sans<S: AsRef<str>>(&mut self, sans: &[S]) -> Result<()> {
        for san in sans {
            let san = san.as_ref().trim();
            if let Ok(ip) = san.parse::<IpAddr>() {
                if !self.ips.contains(&ip) {
                    self.ips.push(ip);
                }
            } else if is_dns_name(san) {
                if !self.dns_names.iter().any(|d| d == san) {
                    self.dns_names.push(san.to_string());
                }
            } else {
                return Err(Error::BadSan(san.to_string()));
            }
        }
        Ok(())
    }
}

/// A DNS-1123 subdomain, optionally with a leading `*.` wildcard label.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        })
}

/// An X.509 certificate, kept as DER with its PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    pem: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.info() {
            Ok(info) => write!(f, "Certificate({:?})", info.common_name),
            Err(_) => write!(f, "Certificate(unparseable)"),
        }
    }
}

/// The facts kubeadm checks and prints about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub issuer_common_name: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usages: Vec<Usage>,
    pub is_ca: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Certificate {
    /// Reads the first `CERTIFICATE` block of a PEM text (a bundle's first entry is the certificate itself).
    pub fn from_pem(text: &str) -> Result<Certificate> {
        let blocks = pem::parse_many(text).map_err(|e| Error::BadCertificate(format!("not PEM: {e}")))?;
        let block = blocks
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or_else(|| Error::BadCertificate("no CERTIFICATE block".into()))?;
        Certificate::from_der(block.into_contents())
    }

    pub fn from_der(der: Vec<u8>) -> Result<Certificate> {
        X509Certificate::from_der(&der).map_err(|e| Error::BadCertificate(e.to_string()))?;
        let pem = pem::encode_config(
            &pem::Pem::new("CERTIFICATE", der.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        Ok(Certificate { der, pem })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn der(&self) -> &[u8] {
        &self.der
    }

    fn parsed(&self) -> Result<X509Certificate<'_>> {
        X509Certificate::from_der(&self.der)
            .map(|(_, c)| c)
            .map_err(|e| Error::BadCertificate(e.to_string()))
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Result<Vec<u8>> {
        Ok(self.parsed()?.public_key().raw.to_vec())
    }

    pub fn info(&self) -> Result<CertInfo> {
        let cert = self.parsed()?;
        let first_cn = |name: &x509_parser::x509::X509Name<'_>| {
            name.iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let organizations = cert
            .subject()
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        let (mut dns_names, mut ips) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                            ips.push(IpAddr::from(octets));
                        } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                            ips.push(IpAddr::from(octets));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut usages = Vec::new();
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            if eku.value.server_auth {
                usages.push(Usage::ServerAuth);
            }
            if eku.value.client_auth {
                usages.push(Usage::ClientAuth);
            }
        }
        let to_system_time = |t: x509_parser::time::ASN1Time| {
            let secs = t.timestamp();
            if secs >= 0 {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
            } else {
                SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
            }
        };
        Ok(CertInfo {
            common_name: first_cn(cert.subject()),
            organizations,
            issuer_common_name: first_cn(cert.issuer()),
            dns_names,
            ips,
            usages,
            is_ca: cert.is_ca(),
            not_before: to_system_time(cert.validity().not_before),
            not_after: to_system_time(cert.validity().not_after),
        })
    }

    /// Whether this certificate's public key matches `key`.
    pub fn matches_key(&self, key: &KeyPair) -> Result<bool> {
        Ok(self.public_key_der()? == key.public_key_der())
    }

    /// Whether `issuer` signed this certificate.
    pub fn is_signed_by(&self, issuer: &Certificate) -> Result<bool> {
        let cert = self.parsed()?;
        let issuer = issuer.parsed()?;
        Ok(cert.issuer() == issuer.subject() && cert.verify_signature(Some(issuer.public_key())).is_ok())
    }
}

/// A CA certificate and, when available, its key. Without a key it can still verify leaves (kubeadm's
/// "external CA" mode) but not issue them.
#[derive(Debug)]
pub struct CertificateAuthority {
    cert: Certificate,
    key: KeyPair,
}

impl CertificateAuthority {
    /// Creates a self-signed CA with kubeadm's extensions (CA:TRUE, keyCertSign, digitalSignature,
    /// keyEncipherment).
    pub fn self_signed(
        common_name: &str,
        key: KeyPair,
        validity: Duration,
        now: SystemTime,
    ) -> Result<CertificateAuthority> {
        let mut params = base_params(common_name, &[], validity, now)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        let cert = params
            .self_signed(key.signer())
            .map_err(|e| Error::Generate(e.to_string()))?;
        Ok(CertificateAuthority {
            cert: Certificate::from_der(cert.der().to_vec())?,
            key,
        })
    }

    /// Pairs an existing CA certificate with its key, checking that they belong together and that it is a CA.
    pub fn from_parts(cert: Certificate, key: KeyPair) -> Result<CertificateAuthority> {
        if !cert.info()?.is_ca {
            return Err(Error::BadCertificate(
                "not a CA certificate (basicConstraints CA:FALSE)".into(),
            ));
        }
        if !cert.matches_key(&key)? {
            return Err(Error::BadKey("the key does not match the CA certificate".into()));
        }
        Ok(CertificateAuthority { cert, key })
    }

    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    pub fn key(&self) -> &KeyPair {
        &self.key
    }

    /// Issues a leaf for `key` as described by `spec`.
    pub fn issue(&self, spec: &CertSpec, key: &KeyPair, now: SystemTime) -> Result<Certificate> {
        let mut params = base_params(&spec.common_name, &spec.organizations, spec.validity, now)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if key.algorithm().is_rsa() {
            vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = spec
            .usages
            .iter()
            .map(|u| match u {
                Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
                Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            })
            .collect();
        params.use_authority_key_identifier_extension = true;
        for dns in &spec.dns_names {
            let name = dns.clone().try_into().map_err(|_| Error::BadSan(dns.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params
            .subject_alt_names
            .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let issuer = Issuer::from_ca_cert_der(&self.cert.der().to_vec().into(), self.key.signer())
            .map_err(|e| Error::Generate(e.to_string()))?;
        let cert = params
            .signed_by(key.signer(), &issuer)
            .map_err(|e| Error::Generate(e.to_string()))?;
        Certificate::from_der(cert.der().to_vec())
    }
}

fn base_params(
    common_name: &str,
    organizations: &[String],
    validity: Duration,
    now: SystemTime,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // rcgen keeps one value per attribute type; refuse rather than silently drop groups.
    if organizations.len() > 1 {
        return Err(Error::Generate(format!(
            "at most one organization is supported, got {organizations:?}"
        )));
    }
    for org in organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::from(now);
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let mut serial = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
    serial[0] &= 0x7f; // positive, as RFC 5280 requires
    serial[0] |= 0x01; // and without a leading zero byte, so it stays 16 bytes
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyAlgorithm;

    fn ca() -> CertificateAuthority {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        CertificateAuthority::self_signed("test-ca", key, CA_VALIDITY, SystemTime::now()).unwrap()
    }

    #[test]
    fn a_ca_is_self_signed_and_marked_as_ca_for_ten_years() {
        let now = SystemTime::now();
        let key = KeyPair::generate(KeyAlgorithm::Rsa2048).unwrap();
        let ca = CertificateAuthority::self_signed("kubernetes", key, CA_VALIDITY, now).unwrap();
        let info = ca.certificate().info().unwrap();
        assert!(info.is_ca);
        assert_eq!(info.common_name, "kubernetes");
        assert_eq!(info.issuer_common_name, "kubernetes");
        let lifetime = info.not_after.duration_since(now).unwrap();
        assert!(lifetime > CA_VALIDITY - Duration::from_secs(2) && lifetime <= CA_VALIDITY);
        assert!(ca.certificate().is_signed_by(ca.certificate()).unwrap());
    }

    #[test]
    fn a_leaf_carries_its_subject_sans_and_usages() {
        let ca = ca();
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut spec = CertSpec {
            common_name: "kube-apiserver".into(),
            organizations: vec!["org-a".into()],
            usages: vec![Usage::ServerAuth],
            validity: LEAF_VALIDITY,
            ..Default::default()
        };
        spec.add_sans(&["kubernetes", "10.96.0.1", "*.example.com", "::1", "kubernetes"])
            .unwrap();
        let cert = ca.issue(&spec, &key, SystemTime::now()).unwrap();
        let info = cert.info().unwrap();
        assert_eq!(info.common_name, "kube-apiserver");
        assert_eq!(info.organizations, vec!["org-a"]);
        assert_eq!(info.dns_names, vec!["kubernetes", "*.example.com"]);
        assert_eq!(
            info.ips,
            vec!["10.96.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        assert_eq!(info.usages, vec![Usage::ServerAuth]);
        assert!(!info.is_ca);
        assert!(cert.is_signed_by(ca.certificate()).unwrap());
        assert!(cert.matches_key(&key).unwrap());
        assert!(!cert.is_signed_by(self::ca().certificate()).unwrap());
    }

    #[test]
    fn invalid_sans_are_rejected() {
        let mut spec = CertSpec::default();
        for bad in ["", "under_score", "UPPER", "-lead", "a..b", "10.0.0.0/8"] {
            assert!(matches!(spec.add_sans(&[bad]), Err(Error::BadSan(_))), "{bad}");
        }
    }

    #[test]
    fn a_key_that_does_not_match_is_not_a_ca() {
        let ca = ca();
        let other = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        assert!(CertificateAuthority::from_parts(ca.certificate().clone(), other).is_err());
    }
}
