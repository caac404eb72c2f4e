//! Given/when/then scenarios for every transition and every rejection of the
//! order decider, plus the contracts of its messages.

use foldline_eventsourcing::harness::TestHarness;
use foldline_eventsourcing::{Decider, Timestamp};
use uuid::Uuid;

use super::*;

const PLACED_AT: Timestamp = Timestamp(1_000);
const SETTLED_AT: Timestamp = Timestamp(2_000);
const CLOSED_AT: Timestamp = Timestamp(3_000);
const NOW: Timestamp = Timestamp(5_000);

/// 2 × 12.50 + 1 × 20.00 EUR.
const STANDARD_TOTAL: i64 = 4_500;

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(1))
}

fn other_order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(2))
}

fn customer_id() -> CustomerId {
    CustomerId::from_uuid(Uuid::from_u128(10))
}

fn payment_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(20))
}

fn sku(text: &str) -> Sku {
    Sku::parse(text).unwrap()
}

fn line(sku_text: &str, quantity: i64, unit_price: i64) -> OrderLine {
    OrderLine {
        sku: sku(sku_text),
        quantity: Quantity::new(quantity).unwrap(),
        unit_price,
    }
}

fn standard_lines() -> Vec<OrderLine> {
    vec![line("MUG-1", 2, 1_250), line("TEE.XL", 1, 2_000)]
}

fn place(lines: Vec<OrderLine>) -> OrderCommand {
    OrderCommand::Place(PlaceOrder {
        order_id: order_id(),
        customer_id: customer_id(),
        currency: Currency::EUR,
        lines,
        card_token: None,
    })
}

fn place_with_card(card_token: &str) -> OrderCommand {
    OrderCommand::Place(PlaceOrder {
        order_id: order_id(),
        customer_id: customer_id(),
        currency: Currency::EUR,
        lines: standard_lines(),
        card_token: Some(card_token.to_owned()),
    })
}

fn reject(code: &str, reason: &str) -> OrderCommand {
    OrderCommand::Reject(RejectOrder {
        order_id: order_id(),
        code: code.to_owned(),
        reason: reason.to_owned(),
    })
}

fn cancel(reason: &str) -> OrderCommand {
    OrderCommand::Cancel(CancelOrder {
        order_id: order_id(),
        reason: reason.to_owned(),
    })
}

fn mark_paid(amount: i64) -> OrderCommand {
    OrderCommand::MarkPaid(MarkPaid {
        order_id: order_id(),
        payment_id: payment_id(),
        amount,
    })
}

fn mark_payment_failed(reason: &str) -> OrderCommand {
    OrderCommand::MarkPaymentFailed(MarkPaymentFailed {
        order_id: order_id(),
        payment_id: payment_id(),
        reason: reason.to_owned(),
    })
}

fn ship() -> OrderCommand {
    OrderCommand::Ship(ShipOrder {
        order_id: order_id(),
    })
}

/// Every command kind, addressed to `order_id`, valid in payload.
fn every_command_for(order_id: OrderId) -> Vec<OrderCommand> {
    vec![
        OrderCommand::Place(PlaceOrder {
            order_id,
            customer_id: customer_id(),
            currency: Currency::EUR,
            lines: standard_lines(),
            card_token: None,
        }),
        OrderCommand::Cancel(CancelOrder {
            order_id,
            reason: String::new(),
        }),
        OrderCommand::MarkPaid(MarkPaid {
            order_id,
            payment_id: payment_id(),
            amount: STANDARD_TOTAL,
        }),
        OrderCommand::MarkPaymentFailed(MarkPaymentFailed {
            order_id,
            payment_id: payment_id(),
            reason: "card declined".to_owned(),
        }),
        OrderCommand::Ship(ShipOrder { order_id }),
        OrderCommand::Reject(RejectOrder {
            order_id,
            code: "payment_deadline_passed".to_owned(),
            reason: "no payment in time".to_owned(),
        }),
    ]
}

fn placed_event(lines: Vec<OrderLine>, total: i64, placed_at: Timestamp) -> OrderEvent {
    OrderEvent::Placed(OrderPlaced {
        order_id: order_id(),
        customer_id: customer_id(),
        currency: Currency::EUR,
        lines,
        total,
        placed_at,
        card_token: None,
    })
}

fn placed() -> OrderEvent {
    placed_event(standard_lines(), STANDARD_TOTAL, PLACED_AT)
}

fn confirmed() -> OrderEvent {
    OrderEvent::Confirmed(OrderConfirmed {
        order_id: order_id(),
        payment_id: payment_id(),
        amount: STANDARD_TOTAL,
        confirmed_at: SETTLED_AT,
    })
}

