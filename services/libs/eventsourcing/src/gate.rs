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
    /// The record carries no stamp a decision of ours could have written (a
    /// command id that is not a uuid, a version below zero): it counts for
    /// nobody.
    Foreign,
}

impl RecordStamp {
    /// Reads the stamp of a log record from what it carries: the command id
    /// and the aggregate version *after* the record. This is the one place
    /// that knows an event was decided against `aggregate_version - 1` and a
    /// rejection against `aggregate_version`. `None` when no decision of ours
    /// could have written these values.
    pub fn from_log(command_id: &str, aggregate_version: i64, kind: RecordKind) -> Option<Self> {
        let base_version = match kind {
            RecordKind::Event => aggregate_version.checked_sub(1)?,
            RecordKind::Rejection => aggregate_version,
        };
        Some(RecordStamp {
            command_id: command_id.parse().ok()?,
            base_version: u64::try_from(base_version).ok()?,
            kind,
        })
    }
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
    pub fn admit(&self, stamp: Option<&RecordStamp>, already_settled: bool) -> Admission {
        let Some(stamp) = stamp else {
            return Admission::Foreign;
        };
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
        assert_eq!(version.admit(Some(&record), false), Admission::Apply);
        assert_eq!(version.after(&record), StreamVersion(4));
    }

    #[test]
    fn a_stale_write_is_ignored() {
        let version = StreamVersion(5);
        assert_eq!(
            version.admit(Some(&stamp(1, 3, RecordKind::Event)), false),
            Admission::WrongVersion { current: 5 }
        );
    }

    #[test]
    fn a_settled_command_never_applies_twice() {
        let version = StreamVersion(3);
        assert_eq!(
            version.admit(Some(&stamp(1, 3, RecordKind::Event)), true),
            Admission::AlreadySettled
        );
    }

    #[test]
    fn a_stamp_is_read_from_the_version_after_the_record() {
        let command = Uuid::from_u128(7).to_string();
        let event = RecordStamp::from_log(&command, 4, RecordKind::Event).unwrap();
        assert_eq!(event.base_version, 3);
        let rejection = RecordStamp::from_log(&command, 4, RecordKind::Rejection).unwrap();
        assert_eq!(rejection.base_version, 4);
    }

    #[test]
    fn a_record_no_decision_could_write_is_foreign() {
        let command = Uuid::from_u128(7).to_string();
        assert_eq!(RecordStamp::from_log(&command, 0, RecordKind::Event), None);
        assert_eq!(
            RecordStamp::from_log(&command, -1, RecordKind::Rejection),
            None
        );
        assert_eq!(
            RecordStamp::from_log("not-a-uuid", 1, RecordKind::Event),
            None
        );
        assert_eq!(StreamVersion(0).admit(None, false), Admission::Foreign);
    }

    #[test]
    fn a_rejection_settles_without_advancing() {
        let version = StreamVersion(2);
        let record = stamp(9, 2, RecordKind::Rejection);
        assert_eq!(version.admit(Some(&record), false), Admission::Apply);
        assert_eq!(version.after(&record), StreamVersion(2));
    }
}
