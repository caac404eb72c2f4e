//! Given an admitted event, when the notices react, then these notices;
//! given what the read models hold, when a notice is resolved, then these
//! notifications (ids derived from the event) or this recorded outcome.

use foldline_contracts::envelope::{CommandRejected, EventMetadata};
use foldline_contracts::orders::{
    OrderCancelled, OrderConfirmed, OrderPaymentRejected, OrderPlaced, OrderRejected,
    OrdersEventRecord,
};
use foldline_contracts::payments::{PaymentCaptured, PaymentsEventRecord, RefundIssued};
use foldline_contracts::record::CommandRecord;
use foldline_contracts::users::{
    PersonalDataErased, UserDeactivated, UserEmailChanged, UserProfileChanged, UserRegistered,
    UsersEventRecord,
};
use foldline_platform::gated::{AdmittedRecord, RecordProjection};
use foldline_platform::outbox::{follow_up_metadata, ProcessManager};
use foldline_platform::projector::CurrentRows;

use super::read_models::{
    contact_key, next_contact, order_customer_key, ContactRow, ContactStatus, Contacts,
    OrderCustomers,
};
use super::*;

const ORDER: &str = "0190a0a0-0000-7000-8000-000000000001";
const CUSTOMER: &str = "0190a0a0-0000-7000-8000-0000000000c1";
const OCCURRED_AT: i64 = 1_700_000_000_000;
const GRACE_MS: i64 = 30_000;

fn metadata(event: u128) -> EventMetadata {
    EventMetadata {
        event_id: Uuid::from_u128(event).to_string(),
        aggregate_id: ORDER.to_owned(),
        aggregate_version: 1,
        command_id: Uuid::from_u128(event + 1000).to_string(),
        correlation_id: "0190a0a0-0000-7000-8000-00000000cccc".to_owned(),
        causation_id: Uuid::from_u128(event + 1000).to_string(),
        occurred_at: OCCURRED_AT,
        traceparent: None,
    }
}

fn confirmed() -> OrdersEventRecord {
    OrdersEventRecord::Confirmed(OrderConfirmed {
        metadata: metadata(2),
        order_id: ORDER.to_owned(),
        payment_id: "pay-1".to_owned(),
        amount: 2500,
    })
}

fn refund_issued() -> PaymentsEventRecord {
    PaymentsEventRecord::RefundIssued(RefundIssued {
        metadata: metadata(9),
        payment_id: "pay-1".to_owned(),
        order_id: ORDER.to_owned(),
        refund_id: "refund-1".to_owned(),
        amount: 1000,
        currency: "EUR".to_owned(),
        provider_reference: "ref".to_owned(),
        refunded_total: 1000,
        fully_refunded: false,
    })
}

fn order() -> OrderCustomer {
    OrderCustomer {
        customer_id: CUSTOMER.to_owned(),
        currency: "EUR".to_owned(),
    }
}

fn contact(phone: Option<&str>) -> ContactLookup {
    ContactLookup::Found(Contact {
        email: "grace@example.org".to_owned(),
        phone: phone.map(str::to_owned),
    })
}

fn soon() -> Patience {
    Patience {
        now_ms: OCCURRED_AT + 10,
        grace_ms: GRACE_MS,
    }
}

fn later() -> Patience {
    Patience {
        now_ms: OCCURRED_AT + GRACE_MS,
        grace_ms: GRACE_MS,
    }
}

fn the_notice(event: &OrdersEventRecord) -> OrderNotice {
    let mut notices = OrderNotices.react(event);
    assert_eq!(notices.len(), 1, "{notices:?}");
    notices.remove(0)
}

fn sends(resolution: Resolution) -> Vec<wire::SendNotification> {
    match resolution {
        Resolution::Send(commands) => commands
            .into_iter()
            .map(|command| match command {
                NotifyCommandRecord::Send(send) => send,
                other => panic!("not a send: {other:?}"),
            })
            .collect(),
        other => panic!("nothing sent: {other:?}"),
    }
}

fn parameter<'a>(send: &'a wire::SendNotification, name: &str) -> Option<&'a str> {
    send.parameters
        .iter()
        .find(|parameter| parameter.name == name)
        .map(|parameter| parameter.value.as_str())
}

