//! The compatibility tests' fixtures live in `testkit::cluster`, shared with the other crates' scenario tests.
#![allow(unused_imports)]
pub use testkit::cluster::*;
