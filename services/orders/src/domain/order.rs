//! The order state machine.
//!
//! | state / command  | Place                | Cancel            | MarkPaid             | MarkPaymentFailed    | Ship              | Reject               |
//! |-------------------|----------------------|-------------------|----------------------|----------------------|-------------------|----------------------|
//! | no order          | → Placed             | order_not_found   | order_not_found      | order_not_found      | order_not_found   | order_not_found      |
//! | Placed            | order_already_exists | → Cancelled       | → Confirmed          | → PaymentRejected    | not_paid          | → Rejected           |
//! | Confirmed         | order_already_exists | → Cancelled (refund owed) | already_paid | already_paid         | → Shipped         | already_paid         |
//! | PaymentRejected   | order_already_exists | → Cancelled       | not_awaiting_payment | not_awaiting_payment | not_paid          | not_awaiting_payment |
//! | Rejected          | order_already_exists | → Cancelled       | not_awaiting_payment | not_awaiting_payment | not_paid          | not_awaiting_payment |
//! | Cancelled         | order_already_exists | already_cancelled | already_cancelled    | already_cancelled    | already_cancelled | already_cancelled    |
//! | Shipped           | order_already_exists | already_shipped   | already_shipped      | already_shipped      | already_shipped   | already_shipped      |
//!
//! A command for an order other than the stream's is `wrong_order` in every
//! state but "no order".
//!
//! Checks run in a fixed order: the order's existence and identity, then its
//! status, then the command's payload. A command that is both out of turn
//! and malformed thus reports the state problem, which is the one a retry or
//! a corrected payload cannot fix.
//!
//! The saga (`crate::saga`) issues MarkPaid, MarkPaymentFailed and Reject;
//! one that arrives late (a payment answer after the deadline rejected the
//! order) is refused here and changes nothing, so the first of them to be
//! decided ends the order.

use std::collections::BTreeSet;

use foldline_eventsourcing::{Decider, DecisionContext, Timestamp};

use super::commands::{
    CancelOrder, MarkPaid, MarkPaymentFailed, OrderCommand, PlaceOrder, RejectOrder, ShipOrder,
};
use super::events::{
    OrderCancelled, OrderConfirmed, OrderEvent, OrderPaymentRejected, OrderPlaced, OrderRejected,
    OrderShipped, RefundOwed,
};
use super::rejection::OrderRejection;
use super::state::{OrderDetails, OrderState, OrderStatus};
use super::values::{
    OrderId, OrderLine, MAX_CARD_TOKEN_CHARS, MAX_CODE_CHARS, MAX_LINES, MAX_ORDER_TOTAL,
    MAX_REASON_CHARS, MAX_UNIT_PRICE,
};

/// The order aggregate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Order;

impl Decider for Order {
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Rejection = OrderRejection;

    fn decide(
        state: &OrderState,
        command: &OrderCommand,
        context: &DecisionContext,
    ) -> Result<OrderEvent, OrderRejection> {
        let now = context.now;
        match command {
            OrderCommand::Place(place) => decide_place(state, place, now),
            OrderCommand::Cancel(cancel) => decide_cancel(state, cancel, now),
            OrderCommand::MarkPaid(paid) => decide_mark_paid(state, paid, now),
            OrderCommand::MarkPaymentFailed(failed) => {
                decide_mark_payment_failed(state, failed, now)
            }
            OrderCommand::Ship(ship) => decide_ship(state, ship, now),
            OrderCommand::Reject(reject) => decide_reject(state, reject, now),
        }
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        state.apply(event)
    }
}

fn decide_place(
    state: &OrderState,
    place: &PlaceOrder,
    now: Timestamp,
) -> Result<OrderEvent, OrderRejection> {
    if let Some(existing) = state.details() {
        return Err(if existing.order_id == place.order_id {
            OrderRejection::OrderAlreadyExists
        } else {
            OrderRejection::WrongOrder
        });
    }
    let total = order_total(&place.lines)?;
    if let Some(token) = &place.card_token {
        // The provider's token alphabet (the payments domain checks it too).
        let token_like = token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
        if token.is_empty() || token.len() > MAX_CARD_TOKEN_CHARS || !token_like {
            return Err(OrderRejection::InvalidCardToken);
        }
    }
    Ok(OrderEvent::Placed(OrderPlaced {
        order_id: place.order_id,
        customer_id: place.customer_id,
        currency: place.currency,
        lines: place.lines.clone(),
        total,
        placed_at: now,
        card_token: place.card_token.clone(),
    }))
}

fn decide_cancel(
    state: &OrderState,
    cancel: &CancelOrder,
    now: Timestamp,
) -> Result<OrderEvent, OrderRejection> {
    let order = existing_order(state, cancel.order_id)?;
    match order.status {
        // A paid order may still be cancelled until it ships. Stopping the
        // shipment is this domain's call; returning the money is the payments
        // domain's concern, which can react to `OrderCancelled` on an order
        // that was confirmed. Refusing here would leave a paid, unwanted order
        // with no way out but shipping it.
        OrderStatus::Placed
        | OrderStatus::PaymentRejected
        | OrderStatus::Rejected
        | OrderStatus::Confirmed => {}
        OrderStatus::Cancelled => return Err(OrderRejection::AlreadyCancelled),
        OrderStatus::Shipped => return Err(OrderRejection::AlreadyShipped),
    }
    // An empty reason is allowed: a customer need not explain a cancellation.
    check_reason_length(&cancel.reason)?;
    // A confirmed order was paid exactly its total (`decide_mark_paid`):
    // that is what its cancellation owes back.
    let refund = match (order.status, order.payment_id) {
        (OrderStatus::Confirmed, Some(payment_id)) => Some(RefundOwed {
            payment_id,
            amount: order.total,
        }),
        _ => None,
    };
    Ok(OrderEvent::Cancelled(OrderCancelled {
        order_id: order.order_id,
        reason: cancel.reason.clone(),
        cancelled_at: now,
        refund,
    }))
}

