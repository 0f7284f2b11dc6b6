//! Admission plugins (being built).
