//! `customers`: what the orders saga knows of each user, folded from
//! `users.events` through its `contracts` records (no users types). Only
//! the status: orders never sees personal data.

use foldline_contracts::users::UsersEventRecord;
use foldline_platform::gated::{json_row, AdmittedRecord, RecordProjection};
use foldline_platform::projector::{CurrentRows, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

pub const CUSTOMERS: &str = "customers";

/// A customer as the saga's check reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    Active,
    Deactivated,
    /// Erased users keep no profile; they order nothing more.
    Erased,
}

pub fn customer_key(user_id: &str) -> RowKey {
    RowKey::new(CUSTOMERS, user_id.as_bytes().to_vec(), Vec::new())
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Customers;

impl RecordProjection for Customers {
    type Events = UsersEventRecord;
    const NAME: &'static str = "customers";
    const SOURCE: &'static str = "users";

    fn rows_to_read(&self, _record: &UsersEventRecord) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        admitted: &AdmittedRecord<'_, UsersEventRecord>,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let (user_id, status) = match admitted.record {
            UsersEventRecord::Registered(registered) => {
                (&registered.user_id, CustomerStatus::Active)
            }
            UsersEventRecord::Deactivated(deactivated) => {
                (&deactivated.user_id, CustomerStatus::Deactivated)
            }
            UsersEventRecord::Erased(erased) => (&erased.user_id, CustomerStatus::Erased),
            _ => return Ok(Vec::new()),
        };
        Ok(vec![(
            customer_key(user_id),
            json_row(CUSTOMERS, admitted.offset, &status)?,
        )])
    }
}
