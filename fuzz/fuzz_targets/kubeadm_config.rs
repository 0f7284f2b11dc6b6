//! kubeadm configuration files are user input: any text must give a configuration or an error, never a panic.
#![no_main]

use kubeadm::config::{HostFacts, InitFlags, parse_init};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let host = HostFacts { hostname: "fuzz".into(), default_address: Some([10, 0, 0, 1].into()) };
    if let Ok(cfg) = parse_init("fuzz.yaml", text, &InitFlags::default(), &host) {
        let _ = cfg.control_plane_url();
        let _ = kubeadm::etcd::command(&cfg);
        for def in kubeadm::certs::CERTS {
            if matches!(def.role, kubeadm::certs::Role::Leaf { .. }) {
                let _ = kubeadm::certs::leaf_spec(def, &cfg);
            }
        }
    }
});