fn payment_rejected() -> OrderEvent {
    OrderEvent::PaymentRejected(OrderPaymentRejected {
        order_id: order_id(),
        payment_id: payment_id(),
        reason: "card declined".to_owned(),
        rejected_at: SETTLED_AT,
    })
}

fn cancelled() -> OrderEvent {
    OrderEvent::Cancelled(OrderCancelled {
        order_id: order_id(),
        reason: "changed my mind".to_owned(),
        cancelled_at: CLOSED_AT,
        refund: None,
    })
}

fn rejected() -> OrderEvent {
    OrderEvent::Rejected(OrderRejected {
        order_id: order_id(),
        code: "customer_unknown".to_owned(),
        reason: "no such customer".to_owned(),
        rejected_at: SETTLED_AT,
    })
}

fn rejected_history() -> Vec<OrderEvent> {
    vec![placed(), rejected()]
}

fn shipped() -> OrderEvent {
    OrderEvent::Shipped(OrderShipped {
        order_id: order_id(),
        shipped_at: CLOSED_AT,
    })
}

fn placed_history() -> Vec<OrderEvent> {
    vec![placed()]
}

fn confirmed_history() -> Vec<OrderEvent> {
    vec![placed(), confirmed()]
}

fn payment_rejected_history() -> Vec<OrderEvent> {
    vec![placed(), payment_rejected()]
}

fn cancelled_history() -> Vec<OrderEvent> {
    vec![placed(), cancelled()]
}

fn cancelled_after_payment_history() -> Vec<OrderEvent> {
    vec![placed(), confirmed(), cancelled()]
}

fn shipped_history() -> Vec<OrderEvent> {
    vec![placed(), confirmed(), shipped()]
}

/// One history per status an existing order can have.
fn every_existing_history() -> Vec<Vec<OrderEvent>> {
    vec![
        placed_history(),
        confirmed_history(),
        payment_rejected_history(),
        rejected_history(),
        cancelled_history(),
        shipped_history(),
    ]
}

fn given(history: Vec<OrderEvent>) -> TestHarness<Order> {
    TestHarness::<Order>::given(history).at(NOW)
}

mod place {
    use super::*;

    #[test]
    fn places_a_new_order_with_its_total_at_the_command_time() {
        let state = given(vec![])
            .when(place(standard_lines()))
            .then(placed_event(standard_lines(), STANDARD_TOTAL, NOW));
        let order = state.details().unwrap();
        assert_eq!(order.status, OrderStatus::Placed);
        assert_eq!(order.total, STANDARD_TOTAL);
        assert_eq!(order.placed_at, NOW);
        assert_eq!(order.updated_at, NOW);
        assert_eq!(order.payment_id, None);
    }

    #[test]
    fn accepts_free_lines_and_the_highest_unit_price() {
        let lines = vec![line("FREE", 3, 0), line("GOLD", 1, MAX_UNIT_PRICE)];
        given(vec![])
            .when(place(lines.clone()))
            .then(placed_event(lines, MAX_UNIT_PRICE, NOW));
    }

    #[test]
    fn accepts_exactly_the_maximum_number_of_lines() {
        let lines: Vec<_> = (0..MAX_LINES)
            .map(|index| line(&format!("SKU-{index}"), 1, 1))
            .collect();
        let total = i64::try_from(MAX_LINES).unwrap();
        given(vec![])
            .when(place(lines.clone()))
            .then(placed_event(lines, total, NOW));
    }

    #[test]
    fn accepts_a_total_of_exactly_the_maximum() {
        let lines = vec![line("BIG", 100, MAX_UNIT_PRICE)];
        given(vec![])
            .when(place(lines.clone()))
            .then(placed_event(lines, MAX_ORDER_TOTAL, NOW));
    }

    #[test]
    fn refuses_an_order_that_already_exists() {
        for history in every_existing_history() {
            given(history)
                .when(place(standard_lines()))
                .then_rejected(OrderRejection::OrderAlreadyExists);
        }
    }

    #[test]
    fn refuses_placing_another_order_on_an_existing_stream() {
        let command = OrderCommand::Place(PlaceOrder {
            order_id: other_order_id(),
            customer_id: customer_id(),
            currency: Currency::EUR,
            lines: standard_lines(),
            card_token: None,
        });
        given(placed_history())
            .when(command)
            .then_rejected(OrderRejection::WrongOrder);
    }

    #[test]
    fn refuses_an_order_without_lines() {
        given(vec![])
            .when(place(vec![]))
            .then_rejected(OrderRejection::NoLines);
    }

