//! Certificates, keys and kubeconfig files arrive from disk and from other nodes: parse without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(cert) = pki::Certificate::from_pem(text) {
        let _ = cert.info();
        let _ = pki::ca_public_key_pin(&cert);
        let _ = cert.is_signed_by(&cert);
    }
    let _ = pki::KeyPair::from_pem(text);
    if let Ok(config) = pki::Kubeconfig::from_yaml(text) {
        let _ = config.server();
        let _ = config.ca_certificate();
        let _ = config.client_certificate();
    }
});
