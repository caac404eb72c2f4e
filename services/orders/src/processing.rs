//! The orders domain plugged into the platform command processor.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::orders::{CommandRejected, OrdersCommandRecord, OrdersEventRecord};
use foldline_eventsourcing::{CommandId, Decider, DecisionContext, EventId, Timestamp};
use foldline_platform::codec::Decoded;
use foldline_platform::processor::{CommandDomain, CommandEnvelope};

use crate::domain::{Order, OrderState, RejectionKind};
use crate::wire;

/// The rejection code of a command whose fields do not parse.
pub const INVALID_COMMAND: &str = "invalid_command";

/// How a rejection code maps to a client-facing kind. Codes are stable, so
/// the gateway can classify an outcome it only knows by code.
pub fn rejection_kind(code: &str) -> RejectionKind {
    match code {
        "order_not_found" => RejectionKind::NotFound,
        "order_already_exists"
        | "already_cancelled"
        | "already_shipped"
        | "already_paid"
        | "not_awaiting_payment"
        | "not_paid" => RejectionKind::Conflict,
        _ => RejectionKind::Invalid,
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct OrdersDomain;

impl CommandDomain for OrdersDomain {
    type State = OrderState;
    type Command = OrdersCommandRecord;
    type Record = OrdersEventRecord;

    fn parse_command(&self, decoded: Decoded) -> Result<Self::Command, String> {
        let record = wire::command_record_from_avro(&decoded.record_name, &decoded.value)?;
        let metadata = record.metadata();
        // Without valid ids a command cannot be settled or deduplicated: poison.
        metadata
            .command_id
            .parse::<CommandId>()
            .map_err(|_| "command_id is not a uuid".to_owned())?;
        metadata
            .correlation_id
            .parse::<CommandId>()
            .map_err(|_| "correlation_id is not a uuid".to_owned())?;
        if record.order_id().is_empty() {
            return Err("order_id is empty".to_owned());
        }
        Ok(record)
    }

    fn command_envelope(&self, command: &Self::Command) -> CommandEnvelope {
        let metadata = command.metadata();
        CommandEnvelope {
            command_id: metadata.command_id.clone(),
            correlation_id: metadata.correlation_id.clone(),
            aggregate_id: command.order_id().to_owned(),
            traceparent: metadata.traceparent.clone(),
        }
    }

    fn decide(&self, state: &Self::State, version: u64, command: &Self::Command) -> Self::Record {
        decide_record(state, version, command)
    }

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, String> {
        wire::event_record_from_avro(&decoded.record_name, &decoded.value)
    }

    fn record_to_avro(&self, record: &Self::Record) -> Result<apache_avro::types::Value, String> {
        wire::event_record_to_avro(record)
    }

    fn record_name(&self, record: &Self::Record) -> &'static str {
        record.record_name()
    }

    fn record_metadata<'r>(&self, record: &'r Self::Record) -> &'r EventMetadata {
        record.metadata()
    }

    fn rejection(&self, record: &Self::Record) -> Option<(String, String)> {
        match record {
            OrdersEventRecord::CommandRejected(rejected) => {
                Some((rejected.code.clone(), rejected.message.clone()))
            }
            _ => None,
        }
    }

    fn evolve(&self, state: Self::State, record: &Self::Record) -> Self::State {
        match wire::event_from_wire(record) {
            Ok(Some(event)) => Order::evolve(state, &event),
            Ok(None) => state,
            Err(error) => {
                tracing::warn!(%error, event_id = %record.metadata().event_id, "event in the log does not map to the domain");
                state
            }
        }
    }
}

