//! Integration tests of the platform crate against the in-process mock broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod offsets;
mod processor;
mod projector;
mod support;
