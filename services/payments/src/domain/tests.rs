//! Given/when/then scenarios for every transition and every rejection of
//! the payment decider.

use foldline_eventsourcing::harness::TestHarness;
use foldline_eventsourcing::{Rejection, RejectionKind};
use uuid::Uuid;

use super::*;

type Given = TestHarness<Payments>;

fn payment_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(1))
}

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(2))
}

fn refund(n: u128) -> RefundId {
    RefundId::from_uuid(Uuid::from_u128(100 + n))
}

fn amount(minor_units: i64) -> Amount {
    Amount::new(minor_units).unwrap()
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn note(text: &str) -> Note {
    Note::parse(text).unwrap()
}

fn reference(text: &str) -> ProviderReference {
    ProviderReference::parse(text).unwrap()
}

fn terms() -> PaymentTerms {
    PaymentTerms {
        payment_id: payment_id(),
        order_id: order_id(),
        customer_id: CustomerId::from_uuid(Uuid::from_u128(3)),
        amount: amount(10_000),
        currency: eur(),
        card_token: CardToken::parse("tok_visa").unwrap(),
    }
}

fn requested() -> PaymentEvent {
    PaymentEvent::Requested(terms())
}

fn authorized() -> PaymentEvent {
    PaymentEvent::Authorized {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: amount(10_000),
        currency: eur(),
        provider_reference: reference("auth_1"),
    }
}

fn declined() -> PaymentEvent {
    PaymentEvent::Declined {
        payment_id: payment_id(),
        order_id: order_id(),
        code: DeclineCode::CardDeclined,
        reason: note("do not honour"),
        provider_reference: Some(reference("auth_1")),
    }
}

fn capture_requested() -> PaymentEvent {
    PaymentEvent::CaptureRequested {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: amount(10_000),
        currency: eur(),
        authorization: reference("auth_1"),
    }
}

fn captured() -> PaymentEvent {
    PaymentEvent::Captured {
        payment_id: payment_id(),
        order_id: order_id(),
        amount: amount(10_000),
        currency: eur(),
        provider_reference: reference("cap_1"),
    }
}

fn refund_requested(n: u128, minor_units: i64) -> PaymentEvent {
    PaymentEvent::RefundRequested {
        payment_id: payment_id(),
        order_id: order_id(),
        refund_id: refund(n),
        amount: amount(minor_units),
        currency: eur(),
        reason: note("returned"),
        capture: reference("cap_1"),
    }
}

fn refund_issued(n: u128, minor_units: i64, total: i64) -> PaymentEvent {
    PaymentEvent::RefundIssued {
        payment_id: payment_id(),
        order_id: order_id(),
        refund_id: refund(n),
        amount: amount(minor_units),
        currency: eur(),
        provider_reference: reference(&format!("re_{n}")),
        refunded_total: total,
        fully_refunded: total == 10_000,
    }
}

fn void_requested() -> PaymentEvent {
    PaymentEvent::VoidRequested {
        payment_id: payment_id(),
        order_id: order_id(),
        reason: note("order expired"),
        authorization: reference("auth_1"),
    }
}

fn refund_command(n: u128, minor_units: i64) -> PaymentCommand {
    PaymentCommand::Refund {
        payment_id: payment_id(),
        refund_id: refund(n),
        amount: amount(minor_units),
        reason: note("returned"),
    }
}

fn record_refund(n: u128) -> PaymentCommand {
    PaymentCommand::RecordRefund {
        payment_id: payment_id(),
        refund_id: refund(n),
        provider_reference: reference(&format!("re_{n}")),
    }
}

fn record_authorization() -> PaymentCommand {
    PaymentCommand::RecordAuthorization {
        payment_id: payment_id(),
        provider_reference: reference("auth_1"),
    }
}

fn capture() -> PaymentCommand {
    PaymentCommand::Capture {
        payment_id: payment_id(),
    }
}

fn void() -> PaymentCommand {
    PaymentCommand::Void {
        payment_id: payment_id(),
        reason: note("order expired"),
    }
}

// --- authorize ---

#[test]
fn authorizing_a_new_payment_requests_it() {
    let state = Given::given([])
        .when(PaymentCommand::Authorize(terms()))
        .then(requested());
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Requested);
    assert_eq!(payment.refundable(), 0);
}

#[test]
fn authorizing_an_existing_payment_is_a_conflict() {
    Given::given([requested()])
        .when(PaymentCommand::Authorize(terms()))
        .then_rejected(PaymentRejection::AlreadyExists(payment_id()));
}

