//! The I/O runtime every Foldline service stands on.
//!
//! # Layout
//! - [`config`]: typed, layered configuration (defaults, file, `FOLDLINE__` env).
//! - [`telemetry`]: tracing subscriber set-up.
//! - [`kafka`]: client configuration, topic creation, the embedded broker.
//! - [`codec`]: Avro values in the Confluent wire format via a schema registry.
//! - [`store`]: the projection store interface and its embedded implementation.
//! - [`processor`]: the command processor loop (see `processor/design.md`).
//! - [`projector`]: the projector loop.
//! - [`dlq`]: dead-lettering of poison records.
//! - [`shutdown`]: the stop signal every loop and server watches.

pub mod codec;
pub mod config;
pub mod dlq;
pub mod kafka;
pub mod processor;
pub mod projector;
pub mod shutdown;
pub mod store;
pub mod telemetry;
