//! The harness of Foldline's real-broker integration and fault tests.
//!
//! Everything here runs real things: a real Apache Kafka broker (4.x,
//! KRaft, one node, run from its Maven jars on the JVM, one per test
//! process), real `foldline` processes (spawned from the binary under test,
//! each with its own log file), real HTTP. Nothing is mocked and nothing is
//! skipped: missing broker jars or a missing JVM fail the suite with
//! instructions.
//!
//! # Layout
//! - [`broker`]: the shared Kafka broker, started lazily and killed when
//!   the test process exits, and dedicated brokers for tests that stop
//!   theirs.
//! - [`secured`]: a second broker with SASL_SSL, mutual TLS, SCRAM users
//!   and KRaft's StandardAuthorizer with ACLs, for the security tests.
//! - [`cassandra`]: the shared CQL server (Apache Cassandra 5 from its
//!   Maven jars, standing in for ScyllaDB), started lazily like the broker.
//! - [`redis`]: a real `redis-server` per test, which the test may stop
//!   and start again.
//! - [`store_contract`]: the cases every [`foldline_platform::store::Store`]
//!   backend must pass, shared by the platform's tests and `foldline-containers`.
//! - [`ports`]: free loopback ports.
//! - [`process`]: [`FoldlineProcess`], one `foldline run <role>...` child
//!   (kill -9, SIGSTOP/SIGCONT, readiness, log tail).
//! - [`deployment`]: [`Deployment`], one test's isolated environment (topic
//!   prefix, ports, temp dir) and the processes it launches.
//! - [`http`]: a small JSON client of the gateway's API.
//! - [`replay`]: reads `orders.events` from the broker and folds it through
//!   the processor's version gate and the orders projection, so tests can
//!   compare what the system says with what its log says.
//! - [`tls`]: a throwaway PKI (CA, server certificate, untrusted CA) for
//!   HTTPS servers under test, made with the `openssl` CLI.
//! - [`wait`]: deadline-bounded polling (the only way tests wait for state).

pub mod broker;
pub mod cassandra;
pub mod deployment;
pub mod fake_provider;
pub mod http;
pub mod ports;
pub mod process;
pub mod redis;
pub mod replay;
pub mod secured;
pub mod store_contract;
pub mod tls;
pub mod wait;

pub use broker::{broker, dedicated_broker, KafkaBroker};
pub use cassandra::{cassandra, unique_keyspace, CassandraServer};
pub use deployment::Deployment;
pub use fake_provider::{Behaviour, FakeProvider, REFUSED_RECIPIENT};
pub use http::{place_body, Api, ApiResponse, CommandOptions};
pub use ports::free_port;
pub use process::FoldlineProcess;
pub use redis::RedisServer;
pub use replay::{
    committed_offsets, read_outcomes, read_topic, read_topic_as, replay_orders_events, Isolation,
    PublishedOutcome, RawRecord, Replay, ReplayedRecord,
};
pub use secured::{secured_broker, SaslUser, SecuredKafka, TestPki};
pub use tls::{server_pki, ServerPki};
pub use wait::{poll_until, Deadline};
