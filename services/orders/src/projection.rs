//! The orders read models, as a pure projection of `orders.events`.
//!
//! Tables (Scylla-shaped: partition key, clustering key):
//! - `order_by_id` (order id, —): the order and its version;
//! - `orders_by_customer` (customer id, newest-first placement time + order
//!   id): one summary row per order, for cursor paging;
//! - `command_outcomes` (command id, —): how the log settled each command.
//!
//! The gate is the processor's: a record counts iff its command is not
//! settled yet and it was decided against the order's current version.

use foldline_contracts::orders::OrdersEventRecord;
use foldline_platform::codec::Decoded;
use foldline_platform::projector::{CurrentRows, Projection};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

use crate::domain::{OrderDetails, OrderState};
use crate::wire;

pub const ORDER_BY_ID: &str = "order_by_id";
pub const ORDERS_BY_CUSTOMER: &str = "orders_by_customer";
pub const COMMAND_OUTCOMES: &str = "command_outcomes";

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

/// `command_outcomes` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcomeRow {
    pub command_id: String,
    pub order_id: String,
    /// `accepted` or `rejected`.
    pub status: String,
    pub order_version: u64,
    pub event_partition: i32,
    pub event_offset: i64,
    pub rejection_code: Option<String>,
    pub rejection_message: Option<String>,
    pub decided_at: i64,
}

pub fn order_key(order_id: &str) -> RowKey {
    RowKey::new(ORDER_BY_ID, order_id.as_bytes().to_vec(), Vec::new())
}

pub fn outcome_key(command_id: &str) -> RowKey {
    RowKey::new(COMMAND_OUTCOMES, command_id.as_bytes().to_vec(), Vec::new())
}

/// Clustering key of `orders_by_customer`: newest first, then by id.
pub fn customer_order_clustering(placed_at: i64, order_id: &str) -> Vec<u8> {
    let newest_first = u64::MAX - (placed_at.max(0) as u64);
    let mut key = newest_first.to_be_bytes().to_vec();
    key.extend_from_slice(order_id.as_bytes());
    key
}

fn json_row<T: Serialize>(offset: i64, value: &T) -> Option<StoredRow> {
    serde_json::to_vec(value).ok().map(|value| StoredRow {
        position: offset,
        value,
    })
}

pub fn read_order_row(row: &StoredRow) -> Option<OrderRow> {
    serde_json::from_slice(&row.value).ok()
}

#[derive(Clone, Copy, Debug, Default)]
pub struct OrdersProjection;

impl Projection for OrdersProjection {
    type Record = OrdersEventRecord;

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, String> {
        wire::event_record_from_avro(&decoded.record_name, &decoded.value)
    }

    fn rows_to_read(&self, record: &Self::Record) -> Vec<RowKey> {
        let metadata = record.metadata();
        vec![
            order_key(&metadata.aggregate_id),
            outcome_key(&metadata.command_id),
        ]
    }

