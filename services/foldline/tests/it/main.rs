//! End-to-end tests: real `foldline` processes against a real broker
//! (Apache Kafka, started once for this test binary by
//! `foldline_testcontainers`). Each test has its own topic prefix, ports,
//! stores and logs; a failing test prints its processes' log tails and keeps
//! its temp dir.
//!
//! - [`analytics`]: the figures equal the sums of the events read back
//!   from the topics; a fresh replay serves identical figures.
//! - [`admission`]: past the bound of unsettled commands, 503; every
//!   admitted command settles.
//! - [`flow`]: the HTTP API end to end, and the log read by a stock client.
//! - [`crash`]: kill -9 (20 times over) and SIGTERM of the command
//!   processor mid-stream.
//! - [`zombie`]: a processor frozen past its session timeout, then woken.
//! - [`broker_crash`]: kill -9 of the broker mid-stream, and its restart.
//! - [`nemesis`]: faults of every kind at random while contended commands
//!   run; the history is judged by an independent checker (Python).
//! - [`idempotency`]: a retry with the same key re-produces the same record.
//! - [`in_process`]: the library API: the embedded platform on port 0.
//! - [`outage`]: the broker dies first; the platform lives through the
//!   outage, recovers unrestarted (same pid) once the broker is back, and
//!   stops cleanly (exit 0, within the deadline) on SIGTERM during a second
//!   outage.
//! - [`poison`]: garbage on the consumed topics is parked, partitions move on.
//! - [`registry`]: the registry role as its own process with basic auth
//!   and TLS, the platform pointed at it by config, and every start-up
//!   refusal (credentials, CA, unreachable, refused schema) named.
//! - [`replaced`]: the events topic deleted and recreated under a
//!   processor's snapshots.
//! - [`security`]: SASL_SSL (SCRAM, PLAIN), mutual TLS, refused
//!   credentials and certificates, and ACLs on the secured broker.
//! - [`scylla`]: `foldline migrate`, then the orders roles and two
//!   stateless gateways on the CQL store (a real Cassandra).
//! - [`shared_gateway`]: two gateways with their own stores agree on a
//!   retried `Idempotency-Key` and share one rate limit through Redis.
//! - [`redis_outage`]: Redis killed under two gateways on the CQL store:
//!   reads answer from the store, keyed commands get 503, hits return.
//! - [`payments`]: authorize, declines, capture, refunds and void against
//!   the provider simulator; an outage, the deadline, and kill -9 of the
//!   provider worker with no double charge by the simulator's count.
//! - [`notify_notices`]: the order notices through the whole saga (paid,
//!   declined, refunded, erased and unknown customers) across a kill -9,
//!   counted at fake providers and by analytics; an SMS exhausted into
//!   `notify.dlq` while emails flow.
//! - [`notify`]: SMS through a primary that fails, stalls, recovers and
//!   is killed with -9, and one that answers slowly: each time the breaker
//!   moves the texts to the backup and back, none lost or doubled.
//! - [`notify_failover`]: orders confirmed while the primary SMS provider
//!   fails, then stalls, then recovers: the breaker opens, the backup
//!   takes every text once, traffic returns, poison on every partition of
//!   `notify.commands` is parked while confirmations flow, and analytics
//!   equals the sums of the events.
//! - [`saga`]: over 500 orders through the saga, every role its own
//!   process on the CQL store, the simulator declining, slow and failing;
//!   then kill -9 of each service in turn mid-saga. Every order ends, the
//!   simulator charged nothing twice, payments agree with orders, and the
//!   projections equal a fresh replay.
//! - [`users`]: the race for one address, kill -9 mid-registration, and
//!   erasure read back from raw topics, store files and a replay.
//!
//! The fault scenarios run in both `kafka.transactions` modes
//! (`support::Mode`): the same body, `_idempotent` and `_transactional`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod analytics;
mod broker_crash;
mod crash;
mod flow;
mod idempotency;
mod in_process;
mod nemesis;
mod notices_support;
mod notify;
mod notify_failover;
mod notify_notices;
mod outage;
mod payments;
mod poison;
mod production;
mod redis_outage;
mod registry;
mod replaced;
mod saga;
mod scylla;
mod security;
mod shared_gateway;
mod support;
mod users;
mod zombie;