#[test]
fn the_provider_s_authorization_authorizes_a_requested_payment() {
    let state = Given::given([requested()])
        .when(record_authorization())
        .then(authorized());
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Authorized);
    assert_eq!(payment.authorization, Some(reference("auth_1")));
}

#[test]
fn the_provider_s_decline_declines_a_requested_payment() {
    let state = Given::given([requested()])
        .when(PaymentCommand::RecordDecline {
            payment_id: payment_id(),
            code: DeclineCode::CardDeclined,
            reason: note("do not honour"),
            provider_reference: Some(reference("auth_1")),
        })
        .then(declined());
    assert_eq!(
        state.payment.unwrap().decline.unwrap().code,
        DeclineCode::CardDeclined
    );
}

#[test]
fn a_late_answer_after_the_first_is_refused() {
    // The deadline declined it; the provider's authorization arrives later.
    Given::given([requested(), declined()])
        .when(record_authorization())
        .then_rejected(PaymentRejection::NoAnswerAwaited {
            operation: "authorization",
            status: PaymentStatus::Declined,
        });
    Given::given([requested(), authorized()])
        .when(PaymentCommand::RecordDecline {
            payment_id: payment_id(),
            code: DeclineCode::DeadlineExceeded,
            reason: note("no answer"),
            provider_reference: None,
        })
        .then_rejected(PaymentRejection::NoAnswerAwaited {
            operation: "authorization",
            status: PaymentStatus::Authorized,
        });
}

#[test]
fn every_command_to_a_payment_that_does_not_exist_is_not_found() {
    for command in [
        record_authorization(),
        capture(),
        void(),
        refund_command(1, 1),
        record_refund(1),
        PaymentCommand::RecordCapture {
            payment_id: payment_id(),
            provider_reference: reference("cap_1"),
        },
        PaymentCommand::RecordVoidFailure {
            payment_id: payment_id(),
            reason: note("x"),
        },
    ] {
        let rejection = Given::given([]).when(command).result().unwrap_err();
        assert_eq!(rejection, PaymentRejection::NotFound(payment_id()));
        assert_eq!(rejection.kind(), RejectionKind::NotFound);
        assert_eq!(rejection.code(), "payment_not_found");
    }
}

// --- capture ---

#[test]
fn capturing_an_authorized_payment_asks_the_provider() {
    let state = Given::given([requested(), authorized()])
        .when(capture())
        .then(capture_requested());
    assert_eq!(state.payment.unwrap().status, PaymentStatus::Capturing);
}

#[test]
fn capturing_is_refused_unless_authorized() {
    for (history, status) in [
        (vec![requested()], PaymentStatus::Requested),
        (vec![requested(), declined()], PaymentStatus::Declined),
        (
            vec![requested(), authorized(), capture_requested()],
            PaymentStatus::Capturing,
        ),
        (
            vec![requested(), authorized(), capture_requested(), captured()],
            PaymentStatus::Captured,
        ),
        (
            vec![requested(), authorized(), void_requested()],
            PaymentStatus::Voiding,
        ),
    ] {
        Given::given(history)
            .when(capture())
            .then_rejected(PaymentRejection::NotAuthorized(status));
    }
}

#[test]
fn the_provider_s_capture_captures() {
    let state = Given::given([requested(), authorized(), capture_requested()])
        .when(PaymentCommand::RecordCapture {
            payment_id: payment_id(),
            provider_reference: reference("cap_1"),
        })
        .then(captured());
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Captured);
    assert_eq!(payment.refundable(), 10_000);
}

#[test]
fn a_failed_capture_leaves_the_payment_authorized() {
    let state = Given::given([requested(), authorized(), capture_requested()])
        .when(PaymentCommand::RecordCaptureFailure {
            payment_id: payment_id(),
            reason: note("authorization expired"),
        })
        .then(PaymentEvent::CaptureFailed {
            payment_id: payment_id(),
            order_id: order_id(),
            reason: note("authorization expired"),
        });
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Authorized);
    assert_eq!(payment.last_failure, Some(note("authorization expired")));
}

#[test]
fn capture_answers_are_refused_when_no_capture_is_awaited() {
    Given::given([requested(), authorized()])
        .when(PaymentCommand::RecordCapture {
            payment_id: payment_id(),
            provider_reference: reference("cap_1"),
        })
        .then_rejected(PaymentRejection::NoAnswerAwaited {
            operation: "capture",
            status: PaymentStatus::Authorized,
        });
    Given::given([requested(), authorized(), capture_requested(), captured()])
        .when(PaymentCommand::RecordCaptureFailure {
            payment_id: payment_id(),
            reason: note("x"),
        })
        .then_rejected(PaymentRejection::NoAnswerAwaited {
            operation: "capture",
            status: PaymentStatus::Captured,
        });
}

