//! What may be asked of an order.

use serde::{Deserialize, Serialize};

use super::values::{Currency, CustomerId, OrderId, OrderLine, PaymentId};

/// Open a new order. Lines are validated by the decider, not here, so that
/// every problem surfaces as one coded rejection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    /// The payment provider's card token; `None`: its default test card.
    pub card_token: Option<String>,
}

/// Cancel an order that has not shipped. The reason may be empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: OrderId,
    pub reason: String,
}

/// Record that the payments domain captured the order's total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkPaid {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    /// Minor units of the order's currency.
    pub amount: i64,
}

/// Record that the payments domain could not capture the order's total.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkPaymentFailed {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub reason: String,
}

/// Hand a paid order over to shipping.
/// Ends an order that cannot proceed (the saga's customer check, its
/// payment deadline).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectOrder {
    pub order_id: OrderId,
    pub code: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipOrder {
    pub order_id: OrderId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderCommand {
    Place(PlaceOrder),
    Cancel(CancelOrder),
    MarkPaid(MarkPaid),
    MarkPaymentFailed(MarkPaymentFailed),
    Ship(ShipOrder),
    Reject(RejectOrder),
}

impl OrderCommand {
    /// The order (and so the stream) the command is addressed to.
    pub fn order_id(&self) -> OrderId {
        match self {
            Self::Place(command) => command.order_id,
            Self::Cancel(command) => command.order_id,
            Self::MarkPaid(command) => command.order_id,
            Self::MarkPaymentFailed(command) => command.order_id,
            Self::Ship(command) => command.order_id,
            Self::Reject(command) => command.order_id,
        }
    }
}
