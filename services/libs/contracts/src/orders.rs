//! Orders commands (on `orders.commands`) and events (on `orders.events`).

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::{CommandMetadata, EventMetadata};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i32,
    pub unit_price: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct PlaceOrder {
    pub metadata: CommandMetadata,
    pub order_id: String,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    /// The provider's card token; `None`: the provider's default test card.
    #[serde(default)]
    pub card_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct CancelOrder {
    pub metadata: CommandMetadata,
    pub order_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct MarkOrderPaid {
    pub metadata: CommandMetadata,
    pub order_id: String,
    pub payment_id: String,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct MarkOrderPaymentFailed {
    pub metadata: CommandMetadata,
    pub order_id: String,
    pub payment_id: String,
    pub reason: String,
}

/// Ends an order that cannot proceed (issued by the orders saga).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct RejectOrder {
    pub metadata: CommandMetadata,
    pub order_id: String,
    pub code: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderRejected {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub code: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct ShipOrder {
    pub metadata: CommandMetadata,
    pub order_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderPlaced {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    pub total: i64,
    #[serde(default)]
    pub card_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderCancelled {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub reason: String,
    /// Set when the order was paid: the refund its cancellation owes.
    #[serde(default)]
    pub refund_payment_id: Option<String>,
    #[serde(default)]
    pub refund_amount: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderConfirmed {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub payment_id: String,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderPaymentRejected {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub payment_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderShipped {
    pub metadata: EventMetadata,
    pub order_id: String,
}

crate::command_union! {
    /// Any record of `orders.commands`.
    pub enum OrdersCommandRecord aggregate_id = order_id {
        Place(PlaceOrder) = "foldline.orders.PlaceOrder",
        Cancel(CancelOrder) = "foldline.orders.CancelOrder",
        MarkPaid(MarkOrderPaid) = "foldline.orders.MarkOrderPaid",
        MarkPaymentFailed(MarkOrderPaymentFailed) = "foldline.orders.MarkOrderPaymentFailed",
        Ship(ShipOrder) = "foldline.orders.ShipOrder",
        Reject(RejectOrder) = "foldline.orders.RejectOrder",
    }
}

crate::event_union! {
    /// Any record of `orders.events`.
    pub enum OrdersEventRecord {
        Placed(OrderPlaced) = "foldline.orders.OrderPlaced",
        Cancelled(OrderCancelled) = "foldline.orders.OrderCancelled",
        Confirmed(OrderConfirmed) = "foldline.orders.OrderConfirmed",
        PaymentRejected(OrderPaymentRejected) = "foldline.orders.OrderPaymentRejected",
        Shipped(OrderShipped) = "foldline.orders.OrderShipped",
        Rejected(OrderRejected) = "foldline.orders.OrderRejected",
    }
}