    #[test]
    fn refuses_more_than_the_maximum_number_of_lines() {
        let lines: Vec<_> = (0..=MAX_LINES)
            .map(|index| line(&format!("SKU-{index}"), 1, 1))
            .collect();
        given(vec![])
            .when(place(lines))
            .then_rejected(OrderRejection::TooManyLines {
                count: MAX_LINES + 1,
            });
    }

    #[test]
    fn refuses_a_sku_on_two_lines() {
        let lines = vec![
            line("MUG-1", 1, 100),
            line("TEE", 1, 100),
            line("MUG-1", 2, 100),
        ];
        given(vec![])
            .when(place(lines))
            .then_rejected(OrderRejection::DuplicateSku { sku: sku("MUG-1") });
    }

    #[test]
    fn treats_skus_differing_in_case_as_distinct() {
        let lines = vec![line("mug", 1, 100), line("MUG", 1, 100)];
        given(vec![])
            .when(place(lines.clone()))
            .then(placed_event(lines, 200, NOW));
    }

    #[test]
    fn refuses_a_negative_unit_price() {
        let lines = vec![line("MUG-1", 1, 100), line("REFUND", 1, -1)];
        given(vec![])
            .when(place(lines))
            .then_rejected(OrderRejection::InvalidPrice { sku: sku("REFUND") });
    }

    #[test]
    fn refuses_a_unit_price_above_the_maximum() {
        for unit_price in [MAX_UNIT_PRICE + 1, i64::MAX, i64::MIN] {
            given(vec![])
                .when(place(vec![line("GOLD", 1, unit_price)]))
                .then_rejected(OrderRejection::InvalidPrice { sku: sku("GOLD") });
        }
    }

    #[test]
    fn refuses_a_total_above_the_maximum() {
        given(vec![])
            .when(place(vec![
                line("BIG", 100, MAX_UNIT_PRICE),
                line("PENNY", 1, 1),
            ]))
            .then_rejected(OrderRejection::TotalOverflow);
        given(vec![])
            .when(place(vec![
                line("A", 10_000, MAX_UNIT_PRICE),
                line("B", 10_000, MAX_UNIT_PRICE),
            ]))
            .then_rejected(OrderRejection::TotalOverflow);
    }

    #[test]
    fn reports_an_invalid_price_rather_than_the_overflow_it_would_cause() {
        given(vec![])
            .when(place(vec![
                line("BIG", 10_000, MAX_UNIT_PRICE),
                line("BAD", 1, -5),
            ]))
            .then_rejected(OrderRejection::InvalidPrice { sku: sku("BAD") });
    }
}

mod cancel {
    use super::*;

    fn cancelled_now(reason: &str) -> OrderEvent {
        OrderEvent::Cancelled(OrderCancelled {
            order_id: order_id(),
            reason: reason.to_owned(),
            cancelled_at: NOW,
            refund: None,
        })
    }

    #[test]
    fn cancels_an_order_awaiting_payment() {
        let state = given(placed_history())
            .when(cancel("changed my mind"))
            .then(cancelled_now("changed my mind"));
        let order = state.details().unwrap();
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.cancel_reason.as_deref(), Some("changed my mind"));
        assert_eq!(order.updated_at, NOW);
    }

    #[test]
    fn cancels_an_order_whose_payment_was_rejected() {
        given(payment_rejected_history())
            .when(cancel("no other card"))
            .then(cancelled_now("no other card"));
    }

    #[test]
    fn cancels_a_paid_order_that_has_not_shipped_and_owes_its_payment_back() {
        let state = given(confirmed_history())
            .when(cancel("out of stock"))
            .then(OrderEvent::Cancelled(OrderCancelled {
                order_id: order_id(),
                reason: "out of stock".to_owned(),
                cancelled_at: NOW,
                refund: Some(RefundOwed {
                    payment_id: payment_id(),
                    amount: STANDARD_TOTAL,
                }),
            }));
        assert_eq!(state.details().unwrap().payment_id, Some(payment_id()));
    }

    #[test]
    fn owes_no_refund_for_an_order_that_was_never_paid() {
        for history in [
            placed_history(),
            payment_rejected_history(),
            rejected_history(),
        ] {
            given(history)
                .when(cancel("never mind"))
                .then(cancelled_now("never mind"));
        }
    }

    #[test]
    fn accepts_an_empty_reason() {
        given(placed_history())
            .when(cancel(""))
            .then(cancelled_now(""));
    }

    #[test]
    fn accepts_a_reason_of_the_maximum_length_counted_in_characters() {
        let reason = "é".repeat(MAX_REASON_CHARS);
        given(placed_history())
            .when(cancel(&reason))
            .then(cancelled_now(&reason));
    }

    #[test]
    fn refuses_a_reason_above_the_maximum_length() {
        given(placed_history())
            .when(cancel(&"x".repeat(MAX_REASON_CHARS + 1)))
            .then_rejected(OrderRejection::ReasonTooLong);
    }

    #[test]
    fn refuses_an_order_already_cancelled() {
        given(cancelled_history())
            .when(cancel("again"))
            .then_rejected(OrderRejection::AlreadyCancelled);
        given(cancelled_after_payment_history())
            .when(cancel("again"))
            .then_rejected(OrderRejection::AlreadyCancelled);
    }

    #[test]
    fn reports_the_state_before_the_payload() {
        given(cancelled_history())
            .when(cancel(&"x".repeat(MAX_REASON_CHARS + 1)))
            .then_rejected(OrderRejection::AlreadyCancelled);
    }

    #[test]
    fn refuses_an_order_already_shipped() {
        given(shipped_history())
            .when(cancel("too late"))
            .then_rejected(OrderRejection::AlreadyShipped);
    }

    #[test]
    fn refuses_an_order_that_does_not_exist() {
        given(vec![])
            .when(cancel(""))
            .then_rejected(OrderRejection::OrderNotFound);
    }
}

