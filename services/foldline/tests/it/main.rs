//! End-to-end tests: real `foldline` processes against a real broker
//! (Apache Kafka, started once for this test binary by
//! `foldline_testcontainers`). Each test has its own topic prefix, ports,
//! stores and logs; a failing test prints its processes' log tails and keeps
//! its temp dir.
//!
//! - [`flow`]: the HTTP API end to end, and the log read by a stock client.
//! - [`crash`]: kill -9 (and SIGTERM) of the command processor mid-stream.
//! - [`zombie`]: a processor frozen past its session timeout, then woken.
//! - [`nemesis`]: faults of every kind at random while contended commands
//!   run; the history is judged by an independent checker (Python).
//! - [`idempotency`]: a retry with the same key re-produces the same record.
//! - [`in_process`]: the library API: the embedded platform on port 0.
//! - [`outage`]: the broker dies first; the platform lives through the outage
//!   and stops cleanly (exit 0, within the deadline) on SIGTERM during it.
//! - [`poison`]: garbage on the consumed topics is parked, partitions move on.
//! - [`replaced`]: the events topic deleted and recreated under a
//!   processor's snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod flow;
mod idempotency;
mod in_process;
mod nemesis;
mod outage;
mod poison;
mod replaced;
mod support;
mod zombie;