#[test]
fn a_confirmed_order_is_told_by_email_and_sms_with_ids_derived_from_the_event() {
    let notice = the_notice(&confirmed());
    assert_eq!(
        notice,
        OrderNotice {
            cause: metadata(2),
            order_id: ORDER.to_owned(),
            notice: Notice::Confirmation {
                payment_id: "pay-1".to_owned(),
                amount: 2500,
            },
        }
    );
    let sent = sends(resolve(
        &notice,
        Some(&order()),
        Some(&contact(Some("+447700900123"))),
        soon(),
    ));
    assert_eq!(sent.len(), 2);
    let (email, sms) = (&sent[0], &sent[1]);
    assert_eq!(
        (email.channel.as_str(), email.recipient.as_str()),
        ("email", "grace@example.org")
    );
    assert_eq!(
        (sms.channel.as_str(), sms.recipient.as_str()),
        ("sms", "+447700900123")
    );
    for send in &sent {
        assert_eq!(send.template, "order.confirmed");
        assert_eq!(parameter(send, "order_id"), Some(ORDER));
        assert_eq!(parameter(send, "amount"), Some("2500"));
        assert_eq!(parameter(send, "currency"), Some("EUR"));
        // The command's clock is its cause's: the notice's latency counts
        // from the order event.
        assert_eq!(send.metadata.issued_at, OCCURRED_AT);
        assert_eq!(
            send.metadata.causation_id.as_deref(),
            Some(metadata(2).event_id.as_str())
        );
        assert_eq!(send.metadata.correlation_id, metadata(2).correlation_id);
    }
    assert_eq!(
        email.metadata,
        follow_up_metadata(&metadata(2), "notice/email", ISSUER)
    );
    assert_ne!(email.metadata.command_id, sms.metadata.command_id);
    assert_ne!(email.aggregate_id, sms.aggregate_id);
    assert!(Uuid::parse_str(&email.aggregate_id).is_ok());
}

#[test]
fn performing_a_notice_twice_queues_the_same_notifications() {
    let notice = the_notice(&confirmed());
    let lookup = contact(Some("+447700900123"));
    let first = resolve(&notice, Some(&order()), Some(&lookup), soon());
    let again = resolve(&notice, Some(&order()), Some(&lookup), later());
    assert_eq!(first, again);
    let other_event = the_notice(&OrdersEventRecord::Confirmed(OrderConfirmed {
        metadata: metadata(3),
        order_id: ORDER.to_owned(),
        payment_id: "pay-1".to_owned(),
        amount: 2500,
    }));
    let other = sends(resolve(&other_event, Some(&order()), Some(&lookup), soon()));
    assert_ne!(sends(first)[0].aggregate_id, other[0].aggregate_id);
}

#[test]
fn a_user_without_a_phone_is_told_by_email_only() {
    let sent = sends(resolve(
        &the_notice(&confirmed()),
        Some(&order()),
        Some(&contact(None)),
        soon(),
    ));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].channel, "email");
}

#[test]
fn a_rejected_order_is_told_why_whether_the_saga_or_the_payment_rejected_it() {
    let rejected = the_notice(&OrdersEventRecord::Rejected(OrderRejected {
        metadata: metadata(4),
        order_id: ORDER.to_owned(),
        code: "payment_deadline_passed".to_owned(),
        reason: "no payment was confirmed in time".to_owned(),
    }));
    let sent = sends(resolve(
        &rejected,
        Some(&order()),
        Some(&contact(None)),
        soon(),
    ));
    assert_eq!(sent[0].template, "order.rejected");
    assert_eq!(parameter(&sent[0], "code"), Some("payment_deadline_passed"));
    assert_eq!(
        parameter(&sent[0], "reason"),
        Some("no payment was confirmed in time")
    );
    let declined = the_notice(&OrdersEventRecord::PaymentRejected(OrderPaymentRejected {
        metadata: metadata(5),
        order_id: ORDER.to_owned(),
        payment_id: "pay-1".to_owned(),
        reason: "card_declined".to_owned(),
    }));
    assert_eq!(
        declined.notice,
        Notice::Rejection {
            code: "payment_rejected".to_owned(),
            reason: "card_declined".to_owned(),
        }
    );
}

#[test]
fn an_issued_refund_is_told_with_its_amount_and_currency() {
    let notices = RefundNotices.react(&refund_issued());
    assert_eq!(notices.len(), 1);
    let sent = sends(resolve(
        &notices[0],
        Some(&order()),
        Some(&contact(Some("+447700900123"))),
        soon(),
    ));
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|send| send.template == "order.refunded"));
    assert_eq!(parameter(&sent[0], "amount"), Some("1000"));
    assert_eq!(parameter(&sent[0], "currency"), Some("EUR"));
}

