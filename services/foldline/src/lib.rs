//! `foldline`, the platform as a library: the binary parses flags and calls
//! [`app::main`]; tests call [`app::start_embedded`] or [`app::start`] with
//! listeners on port 0 and stop the platform with [`app::Running::run_until`].
//!
//! # Layout
//! - [`cli`]: flags and subcommands.
//! - [`roles`]: the domains compiled in, and the roles derived from them.
//! - [`app`]: the wiring of roles onto brokers, registries and stores.
//! - [`metrics_server`]: `GET /metrics` on the gateway and on `metrics.listen`.

pub mod app;
pub mod cli;
pub mod metrics_server;
pub mod roles;
