//! Certificate signing requests (PKCS#10): creating one for a key (what a kubelet sends in TLS bootstrap), reading
//! one back ([`parse`], signature checked), and issuing a certificate for one ([`CertificateAuthority::sign_request`],
//! what the controller-manager's CSR signer does).
//!
//! Usages are given in the spelling of the `certificates.k8s.io` API (`"digital signature"`, `"client auth"`...), so
//! the signer can pass a CSR object's `spec.usages` straight through; the certificate carries exactly those, never
//! the extensions the requester asked for inside the PKCS#10 blob, as upstream's signer does.

use crate::{Certificate, CertificateAuthority, Error, KeyPair, Result};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, GeneralName, X509CertificationRequest};

/// Upstream's certificate backdate: NotBefore lies this far before signing, for clock skew.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// What a CSR asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    /// Whether the request carries extensions other than SANs, key usage, extended key usage, basic constraints.
    pub other_extensions: bool,
    /// DER of the SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
}

fn pem_or_der(request: &[u8]) -> Result<Vec<u8>> {
    if request.starts_with(b"-----") {
        let text =
            std::str::from_utf8(request).map_err(|_| Error::BadCertificate("CSR PEM is not UTF-8".into()))?;
        let block = pem::parse_many(text)
            .map_err(|e| Error::BadCertificate(format!("CSR is not PEM: {e}")))?
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST")
            .ok_or_else(|| Error::BadCertificate("no CERTIFICATE REQUEST block".into()))?;
        Ok(block.into_contents())
    } else {
        Ok(request.to_vec())
    }
}

/// Reads a CSR (PEM `CERTIFICATE REQUEST` or DER) and checks its self-signature.
pub fn parse(request: &[u8]) -> Result<RequestInfo> {
    let der = pem_or_der(request)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::BadCertificate(format!("not a certificate request: {e}")))?;
    csr.verify_signature()
        .map_err(|_| Error::BadCertificate("the certificate request's signature does not verify".into()))?;
    let info = &csr.certification_request_info;
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|v| v.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let mut out = RequestInfo {
        common_name: strings(&mut info.subject.iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default(),
        organizations: strings(&mut info.subject.iter_organization()),
        dns_names: Vec::new(),
        ips: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
        other_extensions: false,
        public_key_der: info.subject_pki.raw.to_vec(),
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        use x509_parser::extensions::ParsedExtension;
        match ext {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                        GeneralName::RFC822Name(e) => out.emails.push(e.to_string()),
                        GeneralName::URI(u) => out.uris.push(u.to_string()),
                        GeneralName::IPAddress(bytes) => {
                            if let Ok(o) = <[u8; 4]>::try_from(*bytes) {
                                out.ips.push(IpAddr::from(o));
                            } else if let Ok(o) = <[u8; 16]>::try_from(*bytes) {
                                out.ips.push(IpAddr::from(o));
                            }
                        }
                        _ => out.other_extensions = true,
                    }
                }
            }
            ParsedExtension::KeyUsage(_)
            | ParsedExtension::ExtendedKeyUsage(_)
            | ParsedExtension::BasicConstraints(_) => {}
            _ => out.other_extensions = true,
        }
    }
    Ok(out)
}

/// A PEM CSR for `key` with subject `CN=common_name, O=organization` and the given SANs (kubelet client CSRs have
/// no SANs, serving CSRs have the node's names and addresses).
pub fn create(
    key: &KeyPair,
    common_name: &str,
    organization: Option<&str>,
    sans: &[String],
) -> Result<String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    for san in sans {
        if let Ok(ip) = san.parse::<IpAddr>() {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        } else {
            let name = san.clone().try_into().map_err(|_| Error::BadSan(san.clone()))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
    }
    let csr = params
        .serialize_request(key.signer())
        .map_err(|e| Error::Generate(e.to_string()))?;
    csr.pem().map_err(|e| Error::Generate(e.to_string()))
}