#[test]
fn other_events_notify_nobody() {
    let placed = OrdersEventRecord::Placed(OrderPlaced {
        metadata: metadata(1),
        order_id: ORDER.to_owned(),
        customer_id: CUSTOMER.to_owned(),
        currency: "EUR".to_owned(),
        lines: Vec::new(),
        total: 0,
        card_token: None,
    });
    let cancelled = OrdersEventRecord::Cancelled(OrderCancelled {
        metadata: metadata(6),
        order_id: ORDER.to_owned(),
        reason: "changed my mind".to_owned(),
        refund_payment_id: None,
        refund_amount: None,
    });
    let refused = OrdersEventRecord::CommandRejected(CommandRejected {
        metadata: metadata(7),
        command_type: "foldline.orders.ShipOrder".to_owned(),
        code: "not_found".to_owned(),
        kind: "not_found".to_owned(),
        message: "no such order".to_owned(),
    });
    for event in [placed, cancelled, refused] {
        assert_eq!(OrderNotices.react(&event), Vec::new(), "{event:?}");
    }
    let captured = PaymentsEventRecord::Captured(PaymentCaptured {
        metadata: metadata(8),
        payment_id: "pay-1".to_owned(),
        order_id: ORDER.to_owned(),
        amount: 2500,
        currency: "EUR".to_owned(),
        provider_reference: "ref".to_owned(),
    });
    assert_eq!(RefundNotices.react(&captured), Vec::new());
}

#[test]
fn an_order_or_user_not_folded_yet_waits_then_is_recorded_as_unknown() {
    let notice = the_notice(&confirmed());
    assert!(matches!(
        resolve(&notice, None, None, soon()),
        Resolution::Wait(_)
    ));
    assert_eq!(
        resolve(&notice, None, None, later()),
        Resolution::Skip(SkipReason::OrderUnknown)
    );
    assert!(matches!(
        resolve(
            &notice,
            Some(&order()),
            Some(&ContactLookup::Missing),
            soon()
        ),
        Resolution::Wait(_)
    ));
    assert_eq!(
        resolve(
            &notice,
            Some(&order()),
            Some(&ContactLookup::Missing),
            later()
        ),
        Resolution::Skip(SkipReason::RecipientUnknown)
    );
}

#[test]
fn an_order_the_saga_rejected_for_an_unknown_customer_is_recorded_at_once() {
    let notice = the_notice(&OrdersEventRecord::Rejected(OrderRejected {
        metadata: metadata(4),
        order_id: ORDER.to_owned(),
        code: CUSTOMER_UNKNOWN.to_owned(),
        reason: "no user is registered".to_owned(),
    }));
    assert_eq!(
        resolve(
            &notice,
            Some(&order()),
            Some(&ContactLookup::Missing),
            soon()
        ),
        Resolution::Skip(SkipReason::RecipientUnknown)
    );
}

#[test]
fn an_erased_or_unreadable_user_is_recorded_at_once_and_sent_nothing() {
    let notice = the_notice(&confirmed());
    assert_eq!(
        resolve(
            &notice,
            Some(&order()),
            Some(&ContactLookup::Erased),
            soon()
        ),
        Resolution::Skip(SkipReason::RecipientErased)
    );
    assert_eq!(
        resolve(
            &notice,
            Some(&order()),
            Some(&ContactLookup::Unreadable),
            soon()
        ),
        Resolution::Skip(SkipReason::RecipientUnreadable)
    );
}

fn user_metadata(event: u128) -> EventMetadata {
    EventMetadata {
        aggregate_id: CUSTOMER.to_owned(),
        ..metadata(event)
    }
}

