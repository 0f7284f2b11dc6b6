//! OpenAPI documents (being built).
