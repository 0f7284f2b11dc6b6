//! Authentication and authorization (being built).
