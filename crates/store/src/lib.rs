//! Revisioned key-value storage behind one `Store` trait (to be filled by the storage issue).
