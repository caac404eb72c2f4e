//! The orders read models, as a pure projection of admitted `orders.events`.
//!
//! Tables (Scylla-shaped: partition key, clustering key):
//! - `order_by_id` (order id, —): the order and its version;
//! - `orders_by_customer` (customer id, newest-first placement time + order
//!   id): one summary row per order, for cursor paging.
//!
//! The gate and `command_outcomes` are the platform's
//! ([`GatedProjection`](foldline_platform::GatedProjection)): this
//! projection only sees events the gate admitted, in log order.

use foldline_contracts::envelope::EventMetadata;
use foldline_platform::gated::{json_row, read_json_row, Admitted, DomainProjection};
use foldline_platform::projector::{CurrentRows, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

use crate::domain::{OrderDetails, OrderEvent, OrderState};
use crate::wire::OrdersWire;

pub const ORDER_BY_ID: &str = "order_by_id";
pub const ORDERS_BY_CUSTOMER: &str = "orders_by_customer";

/// `order_by_id` row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderRow {
    pub version: u64,
    pub state: OrderState,
}

/// `orders_by_customer` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerOrderRow {
    pub order_id: String,
    pub status: String,
    pub currency: String,
    pub total: i64,
    pub placed_at: i64,
    pub updated_at: i64,
    pub version: u64,
}

pub fn order_key(order_id: &str) -> RowKey {
    RowKey::new(ORDER_BY_ID, order_id.as_bytes().to_vec(), Vec::new())
}

/// Clustering key of `orders_by_customer`: newest first, then by id.
pub fn customer_order_clustering(placed_at: i64, order_id: &str) -> Vec<u8> {
    let newest_first = u64::MAX - (placed_at.max(0) as u64);
    let mut key = newest_first.to_be_bytes().to_vec();
    key.extend_from_slice(order_id.as_bytes());
    key
}

pub fn read_order_row(row: &StoredRow) -> Result<OrderRow, serde_json::Error> {
    serde_json::from_slice(&row.value)
}

#[derive(Clone, Copy, Debug, Default)]
pub struct OrdersProjection;

impl DomainProjection for OrdersProjection {
    type Wire = OrdersWire;
    const NAME: &'static str = "orders";

    fn rows_to_read(&self, _event: &OrderEvent, metadata: &EventMetadata) -> Vec<RowKey> {
        vec![order_key(&metadata.aggregate_id)]
    }

    fn project(
        &self,
        admitted: &Admitted<'_, OrdersWire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let order_id = &admitted.metadata.aggregate_id;
        let order_key = order_key(order_id);
        let order = read_json_row::<OrderRow>(&order_key, current)?.unwrap_or_default();
        let next = OrderRow {
            version: admitted.version,
            state: order.state.apply(admitted.event),
        };
        let mut upserts = Vec::with_capacity(2);
        if let Some(details) = next.state.details() {
            upserts.push((
                RowKey::new(
                    ORDERS_BY_CUSTOMER,
                    details.customer_id.to_string().into_bytes(),
                    customer_order_clustering(details.placed_at.millis(), order_id),
                ),
                json_row(
                    ORDERS_BY_CUSTOMER,
                    admitted.offset,
                    &customer_row(details, next.version),
                )?,
            ));
        }
        upserts.push((order_key, json_row(ORDER_BY_ID, admitted.offset, &next)?));
        Ok(upserts)
    }
}

fn customer_row(details: &OrderDetails, version: u64) -> CustomerOrderRow {
    CustomerOrderRow {
        order_id: details.order_id.to_string(),
        status: details.status.as_str().to_owned(),
        currency: details.currency.as_str().to_owned(),
        total: details.total,
        placed_at: details.placed_at.millis(),
        updated_at: details.updated_at.millis(),
        version,
    }
}

#[cfg(test)]
mod tests {
    use foldline_contracts::envelope::CommandMetadata;
    use foldline_contracts::orders::{CancelOrder, OrderLine, OrdersCommandRecord, PlaceOrder};
    use foldline_platform::domain::{decide_record, LogRecord, ValidCommand};
    use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
    use foldline_platform::projector::{apply_in_memory, MemoryTable, Projection};

