//! The version gate applied to log records: the one place where the
//! processor's restore ([`PartitionLog::fold`](crate::processor::PartitionLog))
//! and every projector ([`GatedProjection`](crate::gated::GatedProjection))
//! judge whether a record of an events topic counts, and what it settles.
//!
//! The rule itself (`foldline_eventsourcing::gate`) is pure; this module
//! reads the stamp off the wire metadata the same way for every reader.

use foldline_contracts::envelope::{CommandOutcome, CommandRejected, EventMetadata};
use foldline_eventsourcing::gate::{Admission, RecordKind, RecordStamp, StreamVersion};

/// The gate's verdict on one record, and the aggregate's version after it
/// when it applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub admission: Admission,
    pub version_after: StreamVersion,
}

/// Judges a record against its aggregate's `current` version; `already_settled`
/// tells whether its command took effect earlier in the log.
pub fn judge(
    metadata: &EventMetadata,
    rejection: Option<&CommandRejected>,
    current: StreamVersion,
    already_settled: bool,
) -> Verdict {
    let kind = if rejection.is_some() {
        RecordKind::Rejection
    } else {
        RecordKind::Event
    };
    let stamp = RecordStamp::from_log(&metadata.command_id, metadata.aggregate_version, kind);
    let admission = current.admit(stamp.as_ref(), already_settled);
    let version_after = match (&stamp, admission) {
        (Some(stamp), Admission::Apply) => current.after(stamp),
        _ => current,
    };
    Verdict {
        admission,
        version_after,
    }
}

/// The outcome an admitted record settles its command with.
pub fn outcome(
    metadata: &EventMetadata,
    rejection: Option<&CommandRejected>,
    record_name: &str,
    version_after: StreamVersion,
    partition: i32,
    offset: i64,
) -> CommandOutcome {
    CommandOutcome {
        command_id: metadata.command_id.clone(),
        correlation_id: metadata.correlation_id.clone(),
        aggregate_id: metadata.aggregate_id.clone(),
        status: match rejection {
            None => CommandOutcome::ACCEPTED.to_owned(),
            Some(_) => CommandOutcome::REJECTED.to_owned(),
        },
        aggregate_version: i64::try_from(version_after.0).unwrap_or(i64::MAX),
        event_id: metadata.event_id.clone(),
        event_type: record_name.to_owned(),
        event_partition: partition,
        event_offset: offset,
        rejection_code: rejection.map(|rejected| rejected.code.clone()),
        rejection_kind: rejection.map(|rejected| rejected.kind.clone()),
        rejection_message: rejection.map(|rejected| rejected.message.clone()),
        decided_at: metadata.occurred_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(command: u128, aggregate_version: i64) -> EventMetadata {
        EventMetadata {
            event_id: "event".to_owned(),
            aggregate_id: "aggregate".to_owned(),
            aggregate_version,
            command_id: uuid::Uuid::from_u128(command).to_string(),
            correlation_id: uuid::Uuid::from_u128(command).to_string(),
            causation_id: uuid::Uuid::from_u128(command).to_string(),
            occurred_at: 7,
            traceparent: None,
        }
    }

    fn rejected(metadata: EventMetadata) -> CommandRejected {
        CommandRejected {
            metadata,
            command_type: "foldline.test.Do".to_owned(),
            code: "nope".to_owned(),
            kind: "conflict".to_owned(),
            message: "no".to_owned(),
        }
    }

    #[test]
    fn an_event_at_the_current_version_applies_and_settles_accepted() {
        let event = metadata(1, 3);
        let verdict = judge(&event, None, StreamVersion(2), false);
        assert_eq!(verdict.admission, Admission::Apply);
        assert_eq!(verdict.version_after, StreamVersion(3));
        let settled = outcome(
            &event,
            None,
            "foldline.test.Done",
            verdict.version_after,
            4,
            9,
        );
        assert!(settled.is_accepted());
        assert_eq!((settled.event_partition, settled.event_offset), (4, 9));
        assert_eq!(settled.aggregate_version, 3);
    }

    #[test]
    fn a_rejection_settles_rejected_with_its_kind_and_keeps_the_version() {
        let record = rejected(metadata(2, 2));
        let verdict = judge(&record.metadata, Some(&record), StreamVersion(2), false);
        assert_eq!(verdict.admission, Admission::Apply);
        assert_eq!(verdict.version_after, StreamVersion(2));
        let settled = outcome(
            &record.metadata,
            Some(&record),
            CommandRejected::RECORD_NAME,
            verdict.version_after,
            0,
            1,
        );
        assert!(!settled.is_accepted());
        assert_eq!(settled.rejection_kind.as_deref(), Some("conflict"));
    }

    #[test]
    fn stale_settled_and_foreign_records_do_not_count() {
        let stale = judge(&metadata(3, 2), None, StreamVersion(5), false);
        assert_eq!(stale.admission, Admission::WrongVersion { current: 5 });
        assert_eq!(stale.version_after, StreamVersion(5));
        let copy = judge(&metadata(3, 6), None, StreamVersion(5), true);
        assert_eq!(copy.admission, Admission::AlreadySettled);
        let mut foreign = metadata(3, 6);
        foreign.command_id = "forged".to_owned();
        assert_eq!(
            judge(&foreign, None, StreamVersion(5), false).admission,
            Admission::Foreign
        );
    }
}
