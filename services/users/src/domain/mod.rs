//! The pure users domain: validated values, the commands, events and state
//! of its two kinds of stream (users and email claims), and the [`Users`]
//! decider that relates them.
//!
//! Nothing here does I/O, reads a clock, draws randomness or sees
//! plaintext personal data: time arrives as the decision's context, and
//! email, name and phone arrive [`Sealed`] under the user's data key.

mod decider;
mod model;
mod values;

#[cfg(test)]
mod tests;

pub use decider::Users;
pub use foldline_eventsourcing::{Rejection, RejectionKind};
pub use model::{
    ClaimPurpose, EmailClaim, Erasure, PhoneChange, SealedProfile, User, UserCommand, UserEvent,
    UserRejection, UserStatus, UsersState,
};
pub use values::{
    ClaimKey, EmailAddress, IdError, Note, PersonName, Phone, Sealed, UserId, ValueError,
    MAX_NAME_CHARS, MAX_SEALED_CHARS, MAX_TEXT_CHARS,
};
