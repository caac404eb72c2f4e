//! The state an order's history folds to.

use foldline_eventsourcing::Timestamp;
use serde::{Deserialize, Serialize};

use super::events::OrderEvent;
use super::values::{Currency, CustomerId, OrderId, OrderLine, PaymentId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed and awaiting payment.
    Placed,
    /// Paid; ready to ship.
    Confirmed,
    /// The payment attempt failed; the order can only be cancelled now.
    PaymentRejected,
    Cancelled,
    Shipped,
    /// Ended without payment for a reason of its own (the saga's customer
    /// check or payment deadline).
    Rejected,
}

impl OrderStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Confirmed => "confirmed",
            Self::PaymentRejected => "payment_rejected",
            Self::Cancelled => "cancelled",
            Self::Shipped => "shipped",
            Self::Rejected => "rejected",
        }
    }
}

/// Everything known about an order that exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetails {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    /// Minor units of `currency`.
    pub total: i64,
    pub status: OrderStatus,
    pub placed_at: Timestamp,
    /// Time of the latest event.
    pub updated_at: Timestamp,
    /// The payment that confirmed the order, or whose failure rejected it.
    pub payment_id: Option<PaymentId>,
    pub cancel_reason: Option<String>,
    pub payment_rejection_reason: Option<String>,
    /// Why the order was rejected (`Rejected`): a stable code and a reason.
    #[serde(default)]
    pub rejection: Option<(String, String)>,
}

/// An order stream's state: nothing until the order is placed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    order: Option<OrderDetails>,
}

impl OrderState {
    /// The order, once placed.
    pub fn details(&self) -> Option<&OrderDetails> {
        self.order.as_ref()
    }

    pub fn status(&self) -> Option<OrderStatus> {
        self.order.as_ref().map(|order| order.status)
    }

    /// Folds one event. Total: an event that cannot apply (a non-placement
    /// before the order exists, a second placement, an event for another
    /// order) leaves the state unchanged instead of inventing facts or
    /// panicking mid-replay. The decider never emits such events, and the
    /// version gate drops stale and duplicate records before any fold.
    pub fn apply(self, event: &OrderEvent) -> Self {
        let order = match (self.order, event) {
            (None, OrderEvent::Placed(placed)) => Some(OrderDetails {
                order_id: placed.order_id,
                customer_id: placed.customer_id,
                currency: placed.currency,
                lines: placed.lines.clone(),
                total: placed.total,
                status: OrderStatus::Placed,
                placed_at: placed.placed_at,
                updated_at: placed.placed_at,
                payment_id: None,
                cancel_reason: None,
                payment_rejection_reason: None,
                rejection: None,
            }),
            (Some(order), event) if order.order_id == event.order_id() => Some(order.apply(event)),
            (unchanged, _) => unchanged,
        };
        Self { order }
    }
}

impl OrderDetails {
    // Records the fact without re-checking the transition: the decider
    // already did, and a fold must not disagree with the log it replays.
    fn apply(mut self, event: &OrderEvent) -> Self {
        match event {
            OrderEvent::Placed(_) => return self,
            OrderEvent::Cancelled(cancelled) => {
                self.status = OrderStatus::Cancelled;
                self.cancel_reason = Some(cancelled.reason.clone());
            }
            OrderEvent::Confirmed(confirmed) => {
                self.status = OrderStatus::Confirmed;
                self.payment_id = Some(confirmed.payment_id);
            }
            OrderEvent::PaymentRejected(rejected) => {
                self.status = OrderStatus::PaymentRejected;
                self.payment_id = Some(rejected.payment_id);
                self.payment_rejection_reason = Some(rejected.reason.clone());
            }
            OrderEvent::Shipped(_) => self.status = OrderStatus::Shipped,
            OrderEvent::Rejected(rejected) => {
                self.status = OrderStatus::Rejected;
                self.rejection = Some((rejected.code.clone(), rejected.reason.clone()));
            }
        }
        self.updated_at = event.occurred_at();
        self
    }
}
