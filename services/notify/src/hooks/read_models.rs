//! Notify's read models of other domains' logs, folded through their
//! `contracts` records (no orders or users types): an order's customer,
//! and a user's sealed addresses. Plaintext never lands here: addresses
//! stay sealed under the user's data key and are opened only when a
//! notice is sent, so erasing the user (destroying the key) silences them.

use foldline_contracts::orders::OrdersEventRecord;
use foldline_contracts::users::UsersEventRecord;
use foldline_platform::gated::{json_row, read_json_row, AdmittedRecord, RecordProjection};
use foldline_platform::projector::{CurrentRows, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

use super::OrderCustomer;

pub const NOTIFY_ORDER_CUSTOMERS: &str = "notify_order_customers";
pub const NOTIFY_CONTACTS: &str = "notify_contacts";

pub fn order_customer_key(order_id: &str) -> RowKey {
    RowKey::new(
        NOTIFY_ORDER_CUSTOMERS,
        order_id.as_bytes().to_vec(),
        Vec::new(),
    )
}

pub fn contact_key(user_id: &str) -> RowKey {
    RowKey::new(NOTIFY_CONTACTS, user_id.as_bytes().to_vec(), Vec::new())
}

/// `order_customers`: each order's customer and currency, from `OrderPlaced`.
#[derive(Clone, Copy, Debug, Default)]
pub struct OrderCustomers;

impl RecordProjection for OrderCustomers {
    type Events = OrdersEventRecord;
    const NAME: &'static str = "order_customers";
    const SOURCE: &'static str = "orders";

    fn rows_to_read(&self, _record: &OrdersEventRecord) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        admitted: &AdmittedRecord<'_, OrdersEventRecord>,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        match admitted.record {
            OrdersEventRecord::Placed(placed) => Ok(vec![(
                order_customer_key(&placed.order_id),
                json_row(
                    NOTIFY_ORDER_CUSTOMERS,
                    admitted.offset,
                    &OrderCustomer {
                        customer_id: placed.customer_id.clone(),
                        currency: placed.currency.clone(),
                    },
                )?,
            )]),
            _ => Ok(Vec::new()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatus {
    Active,
    /// Still told about the orders it placed: a notice is about an order,
    /// not an offer.
    Deactivated,
    /// Nothing is kept; no notice is sent.
    Erased,
}

/// `notify_contacts` row: a user's addresses, sealed as users sealed them
/// (`email` and `phone` fields of the user's subject).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRow {
    pub status: ContactStatus,
    pub email_sealed: Option<String>,
    pub phone_sealed: Option<String>,
}

/// `contacts`: the sealed addresses and status of each user.
#[derive(Clone, Copy, Debug, Default)]
pub struct Contacts;

fn user_of(record: &UsersEventRecord) -> Option<&str> {
    match record {
        UsersEventRecord::Registered(event) => Some(&event.user_id),
        UsersEventRecord::ProfileChanged(event) => Some(&event.user_id),
        UsersEventRecord::EmailChanged(event) => Some(&event.user_id),
        UsersEventRecord::Deactivated(event) => Some(&event.user_id),
        UsersEventRecord::Erased(event) => Some(&event.user_id),
        UsersEventRecord::EmailClaimed(_)
        | UsersEventRecord::EmailReleased(_)
        | UsersEventRecord::RegistrationRefused(_)
        | UsersEventRecord::EmailChangeRefused(_)
        | UsersEventRecord::CommandRejected(_) => None,
    }
}

/// The contact after `record`, from the one before it. Pure.
pub fn next_contact(record: &UsersEventRecord, current: Option<ContactRow>) -> Option<ContactRow> {
    match record {
        UsersEventRecord::Registered(registered) => Some(ContactRow {
            status: ContactStatus::Active,
            email_sealed: Some(registered.email_sealed.clone()),
            phone_sealed: registered.phone_sealed.clone(),
        }),
        UsersEventRecord::Erased(_) => Some(ContactRow {
            status: ContactStatus::Erased,
            email_sealed: None,
            phone_sealed: None,
        }),
        UsersEventRecord::ProfileChanged(changed) => current.map(|mut contact| {
            if changed.phone_cleared {
                contact.phone_sealed = None;
            } else if let Some(phone) = &changed.phone_sealed {
                contact.phone_sealed = Some(phone.clone());
            }
            contact
        }),
        UsersEventRecord::EmailChanged(changed) => current.map(|mut contact| {
            contact.email_sealed = Some(changed.email_sealed.clone());
            contact
        }),
        UsersEventRecord::Deactivated(_) => current.map(|mut contact| {
            contact.status = ContactStatus::Deactivated;
            contact
        }),
        _ => None,
    }
}

impl RecordProjection for Contacts {
    type Events = UsersEventRecord;
    const NAME: &'static str = "contacts";
    const SOURCE: &'static str = "users";

    fn rows_to_read(&self, record: &UsersEventRecord) -> Vec<RowKey> {
        user_of(record).map(contact_key).into_iter().collect()
    }

    fn project(
        &self,
        admitted: &AdmittedRecord<'_, UsersEventRecord>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let Some(user_id) = user_of(admitted.record) else {
            return Ok(Vec::new());
        };
        let key = contact_key(user_id);
        let before = read_json_row::<ContactRow>(&key, current)?;
        match next_contact(admitted.record, before) {
            Some(contact) => Ok(vec![(
                key,
                json_row(NOTIFY_CONTACTS, admitted.offset, &contact)?,
            )]),
            None => Ok(Vec::new()),
        }
    }
}
