//! End-to-end tests: real `foldline` processes against a real broker
//! (Apache Kafka, started once for this test binary by
//! `foldline_testcontainers`). Each test has its own topic prefix, ports,
//! stores and logs; a failing test prints its processes' log tails and keeps
//! its temp dir.
//!
//! - [`flow`]: the HTTP API end to end, and the log read by a stock client.
//! - [`crash`]: kill -9 (and SIGTERM) of the command processor mid-stream.
//! - [`zombie`]: a processor frozen past its session timeout, then woken.
//! - [`in_process`]: the library API: the embedded platform on port 0.
//! - [`outage`]: SIGTERM while the broker is down stops within the deadline.
//! - [`poison`]: garbage on the consumed topics is parked, partitions move on.
//! - [`replaced`]: the events topic deleted and recreated under a
//!   processor's snapshots.
//! - [`scylla`]: `foldline migrate`, then the orders roles and two
//!   stateless gateways on the CQL store (a real Cassandra).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod flow;
mod in_process;
mod outage;
mod poison;
mod replaced;
mod scylla;
mod support;
mod zombie;
