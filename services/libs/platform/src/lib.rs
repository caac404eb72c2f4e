//! The I/O runtime every Foldline service stands on.
//!
//! # Layout
//! - [`config`]: typed, layered configuration (defaults, file, `FOLDLINE__` env).
//! - [`telemetry`]: tracing subscriber set-up.
//! - [`kafka`]: client configuration, topic creation, the embedded broker.
//! - [`kafka_security`]: `[kafka.security]` (TLS, SASL, mutual TLS), its
//!   start-up validation, and the connection probe naming a refusal's cause.
//! - [`metrics`]: the counters of the fault windows, as Prometheus text.
//! - [`codec`]: Avro values in the Confluent wire format via a schema registry.
//! - [`store`]: the projection store interface, its embedded and CQL
//!   implementations, and the CQL migrations.
//! - [`cache`]: cache-aside of hot rows in Redis, position-guarded.
//! - [`shared_state`]: what gateway replicas share in Redis: first-wins
//!   reservations (idempotency keys) and windowed counters (rate limits).
//! - [`domain`]: the domain seam: a pure decider plus its [`DomainWire`]
//!   field mapping is a command domain, with one generic `decide_record`.
//! - [`gate`]: the version gate read off wire metadata, shared by the
//!   processor's restore and every projection.
//! - [`gated`]: [`GatedProjection`], which owns the gate and the
//!   `command_outcomes` table so a domain projection sees only admitted events.
//! - [`service`]: a domain's topics and groups resolved from the topology,
//!   and [`DomainService`], the runnable declaration of a domain.
//! - [`headers`]: the Kafka headers on commands, events and outcomes.
//! - [`processor`]: the command processor loop (see `processor/design.md`).
//! - [`projector`]: the projector loop.
//! - [`dlq`]: dead-lettering of poison records.
//! - [`personal_data`]: crypto-shredding: per-subject data keys wrapped by
//!   the configured key-encryption key, sealed fields, keyed lookup hashes.
//! - [`outbox`]: follow-ups of admitted events (a projection writes them,
//!   a relay performs them), for steps that span aggregates.
//! - `testing` (feature `testing`): the replay harness of the domains'
//!   property tests (Avro round trip, gate, snapshots, forged records).
//!   A [`outbox::ProcessManager`] does the same across domains.
//! - [`timeline`]: every domain's admitted events indexed by correlation
//!   id, listed in causal order.
//! - [`payments_config`]: the `[payments]` configuration section (the
//!   payment provider's client and its simulator).
//! - [`shutdown`]: the stop signal every loop and server watches.

pub mod breaker;
pub mod cache;
pub mod codec;
pub mod config;
pub mod dlq;
pub mod domain;
pub mod gate;
pub mod gated;
pub mod headers;
pub mod kafka;
pub mod kafka_security;
pub mod metrics;
pub mod outbox;
pub mod payments_config;
pub mod personal_data;
pub mod processor;
pub mod projector;
pub mod service;
pub mod shared_state;
pub mod shutdown;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeline;

#[cfg(test)]
mod seam_tests;

pub use domain::DomainWire;
pub use gated::GatedProjection;
pub use service::DomainService;
