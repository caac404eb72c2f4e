//! Domain ↔ wire mapping. The wire is strings and integers; the domain is
//! validated types. Parsing a wire command can fail (a foreign producer may
//! write anything); mapping a domain event out cannot.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::orders as wire;
use foldline_eventsourcing::Timestamp;

use crate::domain::{
    CancelOrder, Currency, CustomerId, MarkPaid, MarkPaymentFailed, OrderCommand, OrderEvent,
    OrderId, OrderLine, PaymentId, PlaceOrder, Quantity, ShipOrder, Sku,
};

/// Why a wire record does not map to a domain value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

fn field<T, E: std::fmt::Display>(
    field: &'static str,
    result: Result<T, E>,
) -> Result<T, WireError> {
    result.map_err(|error| WireError::InvalidField {
        field,
        reason: error.to_string(),
    })
}

fn lines_from_wire(lines: &[wire::OrderLine]) -> Result<Vec<OrderLine>, WireError> {
    lines
        .iter()
        .map(|line| {
            Ok(OrderLine {
                sku: field("lines.sku", Sku::parse(&line.sku))?,
                quantity: field("lines.quantity", Quantity::new(i64::from(line.quantity)))?,
                unit_price: line.unit_price,
            })
        })
        .collect()
}

fn lines_to_wire(lines: &[OrderLine]) -> Vec<wire::OrderLine> {
    lines
        .iter()
        .map(|line| wire::OrderLine {
            sku: line.sku.as_str().to_owned(),
            quantity: line.quantity.get() as i32,
            unit_price: line.unit_price,
        })
        .collect()
}

pub fn command_from_wire(record: &wire::OrdersCommandRecord) -> Result<OrderCommand, WireError> {
    let order_id = field("order_id", OrderId::parse(record.order_id()))?;
    Ok(match record {
        wire::OrdersCommandRecord::Place(place) => OrderCommand::Place(PlaceOrder {
            order_id,
            customer_id: field("customer_id", CustomerId::parse(&place.customer_id))?,
            currency: field("currency", Currency::parse(&place.currency))?,
            lines: lines_from_wire(&place.lines)?,
        }),
        wire::OrdersCommandRecord::Cancel(cancel) => OrderCommand::Cancel(CancelOrder {
            order_id,
            reason: cancel.reason.clone(),
        }),
        wire::OrdersCommandRecord::MarkPaid(paid) => OrderCommand::MarkPaid(MarkPaid {
            order_id,
            payment_id: field("payment_id", PaymentId::parse(&paid.payment_id))?,
            amount: paid.amount,
        }),
        wire::OrdersCommandRecord::MarkPaymentFailed(failed) => {
            OrderCommand::MarkPaymentFailed(MarkPaymentFailed {
                order_id,
                payment_id: field("payment_id", PaymentId::parse(&failed.payment_id))?,
                reason: failed.reason.clone(),
            })
        }
        wire::OrdersCommandRecord::Ship(_) => OrderCommand::Ship(ShipOrder { order_id }),
    })
}

pub fn event_to_wire(event: &OrderEvent, metadata: EventMetadata) -> wire::OrdersEventRecord {
    match event {
        OrderEvent::Placed(placed) => wire::OrdersEventRecord::Placed(wire::OrderPlaced {
            metadata,
            order_id: placed.order_id.to_string(),
            customer_id: placed.customer_id.to_string(),
            currency: placed.currency.as_str().to_owned(),
            lines: lines_to_wire(&placed.lines),
            total: placed.total,
        }),
        OrderEvent::Cancelled(cancelled) => {
            wire::OrdersEventRecord::Cancelled(wire::OrderCancelled {
                metadata,
                order_id: cancelled.order_id.to_string(),
                reason: cancelled.reason.clone(),
            })
        }
        OrderEvent::Confirmed(confirmed) => {
            wire::OrdersEventRecord::Confirmed(wire::OrderConfirmed {
                metadata,
                order_id: confirmed.order_id.to_string(),
                payment_id: confirmed.payment_id.to_string(),
                amount: confirmed.amount,
            })
        }
        OrderEvent::PaymentRejected(rejected) => {
            wire::OrdersEventRecord::PaymentRejected(wire::OrderPaymentRejected {
                metadata,
                order_id: rejected.order_id.to_string(),
                payment_id: rejected.payment_id.to_string(),
                reason: rejected.reason.clone(),
            })
        }
        OrderEvent::Shipped(shipped) => wire::OrdersEventRecord::Shipped(wire::OrderShipped {
            metadata,
            order_id: shipped.order_id.to_string(),
        }),
    }
}