// --- refunds ---

fn captured_history() -> Vec<PaymentEvent> {
    vec![requested(), authorized(), capture_requested(), captured()]
}

#[test]
fn a_partial_then_a_full_refund_refund_everything_captured() {
    let mut history = captured_history();
    history.push(refund_requested(1, 3_000));
    let state = Given::given(history.clone())
        .when(record_refund(1))
        .then(refund_issued(1, 3_000, 3_000));
    let payment = state.payment.unwrap();
    assert_eq!(payment.refunded(), 3_000);
    assert_eq!(payment.refundable(), 7_000);
    history.push(refund_issued(1, 3_000, 3_000));
    Given::given(history.clone())
        .when(refund_command(2, 7_000))
        .then(refund_requested(2, 7_000));
    history.push(refund_requested(2, 7_000));
    let state = Given::given(history)
        .when(record_refund(2))
        .then(refund_issued(2, 7_000, 10_000));
    let payment = state.payment.unwrap();
    assert_eq!(payment.refunded(), 10_000);
    assert_eq!(payment.refundable(), 0);
}

#[test]
fn a_refund_over_what_was_captured_is_refused() {
    let rejection = Given::given(captured_history())
        .when(refund_command(1, 10_001))
        .result()
        .unwrap_err();
    assert_eq!(
        rejection,
        PaymentRejection::RefundExceedsCaptured {
            requested: 10_001,
            refundable: 10_000
        }
    );
    assert_eq!(rejection.code(), "refund_exceeds_captured");
    assert_eq!(rejection.kind(), RejectionKind::Conflict);
}

#[test]
fn pending_refunds_are_reserved_so_concurrent_refunds_never_exceed_the_capture() {
    let mut history = captured_history();
    history.push(refund_requested(1, 6_000));
    Given::given(history.clone())
        .when(refund_command(2, 5_000))
        .then_rejected(PaymentRejection::RefundExceedsCaptured {
            requested: 5_000,
            refundable: 4_000,
        });
    // A failed refund frees its reservation again.
    history.push(PaymentEvent::RefundFailed {
        payment_id: payment_id(),
        order_id: order_id(),
        refund_id: refund(1),
        amount: amount(6_000),
        reason: note("card closed"),
    });
    Given::given(history)
        .when(refund_command(2, 10_000))
        .then(refund_requested(2, 10_000));
}

#[test]
fn refunds_are_refused_unless_captured() {
    for (history, status) in [
        (vec![requested()], PaymentStatus::Requested),
        (vec![requested(), authorized()], PaymentStatus::Authorized),
        (
            vec![requested(), authorized(), capture_requested()],
            PaymentStatus::Capturing,
        ),
    ] {
        Given::given(history)
            .when(refund_command(1, 1))
            .then_rejected(PaymentRejection::NotCaptured(status));
    }
}

#[test]
fn a_refund_id_is_used_once() {
    let mut history = captured_history();
    history.push(refund_requested(1, 1_000));
    Given::given(history)
        .when(refund_command(1, 1_000))
        .then_rejected(PaymentRejection::RefundExists(refund(1)));
}

#[test]
fn refund_answers_need_a_pending_refund() {
    Given::given(captured_history())
        .when(record_refund(1))
        .then_rejected(PaymentRejection::RefundNotFound(refund(1)));
    let mut history = captured_history();
    history.push(refund_requested(1, 1_000));
    history.push(refund_issued(1, 1_000, 1_000));
    Given::given(history.clone())
        .when(record_refund(1))
        .then_rejected(PaymentRejection::RefundNotPending(refund(1)));
    Given::given(history)
        .when(PaymentCommand::RecordRefundFailure {
            payment_id: payment_id(),
            refund_id: refund(1),
            reason: note("x"),
        })
        .then_rejected(PaymentRejection::RefundNotPending(refund(1)));
}

#[test]
fn a_failed_refund_is_recorded() {
    let mut history = captured_history();
    history.push(refund_requested(1, 1_000));
    let state = Given::given(history)
        .when(PaymentCommand::RecordRefundFailure {
            payment_id: payment_id(),
            refund_id: refund(1),
            reason: note("card closed"),
        })
        .then(PaymentEvent::RefundFailed {
            payment_id: payment_id(),
            order_id: order_id(),
            refund_id: refund(1),
            amount: amount(1_000),
            reason: note("card closed"),
        });
    let payment = state.payment.unwrap();
    assert_eq!(payment.refunds[&refund(1)].status, RefundStatus::Failed);
    assert_eq!(payment.refundable(), 10_000);
}

// --- void ---

