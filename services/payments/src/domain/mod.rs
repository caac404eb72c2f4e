//! The pure payments domain: validated values, the commands, events and
//! state of a payment stream, and the [`Payments`] decider.
//!
//! Nothing here does I/O or reads a clock: the provider is called by the
//! provider worker (`crate::worker`), whose answers come back as `Record*`
//! commands decided here like any other.

mod decider;
mod model;
mod values;

#[cfg(test)]
mod tests;

pub use decider::Payments;
pub use foldline_eventsourcing::{Rejection, RejectionKind};
pub use model::{
    Decline, Payment, PaymentCommand, PaymentEvent, PaymentRejection, PaymentState, PaymentStatus,
    PaymentTerms, Refund, RefundStatus,
};
pub use values::{
    Amount, CardToken, Currency, CustomerId, DeclineCode, IdError, Note, OrderId, PaymentId,
    ProviderReference, RefundId, ValueError, MAX_AMOUNT, MAX_TEXT_CHARS, MAX_TOKEN_CHARS,
};
