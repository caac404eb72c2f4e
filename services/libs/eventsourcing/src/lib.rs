//! The pure event-sourcing core of Foldline.
//!
//! # Layout
//! - [`decider`]: the [`Decider`] trait a domain implements (`decide` / `evolve`),
//!   and the [`DecisionContext`] that carries the clock into a decision.
//! - [`ids`]: typed ids and the deterministic derivations (event id from command
//!   id, command id from an idempotency key or from a triggering event).
//! - [`rejection`]: the [`Rejection`] trait (a stable code and a
//!   [`RejectionKind`]) every domain's refusals implement.
//! - [`gate`]: the version gate every fold applies, so the processor, every
//!   projector and every replay agree on which log records count.
//! - [`harness`]: given/when/then testing of a decider.
//!
//! Nothing here does I/O, reads a clock or draws randomness: those are inputs.

pub mod decider;
pub mod gate;
pub mod harness;
pub mod ids;
pub mod rejection;

pub use decider::{Decider, DecisionContext};
pub use gate::{Admission, RecordKind, RecordStamp, StreamVersion};
pub use ids::{CommandId, CorrelationId, EventId, IdError, Timestamp};
pub use rejection::{Rejection, RejectionKind};
