//! The orders field mapping: domain ↔ wire. The wire is strings and
//! integers; the domain is validated types. Parsing a wire command can fail
//! (a foreign producer may write anything); mapping a domain event out
//! cannot. [`OrdersWire`] is this mapping declared to the platform, which
//! derives deciding, stamping and folding from it.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::orders as wire;
use foldline_contracts::record::{invalid_field as field, CommandRecord, EventRecord, WireError};
use foldline_eventsourcing::Timestamp;
use foldline_platform::DomainWire;

use crate::domain::{
    CancelOrder, Currency, CustomerId, MarkPaid, MarkPaymentFailed, Order, OrderCommand,
    OrderEvent, OrderId, OrderLine, PaymentId, PlaceOrder, Quantity, RefundOwed, RejectOrder,
    ShipOrder, Sku,
};

/// The orders domain as the platform runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrdersWire;

impl DomainWire for OrdersWire {
    type Decider = Order;
    type Commands = wire::OrdersCommandRecord;
    type Events = wire::OrdersEventRecord;

    fn command_from_wire(record: &Self::Commands) -> Result<OrderCommand, WireError> {
        command_from_wire(record)
    }

    fn event_to_wire(event: &OrderEvent, metadata: EventMetadata) -> Self::Events {
        event_to_wire(event, metadata)
    }

    fn event_from_wire(record: &Self::Events) -> Result<OrderEvent, WireError> {
        event_from_wire(record)
    }
}

fn lines_from_wire(lines: &[wire::OrderLine]) -> Result<Vec<OrderLine>, WireError> {
    lines
        .iter()
        .map(|line| {
            Ok(OrderLine {
                sku: field("lines.sku", Sku::parse(&line.sku))?,
                quantity: field("lines.quantity", Quantity::new(i64::from(line.quantity)))?,
                unit_price: line.unit_price,
            })
        })
        .collect()
}

fn lines_to_wire(lines: &[OrderLine]) -> Vec<wire::OrderLine> {
    lines
        .iter()
        .map(|line| wire::OrderLine {
            sku: line.sku.as_str().to_owned(),
            quantity: line.quantity.get() as i32,
            unit_price: line.unit_price,
        })
        .collect()
}

pub fn command_from_wire(record: &wire::OrdersCommandRecord) -> Result<OrderCommand, WireError> {
    let order_id = field("order_id", OrderId::parse(record.aggregate_id()))?;
    Ok(match record {
        wire::OrdersCommandRecord::Place(place) => OrderCommand::Place(PlaceOrder {
            order_id,
            customer_id: field("customer_id", CustomerId::parse(&place.customer_id))?,
            currency: field("currency", Currency::parse(&place.currency))?,
            lines: lines_from_wire(&place.lines)?,
            card_token: place.card_token.clone(),
        }),
        wire::OrdersCommandRecord::Cancel(cancel) => OrderCommand::Cancel(CancelOrder {
            order_id,
            reason: cancel.reason.clone(),
        }),
        wire::OrdersCommandRecord::MarkPaid(paid) => OrderCommand::MarkPaid(MarkPaid {
            order_id,
            payment_id: field("payment_id", PaymentId::parse(&paid.payment_id))?,
            amount: paid.amount,
        }),
        wire::OrdersCommandRecord::MarkPaymentFailed(failed) => {
            OrderCommand::MarkPaymentFailed(MarkPaymentFailed {
                order_id,
                payment_id: field("payment_id", PaymentId::parse(&failed.payment_id))?,
                reason: failed.reason.clone(),
            })
        }
        wire::OrdersCommandRecord::Ship(_) => OrderCommand::Ship(ShipOrder { order_id }),
        wire::OrdersCommandRecord::Reject(reject) => OrderCommand::Reject(RejectOrder {
            order_id,
            code: reject.code.clone(),
            reason: reject.reason.clone(),
        }),
    })
}

pub fn event_to_wire(event: &OrderEvent, metadata: EventMetadata) -> wire::OrdersEventRecord {
    match event {
        OrderEvent::Placed(placed) => wire::OrdersEventRecord::Placed(wire::OrderPlaced {
            metadata,
            order_id: placed.order_id.to_string(),
            customer_id: placed.customer_id.to_string(),
            currency: placed.currency.as_str().to_owned(),
            lines: lines_to_wire(&placed.lines),
            total: placed.total,
            card_token: placed.card_token.clone(),
        }),
        OrderEvent::Cancelled(cancelled) => {
            wire::OrdersEventRecord::Cancelled(wire::OrderCancelled {
                metadata,
                order_id: cancelled.order_id.to_string(),
                reason: cancelled.reason.clone(),
                refund_payment_id: cancelled.refund.map(|refund| refund.payment_id.to_string()),
                refund_amount: cancelled.refund.map(|refund| refund.amount),
            })
        }
        OrderEvent::Confirmed(confirmed) => {
            wire::OrdersEventRecord::Confirmed(wire::OrderConfirmed {
                metadata,
                order_id: confirmed.order_id.to_string(),
                payment_id: confirmed.payment_id.to_string(),
                amount: confirmed.amount,
            })
        }
        OrderEvent::PaymentRejected(rejected) => {
            wire::OrdersEventRecord::PaymentRejected(wire::OrderPaymentRejected {
                metadata,
                order_id: rejected.order_id.to_string(),
                payment_id: rejected.payment_id.to_string(),
                reason: rejected.reason.clone(),
            })
        }
        OrderEvent::Shipped(shipped) => wire::OrdersEventRecord::Shipped(wire::OrderShipped {
            metadata,
            order_id: shipped.order_id.to_string(),
        }),
        OrderEvent::Rejected(rejected) => wire::OrdersEventRecord::Rejected(wire::OrderRejected {
            metadata,
            order_id: rejected.order_id.to_string(),
            code: rejected.code.clone(),
            reason: rejected.reason.clone(),
        }),
    }
}