mod mark_paid {
    use super::*;

    fn confirmed_now() -> OrderEvent {
        OrderEvent::Confirmed(OrderConfirmed {
            order_id: order_id(),
            payment_id: payment_id(),
            amount: STANDARD_TOTAL,
            confirmed_at: NOW,
        })
    }

    #[test]
    fn confirms_an_order_paid_in_full() {
        let state = given(placed_history())
            .when(mark_paid(STANDARD_TOTAL))
            .then(confirmed_now());
        let order = state.details().unwrap();
        assert_eq!(order.status, OrderStatus::Confirmed);
        assert_eq!(order.payment_id, Some(payment_id()));
        assert_eq!(order.updated_at, NOW);
    }

    #[test]
    fn confirms_a_free_order_paid_with_zero() {
        let lines = vec![line("FREE", 1, 0)];
        let free_order = placed_event(lines, 0, PLACED_AT);
        let expected = OrderEvent::Confirmed(OrderConfirmed {
            order_id: order_id(),
            payment_id: payment_id(),
            amount: 0,
            confirmed_at: NOW,
        });
        given(vec![free_order]).when(mark_paid(0)).then(expected);
    }

    #[test]
    fn refuses_an_amount_other_than_the_total() {
        for amount in [
            STANDARD_TOTAL - 1,
            STANDARD_TOTAL + 1,
            0,
            -STANDARD_TOTAL,
            i64::MIN,
            i64::MAX,
        ] {
            given(placed_history())
                .when(mark_paid(amount))
                .then_rejected(OrderRejection::PaymentAmountMismatch {
                    expected: STANDARD_TOTAL,
                    actual: amount,
                });
        }
    }

    #[test]
    fn refuses_an_order_already_paid() {
        given(confirmed_history())
            .when(mark_paid(STANDARD_TOTAL))
            .then_rejected(OrderRejection::AlreadyPaid);
    }

    #[test]
    fn refuses_a_cancelled_order() {
        given(cancelled_history())
            .when(mark_paid(STANDARD_TOTAL))
            .then_rejected(OrderRejection::AlreadyCancelled);
    }

    #[test]
    fn refuses_an_order_whose_payment_was_rejected() {
        given(payment_rejected_history())
            .when(mark_paid(STANDARD_TOTAL))
            .then_rejected(OrderRejection::NotAwaitingPayment);
    }

    #[test]
    fn refuses_a_shipped_order() {
        given(shipped_history())
            .when(mark_paid(STANDARD_TOTAL))
            .then_rejected(OrderRejection::AlreadyShipped);
    }

    #[test]
    fn refuses_an_order_that_does_not_exist() {
        given(vec![])
            .when(mark_paid(STANDARD_TOTAL))
            .then_rejected(OrderRejection::OrderNotFound);
    }
}

mod mark_payment_failed {
    use super::*;

    fn rejected_now(reason: &str) -> OrderEvent {
        OrderEvent::PaymentRejected(OrderPaymentRejected {
            order_id: order_id(),
            payment_id: payment_id(),
            reason: reason.to_owned(),
            rejected_at: NOW,
        })
    }