#[test]
fn contacts_follow_registration_profile_and_email_changes_and_forget_an_erased_user() {
    let registered = UsersEventRecord::Registered(UserRegistered {
        metadata: user_metadata(20),
        user_id: CUSTOMER.to_owned(),
        claim_key: "claim-1".to_owned(),
        email_sealed: "v1.email".to_owned(),
        name_sealed: "v1.name".to_owned(),
        phone_sealed: None,
    });
    let contact = next_contact(&registered, None);
    assert_eq!(
        contact,
        Some(ContactRow {
            status: ContactStatus::Active,
            email_sealed: Some("v1.email".to_owned()),
            phone_sealed: None,
        })
    );
    let phone_added = UsersEventRecord::ProfileChanged(UserProfileChanged {
        metadata: user_metadata(21),
        user_id: CUSTOMER.to_owned(),
        name_sealed: None,
        phone_sealed: Some("v1.phone".to_owned()),
        phone_cleared: false,
    });
    let contact = next_contact(&phone_added, contact);
    assert_eq!(
        contact.as_ref().and_then(|c| c.phone_sealed.as_deref()),
        Some("v1.phone")
    );
    let moved = UsersEventRecord::EmailChanged(UserEmailChanged {
        metadata: user_metadata(22),
        user_id: CUSTOMER.to_owned(),
        previous_claim_key: "claim-1".to_owned(),
        claim_key: "claim-2".to_owned(),
        email_sealed: "v1.email2".to_owned(),
    });
    let contact = next_contact(&moved, contact);
    assert_eq!(
        contact.as_ref().and_then(|c| c.email_sealed.as_deref()),
        Some("v1.email2")
    );
    let phone_cleared = UsersEventRecord::ProfileChanged(UserProfileChanged {
        metadata: user_metadata(23),
        user_id: CUSTOMER.to_owned(),
        name_sealed: None,
        phone_sealed: None,
        phone_cleared: true,
    });
    let contact = next_contact(&phone_cleared, contact);
    assert_eq!(contact.as_ref().and_then(|c| c.phone_sealed.clone()), None);
    let deactivated = UsersEventRecord::Deactivated(UserDeactivated {
        metadata: user_metadata(24),
        user_id: CUSTOMER.to_owned(),
        reason: "asked".to_owned(),
    });
    let contact = next_contact(&deactivated, contact);
    assert_eq!(
        contact.as_ref().map(|c| c.status),
        Some(ContactStatus::Deactivated)
    );
    let erased = UsersEventRecord::Erased(PersonalDataErased {
        metadata: user_metadata(25),
        user_id: CUSTOMER.to_owned(),
        claim_key: "claim-2".to_owned(),
        requested_by: "support".to_owned(),
        reason: "gdpr".to_owned(),
    });
    assert_eq!(
        next_contact(&erased, contact),
        Some(ContactRow {
            status: ContactStatus::Erased,
            email_sealed: None,
            phone_sealed: None,
        })
    );
    // Through the projection: the row is keyed by the user, at the offset.
    let rows = Contacts
        .project(
            &AdmittedRecord {
                record: &registered,
                version: 1,
                partition: 0,
                offset: 7,
            },
            &CurrentRows::default(),
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, contact_key(CUSTOMER));
    assert_eq!(rows[0].1.position, 7);
    assert_eq!(
        Contacts.rows_to_read(&phone_added),
        vec![contact_key(CUSTOMER)]
    );
}

#[test]
fn a_placed_order_records_its_customer_and_currency() {
    let placed = OrdersEventRecord::Placed(OrderPlaced {
        metadata: metadata(1),
        order_id: ORDER.to_owned(),
        customer_id: CUSTOMER.to_owned(),
        currency: "EUR".to_owned(),
        lines: Vec::new(),
        total: 0,
        card_token: None,
    });
    let rows = OrderCustomers
        .project(
            &AdmittedRecord {
                record: &placed,
                version: 1,
                partition: 2,
                offset: 3,
            },
            &CurrentRows::default(),
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, order_customer_key(ORDER));
    let stored: OrderCustomer = serde_json::from_slice(&rows[0].1.value).unwrap();
    assert_eq!(stored, order());
    let confirmed_rows = OrderCustomers
        .project(
            &AdmittedRecord {
                record: &confirmed(),
                version: 2,
                partition: 2,
                offset: 4,
            },
            &CurrentRows::default(),
        )
        .unwrap();
    assert!(confirmed_rows.is_empty());
}

#[test]
fn the_notice_commands_are_valid_notify_commands() {
    let sent = resolve(
        &the_notice(&confirmed()),
        Some(&order()),
        Some(&contact(Some("+447700900123"))),
        soon(),
    );
    let Resolution::Send(commands) = sent else {
        panic!("nothing sent");
    };
    for command in &commands {
        // Through Avro and the domain's own field mapping, as the processor reads it.
        let back =
            NotifyCommandRecord::from_avro(command.record_name(), &command.to_avro().unwrap())
                .unwrap();
        assert_eq!(&back, command);
        let NotifyCommandRecord::Send(send) = command else {
            panic!("not a send");
        };
        let channel = Channel::parse(&send.channel).unwrap();
        assert!(crate::domain::Recipient::parse(channel, &send.recipient).is_ok());
        assert!(crate::domain::Template::parse(&send.template).is_ok());
    }
}
