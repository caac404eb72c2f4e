//! The pure notify domain: validated values, the commands, events and state
//! of a notification stream, and the [`Notifications`] decider.
//!
//! Nothing here does I/O, reads a clock or calls a provider: delivery is
//! the worker's (`crate::delivery`), and what it did comes back as
//! commands, so the log is the one record of every attempt.

mod decider;
mod model;
mod values;

#[cfg(test)]
mod tests;

pub use decider::Notifications;
pub use model::{
    Delivery, Failover, Notification, NotificationCommand, NotificationEvent, NotificationState,
    NotificationStatus, NotifyRejection,
};
pub use values::{
    Attempt, Channel, NotificationId, Parameters, ProviderName, Reason, Recipient, Template,
    ValueError, MAX_PARAMETERS, MAX_PARAMETER_CHARS, MAX_PROVIDER_CHARS, MAX_REASON_CHARS,
    MAX_RECIPIENT_CHARS, MAX_TEMPLATE_CHARS,
};
