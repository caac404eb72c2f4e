//! The notices' I/O: looking the recipient up (notify's read models, the
//! user's data key), queueing the notifications on `notify.commands`,
//! recording each notice's outcome in `notify_order_notices`, and the two
//! relay workers.

use std::time::{SystemTime, UNIX_EPOCH};

use foldline_contracts::record::CommandRecord;
use foldline_platform::codec::Codec;
use foldline_platform::kafka;
use foldline_platform::outbox::{
    read_json, relay_named, send_command, FollowUpError, Performer, ProcessManager,
};
use foldline_platform::personal_data::{DataKeys, KeyEncryptionKey, PersonalDataError};
use foldline_platform::service::{DomainTopics, RoleContext, RoleFuture, ServiceError};
use foldline_platform::store::{RowKey, Store, StoreError, StoredRow};
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};

use super::read_models::{contact_key, order_customer_key, ContactRow, ContactStatus};
use super::{
    resolve, Contact, ContactLookup, OrderCustomer, OrderNotice, OrderNotices, Patience,
    RefundNotices, Resolution, SkipReason,
};

pub const ORDERS_RELAY: &str = "notice relay (orders events)";
pub const PAYMENTS_RELAY: &str = "notice relay (payments events)";
/// Each notice's outcome: partition = order id, clustering = event id.
pub const NOTIFY_ORDER_NOTICES: &str = "notify_order_notices";
/// The fields users seals addresses as (`services/users/src/routes.rs`).
const EMAIL_FIELD: &str = "email";
const PHONE_FIELD: &str = "phone";

pub fn notice_key(order_id: &str, event_id: &str) -> RowKey {
    RowKey::new(
        NOTIFY_ORDER_NOTICES,
        order_id.as_bytes().to_vec(),
        event_id.as_bytes().to_vec(),
    )
}

/// What became of a notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum NoticeOutcome {
    Queued { notification_ids: Vec<String> },
    Skipped { reason: SkipReason },
}

/// `notify_order_notices` row. The first outcome written is final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRow {
    pub event_id: String,
    pub template: String,
    #[serde(flatten)]
    pub outcome: NoticeOutcome,
    pub recorded_at: i64,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn store_failure(error: StoreError) -> FollowUpError {
    FollowUpError::from(error)
}

fn key_failure(error: PersonalDataError) -> FollowUpError {
    match error.is_transient() {
        true => FollowUpError::Transient(error.to_string()),
        false => FollowUpError::Permanent(error.to_string()),
    }
}

/// Queues the notifications of a notice.
pub struct NoticePerformer {
    pub producer: FutureProducer,
    pub codec: Codec,
    pub commands_topic: String,
    pub store: Store,
    pub data_keys: DataKeys,
    pub grace_ms: i64,
}

impl std::fmt::Debug for NoticePerformer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NoticePerformer")
            .field("commands_topic", &self.commands_topic)
            .field("grace_ms", &self.grace_ms)
            .finish_non_exhaustive()
    }
}

impl NoticePerformer {
    /// The customer's addresses, opened with their data key.
    async fn contact(&self, user_id: &str) -> Result<ContactLookup, FollowUpError> {
        let Some(row) = read_json::<ContactRow>(&self.store, contact_key(user_id)).await? else {
            return Ok(ContactLookup::Missing);
        };
        let (ContactStatus::Active | ContactStatus::Deactivated, Some(email_sealed)) =
            (row.status, &row.email_sealed)
        else {
            return Ok(ContactLookup::Erased);
        };
        // No key: destroyed by an erasure this read model has not folded yet.
        let Some(key) = self.data_keys.get(user_id).await.map_err(key_failure)? else {
            return Ok(ContactLookup::Erased);
        };
        let email = match key.open(user_id, EMAIL_FIELD, email_sealed) {
            Ok(email) => email,
            Err(error) => {
                tracing::error!(%error, user_id, "a user's sealed email does not open");
                return Ok(ContactLookup::Unreadable);
            }
        };
        let phone = match &row.phone_sealed {
            Some(sealed) => match key.open(user_id, PHONE_FIELD, sealed) {
                Ok(phone) => Some(phone),
                Err(error) => {
                    tracing::error!(%error, user_id, "a user's sealed phone does not open: email only");
                    None
                }
            },
            None => None,
        };
        Ok(ContactLookup::Found(Contact { email, phone }))
    }

