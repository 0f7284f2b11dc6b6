//! KubeFed-compatible federation: types, cluster health, propagation, replica scheduling, `kubefedctl`.
//!
//! Not built yet: the binary reports this personality as unavailable.