/// Maps the API's usage names onto key usages and extended key usages; unknown names are an error (upstream's
/// signer refuses them too).
fn usages(names: &[String]) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>)> {
    let (mut ku, mut eku) = (Vec::new(), Vec::new());
    for name in names {
        match name.as_str() {
            "signing" | "digital signature" => ku.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => ku.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => ku.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => ku.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => ku.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => ku.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => ku.push(KeyUsagePurpose::CrlSign),
            "encipher only" => ku.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => ku.push(KeyUsagePurpose::DecipherOnly),
            "any" => eku.push(ExtendedKeyUsagePurpose::Any),
            "server auth" => eku.push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => eku.push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => eku.push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => eku.push(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => eku.push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => eku.push(ExtendedKeyUsagePurpose::OcspSigning),
            other => return Err(Error::Generate(format!("unsupported key usage {other:?}"))),
        }
    }
    ku.dedup();
    eku.dedup();
    Ok((ku, eku))
}

impl CertificateAuthority {
    /// Issues a certificate for a CSR: the request's subject and SANs, the given usages (API spelling), valid from
    /// five minutes ago for `validity` but never past the CA's own expiry.
    pub fn sign_request(
        &self,
        request: &[u8],
        usage_names: &[String],
        validity: Duration,
        now: SystemTime,
    ) -> Result<Certificate> {
        let der = pem_or_der(request)?;
        let mut csr = CertificateSigningRequestParams::from_der(&der.into())
            .map_err(|e| Error::BadCertificate(format!("certificate request: {e}")))?;
        let (ku, eku) = usages(usage_names)?;
        let params = &mut csr.params;
        params.key_usages = ku;
        params.extended_key_usages = eku;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let ca_expiry = self.certificate().info()?.not_after;
        let not_after = (now + validity).min(ca_expiry);
        params.not_before = time::OffsetDateTime::from(now - BACKDATE);
        params.not_after = time::OffsetDateTime::from(not_after);
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let issuer = Issuer::from_ca_cert_der(&self.certificate().der().to_vec().into(), self.key().signer())
            .map_err(|e| Error::Generate(e.to_string()))?;
        let cert = csr
            .signed_by(&issuer)
            .map_err(|e| Error::Generate(e.to_string()))?;
        Certificate::from_der(cert.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CA_VALIDITY, KeyAlgorithm, Usage};

    #[test]
    fn a_signed_request_keeps_its_subject_and_key_and_gets_the_given_usages() {
        let now = SystemTime::now();
        let ca_key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let ca = CertificateAuthority::self_signed("kubernetes", ca_key, CA_VALIDITY, now).unwrap();
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = create(&key, "system:node:n1", Some("system:nodes"), &[]).unwrap();
        let info = parse(csr.as_bytes()).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, vec!["system:nodes".to_string()]);
        assert!(!info.other_extensions);
        let usages = ["digital signature".to_string(), "client auth".to_string()];
        let cert = ca
            .sign_request(csr.as_bytes(), &usages, Duration::from_secs(3600), now)
            .unwrap();
        let got = cert.info().unwrap();
        assert_eq!(got.common_name, "system:node:n1");
        assert_eq!(got.organizations, vec!["system:nodes".to_string()]);
        assert_eq!(got.usages, vec![Usage::ClientAuth]);
        assert!(cert.matches_key(&key).unwrap());
        assert!(cert.is_signed_by(ca.certificate()).unwrap());
        let lifetime = got.not_after.duration_since(now).unwrap();
        assert!(lifetime <= Duration::from_secs(3600) && lifetime > Duration::from_secs(3590));
    }

    #[test]
    fn a_request_with_sans_and_unknown_usages() {
        let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let csr = create(
            &key,
            "system:node:n1",
            Some("system:nodes"),
            &["n1".into(), "10.0.0.1".into()],
        )
        .unwrap();
        let info = parse(csr.as_bytes()).unwrap();
        assert_eq!(info.dns_names, vec!["n1".to_string()]);
        assert_eq!(info.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(usages(&["frobnicate".to_string()]).is_err());
        assert!(
            parse(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n").is_err()
        );
    }
}
