//! Given an admitted event, when the saga reacts, then these follow-ups
//! (and these commands, with ids derived from the event).

use foldline_contracts::envelope::{CommandRejected, EventMetadata};
use foldline_contracts::orders::{
    OrderCancelled, OrderConfirmed, OrderLine, OrderPaymentRejected, OrderPlaced, OrderRejected,
    OrdersEventRecord,
};
use foldline_contracts::payments::{
    CaptureFailed, PaymentAuthorized, PaymentCaptured, PaymentDeclined, PaymentsEventRecord,
};
use foldline_contracts::users::{UserDeactivated, UsersEventRecord};
use foldline_platform::gated::{AdmittedRecord, RecordProjection};
use foldline_platform::outbox::{follow_up_metadata, ProcessManager};

use super::customers::{customer_key, CustomerStatus, Customers};
use super::*;

const ORDER: &str = "0190a0a0-0000-7000-8000-000000000001";
const CUSTOMER: &str = "0190a0a0-0000-7000-8000-0000000000c1";

fn metadata(event: u128) -> EventMetadata {
    EventMetadata {
        event_id: Uuid::from_u128(event).to_string(),
        aggregate_id: ORDER.to_owned(),
        aggregate_version: 1,
        command_id: Uuid::from_u128(event + 1000).to_string(),
        correlation_id: "0190a0a0-0000-7000-8000-00000000cccc".to_owned(),
        causation_id: Uuid::from_u128(event + 1000).to_string(),
        occurred_at: 1_700_000_000_000,
        traceparent: None,
    }
}

fn placed(card_token: Option<&str>) -> OrdersEventRecord {
    OrdersEventRecord::Placed(OrderPlaced {
        metadata: metadata(1),
        order_id: ORDER.to_owned(),
        customer_id: CUSTOMER.to_owned(),
        currency: "EUR".to_owned(),
        lines: vec![OrderLine {
            sku: "SKU-1".to_owned(),
            quantity: 2,
            unit_price: 1250,
        }],
        total: 2500,
        card_token: card_token.map(str::to_owned),
    })
}

fn cancelled(refund: Option<(&str, i64)>, reason: &str) -> OrdersEventRecord {
    OrdersEventRecord::Cancelled(OrderCancelled {
        metadata: metadata(5),
        order_id: ORDER.to_owned(),
        reason: reason.to_owned(),
        refund_payment_id: refund.map(|(payment, _)| payment.to_owned()),
        refund_amount: refund.map(|(_, amount)| amount),
    })
}

#[test]
fn a_placed_order_opens_its_payment_and_starts_its_deadline_in_an_outbox_of_timers() {
    let follow_ups = OrdersSaga.react(&placed(Some("tok_chargeDeclined")));
    assert_eq!(
        follow_ups,
        vec![OrderFollowUp::OpenPayment {
            cause: metadata(1),
            order_id: ORDER.to_owned(),
            customer_id: CUSTOMER.to_owned(),
            amount: 2500,
            currency: "EUR".to_owned(),
            card_token: Some("tok_chargeDeclined".to_owned()),
        },]
    );
    assert_eq!(
        PaymentDeadlines.react(&placed(None)),
        vec![OrderFollowUp::PaymentDeadline {
            cause: metadata(1),
            order_id: ORDER.to_owned(),
        }]
    );
    let payment = payment_id_for(ORDER);
    assert_eq!(
        PaymentDeadlines.react(&cancelled(Some((&payment, 2500)), "")),
        vec![],
        "only a placed order starts a deadline"
    );
}

#[test]
fn an_order_has_one_payment_whose_id_derives_from_the_order() {
    assert_eq!(payment_id_for(ORDER), payment_id_for(ORDER));
    assert_ne!(payment_id_for(ORDER), payment_id_for(CUSTOMER));
    assert!(payment_id_for(ORDER).parse::<Uuid>().is_ok());
}

#[test]
fn a_redelivered_event_issues_the_same_commands() {
    let event = placed(None);
    assert_eq!(OrdersSaga.react(&event), OrdersSaga.react(&event));
    let first = follow_up_metadata(&metadata(1), "authorize-payment", "saga");
    let again = follow_up_metadata(&metadata(1), "authorize-payment", "saga");
    assert_eq!(first, again);
    assert_eq!(
        first.causation_id.as_deref(),
        Some(metadata(1).event_id.as_str())
    );
    assert_eq!(first.correlation_id, metadata(1).correlation_id);
    assert_ne!(
        first.command_id,
        follow_up_metadata(&metadata(1), "customer-check", "saga").command_id,
        "each step of one event is its own command"
    );
}

