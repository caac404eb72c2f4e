//! The order saga: choreography through events, with the orders domain's
//! process managers reading the other domains' logs through `contracts`
//! (`foldline_platform::outbox::ProcessManager`). Rules and the failure
//! table: `design.md` beside this file.
//!
//! | log | event | follow-up |
//! |---|---|---|
//! | `orders.events` | `OrderPlaced` | check the customer (the `customers` read model), then `AuthorizePayment` or `RejectOrder` (`customer_unknown`, `customer_deactivated`) |
//! | `orders.events` | `OrderPlaced` (`saga_deadlines`, a timer) | `RejectOrder` (`payment_deadline_passed`) when the deadline passes, unless the order was decided |
//! | `orders.events` | `OrderRejected`, `OrderPaymentRejected` | `VoidAuthorization` (refused harmlessly when nothing is authorized) |
//! | `orders.events` | `OrderCancelled` owing a refund | `VoidAuthorization`: on the captured payment, a refund of all that is still refundable (what was confirmed, less what the customer was refunded already) |
//! | `orders.events` | `OrderCancelled` owing none | `VoidAuthorization` |
//! | `orders.events` | `MarkOrderPaid` refused (`not_awaiting_payment`, `already_cancelled`) | `VoidAuthorization`: the payment was captured after the order ended, and the void of a captured payment refunds it |
//! | `payments.events` | `PaymentAuthorized` | `CapturePayment` |
//! | `payments.events` | `PaymentCaptured` | `MarkOrderPaid` (→ `OrderConfirmed`) |
//! | `payments.events` | `PaymentDeclined`, `CaptureFailed` | `MarkOrderPaymentFailed` with the reason |
//! | `users.events` | `UserRegistered`, `UserDeactivated`, `PersonalDataErased` | the `customers` read model |
//!
//! Capture comes before confirmation, so a confirmed order is always a
//! captured one and the refund its cancellation owes always finds a capture
//! to refund. The payments domain, not the order, knows what is left of
//! it (a client may have been refunded in part), so the saga asks for the
//! rest rather than for an amount.

pub mod customers;
pub mod relay;

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::orders::OrdersEventRecord;
use foldline_contracts::payments::PaymentsEventRecord;
use foldline_platform::outbox::ProcessManager;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Names every id the saga derives (payments of orders, refunds).
const SAGA_NAMESPACE: Uuid = Uuid::from_u128(0x5a6a_0e1d_7c2b_4f1a_9d3e_0b8c_6f4a_2e17);

/// The payment of an order: one per order, derived from its id, so every
/// step of the saga (authorize, void, refund) names it without a lookup
/// and a redelivered `OrderPlaced` opens the same payment.
pub fn payment_id_for(order_id: &str) -> String {
    Uuid::new_v5(&SAGA_NAMESPACE, format!("payment/{order_id}").as_bytes()).to_string()
}

/// Reason codes of `RejectOrder`.
pub const CUSTOMER_UNKNOWN: &str = "customer_unknown";
pub const CUSTOMER_DEACTIVATED: &str = "customer_deactivated";
pub const PAYMENT_DEADLINE_PASSED: &str = "payment_deadline_passed";

/// A follow-up of an orders event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderFollowUp {
    /// Check the customer, then authorize the payment or reject the order.
    OpenPayment {
        cause: EventMetadata,
        order_id: String,
        customer_id: String,
        amount: i64,
        currency: String,
        card_token: Option<String>,
    },
    /// A timer: reject the order if it is still awaiting payment when the
    /// deadline (from `cause.occurred_at`) passes.
    PaymentDeadline {
        cause: EventMetadata,
        order_id: String,
    },
    Void {
        cause: EventMetadata,
        payment_id: String,
        reason: String,
    },
    /// A refund of an amount. No reaction issues it any more (a
    /// cancellation owing a refund voids the captured payment, which
    /// refunds what is left); kept so outbox rows written before are still
    /// performed.
    Refund {
        cause: EventMetadata,
        payment_id: String,
        refund_id: String,
        amount: i64,
        reason: String,
    },
}

/// A follow-up of a payments event: a command to payments or to orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentFollowUp {
    Capture {
        cause: EventMetadata,
        payment_id: String,
    },
    MarkPaid {
        cause: EventMetadata,
        order_id: String,
        payment_id: String,
        amount: i64,
    },
    MarkPaymentFailed {
        cause: EventMetadata,
        order_id: String,
        payment_id: String,
        reason: String,
    },
}

/// Reacts to `orders.events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrdersSaga;

/// The payment deadline of every placed order, a timer. Its own outbox:
/// the relay holds a partition's cursor at a timer until it is due, so a
/// timer must never sit in front of follow-ups due now; behind each other,
/// timers a fixed delay after events in log order are due in order.
#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentDeadlines;

/// Reacts to `payments.events`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentsSaga;

impl ProcessManager for OrdersSaga {
    type Events = OrdersEventRecord;
    type FollowUp = OrderFollowUp;
    const NAME: &'static str = "saga_orders";
    const SOURCE: &'static str = crate::DOMAIN;
    /// A refused `MarkOrderPaid` obliges a refund (design.md, rule 9).
    const REACTS_TO_REJECTIONS: bool = true;

    fn react(&self, event: &OrdersEventRecord) -> Vec<OrderFollowUp> {
        order_follow_ups(event)
    }
}

impl ProcessManager for PaymentDeadlines {
    type Events = OrdersEventRecord;
    type FollowUp = OrderFollowUp;
    const NAME: &'static str = "saga_deadlines";
    const SOURCE: &'static str = crate::DOMAIN;

