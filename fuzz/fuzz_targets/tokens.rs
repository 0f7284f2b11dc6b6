//! Tokens, certificate keys, pins and sealed data are typed or pasted by users and sent by peers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = pki::BootstrapToken::parse(&text);
    let _ = pki::pin::parse_pin(&text);
    if let Ok(key) = pki::CertificateKey::parse(&text) {
        let _ = key.open(data);
    }
    let key = pki::CertificateKey::parse(&"ab".repeat(32));
    if let Ok(key) = key {
        let _ = key.open(data);
    }
    if let Ok(token) = pki::BootstrapToken::parse("abcdef.0123456789abcdef") {
        let _ = pki::jws::verify_detached(&text, data, &token);
    }
});