    use super::*;

    const ORDER: &str = "0190a0a0-0000-7000-8000-000000000001";
    const CUSTOMER: &str = "0190a0a0-0000-7000-8000-0000000000c1";

    fn metadata(command: u128) -> CommandMetadata {
        CommandMetadata {
            command_id: uuid::Uuid::from_u128(command).to_string(),
            correlation_id: uuid::Uuid::from_u128(command).to_string(),
            causation_id: None,
            issued_at: 1_700_000_000_000,
            issued_by: "test".to_owned(),
            traceparent: None,
        }
    }

    fn command(record: OrdersCommandRecord) -> ValidCommand<OrdersCommandRecord> {
        ValidCommand::validate(record).expect("test commands are valid")
    }

    fn gated() -> GatedProjection<OrdersProjection> {
        GatedProjection::new("orders", OrdersProjection)
    }

    /// Applies records like the projector loop does, over an in-memory table.
    fn project_all(records: &[LogRecord<OrdersWire>]) -> MemoryTable {
        let projection = gated();
        let mut table = MemoryTable::new();
        for (offset, record) in records.iter().enumerate() {
            apply_in_memory(&projection, &mut table, record, 0, offset as i64)
                .expect("rows are writable");
        }
        table
    }

    fn history() -> Vec<LogRecord<OrdersWire>> {
        let place = command(OrdersCommandRecord::Place(PlaceOrder {
            metadata: metadata(1),
            order_id: ORDER.to_owned(),
            customer_id: CUSTOMER.to_owned(),
            currency: "EUR".to_owned(),
            lines: vec![OrderLine {
                sku: "SKU-1".to_owned(),
                quantity: 2,
                unit_price: 1250,
            }],
            card_token: None,
        }));
        let placed = decide_record::<OrdersWire>(&OrderState::default(), 0, &place);
        let state = OrderState::default().apply(placed.event.as_ref().unwrap());
        let cancel = command(OrdersCommandRecord::Cancel(CancelOrder {
            metadata: metadata(2),
            order_id: ORDER.to_owned(),
            reason: "no longer needed".to_owned(),
        }));
        let cancelled = decide_record::<OrdersWire>(&state, 1, &cancel);
        let stale = decide_record::<OrdersWire>(&OrderState::default(), 0, &cancel);
        vec![placed.clone(), placed, stale, cancelled]
    }

    #[test]
    fn the_projection_follows_the_gate_and_replays_byte_identically() {
        let first = project_all(&history());
        let order = read_order_row(&first[&order_key(ORDER)]).unwrap();
        assert_eq!(order.version, 2);
        assert_eq!(
            order.state.status().map(|status| status.as_str()),
            Some("cancelled")
        );
        let outcome: CommandOutcomeRow =
            serde_json::from_slice(&first[&outcome_key(&metadata(2).command_id)].value).unwrap();
        assert_eq!(outcome.domain, "orders");
        assert_eq!(outcome.outcome.status, "accepted");
        assert_eq!(
            outcome.outcome.event_offset, 3,
            "the stale rejection at offset 2 must not settle the cancel"
        );
        let second = project_all(&history());
        assert_eq!(first, second);
    }

    #[test]
    fn an_unreadable_order_row_stops_the_projection_instead_of_being_skipped() {
        let records = history();
        let projection = gated();
        let mut current: CurrentRows = projection
            .rows_to_read(&records[0])
            .into_iter()
            .map(|key| (key, None))
            .collect();
        current.insert(
            order_key(ORDER),
            Some(StoredRow {
                position: 0,
                value: b"not json".to_vec(),
            }),
        );
        let error = projection.project(&records[0], 0, 0, &current).unwrap_err();
        assert!(
            matches!(
                error,
                ProjectionError::UnreadableRow {
                    table: ORDER_BY_ID,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn customer_rows_sort_newest_first() {
        let older = customer_order_clustering(1_000, "b");
        let newer = customer_order_clustering(2_000, "a");
        assert!(newer < older);
    }
}