    fn project(
        &self,
        record: &Self::Record,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Vec<(RowKey, StoredRow)> {
        let metadata = record.metadata();
        let order_key = order_key(&metadata.aggregate_id);
        let outcome_key = outcome_key(&metadata.command_id);
        if matches!(current.get(&outcome_key), Some(Some(_))) {
            return Vec::new(); // the command was settled earlier in the log
        }
        let order = match current.get(&order_key) {
            Some(Some(row)) => match read_order_row(row) {
                Some(order) => order,
                None => return Vec::new(),
            },
            _ => OrderRow::default(),
        };
        let is_rejection = record.is_rejection();
        let base_version = if is_rejection {
            metadata.aggregate_version
        } else {
            metadata.aggregate_version - 1
        };
        if base_version < 0 || base_version as u64 != order.version {
            return Vec::new(); // decided against another version: stale or zombie
        }
        let mut upserts = Vec::new();
        let (rejection_code, rejection_message, order_version) = match record {
            OrdersEventRecord::CommandRejected(rejected) => (
                Some(rejected.code.clone()),
                Some(rejected.message.clone()),
                order.version,
            ),
            _ => {
                let Ok(Some(event)) = wire::event_from_wire(record) else {
                    return Vec::new();
                };
                let next = OrderRow {
                    version: order.version + 1,
                    state: order.state.apply(&event),
                };
                if let Some(details) = next.state.details() {
                    if let Some(row) = json_row(offset, &customer_row(details, next.version)) {
                        upserts.push((
                            RowKey::new(
                                ORDERS_BY_CUSTOMER,
                                details.customer_id.to_string().into_bytes(),
                                customer_order_clustering(
                                    details.placed_at.millis(),
                                    &metadata.aggregate_id,
                                ),
                            ),
                            row,
                        ));
                    }
                }
                let version = next.version;
                if let Some(row) = json_row(offset, &next) {
                    upserts.push((order_key.clone(), row));
                }
                (None, None, version)
            }
        };
        let outcome = CommandOutcomeRow {
            command_id: metadata.command_id.clone(),
            order_id: metadata.aggregate_id.clone(),
            status: if is_rejection { "rejected" } else { "accepted" }.to_owned(),
            order_version,
            event_partition: partition,
            event_offset: offset,
            rejection_code,
            rejection_message,
            decided_at: metadata.occurred_at,
        };
        if let Some(row) = json_row(offset, &outcome) {
            upserts.push((outcome_key, row));
        }
        upserts
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
    use std::collections::HashMap;

    use foldline_contracts::envelope::CommandMetadata;
    use foldline_contracts::orders::{CancelOrder, OrderLine, OrdersCommandRecord, PlaceOrder};

    use super::*;
    use crate::processing::decide_record;

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

    /// Applies records like the projector loop does, over an in-memory table.
    fn project_all(records: &[OrdersEventRecord]) -> HashMap<RowKey, StoredRow> {
        let mut table: HashMap<RowKey, StoredRow> = HashMap::new();
        for (offset, record) in records.iter().enumerate() {
            let current: CurrentRows = OrdersProjection
                .rows_to_read(record)
                .into_iter()
                .map(|key| {
                    let row = table.get(&key).cloned();
                    (key, row)
                })
                .collect();
            for (key, row) in OrdersProjection.project(record, 0, offset as i64, &current) {
                let newer = table
                    .get(&key)
                    .is_some_and(|existing| existing.position >= row.position);
                if !newer {
                    table.insert(key, row);
                }
            }
        }
        table
    }

    fn history() -> Vec<OrdersEventRecord> {
        let place = OrdersCommandRecord::Place(PlaceOrder {
            metadata: metadata(1),
            order_id: ORDER.to_owned(),
            customer_id: CUSTOMER.to_owned(),
            currency: "EUR".to_owned(),
            lines: vec![OrderLine {
                sku: "SKU-1".to_owned(),
                quantity: 2,
                unit_price: 1250,
            }],
        });
        let placed = decide_record(&OrderState::default(), 0, &place);
        let state = OrderState::default().apply(&wire::event_from_wire(&placed).unwrap().unwrap());
        let cancel = OrdersCommandRecord::Cancel(CancelOrder {
            metadata: metadata(2),
            order_id: ORDER.to_owned(),
            reason: "no longer needed".to_owned(),
        });
        let cancelled = decide_record(&state, 1, &cancel);
        let stale = decide_record(&OrderState::default(), 0, &cancel);
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
        assert_eq!(outcome.status, "accepted");
        assert_eq!(
            outcome.event_offset, 3,
            "the stale rejection at offset 2 must not settle the cancel"
        );
        let second = project_all(&history());
        assert_eq!(first, second);
    }

    #[test]
    fn customer_rows_sort_newest_first() {
        let older = customer_order_clustering(1_000, "b");
        let newer = customer_order_clustering(2_000, "a");
        assert!(newer < older);
    }
}