#[test]
fn a_rejected_or_declined_order_voids_any_authorization() {
    let rejected = OrdersEventRecord::Rejected(OrderRejected {
        metadata: metadata(3),
        order_id: ORDER.to_owned(),
        code: PAYMENT_DEADLINE_PASSED.to_owned(),
        reason: "too slow".to_owned(),
    });
    let payment_rejected = OrdersEventRecord::PaymentRejected(OrderPaymentRejected {
        metadata: metadata(4),
        order_id: ORDER.to_owned(),
        payment_id: payment_id_for(ORDER),
        reason: "card declined".to_owned(),
    });
    for (event, cause) in [(rejected, metadata(3)), (payment_rejected, metadata(4))] {
        match OrdersSaga.react(&event).as_slice() {
            [OrderFollowUp::Void {
                cause: void_cause,
                payment_id,
                ..
            }] => {
                assert_eq!(*void_cause, cause);
                assert_eq!(*payment_id, payment_id_for(ORDER));
            }
            other => panic!("expected one void, got {other:?}"),
        }
    }
}

#[test]
fn cancelling_a_paid_order_voids_its_captured_payment_to_refund_what_is_left() {
    let payment = payment_id_for(ORDER);
    let follow_ups = OrdersSaga.react(&cancelled(Some((&payment, 2500)), "changed my mind"));
    // Not a refund of the 2500 confirmed: the customer may have been
    // refunded in part already, and only payments knows what is left (the
    // void of a captured payment refunds it, once per payment).
    assert_eq!(
        follow_ups,
        vec![OrderFollowUp::Void {
            cause: metadata(5),
            payment_id: payment,
            reason: "the order was cancelled: changed my mind".to_owned(),
        }]
    );
}

#[test]
fn cancelling_an_unpaid_order_voids_and_a_free_one_does_nothing() {
    assert!(matches!(
        OrdersSaga.react(&cancelled(None, "")).as_slice(),
        [OrderFollowUp::Void { .. }]
    ));
    let payment = payment_id_for(ORDER);
    assert_eq!(
        OrdersSaga.react(&cancelled(Some((&payment, 0)), "")),
        vec![]
    );
}

#[test]
fn confirmations_and_other_refusals_cause_nothing() {
    let confirmed = OrdersEventRecord::Confirmed(OrderConfirmed {
        metadata: metadata(2),
        order_id: ORDER.to_owned(),
        payment_id: payment_id_for(ORDER),
        amount: 2500,
    });
    let refused_other = OrdersEventRecord::CommandRejected(CommandRejected {
        metadata: metadata(9),
        command_type: "foldline.orders.CancelOrder".to_owned(),
        code: "already_cancelled".to_owned(),
        kind: "conflict".to_owned(),
        message: "order is already cancelled".to_owned(),
    });
    let refused_paid = OrdersEventRecord::CommandRejected(CommandRejected {
        metadata: metadata(9),
        command_type: "foldline.orders.MarkOrderPaid".to_owned(),
        code: "already_paid".to_owned(),
        kind: "conflict".to_owned(),
        message: "order has already been paid".to_owned(),
    });
    assert_eq!(OrdersSaga.react(&confirmed), vec![]);
    assert_eq!(OrdersSaga.react(&refused_other), vec![]);
    // An order that ended paid keeps its money.
    assert_eq!(OrdersSaga.react(&refused_paid), vec![]);
}

#[test]
fn a_capture_the_ended_order_refused_is_voided_which_refunds_it() {
    for code in ["not_awaiting_payment", "already_cancelled"] {
        let refused = OrdersEventRecord::CommandRejected(CommandRejected {
            metadata: metadata(9),
            command_type: "foldline.orders.MarkOrderPaid".to_owned(),
            code: code.to_owned(),
            kind: "conflict".to_owned(),
            message: "order is not awaiting payment".to_owned(),
        });
        assert_eq!(
            OrdersSaga.react(&refused),
            vec![OrderFollowUp::Void {
                cause: metadata(9),
                payment_id: payment_id_for(ORDER),
                reason: "captured after the order ended".to_owned(),
            }],
            "{code}"
        );
    }
}

