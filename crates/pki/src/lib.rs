//! PKI