/// The domain event a wire record carries; a recorded rejection carries none.
pub fn event_from_wire(record: &wire::OrdersEventRecord) -> Result<OrderEvent, WireError> {
    use crate::domain::{
        OrderCancelled, OrderConfirmed, OrderPaymentRejected, OrderPlaced, OrderRejected,
        OrderShipped,
    };
    let at = Timestamp(record.metadata().occurred_at);
    Ok(match record {
        wire::OrdersEventRecord::Placed(placed) => OrderEvent::Placed(OrderPlaced {
            order_id: field("order_id", OrderId::parse(&placed.order_id))?,
            customer_id: field("customer_id", CustomerId::parse(&placed.customer_id))?,
            currency: field("currency", Currency::parse(&placed.currency))?,
            lines: lines_from_wire(&placed.lines)?,
            total: placed.total,
            placed_at: at,
            card_token: placed.card_token.clone(),
        }),
        wire::OrdersEventRecord::Cancelled(cancelled) => OrderEvent::Cancelled(OrderCancelled {
            order_id: field("order_id", OrderId::parse(&cancelled.order_id))?,
            reason: cancelled.reason.clone(),
            cancelled_at: at,
            refund: match (&cancelled.refund_payment_id, cancelled.refund_amount) {
                (Some(payment_id), Some(amount)) => Some(RefundOwed {
                    payment_id: field("refund_payment_id", PaymentId::parse(payment_id))?,
                    amount,
                }),
                (None, None) => None,
                _ => {
                    return Err(WireError::InvalidField {
                        field: "refund_payment_id",
                        reason: "a refund needs both its payment id and its amount".to_owned(),
                    })
                }
            },
        }),
        wire::OrdersEventRecord::Confirmed(confirmed) => OrderEvent::Confirmed(OrderConfirmed {
            order_id: field("order_id", OrderId::parse(&confirmed.order_id))?,
            payment_id: field("payment_id", PaymentId::parse(&confirmed.payment_id))?,
            amount: confirmed.amount,
            confirmed_at: at,
        }),
        wire::OrdersEventRecord::PaymentRejected(rejected) => {
            OrderEvent::PaymentRejected(OrderPaymentRejected {
                order_id: field("order_id", OrderId::parse(&rejected.order_id))?,
                payment_id: field("payment_id", PaymentId::parse(&rejected.payment_id))?,
                reason: rejected.reason.clone(),
                rejected_at: at,
            })
        }
        wire::OrdersEventRecord::Shipped(shipped) => OrderEvent::Shipped(OrderShipped {
            order_id: field("order_id", OrderId::parse(&shipped.order_id))?,
            shipped_at: at,
        }),
        wire::OrdersEventRecord::Rejected(rejected) => OrderEvent::Rejected(OrderRejected {
            order_id: field("order_id", OrderId::parse(&rejected.order_id))?,
            code: rejected.code.clone(),
            reason: rejected.reason.clone(),
            rejected_at: at,
        }),
        wire::OrdersEventRecord::CommandRejected(_) => {
            return Err(WireError::UnknownRecord {
                record: record.record_name().to_owned(),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use foldline_contracts::envelope::CommandMetadata;
    use foldline_contracts::orders::OrdersCommandRecord;
    use foldline_eventsourcing::gate::Admission;
    use foldline_eventsourcing::RejectionKind;
    use foldline_platform::domain::{decide_record, ValidCommand, INVALID_COMMAND};
    use foldline_platform::processor::PartitionLog;

    use super::*;
    use crate::domain::OrderState;

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

    fn place(command: u128) -> ValidCommand<OrdersCommandRecord> {
        ValidCommand::validate(OrdersCommandRecord::Place(wire::PlaceOrder {
            metadata: metadata(command),
            order_id: ORDER.to_owned(),
            customer_id: "0190a0a0-0000-7000-8000-0000000000c1".to_owned(),
            currency: "EUR".to_owned(),
            lines: vec![wire::OrderLine {
                sku: "SKU-1".to_owned(),
                quantity: 2,
                unit_price: 1250,
            }],
            card_token: None,
        }))
        .unwrap()
    }

    fn cancel(command: u128) -> ValidCommand<OrdersCommandRecord> {
        ValidCommand::validate(OrdersCommandRecord::Cancel(wire::CancelOrder {
            metadata: metadata(command),
            order_id: ORDER.to_owned(),
            reason: "changed my mind".to_owned(),
        }))
        .unwrap()
    }

    fn decide(
        state: &OrderState,
        version: u64,
        command: &ValidCommand<OrdersCommandRecord>,
    ) -> wire::OrdersEventRecord {
        decide_record::<OrdersWire>(state, version, command).wire
    }

    #[test]
    fn a_decision_is_deterministic_and_carries_its_provenance() {
        let first = decide(&OrderState::default(), 0, &place(1));
        let second = decide(&OrderState::default(), 0, &place(1));
        assert_eq!(first, second, "redeciding must write the same record");
        let metadata = first.metadata();
        assert_eq!(metadata.aggregate_version, 1);
        assert_eq!(metadata.causation_id, metadata.command_id);
        assert!(!metadata.event_id.is_empty());
        assert!(
            matches!(first, wire::OrdersEventRecord::Placed(ref placed) if placed.total == 2500)
        );
    }

    #[test]
    fn a_rejection_is_recorded_at_the_current_version_with_its_kind() {
        match decide(&OrderState::default(), 0, &cancel(2)) {
            wire::OrdersEventRecord::CommandRejected(rejected) => {
                assert_eq!(rejected.code, "order_not_found");
                assert_eq!(rejected.kind, RejectionKind::NotFound.as_str());
                assert_eq!(rejected.command_type, "foldline.orders.CancelOrder");
                assert_eq!(rejected.metadata.aggregate_version, 0);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn garbage_fields_become_an_invalid_command_rejection() {
        let mut command = place(3);
        if let OrdersCommandRecord::Place(place) = &mut command.record {
            place.currency = "EURO".to_owned();
        }
        let record = decide(&OrderState::default(), 0, &command);
        assert!(matches!(
            record,
            wire::OrdersEventRecord::CommandRejected(ref rejected)
                if rejected.code == INVALID_COMMAND && rejected.kind == "invalid"
        ));
    }

    #[test]
    fn a_command_without_valid_ids_or_aggregate_is_refused_before_deciding() {
        let mut record = place(4).record;
        if let OrdersCommandRecord::Place(place) = &mut record {
            place.metadata.command_id = "not-a-uuid".to_owned();
        }
        assert!(matches!(
            ValidCommand::validate(record),
            Err(WireError::InvalidField {
                field: "metadata.command_id",
                ..
            })
        ));
        let mut record = place(5).record;
        if let OrdersCommandRecord::Place(place) = &mut record {
            place.order_id = String::new();
        }
        assert!(ValidCommand::validate(record).is_err());
    }

    #[test]
    fn every_record_round_trips_through_avro() {
        let placed = decide(&OrderState::default(), 0, &place(6));
        let value = placed.to_avro().unwrap();
        let back = wire::OrdersEventRecord::from_avro(placed.record_name(), &value).unwrap();
        assert_eq!(back, placed);
        let rejected = decide(&OrderState::default(), 0, &cancel(7));
        let value = rejected.to_avro().unwrap();
        assert_eq!(
            wire::OrdersEventRecord::from_avro("foldline.CommandRejected", &value).unwrap(),
            rejected
        );
        assert!(matches!(
            wire::OrdersEventRecord::from_avro("foldline.orders.Nope", &value),
            Err(WireError::UnknownRecord { .. })
        ));
        assert!(matches!(
            wire::OrdersEventRecord::from_avro("foldline.orders.OrderPlaced", &value),
            Err(WireError::DoesNotFitSchema { .. })
        ));
    }

    /// The failure cases of the processor's design.md, on the pure fold.
    #[test]
    fn duplicates_stale_writes_and_zombies_never_take_effect() {
        let domain = OrdersWire;
        let mut log = PartitionLog::<OrderState>::empty(0);
        let placed = decide_record::<OrdersWire>(&OrderState::default(), 0, &place(1));
        assert_eq!(log.fold(&domain, &placed, 0), Admission::Apply);
        // Redelivery after a crash between produce and commit: same record again.
        assert_eq!(log.fold(&domain, &placed, 1), Admission::AlreadySettled);
        // A zombie decided a cancel against version 0 (stale): ignored.
        let zombie_cancel = decide_record::<OrdersWire>(&OrderState::default(), 0, &cancel(9));
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
        let cancel_record = decide_record::<OrdersWire>(&slot.state, slot.version, &cancel(9));
        assert_eq!(log.fold(&domain, &cancel_record, 3), Admission::Apply);
        let outcome = log.settled(&metadata(9).command_id).unwrap();
        assert_eq!(outcome.status, "accepted");
        assert_eq!(outcome.event_offset, 3);
        assert_eq!(log.aggregate(ORDER).version, 2);
    }
}