    #[test]
    fn records_the_failed_payment_of_an_order_awaiting_payment() {
        let state = given(placed_history())
            .when(mark_payment_failed("card declined"))
            .then(rejected_now("card declined"));
        let order = state.details().unwrap();
        assert_eq!(order.status, OrderStatus::PaymentRejected);
        assert_eq!(order.payment_id, Some(payment_id()));
        assert_eq!(
            order.payment_rejection_reason.as_deref(),
            Some("card declined")
        );
        assert_eq!(order.updated_at, NOW);
    }

    #[test]
    fn accepts_a_reason_of_the_maximum_length() {
        let reason = "カ".repeat(MAX_REASON_CHARS);
        given(placed_history())
            .when(mark_payment_failed(&reason))
            .then(rejected_now(&reason));
    }

    #[test]
    fn refuses_a_blank_reason() {
        for reason in ["", " ", "\t\n", "\u{3000}"] {
            given(placed_history())
                .when(mark_payment_failed(reason))
                .then_rejected(OrderRejection::ReasonRequired);
        }
    }

    #[test]
    fn refuses_a_reason_above_the_maximum_length() {
        given(placed_history())
            .when(mark_payment_failed(&"x".repeat(MAX_REASON_CHARS + 1)))
            .then_rejected(OrderRejection::ReasonTooLong);
    }

    #[test]
    fn refuses_an_order_already_paid() {
        given(confirmed_history())
            .when(mark_payment_failed("late decline"))
            .then_rejected(OrderRejection::AlreadyPaid);
    }

    #[test]
    fn refuses_a_cancelled_order() {
        given(cancelled_history())
            .when(mark_payment_failed("declined"))
            .then_rejected(OrderRejection::AlreadyCancelled);
    }

    #[test]
    fn refuses_an_order_whose_payment_was_already_rejected() {
        given(payment_rejected_history())
            .when(mark_payment_failed("declined again"))
            .then_rejected(OrderRejection::NotAwaitingPayment);
    }

    #[test]
    fn refuses_a_shipped_order() {
        given(shipped_history())
            .when(mark_payment_failed("declined"))
            .then_rejected(OrderRejection::AlreadyShipped);
    }

    #[test]
    fn refuses_an_order_that_does_not_exist() {
        given(vec![])
            .when(mark_payment_failed("declined"))
            .then_rejected(OrderRejection::OrderNotFound);
    }
}

mod ship {
    use super::*;

    #[test]
    fn ships_a_paid_order() {
        let expected = OrderEvent::Shipped(OrderShipped {
            order_id: order_id(),
            shipped_at: NOW,
        });
        let state = given(confirmed_history()).when(ship()).then(expected);
        let order = state.details().unwrap();
        assert_eq!(order.status, OrderStatus::Shipped);
        assert_eq!(order.updated_at, NOW);
    }

    #[test]
    fn refuses_an_order_awaiting_payment() {
        given(placed_history())
            .when(ship())
            .then_rejected(OrderRejection::NotPaid);
    }

    #[test]
    fn refuses_an_order_whose_payment_was_rejected() {
        given(payment_rejected_history())
            .when(ship())
            .then_rejected(OrderRejection::NotPaid);
    }

    #[test]
    fn refuses_a_cancelled_order() {
        given(cancelled_history())
            .when(ship())
            .then_rejected(OrderRejection::AlreadyCancelled);
        given(cancelled_after_payment_history())
            .when(ship())
            .then_rejected(OrderRejection::AlreadyCancelled);
    }

    #[test]
    fn refuses_an_order_already_shipped() {
        given(shipped_history())
            .when(ship())
            .then_rejected(OrderRejection::AlreadyShipped);
    }

    #[test]
    fn refuses_an_order_that_does_not_exist() {
        given(vec![])
            .when(ship())
            .then_rejected(OrderRejection::OrderNotFound);
    }
}

mod reject {
    use super::*;

    fn rejected_now(code: &str, reason: &str) -> OrderEvent {
        OrderEvent::Rejected(OrderRejected {
            order_id: order_id(),
            code: code.to_owned(),
            reason: reason.to_owned(),
            rejected_at: NOW,
        })
    }

    #[test]
    fn rejects_an_order_awaiting_payment_with_its_code_and_reason() {
        let state = given(placed_history())
            .when(reject("payment_deadline_passed", "not paid within 30 s"))
            .then(rejected_now(
                "payment_deadline_passed",
                "not paid within 30 s",
            ));
        let order = state.details().unwrap();
        assert_eq!(order.status, OrderStatus::Rejected);
        assert_eq!(
            order.rejection,
            Some((
                "payment_deadline_passed".to_owned(),
                "not paid within 30 s".to_owned()
            ))
        );
        assert_eq!(order.updated_at, NOW);
    }

