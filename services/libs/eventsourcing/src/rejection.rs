//! Rejections: why a domain refused a command, in a vocabulary every
//! transport shares.

use std::fmt::{Debug, Display};

/// The broad class of a rejection, for transports to map onto their own
/// vocabulary: over HTTP, `Invalid` is 422, `Conflict` is 409 and `NotFound`
/// is 404. Recorded in the log beside the code, so a reader that does not
/// know a domain's codes still knows what kind of refusal it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// The command is wrong whatever the aggregate's state; resending it
    /// as-is cannot succeed.
    Invalid,
    /// The command is well-formed but the aggregate's current state forbids it.
    Conflict,
    /// The command addresses an aggregate that does not exist.
    NotFound,
}

impl RejectionKind {
    /// The stable name written to the log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::NotFound => "not_found",
        }
    }

    /// Reads a name written by [`RejectionKind::as_str`]; an unknown name is
    /// `Invalid`, the kind a client cannot fix by waiting.
    pub fn from_log(name: &str) -> RejectionKind {
        match name {
            "conflict" => Self::Conflict,
            "not_found" => Self::NotFound,
            _ => Self::Invalid,
        }
    }
}

/// A domain's reason for refusing a command. The message (`Display`) is
/// shown to clients as-is, so it names only what the client sent or owns.
pub trait Rejection: Clone + Debug + PartialEq + Display {
    /// A stable snake_case code; clients and dashboards key on it, so it
    /// never changes once published.
    fn code(&self) -> &'static str;
    fn kind(&self) -> RejectionKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_the_log_and_garbage_is_invalid() {
        for kind in [
            RejectionKind::Invalid,
            RejectionKind::Conflict,
            RejectionKind::NotFound,
        ] {
            assert_eq!(RejectionKind::from_log(kind.as_str()), kind);
        }
        assert_eq!(RejectionKind::from_log("shrug"), RejectionKind::Invalid);
    }
}