#[test]
fn an_authorized_payment_is_captured_and_a_captured_one_confirms_the_order() {
    let payment = payment_id_for(ORDER);
    let authorized = PaymentsEventRecord::Authorized(PaymentAuthorized {
        metadata: metadata(10),
        payment_id: payment.clone(),
        order_id: ORDER.to_owned(),
        amount: 2500,
        currency: "EUR".to_owned(),
        provider_reference: "auth_1".to_owned(),
    });
    assert_eq!(
        PaymentsSaga.react(&authorized),
        vec![PaymentFollowUp::Capture {
            cause: metadata(10),
            payment_id: payment.clone(),
        }]
    );
    let captured = PaymentsEventRecord::Captured(PaymentCaptured {
        metadata: metadata(11),
        payment_id: payment.clone(),
        order_id: ORDER.to_owned(),
        amount: 2500,
        currency: "EUR".to_owned(),
        provider_reference: "cap_1".to_owned(),
    });
    assert_eq!(
        PaymentsSaga.react(&captured),
        vec![PaymentFollowUp::MarkPaid {
            cause: metadata(11),
            order_id: ORDER.to_owned(),
            payment_id: payment,
            amount: 2500,
        }]
    );
}

#[test]
fn a_declined_payment_or_a_failed_capture_fails_the_order_with_a_reason() {
    let payment = payment_id_for(ORDER);
    let declined = PaymentsEventRecord::Declined(PaymentDeclined {
        metadata: metadata(12),
        payment_id: payment.clone(),
        order_id: ORDER.to_owned(),
        code: "card_declined".to_owned(),
        reason: " ".to_owned(),
        provider_reference: None,
    });
    let failed = PaymentsEventRecord::CaptureFailed(CaptureFailed {
        metadata: metadata(13),
        payment_id: payment.clone(),
        order_id: ORDER.to_owned(),
        reason: "authorization expired".to_owned(),
    });
    let reasons: Vec<_> = [declined, failed]
        .iter()
        .flat_map(|event| PaymentsSaga.react(event))
        .map(|follow_up| match follow_up {
            PaymentFollowUp::MarkPaymentFailed { reason, .. } => reason,
            other => panic!("expected a payment failure, got {other:?}"),
        })
        .collect();
    // A blank provider reason falls back to its code: the orders domain
    // refuses a blank one.
    assert_eq!(
        reasons,
        ["card_declined", "the capture failed: authorization expired"]
    );
}

#[test]
fn the_customers_read_model_keeps_each_users_status() {
    let deactivated = UsersEventRecord::Deactivated(UserDeactivated {
        metadata: metadata(20),
        user_id: CUSTOMER.to_owned(),
        reason: "asked".to_owned(),
    });
    let rows = Customers
        .project(
            &AdmittedRecord {
                record: &deactivated,
                version: 2,
                partition: 0,
                offset: 7,
            },
            &Default::default(),
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, customer_key(CUSTOMER));
    assert_eq!(rows[0].1.position, 7);
    assert_eq!(
        serde_json::from_slice::<CustomerStatus>(&rows[0].1.value).unwrap(),
        CustomerStatus::Deactivated
    );
}

#[test]
fn the_saga_s_outbox_reacts_to_an_admitted_refusal_once_and_other_reactions_ignore_it() {
    use foldline_platform::gated::GatedRecords;
    use foldline_platform::outbox::Reactions;
    use foldline_platform::projector::{apply_in_memory, MemoryTable};

    let mut refusal_metadata = metadata(9);
    refusal_metadata.aggregate_version = 0;
    let refused = OrdersEventRecord::CommandRejected(CommandRejected {
        metadata: refusal_metadata,
        command_type: "foldline.orders.MarkOrderPaid".to_owned(),
        code: "not_awaiting_payment".to_owned(),
        kind: "conflict".to_owned(),
        message: "order is not awaiting payment".to_owned(),
    });
    let outbox_rows = |table: &MemoryTable, name: &str| {
        table
            .iter()
            .filter(|(key, _)| key.table == "outbox" && key.partition.starts_with(name.as_bytes()))
            .count()
    };
    let saga = GatedRecords::new("orders", Reactions(OrdersSaga));
    let mut table = MemoryTable::new();
    apply_in_memory(&saga, &mut table, &refused, 0, 9).unwrap();
    assert_eq!(outbox_rows(&table, OrdersSaga::NAME), 1, "{table:?}");
    // A copy of the record further on is settled already: no second row.
    apply_in_memory(&saga, &mut table, &refused, 0, 10).unwrap();
    assert_eq!(outbox_rows(&table, OrdersSaga::NAME), 1, "{table:?}");

    let timers = GatedRecords::new("orders", Reactions(PaymentDeadlines));
    let mut table = MemoryTable::new();
    apply_in_memory(&timers, &mut table, &refused, 0, 9).unwrap();
    assert_eq!(outbox_rows(&table, PaymentDeadlines::NAME), 0, "{table:?}");
}