/// A payment's answer, or the saga's rejection, is for a placed order
/// only; every later status says why it comes too late.
fn awaiting_payment(status: OrderStatus) -> Result<(), OrderRejection> {
    match status {
        OrderStatus::Placed => Ok(()),
        OrderStatus::Confirmed => Err(OrderRejection::AlreadyPaid),
        OrderStatus::Cancelled => Err(OrderRejection::AlreadyCancelled),
        OrderStatus::PaymentRejected | OrderStatus::Rejected => {
            Err(OrderRejection::NotAwaitingPayment)
        }
        OrderStatus::Shipped => Err(OrderRejection::AlreadyShipped),
    }
}

fn decide_mark_paid(
    state: &OrderState,
    paid: &MarkPaid,
    now: Timestamp,
) -> Result<OrderEvent, OrderRejection> {
    let order = existing_order(state, paid.order_id)?;
    awaiting_payment(order.status)?;
    // Partial and over-payments are the payments domain's to settle; an order
    // is confirmed only by exactly its total.
    if paid.amount != order.total {
        return Err(OrderRejection::PaymentAmountMismatch {
            expected: order.total,
            actual: paid.amount,
        });
    }
    Ok(OrderEvent::Confirmed(OrderConfirmed {
        order_id: order.order_id,
        payment_id: paid.payment_id,
        amount: paid.amount,
        confirmed_at: now,
    }))
}

fn decide_mark_payment_failed(
    state: &OrderState,
    failed: &MarkPaymentFailed,
    now: Timestamp,
) -> Result<OrderEvent, OrderRejection> {
    let order = existing_order(state, failed.order_id)?;
    awaiting_payment(order.status)?;
    // Support staff read this reason to explain the failure to the customer,
    // so a blank one is refused.
    if failed.reason.trim().is_empty() {
        return Err(OrderRejection::ReasonRequired);
    }
    check_reason_length(&failed.reason)?;
    Ok(OrderEvent::PaymentRejected(OrderPaymentRejected {
        order_id: order.order_id,
        payment_id: failed.payment_id,
        reason: failed.reason.clone(),
        rejected_at: now,
    }))
}

fn decide_ship(
    state: &OrderState,
    ship: &ShipOrder,
    now: Timestamp,
) -> Result<OrderEvent, OrderRejection> {
    let order = existing_order(state, ship.order_id)?;
    match order.status {
        OrderStatus::Confirmed => {}
        OrderStatus::Placed | OrderStatus::PaymentRejected | OrderStatus::Rejected => {
            return Err(OrderRejection::NotPaid)
        }
        OrderStatus::Cancelled => return Err(OrderRejection::AlreadyCancelled),
        OrderStatus::Shipped => return Err(OrderRejection::AlreadyShipped),
    }
    Ok(OrderEvent::Shipped(OrderShipped {
        order_id: order.order_id,
        shipped_at: now,
    }))
}

fn decide_reject(
    state: &OrderState,
    reject: &RejectOrder,
    now: Timestamp,
) -> Result<OrderEvent, OrderRejection> {
    let order = existing_order(state, reject.order_id)?;
    awaiting_payment(order.status)?;
    let code_is_stable = reject
        .code
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if reject.code.is_empty() || reject.code.len() > MAX_CODE_CHARS || !code_is_stable {
        return Err(OrderRejection::InvalidRejectionCode);
    }
    if reject.reason.trim().is_empty() {
        return Err(OrderRejection::ReasonRequired);
    }
    check_reason_length(&reject.reason)?;
    Ok(OrderEvent::Rejected(OrderRejected {
        order_id: order.order_id,
        code: reject.code.clone(),
        reason: reject.reason.clone(),
        rejected_at: now,
    }))
}

/// The order a command on an existing order acts on.
fn existing_order(state: &OrderState, order_id: OrderId) -> Result<&OrderDetails, OrderRejection> {
    match state.details() {
        None => Err(OrderRejection::OrderNotFound),
        Some(order) if order.order_id != order_id => Err(OrderRejection::WrongOrder),
        Some(order) => Ok(order),
    }
}

/// Validates the lines and sums them. Every line is checked before anything
/// is summed, so an invalid price is reported as such rather than as the
/// overflow it might cause.
fn order_total(lines: &[OrderLine]) -> Result<i64, OrderRejection> {
    if lines.is_empty() {
        return Err(OrderRejection::NoLines);
    }
    if lines.len() > MAX_LINES {
        return Err(OrderRejection::TooManyLines { count: lines.len() });
    }
    let mut seen = BTreeSet::new();
    for line in lines {
        if !seen.insert(line.sku.as_str()) {
            return Err(OrderRejection::DuplicateSku {
                sku: line.sku.clone(),
            });
        }
        if !(0..=MAX_UNIT_PRICE).contains(&line.unit_price) {
            return Err(OrderRejection::InvalidPrice {
                sku: line.sku.clone(),
            });
        }
    }
    lines
        .iter()
        .try_fold(0_i64, |total, line| {
            line.line_total()
                .and_then(|line_total| total.checked_add(line_total))
        })
        .filter(|total| *total <= MAX_ORDER_TOTAL)
        .ok_or(OrderRejection::TotalOverflow)
}

fn check_reason_length(reason: &str) -> Result<(), OrderRejection> {
    // Counted in characters, not bytes, so the limit reads the same to a
    // client writing in any script.
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(OrderRejection::ReasonTooLong);
    }
    Ok(())
}
