//! The version gate: which log records count.
//!
//! Without broker transactions the log can hold records that must not take
//! effect: a zombie's write decided against stale state, or a second copy of
//! a decision. Every record names the aggregate version it was decided
//! against (`base_version`). A record counts iff, at its position in the log,
//! its aggregate is still at that version and its command has not been
//! settled. Every reader applies this same rule in log order, so every reader
//! agrees on the same history; the first decision at a version wins.

use serde::{Deserialize, Serialize};

use crate::ids::CommandId;

/// What a log record claims about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordStamp {
    pub command_id: CommandId,
    /// The aggregate version the decision was made against.
    pub base_version: u64,
    pub kind: RecordKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A domain event: moves the aggregate to `base_version + 1`.
    Event,
    /// A recorded rejection: settles the command, leaves the version.
    Rejection,
}

/// The verdict of the gate on one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The record takes effect.
    Apply,
    /// The command was already settled; this is a copy or a loser.
    AlreadySettled,
    /// The record was decided against another version: a stale or zombie write.
    WrongVersion { current: u64 },
}

/// An aggregate's version as the log has established it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamVersion(pub u64);

impl StreamVersion {
    /// Judges `stamp` against this version. `already_settled` tells whether
    /// the command has taken effect earlier in the log (readers that do not
    /// track commands pass `false`: the version check alone already rejects
    /// every non-identical copy, because a decision is deterministic in the
    /// state it was made against).
    pub fn admit(&self, stamp: &RecordStamp, already_settled: bool) -> Admission {
        if already_settled {
            return Admission::AlreadySettled;
        }
        if stamp.base_version != self.0 {
            return Admission::WrongVersion { current: self.0 };
        }
        Admission::Apply
    }

    /// The version after `stamp` was applied.
    pub fn after(&self, stamp: &RecordStamp) -> StreamVersion {
        match stamp.kind {
            RecordKind::Event => StreamVersion(self.0 + 1),
            RecordKind::Rejection => *self,
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn stamp(command: u128, base_version: u64, kind: RecordKind) -> RecordStamp {
        RecordStamp {
            command_id: CommandId(Uuid::from_u128(command)),
            base_version,
            kind,
        }
    }

    #[test]
    fn an_event_at_the_current_version_applies_and_advances() {
        let version = StreamVersion(3);
        let record = stamp(1, 3, RecordKind::Event);
        assert_eq!(version.admit(&record, false), Admission::Apply);
        assert_eq!(version.after(&record), StreamVersion(4));
    }

    #[test]
    fn a_stale_write_is_ignored() {
        let version = StreamVersion(5);
        assert_eq!(
            version.admit(&stamp(1, 3, RecordKind::Event), false),
            Admission::WrongVersion { current: 5 }
        );
    }

    #[test]
    fn a_settled_command_never_applies_twice() {
        let version = StreamVersion(3);
        assert_eq!(
            version.admit(&stamp(1, 3, RecordKind::Event), true),
            Admission::AlreadySettled
        );
    }

    #[test]
    fn a_rejection_settles_without_advancing() {
        let version = StreamVersion(2);
        let record = stamp(9, 2, RecordKind::Rejection);
        assert_eq!(version.admit(&record, false), Admission::Apply);
        assert_eq!(version.after(&record), StreamVersion(2));
    }
}