/// The domain event a wire record carries; `None` for recorded rejections.
pub fn event_from_wire(record: &wire::OrdersEventRecord) -> Result<Option<OrderEvent>, WireError> {
    use crate::domain::{
        OrderCancelled, OrderConfirmed, OrderPaymentRejected, OrderPlaced, OrderShipped,
    };
    let at = Timestamp(record.metadata().occurred_at);
    Ok(Some(match record {
        wire::OrdersEventRecord::Placed(placed) => OrderEvent::Placed(OrderPlaced {
            order_id: field("order_id", OrderId::parse(&placed.order_id))?,
            customer_id: field("customer_id", CustomerId::parse(&placed.customer_id))?,
            currency: field("currency", Currency::parse(&placed.currency))?,
            lines: lines_from_wire(&placed.lines)?,
            total: placed.total,
            placed_at: at,
        }),
        wire::OrdersEventRecord::Cancelled(cancelled) => OrderEvent::Cancelled(OrderCancelled {
            order_id: field("order_id", OrderId::parse(&cancelled.order_id))?,
            reason: cancelled.reason.clone(),
            cancelled_at: at,
        }),
        wire::OrdersEventRecord::Confirmed(confirmed) => OrderEvent::Confirmed(OrderConfirmed {
            order_id: field("order_id", OrderId::parse(&confirmed.order_id))?,
            payment_id: field("payment_id", PaymentId::parse(&confirmed.payment_id))?,
            amount: confirmed.amount,
            confirmed_at: at,
        }),
        wire::OrdersEventRecord::PaymentRejected(rejected) => {
            OrderEvent::PaymentRejected(OrderPaymentRejected {
                order_id: field("order_id", OrderId::parse(&rejected.order_id))?,
                payment_id: field("payment_id", PaymentId::parse(&rejected.payment_id))?,
                reason: rejected.reason.clone(),
                rejected_at: at,
            })
        }
        wire::OrdersEventRecord::Shipped(shipped) => OrderEvent::Shipped(OrderShipped {
            order_id: field("order_id", OrderId::parse(&shipped.order_id))?,
            shipped_at: at,
        }),
        wire::OrdersEventRecord::CommandRejected(_) => return Ok(None),
    }))
}

/// Reads a decoded command value by its writer's record name.
pub fn command_record_from_avro(
    record_name: &str,
    value: &apache_avro::types::Value,
) -> Result<wire::OrdersCommandRecord, String> {
    fn read<T: serde::de::DeserializeOwned>(
        value: &apache_avro::types::Value,
    ) -> Result<T, String> {
        apache_avro::from_value::<T>(value)
            .map_err(|error| format!("record does not fit its schema: {error}"))
    }
    Ok(match record_name {
        "foldline.orders.PlaceOrder" => wire::OrdersCommandRecord::Place(read(value)?),
        "foldline.orders.CancelOrder" => wire::OrdersCommandRecord::Cancel(read(value)?),
        "foldline.orders.MarkOrderPaid" => wire::OrdersCommandRecord::MarkPaid(read(value)?),
        "foldline.orders.MarkOrderPaymentFailed" => {
            wire::OrdersCommandRecord::MarkPaymentFailed(read(value)?)
        }
        "foldline.orders.ShipOrder" => wire::OrdersCommandRecord::Ship(read(value)?),
        other => return Err(format!("{other} is not an orders command")),
    })
}

/// Reads a decoded events-topic value by its writer's record name.
pub fn event_record_from_avro(
    record_name: &str,
    value: &apache_avro::types::Value,
) -> Result<wire::OrdersEventRecord, String> {
    fn read<T: serde::de::DeserializeOwned>(
        value: &apache_avro::types::Value,
    ) -> Result<T, String> {
        apache_avro::from_value::<T>(value)
            .map_err(|error| format!("record does not fit its schema: {error}"))
    }
    Ok(match record_name {
        "foldline.orders.OrderPlaced" => wire::OrdersEventRecord::Placed(read(value)?),
        "foldline.orders.OrderCancelled" => wire::OrdersEventRecord::Cancelled(read(value)?),
        "foldline.orders.OrderConfirmed" => wire::OrdersEventRecord::Confirmed(read(value)?),
        "foldline.orders.OrderPaymentRejected" => {
            wire::OrdersEventRecord::PaymentRejected(read(value)?)
        }
        "foldline.orders.OrderShipped" => wire::OrdersEventRecord::Shipped(read(value)?),
        "foldline.orders.CommandRejected" => wire::OrdersEventRecord::CommandRejected(read(value)?),
        other => return Err(format!("{other} is not an orders event")),
    })
}

/// The Avro value of an events-topic record.
pub fn event_record_to_avro(
    record: &wire::OrdersEventRecord,
) -> Result<apache_avro::types::Value, String> {
    let value = match record {
        wire::OrdersEventRecord::Placed(inner) => apache_avro::to_value(inner),
        wire::OrdersEventRecord::Cancelled(inner) => apache_avro::to_value(inner),
        wire::OrdersEventRecord::Confirmed(inner) => apache_avro::to_value(inner),
        wire::OrdersEventRecord::PaymentRejected(inner) => apache_avro::to_value(inner),
        wire::OrdersEventRecord::Shipped(inner) => apache_avro::to_value(inner),
        wire::OrdersEventRecord::CommandRejected(inner) => apache_avro::to_value(inner),
    };
    value.map_err(|error| error.to_string())
}

/// The Avro value of a commands-topic record.
pub fn command_record_to_avro(
    record: &wire::OrdersCommandRecord,
) -> Result<apache_avro::types::Value, String> {
    let value = match record {
        wire::OrdersCommandRecord::Place(inner) => apache_avro::to_value(inner),
        wire::OrdersCommandRecord::Cancel(inner) => apache_avro::to_value(inner),
        wire::OrdersCommandRecord::MarkPaid(inner) => apache_avro::to_value(inner),
        wire::OrdersCommandRecord::MarkPaymentFailed(inner) => apache_avro::to_value(inner),
        wire::OrdersCommandRecord::Ship(inner) => apache_avro::to_value(inner),
    };
    value.map_err(|error| error.to_string())
}