    async fn record(
        &self,
        notice: &OrderNotice,
        outcome: NoticeOutcome,
    ) -> Result<(), FollowUpError> {
        let row = NoticeRow {
            event_id: notice.cause.event_id.clone(),
            template: notice.notice.template().to_owned(),
            outcome,
            recorded_at: now_millis(),
        };
        let value = serde_json::to_vec(&row)
            .map_err(|error| FollowUpError::Permanent(error.to_string()))?;
        self.store
            .insert_if_absent(
                notice_key(&notice.order_id, &notice.cause.event_id),
                StoredRow { position: 0, value },
            )
            .await
            .map_err(store_failure)?;
        Ok(())
    }
}

impl Performer<OrderNotice> for NoticePerformer {
    async fn perform(&self, notice: &OrderNotice) -> Result<(), FollowUpError> {
        let key = notice_key(&notice.order_id, &notice.cause.event_id);
        if self.store.get(key).await.map_err(store_failure)?.is_some() {
            // Decided before a crash: the first outcome stands.
            return Ok(());
        }
        let order =
            read_json::<OrderCustomer>(&self.store, order_customer_key(&notice.order_id)).await?;
        let contact = match &order {
            Some(order) => Some(self.contact(&order.customer_id).await?),
            None => None,
        };
        let patience = Patience {
            now_ms: now_millis(),
            grace_ms: self.grace_ms,
        };
        match resolve(notice, order.as_ref(), contact.as_ref(), patience) {
            Resolution::Wait(why) => Err(FollowUpError::Transient(why.to_owned())),
            Resolution::Skip(reason) => {
                tracing::warn!(
                    order_id = %notice.order_id,
                    event_id = %notice.cause.event_id,
                    template = notice.notice.template(),
                    reason = reason.as_str(),
                    "order notice not sent"
                );
                self.record(notice, NoticeOutcome::Skipped { reason }).await
            }
            Resolution::Send(commands) => {
                for command in &commands {
                    send_command(&self.producer, &self.codec, &self.commands_topic, command)
                        .await?;
                }
                let notification_ids = commands
                    .iter()
                    .map(|command| command.aggregate_id().to_owned())
                    .collect();
                self.record(notice, NoticeOutcome::Queued { notification_ids })
                    .await
            }
        }
    }
}

fn start_error(worker: &'static str, reason: impl ToString) -> ServiceError {
    ServiceError::WorkerStart {
        worker,
        reason: reason.to_string(),
    }
}

async fn run_relay<M>(
    worker: &'static str,
    domain: &'static str,
    context: RoleContext,
) -> Result<(), ServiceError>
where
    M: ProcessManager<FollowUp = OrderNotice>,
{
    let settings = &context.config.notify;
    if !settings.order_notices {
        tracing::info!(
            worker,
            "order notices are off (notify.order_notices = false): the relay queues nothing"
        );
        context.shutdown.wait().await;
        return Ok(());
    }
    let source = DomainTopics::resolve(&context.config, &context.topology, M::SOURCE)?;
    let own = DomainTopics::resolve(&context.config, &context.topology, domain)?;
    let kek =
        KeyEncryptionKey::from_config(context.config.personal_data.key_encryption_key.as_ref())
            .map_err(|error| start_error(worker, error))?;
    let producer = kafka::producer_config(&context.config.kafka, "foldline-notify-notices")
        .create()
        .map_err(|error| start_error(worker, error))?;
    let performer = NoticePerformer {
        producer,
        codec: context.codec.clone(),
        commands_topic: own.commands,
        store: context.store.clone(),
        data_keys: DataKeys::new(context.store.clone(), kek),
        grace_ms: i64::try_from(settings.order_notice_grace_ms).unwrap_or(i64::MAX),
    };
    relay_named::<OrderNotice, _>(
        M::NAME,
        performer,
        context.store,
        source.partitions,
        context.shutdown,
    )
    .await?;
    Ok(())
}

/// The relay of the notices of `orders.events`.
pub fn run_orders_relay(domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(run_relay::<OrderNotices>(ORDERS_RELAY, domain, context))
}

/// The relay of the notices of `payments.events`.
pub fn run_payments_relay(domain: &'static str, context: RoleContext) -> RoleFuture {
    Box::pin(run_relay::<RefundNotices>(PAYMENTS_RELAY, domain, context))
}