    fn react(&self, event: &OrdersEventRecord) -> Vec<OrderFollowUp> {
        match event {
            OrdersEventRecord::Placed(placed) => vec![OrderFollowUp::PaymentDeadline {
                cause: placed.metadata.clone(),
                order_id: placed.order_id.clone(),
            }],
            _ => Vec::new(),
        }
    }
}

impl ProcessManager for PaymentsSaga {
    type Events = PaymentsEventRecord;
    type FollowUp = PaymentFollowUp;
    const NAME: &'static str = "saga_payments";
    const SOURCE: &'static str = "payments";

    fn react(&self, event: &PaymentsEventRecord) -> Vec<PaymentFollowUp> {
        payment_follow_ups(event)
    }
}

fn void(cause: &EventMetadata, order_id: &str, reason: &str) -> OrderFollowUp {
    OrderFollowUp::Void {
        cause: cause.clone(),
        payment_id: payment_id_for(order_id),
        reason: reason.to_owned(),
    }
}

/// The follow-ups of one admitted orders event. Pure.
pub fn order_follow_ups(event: &OrdersEventRecord) -> Vec<OrderFollowUp> {
    match event {
        OrdersEventRecord::Placed(placed) => vec![OrderFollowUp::OpenPayment {
            cause: placed.metadata.clone(),
            order_id: placed.order_id.clone(),
            customer_id: placed.customer_id.clone(),
            amount: placed.total,
            currency: placed.currency.clone(),
            card_token: placed.card_token.clone(),
        }],
        OrdersEventRecord::Rejected(rejected) => vec![void(
            &rejected.metadata,
            &rejected.order_id,
            &format!("order rejected: {}", rejected.reason),
        )],
        OrdersEventRecord::PaymentRejected(rejected) => vec![void(
            &rejected.metadata,
            &rejected.order_id,
            "the order's payment failed",
        )],
        OrdersEventRecord::Cancelled(cancelled) => {
            match (&cancelled.refund_payment_id, cancelled.refund_amount) {
                // Not a refund of `amount`: a client refunded in part
                // before would make it exceed what is left, the payments
                // domain would refuse it and the customer would keep
                // paying for a cancelled order. The void of a captured
                // payment refunds all that is still refundable, once
                // (one void refund id per payment).
                (Some(payment_id), Some(amount)) if amount > 0 => vec![OrderFollowUp::Void {
                    cause: cancelled.metadata.clone(),
                    payment_id: payment_id.clone(),
                    reason: refund_reason(&cancelled.reason),
                }],
                // A free order was confirmed with nothing to give back.
                (Some(_), Some(_)) => Vec::new(),
                _ => vec![void(
                    &cancelled.metadata,
                    &cancelled.order_id,
                    "the order was cancelled before payment",
                )],
            }
        }
        // A capture the order refused (it had ended: rejected, payment
        // rejected, cancelled unpaid) is given back: the void of a
        // captured payment refunds it. Only these codes: an order that
        // ended paid keeps its money.
        OrdersEventRecord::CommandRejected(refused)
            if refused.command_type == MARK_ORDER_PAID
                && PAYMENT_REFUSED_BY_ENDED_ORDER.contains(&refused.code.as_str()) =>
        {
            vec![void(
                &refused.metadata,
                &refused.metadata.aggregate_id,
                "captured after the order ended",
            )]
        }
        OrdersEventRecord::Confirmed(_)
        | OrdersEventRecord::Shipped(_)
        | OrdersEventRecord::CommandRejected(_) => Vec::new(),
    }
}

const MARK_ORDER_PAID: &str = "foldline.orders.MarkOrderPaid";

/// Why the orders decider refuses `MarkOrderPaid` for an order that ended
/// without taking the payment.
const PAYMENT_REFUSED_BY_ENDED_ORDER: &[&str] = &["not_awaiting_payment", "already_cancelled"];

fn refund_reason(cancel_reason: &str) -> String {
    match cancel_reason.trim().is_empty() {
        true => "the order was cancelled".to_owned(),
        false => format!("the order was cancelled: {cancel_reason}"),
    }
}

/// The follow-ups of one admitted payments event. Pure.
pub fn payment_follow_ups(event: &PaymentsEventRecord) -> Vec<PaymentFollowUp> {
    match event {
        PaymentsEventRecord::Authorized(authorized) => vec![PaymentFollowUp::Capture {
            cause: authorized.metadata.clone(),
            payment_id: authorized.payment_id.clone(),
        }],
        PaymentsEventRecord::Captured(captured) => vec![PaymentFollowUp::MarkPaid {
            cause: captured.metadata.clone(),
            order_id: captured.order_id.clone(),
            payment_id: captured.payment_id.clone(),
            amount: captured.amount,
        }],
        PaymentsEventRecord::Declined(declined) => vec![PaymentFollowUp::MarkPaymentFailed {
            cause: declined.metadata.clone(),
            order_id: declined.order_id.clone(),
            payment_id: declined.payment_id.clone(),
            reason: non_blank(&declined.reason, &declined.code),
        }],
        PaymentsEventRecord::CaptureFailed(failed) => vec![PaymentFollowUp::MarkPaymentFailed {
            cause: failed.metadata.clone(),
            order_id: failed.order_id.clone(),
            payment_id: failed.payment_id.clone(),
            reason: format!(
                "the capture failed: {}",
                non_blank(&failed.reason, "no reason given")
            ),
        }],
        _ => Vec::new(),
    }
}

/// The orders domain refuses a blank reason; fall back to the code.
fn non_blank(reason: &str, fallback: &str) -> String {
    match reason.trim().is_empty() {
        true => fallback.to_owned(),
        false => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests;
