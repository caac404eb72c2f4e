//! Integration tests of the registry crate against the in-process mock broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod registry;