    #[test]
    fn refuses_an_order_already_paid() {
        given(confirmed_history())
            .when(reject("payment_deadline_passed", "late"))
            .then_rejected(OrderRejection::AlreadyPaid);
    }

    #[test]
    fn refuses_an_order_already_ended_without_payment() {
        for history in [payment_rejected_history(), rejected_history()] {
            given(history)
                .when(reject("payment_deadline_passed", "late"))
                .then_rejected(OrderRejection::NotAwaitingPayment);
        }
    }

    #[test]
    fn refuses_a_cancelled_or_shipped_order() {
        given(cancelled_history())
            .when(reject("customer_unknown", "who"))
            .then_rejected(OrderRejection::AlreadyCancelled);
        given(shipped_history())
            .when(reject("customer_unknown", "who"))
            .then_rejected(OrderRejection::AlreadyShipped);
    }

    #[test]
    fn refuses_an_order_that_does_not_exist() {
        given(vec![])
            .when(reject("customer_unknown", "who"))
            .then_rejected(OrderRejection::OrderNotFound);
    }

    #[test]
    fn refuses_a_code_that_is_not_stable_snake_case() {
        for code in [
            "",
            "Customer",
            "customer unknown",
            &"x".repeat(MAX_CODE_CHARS + 1),
        ] {
            given(placed_history())
                .when(reject(code, "a reason"))
                .then_rejected(OrderRejection::InvalidRejectionCode);
        }
        given(placed_history())
            .when(reject(&"x".repeat(MAX_CODE_CHARS), "a reason"))
            .then(rejected_now(&"x".repeat(MAX_CODE_CHARS), "a reason"));
    }

    #[test]
    fn refuses_a_blank_or_too_long_reason() {
        given(placed_history())
            .when(reject("customer_unknown", "  "))
            .then_rejected(OrderRejection::ReasonRequired);
        given(placed_history())
            .when(reject(
                "customer_unknown",
                &"x".repeat(MAX_REASON_CHARS + 1),
            ))
            .then_rejected(OrderRejection::ReasonTooLong);
    }

    #[test]
    fn a_late_payment_answer_after_the_rejection_changes_nothing() {
        given(rejected_history())
            .when(mark_paid(STANDARD_TOTAL))
            .then_rejected(OrderRejection::NotAwaitingPayment);
        given(rejected_history())
            .when(mark_payment_failed("declined"))
            .then_rejected(OrderRejection::NotAwaitingPayment);
        given(rejected_history())
            .when(ship())
            .then_rejected(OrderRejection::NotPaid);
    }
}

mod card_token {
    use super::*;

    #[test]
    fn keeps_the_card_token_on_the_placed_order() {
        given(vec![])
            .when(place_with_card("tok_visa"))
            .then(OrderEvent::Placed(OrderPlaced {
                order_id: order_id(),
                customer_id: customer_id(),
                currency: Currency::EUR,
                lines: standard_lines(),
                total: STANDARD_TOTAL,
                placed_at: NOW,
                card_token: Some("tok_visa".to_owned()),
            }));
    }

    #[test]
    fn refuses_an_empty_long_or_unprintable_token() {
        for token in ["", "tok visa", "tök", &"t".repeat(MAX_CARD_TOKEN_CHARS + 1)] {
            given(vec![])
                .when(place_with_card(token))
                .then_rejected(OrderRejection::InvalidCardToken);
        }
    }
}

mod addressing {
    use super::*;

    #[test]
    fn refuses_every_command_for_another_order_in_every_state() {
        for history in every_existing_history() {
            for command in every_command_for(other_order_id()) {
                given(history.clone())
                    .when(command)
                    .then_rejected(OrderRejection::WrongOrder);
            }
        }
    }

    #[test]
    fn refuses_every_command_but_place_before_the_order_exists() {
        for command in every_command_for(order_id()).into_iter().skip(1) {
            given(vec![])
                .when(command)
                .then_rejected(OrderRejection::OrderNotFound);
        }
    }

    #[test]
    fn command_order_id_names_the_addressed_order() {
        for command in every_command_for(other_order_id()) {
            assert_eq!(command.order_id(), other_order_id());
        }
    }
}

mod evolve {
    use super::*;

