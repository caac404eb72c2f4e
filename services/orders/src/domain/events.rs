//! What has happened to an order.
//!
//! Events are facts in the log: their shape only ever grows by optional
//! fields, and the `type` tag each carries is [`OrderEvent::name`].

use foldline_eventsourcing::Timestamp;
use serde::{Deserialize, Serialize};

use super::values::{Currency, CustomerId, OrderId, OrderLine, PaymentId};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals in minor units, fixed at placement so that
    /// later readers never recompute money.
    pub total: i64,
    pub placed_at: Timestamp,
    #[serde(default)]
    pub card_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub reason: String,
    pub cancelled_at: Timestamp,
    /// What the cancellation owes back: set when the order was paid.
    #[serde(default)]
    pub refund: Option<RefundOwed>,
}

/// A refund a cancelled paid order owes: the whole confirmed amount of its
/// payment (the payments domain refuses to refund more than it captured).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundOwed {
    pub payment_id: PaymentId,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: OrderId,
    pub code: String,
    pub reason: String,
    pub rejected_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub amount: i64,
    pub confirmed_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentRejected {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub reason: String,
    pub rejected_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: OrderId,
    pub shipped_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrderEvent {
    #[serde(rename = "OrderPlaced")]
    Placed(OrderPlaced),
    #[serde(rename = "OrderCancelled")]
    Cancelled(OrderCancelled),
    #[serde(rename = "OrderConfirmed")]
    Confirmed(OrderConfirmed),
    #[serde(rename = "OrderPaymentRejected")]
    PaymentRejected(OrderPaymentRejected),
    #[serde(rename = "OrderShipped")]
    Shipped(OrderShipped),
    #[serde(rename = "OrderRejected")]
    Rejected(OrderRejected),
}

impl OrderEvent {
    pub fn order_id(&self) -> OrderId {
        match self {
            Self::Placed(event) => event.order_id,
            Self::Cancelled(event) => event.order_id,
            Self::Confirmed(event) => event.order_id,
            Self::PaymentRejected(event) => event.order_id,
            Self::Shipped(event) => event.order_id,
            Self::Rejected(event) => event.order_id,
        }
    }

    /// The stable event type name, as used in the log and in metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Placed(_) => "OrderPlaced",
            Self::Cancelled(_) => "OrderCancelled",
            Self::Confirmed(_) => "OrderConfirmed",
            Self::PaymentRejected(_) => "OrderPaymentRejected",
            Self::Shipped(_) => "OrderShipped",
            Self::Rejected(_) => "OrderRejected",
        }
    }

    /// When the decision was made (the deciding command's clock).
    pub fn occurred_at(&self) -> Timestamp {
        match self {
            Self::Placed(event) => event.placed_at,
            Self::Cancelled(event) => event.cancelled_at,
            Self::Confirmed(event) => event.confirmed_at,
            Self::PaymentRejected(event) => event.rejected_at,
            Self::Shipped(event) => event.shipped_at,
            Self::Rejected(event) => event.rejected_at,
        }
    }
}
