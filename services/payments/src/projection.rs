//! The payments read models, as a pure projection of admitted
//! `payments.events`.
//!
//! Tables (Scylla-shaped: partition key, clustering key):
//! - `payment_by_id` (payment id, —): the payment as the log made it;
//! - `payments_by_order` (order id, payment id): a summary of every payment
//!   of an order, rewritten from the payment's state on each of its events
//!   (every payment event names its order).

use foldline_contracts::envelope::EventMetadata;
use foldline_eventsourcing::Decider;
use foldline_platform::gated::{json_row, read_json_row, Admitted, DomainProjection};
use foldline_platform::projector::{CurrentRows, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

use crate::domain::{Payment, PaymentEvent, PaymentState, PaymentStatus, Payments};
use crate::wire::PaymentsWire;

pub const PAYMENT_BY_ID: &str = "payment_by_id";
pub const PAYMENTS_BY_ORDER: &str = "payments_by_order";

/// `payment_by_id` row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentRow {
    pub version: u64,
    pub payment: Payment,
    pub requested_at: i64,
    pub updated_at: i64,
}

/// `payments_by_order` row: what a list of an order's payments shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentRow {
    pub payment_id: String,
    pub version: u64,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    pub refunded: i64,
    pub updated_at: i64,
}

pub fn payment_key(payment_id: &str) -> RowKey {
    RowKey::new(PAYMENT_BY_ID, payment_id.as_bytes().to_vec(), Vec::new())
}

/// The partition of an order's payments.
pub fn order_partition(order_id: &str) -> Vec<u8> {
    order_id.as_bytes().to_vec()
}

pub fn order_payment_key(order_id: &str, payment_id: &str) -> RowKey {
    RowKey::new(
        PAYMENTS_BY_ORDER,
        order_partition(order_id),
        payment_id.as_bytes().to_vec(),
    )
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentsProjection;

impl DomainProjection for PaymentsProjection {
    type Wire = PaymentsWire;
    const NAME: &'static str = "payments";

    fn rows_to_read(&self, _event: &PaymentEvent, metadata: &EventMetadata) -> Vec<RowKey> {
        vec![payment_key(&metadata.aggregate_id)]
    }

    fn project(
        &self,
        admitted: &Admitted<'_, PaymentsWire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let key = payment_key(&admitted.metadata.aggregate_id);
        let row = read_json_row::<PaymentRow>(&key, current)?;
        let requested_at = row
            .as_ref()
            .map_or(admitted.metadata.occurred_at, |row| row.requested_at);
        let state = PaymentState {
            payment: row.map(|row| row.payment),
        };
        // The gate admitted the event against this very state, so it applies.
        let Some(payment) = Payments::evolve(state, admitted.event).payment else {
            return Ok(Vec::new());
        };
        let summary = OrderPaymentRow {
            payment_id: payment.terms.payment_id.to_string(),
            version: admitted.version,
            status: payment.status,
            amount: payment.terms.amount.minor_units(),
            currency: payment.terms.currency.as_str().to_owned(),
            refunded: payment.refunded(),
            updated_at: admitted.metadata.occurred_at,
        };
        let order_key = order_payment_key(&payment.terms.order_id.to_string(), &summary.payment_id);
        let next = PaymentRow {
            version: admitted.version,
            payment,
            requested_at,
            updated_at: admitted.metadata.occurred_at,
        };
        Ok(vec![
            (key, json_row(PAYMENT_BY_ID, admitted.offset, &next)?),
            (
                order_key,
                json_row(PAYMENTS_BY_ORDER, admitted.offset, &summary)?,
            ),
        ])
    }
}