    #[test]
    fn folds_a_full_history_into_the_latest_facts() {
        let state = Order::fold(&[placed(), confirmed(), shipped()]);
        let order = state.details().unwrap();
        assert_eq!(order.order_id, order_id());
        assert_eq!(order.customer_id, customer_id());
        assert_eq!(order.currency, Currency::EUR);
        assert_eq!(order.lines, standard_lines());
        assert_eq!(order.total, STANDARD_TOTAL);
        assert_eq!(order.status, OrderStatus::Shipped);
        assert_eq!(order.placed_at, PLACED_AT);
        assert_eq!(order.updated_at, CLOSED_AT);
        assert_eq!(order.payment_id, Some(payment_id()));
        assert_eq!(order.cancel_reason, None);
        assert_eq!(order.payment_rejection_reason, None);
    }

    #[test]
    fn starts_with_no_order() {
        assert_eq!(OrderState::default().details(), None);
        assert_eq!(OrderState::default().status(), None);
        assert_eq!(Order::fold(&[]), OrderState::default());
    }

    #[test]
    fn ignores_events_that_cannot_apply() {
        for event in [
            cancelled(),
            confirmed(),
            payment_rejected(),
            rejected(),
            shipped(),
        ] {
            assert_eq!(
                Order::evolve(OrderState::default(), &event),
                OrderState::default()
            );
        }
        let existing = Order::fold(&placed_history());
        let second_placement = placed_event(vec![line("OTHER", 1, 1)], 1, NOW);
        assert_eq!(Order::evolve(existing.clone(), &second_placement), existing);
        let foreign = OrderEvent::Shipped(OrderShipped {
            order_id: other_order_id(),
            shipped_at: NOW,
        });
        assert_eq!(Order::evolve(existing.clone(), &foreign), existing);
    }

    #[test]
    fn reports_the_status_of_each_history() {
        let statuses: Vec<_> = every_existing_history()
            .iter()
            .map(|history| Order::fold(history).status())
            .collect();
        assert_eq!(
            statuses,
            [
                Some(OrderStatus::Placed),
                Some(OrderStatus::Confirmed),
                Some(OrderStatus::PaymentRejected),
                Some(OrderStatus::Rejected),
                Some(OrderStatus::Cancelled),
                Some(OrderStatus::Shipped),
            ]
        );
    }
}

mod contracts {
    use super::*;

    /// One of each rejection, with its expected code and kind.
    fn every_rejection() -> Vec<(OrderRejection, &'static str, RejectionKind)> {
        use OrderRejection as R;
        use RejectionKind::{Conflict, Invalid, NotFound};
        let all = vec![
            (R::OrderNotFound, "order_not_found", NotFound),
            (R::OrderAlreadyExists, "order_already_exists", Conflict),
            (R::WrongOrder, "wrong_order", Invalid),
            (R::NoLines, "no_lines", Invalid),
            (R::TooManyLines { count: 101 }, "too_many_lines", Invalid),
            // Lowercase SKUs: the message check below is about the wording,
            // and SKUs are echoed in their own case.
            (
                R::DuplicateSku { sku: sku("mug") },
                "duplicate_sku",
                Invalid,
            ),
            (
                R::InvalidPrice { sku: sku("mug") },
                "invalid_price",
                Invalid,
            ),
            (R::TotalOverflow, "total_overflow", Invalid),
            (R::AlreadyCancelled, "already_cancelled", Conflict),
            (R::AlreadyShipped, "already_shipped", Conflict),
            (R::AlreadyPaid, "already_paid", Conflict),
            (
                R::PaymentAmountMismatch {
                    expected: 10,
                    actual: 9,
                },
                "payment_amount_mismatch",
                Invalid,
            ),
            (R::NotAwaitingPayment, "not_awaiting_payment", Conflict),
            (R::NotPaid, "not_paid", Conflict),
            (R::ReasonRequired, "reason_required", Invalid),
            (R::ReasonTooLong, "reason_too_long", Invalid),
            (R::InvalidRejectionCode, "invalid_rejection_code", Invalid),
            (R::InvalidCardToken, "invalid_card_token", Invalid),
        ];
        // Fails to compile when a variant is added, so the list above grows
        // with the enum.
        for (rejection, _, _) in &all {
            match rejection {
                R::OrderNotFound
                | R::OrderAlreadyExists
                | R::WrongOrder
                | R::NoLines
                | R::TooManyLines { .. }
                | R::DuplicateSku { .. }
                | R::InvalidPrice { .. }
                | R::TotalOverflow
                | R::AlreadyCancelled
                | R::AlreadyShipped
                | R::AlreadyPaid
                | R::PaymentAmountMismatch { .. }
                | R::NotAwaitingPayment
                | R::NotPaid
                | R::ReasonRequired
                | R::ReasonTooLong
                | R::InvalidRejectionCode
                | R::InvalidCardToken => {}
            }
        }
        all
    }