#[test]
fn voiding_an_authorized_payment_asks_the_provider_then_voids() {
    let state = Given::given([requested(), authorized()])
        .when(void())
        .then(void_requested());
    assert_eq!(state.payment.unwrap().status, PaymentStatus::Voiding);
    let state = Given::given([requested(), authorized(), void_requested()])
        .when(PaymentCommand::RecordVoid {
            payment_id: payment_id(),
            provider_reference: reference("void_1"),
        })
        .then(PaymentEvent::Voided {
            payment_id: payment_id(),
            order_id: order_id(),
            reason: note("order expired"),
            provider_reference: reference("void_1"),
        });
    assert_eq!(state.payment.unwrap().status, PaymentStatus::Voided);
}

#[test]
fn a_failed_void_leaves_the_payment_authorized() {
    let state = Given::given([requested(), authorized(), void_requested()])
        .when(PaymentCommand::RecordVoidFailure {
            payment_id: payment_id(),
            reason: note("already captured"),
        })
        .then(PaymentEvent::VoidFailed {
            payment_id: payment_id(),
            order_id: order_id(),
            reason: note("already captured"),
        });
    assert_eq!(state.payment.unwrap().status, PaymentStatus::Authorized);
}

#[test]
fn voiding_is_refused_when_nothing_is_held_or_an_operation_is_in_flight() {
    for (history, status) in [
        (vec![requested(), declined()], PaymentStatus::Declined),
        (
            vec![requested(), authorized(), capture_requested()],
            PaymentStatus::Capturing,
        ),
        (
            vec![requested(), authorized(), void_requested()],
            PaymentStatus::Voiding,
        ),
    ] {
        Given::given(history)
            .when(void())
            .then_rejected(PaymentRejection::NotAuthorized(status));
    }
}

fn abandoned() -> PaymentEvent {
    PaymentEvent::Declined {
        payment_id: payment_id(),
        order_id: order_id(),
        code: DeclineCode::Abandoned,
        reason: note("order expired"),
        provider_reference: None,
    }
}

#[test]
fn voiding_a_payment_still_awaiting_authorization_abandons_it() {
    let state = Given::given([requested()]).when(void()).then(abandoned());
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Declined);
    assert_eq!(payment.refundable(), 0);
}

#[test]
fn an_authorization_arriving_after_the_payment_was_abandoned_is_voided() {
    let state = Given::given([requested(), abandoned()])
        .when(record_authorization())
        .then(void_requested());
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Voiding);
    assert_eq!(payment.authorization, Some(reference("auth_1")));
    // The provider's void then ends it, as any void.
    Given::given([requested(), abandoned(), void_requested()])
        .when(PaymentCommand::RecordVoid {
            payment_id: payment_id(),
            provider_reference: reference("void_1"),
        })
        .then(PaymentEvent::Voided {
            payment_id: payment_id(),
            order_id: order_id(),
            reason: note("order expired"),
            provider_reference: reference("void_1"),
        });
}

#[test]
fn an_authorization_arriving_after_our_deadline_decline_is_voided() {
    let deadline = PaymentEvent::Declined {
        payment_id: payment_id(),
        order_id: order_id(),
        code: DeclineCode::DeadlineExceeded,
        reason: note("no answer within 30000 ms"),
        provider_reference: None,
    };
    Given::given([requested(), deadline])
        .when(record_authorization())
        .then(PaymentEvent::VoidRequested {
            payment_id: payment_id(),
            order_id: order_id(),
            reason: note("no answer within 30000 ms"),
            authorization: reference("auth_1"),
        });
}

fn deadline_declined() -> PaymentEvent {
    PaymentEvent::Declined {
        payment_id: payment_id(),
        order_id: order_id(),
        code: DeclineCode::DeadlineExceeded,
        reason: note("no answer from the payment provider within 3000 ms"),
        provider_reference: None,
    }
}

/// The provider worker's reconciliation after its deadline decline (see
/// `worker::reconcile_after_deadline`): the hold it finds is voided, and
/// the payment keeps why it was declined.
#[test]
fn a_hold_found_after_our_deadline_decline_is_voided_and_the_decline_kept() {
    let voiding = PaymentEvent::VoidRequested {
        payment_id: payment_id(),
        order_id: order_id(),
        reason: note("no answer from the payment provider within 3000 ms"),
        authorization: reference("auth_1"),
    };
    Given::given([requested(), deadline_declined()])
        .when(record_authorization())
        .then(voiding.clone());
    let state = Given::given([requested(), deadline_declined(), voiding])
        .when(PaymentCommand::RecordVoid {
            payment_id: payment_id(),
            provider_reference: reference("void_1"),
        })
        .then(PaymentEvent::Voided {
            payment_id: payment_id(),
            order_id: order_id(),
            reason: note("no answer from the payment provider within 3000 ms"),
            provider_reference: reference("void_1"),
        });
    let payment = state.payment.unwrap();
    assert_eq!(payment.status, PaymentStatus::Voided);
    assert_eq!(payment.void, Some(reference("void_1")));
    assert_eq!(payment.decline.unwrap().code, DeclineCode::DeadlineExceeded);
}

