//! The orders domain service.
//!
//! # Layout
//! - [`domain`]: the pure Order decider: values, commands, events, state,
//!   rejections. No I/O.
//! - [`wire`]: mapping between domain types and the Avro wire records of
//!   `foldline-contracts`.
//! - [`processing`]: the domain's plug into the platform command processor.
//! - [`projection`]: the read models (`order_by_id`, `orders_by_customer`,
//!   `command_outcomes`) as a pure projection, and their row formats.
//! - [`service`]: wiring: run the processor and the projector from config.

pub mod domain;
pub mod processing;
pub mod projection;
pub mod service;
pub mod wire;