    #[test]
    fn rejections_have_their_stable_codes_and_kinds() {
        for (rejection, code, kind) in every_rejection() {
            assert_eq!(rejection.code(), code);
            assert_eq!(rejection.kind(), kind, "{code}");
        }
    }

    #[test]
    fn rejection_codes_are_unique_snake_case() {
        let rejections = every_rejection();
        let mut codes: Vec<_> = rejections
            .iter()
            .map(|(rejection, _, _)| rejection.code())
            .collect();
        for code in &codes {
            assert!(
                code.bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
                "{code}"
            );
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), rejections.len());
    }

    #[test]
    fn rejection_messages_are_lowercase_sentences_without_trailing_period() {
        for (rejection, code, _) in every_rejection() {
            let message = rejection.to_string();
            assert!(!message.is_empty(), "{code}");
            assert!(!message.ends_with('.'), "{code}: {message}");
            assert!(
                !message.chars().any(char::is_uppercase),
                "{code}: {message}"
            );
        }
        assert_eq!(
            OrderRejection::TooManyLines { count: 101 }.to_string(),
            "order has 101 lines; at most 100 are allowed"
        );
        assert_eq!(
            OrderRejection::InvalidPrice { sku: sku("mug") }.to_string(),
            "unit price for sku mug must be between 0 and 100000000000 minor units"
        );
        assert_eq!(
            OrderRejection::PaymentAmountMismatch {
                expected: 4_500,
                actual: 4_000
            }
            .to_string(),
            "payment amount 4000 does not match order total 4500"
        );
        assert_eq!(
            OrderRejection::TotalOverflow.to_string(),
            "order total exceeds 10000000000000 minor units"
        );
        assert_eq!(
            OrderRejection::ReasonTooLong.to_string(),
            "reason must be at most 500 characters"
        );
    }

    #[test]
    fn events_name_their_type_and_order() {
        let events = [
            placed(),
            cancelled(),
            confirmed(),
            payment_rejected(),
            shipped(),
            rejected(),
        ];
        let names: Vec<_> = events.iter().map(OrderEvent::name).collect();
        assert_eq!(
            names,
            [
                "OrderPlaced",
                "OrderCancelled",
                "OrderConfirmed",
                "OrderPaymentRejected",
                "OrderShipped",
                "OrderRejected"
            ]
        );
        for event in &events {
            assert_eq!(event.order_id(), order_id());
        }
        let times: Vec<_> = events.iter().map(OrderEvent::occurred_at).collect();
        assert_eq!(
            times,
            [PLACED_AT, CLOSED_AT, SETTLED_AT, SETTLED_AT, CLOSED_AT, SETTLED_AT]
        );
    }

    #[test]
    fn events_round_trip_through_json_tagged_with_their_name() {
        for event in [
            placed(),
            cancelled(),
            confirmed(),
            payment_rejected(),
            shipped(),
            rejected(),
        ] {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.name());
            assert_eq!(serde_json::from_value::<OrderEvent>(json).unwrap(), event);
        }
        let json = serde_json::to_value(placed()).unwrap();
        assert_eq!(json["currency"], "EUR");
        assert_eq!(json["lines"][0]["sku"], "MUG-1");
        assert_eq!(json["lines"][0]["quantity"], 2);
        assert_eq!(json["placed_at"], PLACED_AT.millis());
    }

    #[test]
    fn events_with_invalid_values_do_not_deserialize() {
        let mut json = serde_json::to_value(placed()).unwrap();
        json["lines"][0]["quantity"] = serde_json::json!(0);
        assert!(serde_json::from_value::<OrderEvent>(json).is_err());
        let mut json = serde_json::to_value(placed()).unwrap();
        json["currency"] = serde_json::json!("XXX");
        assert!(serde_json::from_value::<OrderEvent>(json).is_err());
    }

    #[test]
    fn state_snapshots_round_trip_through_json() {
        let mut histories = every_existing_history();
        histories.push(vec![]);
        for history in histories {
            let state = Order::fold(&history);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<OrderState>(&json).unwrap(), state);
        }
    }

    #[test]
    fn statuses_have_stable_lowercase_names_matching_their_json() {
        for (status, name) in [
            (OrderStatus::Placed, "placed"),
            (OrderStatus::Confirmed, "confirmed"),
            (OrderStatus::PaymentRejected, "payment_rejected"),
            (OrderStatus::Cancelled, "cancelled"),
            (OrderStatus::Shipped, "shipped"),
            (OrderStatus::Rejected, "rejected"),
        ] {
            assert_eq!(status.as_str(), name);
            assert_eq!(serde_json::to_value(status).unwrap(), name);
        }
    }
}