/// Answers to a payment we declined on our own: a refusal the worker's
/// reconciliation finds (nothing is held), a late refusal of an abandoned
/// payment, and the worker's deadline decline after the saga abandoned it.
#[test]
fn declines_arriving_after_we_declined_change_nothing() {
    let decline = |code, reason: &str| PaymentCommand::RecordDecline {
        payment_id: payment_id(),
        code,
        reason: note(reason),
        provider_reference: None,
    };
    for (history, command) in [
        (
            [requested(), deadline_declined()],
            decline(DeclineCode::CardDeclined, "card_declined: do not honour"),
        ),
        (
            [requested(), abandoned()],
            decline(DeclineCode::CardDeclined, "do not honour"),
        ),
        (
            [requested(), abandoned()],
            decline(
                DeclineCode::DeadlineExceeded,
                "no answer from the payment provider within 3000 ms",
            ),
        ),
    ] {
        Given::given(history)
            .when(command)
            .then_rejected(PaymentRejection::NoAnswerAwaited {
                operation: "authorization",
                status: PaymentStatus::Declined,
            });
    }
    // The hold the reconciliation of an abandoned payment finds is voided.
    Given::given([requested(), abandoned()])
        .when(record_authorization())
        .then(void_requested());
}

fn void_refund_requested(minor_units: i64) -> PaymentEvent {
    PaymentEvent::RefundRequested {
        payment_id: payment_id(),
        order_id: order_id(),
        refund_id: decider::void_refund_id(payment_id()),
        amount: amount(minor_units),
        currency: eur(),
        reason: note("order expired"),
        capture: reference("cap_1"),
    }
}

#[test]
fn voiding_a_captured_payment_refunds_what_is_left_of_the_capture() {
    let state = Given::given(captured_history())
        .when(void())
        .then(void_refund_requested(10_000));
    assert_eq!(state.payment.unwrap().refundable(), 0);
    let mut partly_refunded = captured_history();
    partly_refunded.extend([refund_requested(1, 3_000), refund_issued(1, 3_000, 3_000)]);
    Given::given(partly_refunded)
        .when(void())
        .then(void_refund_requested(7_000));
}

#[test]
fn voiding_a_captured_payment_twice_or_with_nothing_left_refunds_nothing() {
    let mut voided_once = captured_history();
    voided_once.push(void_refund_requested(10_000));
    Given::given(voided_once)
        .when(void())
        .then_rejected(PaymentRejection::NotAuthorized(PaymentStatus::Captured));
    let mut refunded = captured_history();
    refunded.extend([
        refund_requested(1, 10_000),
        refund_issued(1, 10_000, 10_000),
    ]);
    Given::given(refunded)
        .when(void())
        .then_rejected(PaymentRejection::NotAuthorized(PaymentStatus::Captured));
}

#[test]
fn void_answers_are_refused_when_no_void_is_awaited() {
    Given::given([requested(), authorized()])
        .when(PaymentCommand::RecordVoid {
            payment_id: payment_id(),
            provider_reference: reference("void_1"),
        })
        .then_rejected(PaymentRejection::NoAnswerAwaited {
            operation: "void",
            status: PaymentStatus::Authorized,
        });
}

#[test]
fn rejection_codes_are_stable_and_distinct() {
    let all = [
        PaymentRejection::NotFound(payment_id()),
        PaymentRejection::AlreadyExists(payment_id()),
        PaymentRejection::NoAnswerAwaited {
            operation: "void",
            status: PaymentStatus::Authorized,
        },
        PaymentRejection::NotAuthorized(PaymentStatus::Requested),
        PaymentRejection::NotCaptured(PaymentStatus::Requested),
        PaymentRejection::RefundExceedsCaptured {
            requested: 2,
            refundable: 1,
        },
        PaymentRejection::RefundExists(refund(1)),
        PaymentRejection::RefundNotFound(refund(1)),
        PaymentRejection::RefundNotPending(refund(1)),
    ];
    let codes: std::collections::BTreeSet<_> = all.iter().map(Rejection::code).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(
        PaymentRejection::RefundNotFound(refund(1)).kind(),
        RejectionKind::NotFound
    );
}
