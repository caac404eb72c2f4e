//! The scenarios of `foldline-containers` (`src/scenarios.rs`) on both
//! kinds of servers:
//!
//! - [`local`]: on the servers the harness starts (Kafka and Cassandra
//!   from their Maven jars, `redis-server`); part of every `cargo test`.
//! - [`docker`]: on Kafka, ScyllaDB and Redis containers; `#[ignore]`d,
//!   so `cargo test` lists them as ignored with the command that runs
//!   them (`.github/workflows/containers.yml` does, with `--ignored`).
//!   Run without a Docker engine, they fail with the ping's error.
//! - [`compose`]: `deploy/compose.yaml` sets only keys the platform knows.

mod compose;
mod docker;
mod local;