/// Decides a wire command into the record to append. Pure: the clock is the
/// command's `issued_at`, the event id derives from the command id.
pub fn decide_record(
    state: &OrderState,
    version: u64,
    command: &OrdersCommandRecord,
) -> OrdersEventRecord {
    let metadata = command.metadata();
    let event_id = metadata
        .command_id
        .parse::<CommandId>()
        .map(|command_id| EventId::decided_by(command_id).to_string())
        .unwrap_or_default();
    let record_metadata = |aggregate_version: u64| EventMetadata {
        event_id: event_id.clone(),
        aggregate_id: command.order_id().to_owned(),
        aggregate_version: aggregate_version as i64,
        command_id: metadata.command_id.clone(),
        correlation_id: metadata.correlation_id.clone(),
        causation_id: metadata.command_id.clone(),
        occurred_at: metadata.issued_at,
        traceparent: metadata.traceparent.clone(),
    };
    let rejected = |code: &str, message: String| {
        OrdersEventRecord::CommandRejected(CommandRejected {
            metadata: record_metadata(version),
            command_type: command.record_name().to_owned(),
            code: code.to_owned(),
            message,
        })
    };
    let domain_command = match wire::command_from_wire(command) {
        Ok(domain_command) => domain_command,
        Err(error) => return rejected(INVALID_COMMAND, error.to_string()),
    };
    let context = DecisionContext {
        now: Timestamp(metadata.issued_at),
    };
    match Order::decide(state, &domain_command, &context) {
        Ok(event) => wire::event_to_wire(&event, record_metadata(version + 1)),
        Err(rejection) => rejected(rejection.code(), rejection.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use foldline_contracts::envelope::CommandMetadata;
    use foldline_contracts::orders::{CancelOrder, OrderLine, PlaceOrder};
    use foldline_eventsourcing::gate::Admission;
    use foldline_platform::processor::PartitionLog;

    use super::*;

    const ORDER: &str = "0190a0a0-0000-7000-8000-000000000001";

    fn metadata(command: u128) -> CommandMetadata {
        CommandMetadata {
            command_id: uuid::Uuid::from_u128(command).to_string(),
            correlation_id: uuid::Uuid::from_u128(command).to_string(),
            causation_id: None,
            issued_at: 1_700_000_000_000 + command as i64,
            issued_by: "test".to_owned(),
            traceparent: None,
        }
    }

    fn place(command: u128) -> OrdersCommandRecord {
        OrdersCommandRecord::Place(PlaceOrder {
            metadata: metadata(command),
            order_id: ORDER.to_owned(),
            customer_id: "0190a0a0-0000-7000-8000-0000000000c1".to_owned(),
            currency: "EUR".to_owned(),
            lines: vec![OrderLine {
                sku: "SKU-1".to_owned(),
                quantity: 2,
                unit_price: 1250,
            }],
        })
    }

    fn cancel(command: u128) -> OrdersCommandRecord {
        OrdersCommandRecord::Cancel(CancelOrder {
            metadata: metadata(command),
            order_id: ORDER.to_owned(),
            reason: "changed my mind".to_owned(),
        })
    }

    #[test]
    fn a_decision_is_deterministic_and_carries_its_provenance() {
        let first = decide_record(&OrderState::default(), 0, &place(1));
        let second = decide_record(&OrderState::default(), 0, &place(1));
        assert_eq!(first, second, "redeciding must write the same record");
        let metadata = first.metadata();
        assert_eq!(metadata.aggregate_version, 1);
        assert_eq!(metadata.causation_id, metadata.command_id);
        assert!(matches!(first, OrdersEventRecord::Placed(ref placed) if placed.total == 2500));
    }

    #[test]
    fn a_rejection_is_recorded_at_the_current_version() {
        let record = decide_record(&OrderState::default(), 0, &cancel(2));
        match record {
            OrdersEventRecord::CommandRejected(rejected) => {
                assert_eq!(rejected.code, "order_not_found");
                assert_eq!(rejected.metadata.aggregate_version, 0);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn garbage_fields_become_an_invalid_command_rejection() {
        let mut command = place(3);
        if let OrdersCommandRecord::Place(place) = &mut command {
            place.currency = "EURO".to_owned();
        }
        let record = decide_record(&OrderState::default(), 0, &command);
        assert!(
            matches!(record, OrdersEventRecord::CommandRejected(ref rejected) if rejected.code == INVALID_COMMAND)
        );
    }

    /// The failure cases of the processor's design.md, on the pure fold.
    #[test]
    fn duplicates_stale_writes_and_zombies_never_take_effect() {
        let domain = OrdersDomain;
        let mut log = PartitionLog::<OrderState>::empty(0);
        let placed = decide_record(&OrderState::default(), 0, &place(1));
        assert_eq!(log.fold(&domain, &placed, 0), Admission::Apply);
        // Redelivery after a crash between produce and commit: same record again.
        assert_eq!(log.fold(&domain, &placed, 1), Admission::AlreadySettled);
        // A zombie decided a cancel against version 0 (stale): ignored.
        let zombie_cancel = decide_record(&OrderState::default(), 0, &cancel(9));
        assert!(matches!(
            log.fold(&domain, &zombie_cancel, 2),
            Admission::WrongVersion { current: 1 }
        ));
        assert!(
            log.settled(&metadata(9).command_id).is_none(),
            "the zombie's command is still open"
        );
        // The rightful owner decides the same command against the real state.
        let slot = log.aggregate(ORDER);
        let cancel_record = decide_record(&slot.state, slot.version, &cancel(9));
        assert_eq!(log.fold(&domain, &cancel_record, 3), Admission::Apply);
        let outcome = log.settled(&metadata(9).command_id).unwrap();
        assert_eq!(outcome.status, "accepted");
        assert_eq!(outcome.event_offset, 3);
        assert_eq!(log.aggregate(ORDER).version, 2);
    }
}
