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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct OrderCancelled {
    pub metadata: EventMetadata,
    pub order_id: String,
    pub reason: String,
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

/// A refused command, recorded in the event log (see `EventMetadata`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.orders")]
pub struct CommandRejected {
    pub metadata: EventMetadata,
    pub command_type: String,
    pub code: String,
    pub message: String,
}

/// Any record of `orders.commands`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrdersCommandRecord {
    Place(PlaceOrder),
    Cancel(CancelOrder),
    MarkPaid(MarkOrderPaid),
    MarkPaymentFailed(MarkOrderPaymentFailed),
    Ship(ShipOrder),
}

impl OrdersCommandRecord {
    pub fn metadata(&self) -> &CommandMetadata {
        match self {
            Self::Place(record) => &record.metadata,
            Self::Cancel(record) => &record.metadata,
            Self::MarkPaid(record) => &record.metadata,
            Self::MarkPaymentFailed(record) => &record.metadata,
            Self::Ship(record) => &record.metadata,
        }
    }

    pub fn order_id(&self) -> &str {
        match self {
            Self::Place(record) => &record.order_id,
            Self::Cancel(record) => &record.order_id,
            Self::MarkPaid(record) => &record.order_id,
            Self::MarkPaymentFailed(record) => &record.order_id,
            Self::Ship(record) => &record.order_id,
        }
    }

    pub fn record_name(&self) -> &'static str {
        match self {
            Self::Place(_) => "foldline.orders.PlaceOrder",
            Self::Cancel(_) => "foldline.orders.CancelOrder",
            Self::MarkPaid(_) => "foldline.orders.MarkOrderPaid",
            Self::MarkPaymentFailed(_) => "foldline.orders.MarkOrderPaymentFailed",
            Self::Ship(_) => "foldline.orders.ShipOrder",
        }
    }
}

/// Any record of `orders.events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrdersEventRecord {
    Placed(OrderPlaced),
    Cancelled(OrderCancelled),
    Confirmed(OrderConfirmed),
    PaymentRejected(OrderPaymentRejected),
    Shipped(OrderShipped),
    CommandRejected(CommandRejected),
}

impl OrdersEventRecord {
    pub fn metadata(&self) -> &EventMetadata {
        match self {
            Self::Placed(record) => &record.metadata,
            Self::Cancelled(record) => &record.metadata,
            Self::Confirmed(record) => &record.metadata,
            Self::PaymentRejected(record) => &record.metadata,
            Self::Shipped(record) => &record.metadata,
            Self::CommandRejected(record) => &record.metadata,
        }
    }

    pub fn record_name(&self) -> &'static str {
        match self {
            Self::Placed(_) => "foldline.orders.OrderPlaced",
            Self::Cancelled(_) => "foldline.orders.OrderCancelled",
            Self::Confirmed(_) => "foldline.orders.OrderConfirmed",
            Self::PaymentRejected(_) => "foldline.orders.OrderPaymentRejected",
            Self::Shipped(_) => "foldline.orders.OrderShipped",
            Self::CommandRejected(_) => "foldline.orders.CommandRejected",
        }
    }

    pub fn is_rejection(&self) -> bool {
        matches!(self, Self::CommandRejected(_))
    }
}
