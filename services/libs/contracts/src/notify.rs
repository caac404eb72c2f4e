//! Notify commands (on `notify.commands`), events (on `notify.events`) and
//! the delayed-attempt record of `notify.retry`.
//!
//! Every stream is one notification, keyed by its UUID. The client's
//! `SendNotification` queues it; everything after is recorded by the
//! delivery worker as commands back, their ids derived from the event
//! that queued the notification (`<attempt>/sent`, `<attempt>/failed`…),
//! so performing a delivery step twice records it once.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::{CommandMetadata, EventMetadata};

/// The templates of the notices notify sends about orders (confirmed,
/// rejected, refunded), caused by an orders or payments event: their
/// `NotificationQueued` carries that event's time (the command's clock is
/// its cause's), which is how analytics measures order → notification.
pub const ORDER_NOTICE_TEMPLATES: [&str; 3] =
    ["order.confirmed", "order.rejected", "order.refunded"];

/// One template parameter (ordered by name on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct TemplateParameter {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct SendNotification {
    pub metadata: CommandMetadata,
    /// The notification id.
    pub aggregate_id: String,
    /// `email`, `sms` or `webhook`.
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub parameters: Vec<TemplateParameter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct RecordProviderFailover {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub attempt: i32,
    pub from_provider: String,
    pub to_provider: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct RecordNotificationSent {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub attempt: i32,
    pub provider: String,
    /// Milliseconds from the request (the queueing command's issue time)
    /// to the provider accepting it.
    pub latency_ms: i64,
    /// Microseconds the accepting provider call took.
    pub provider_call_us: i64,
    pub provider_message_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct RecordAttemptFailed {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub attempt: i32,
    pub reason: String,
    /// When the next attempt is due (ms since the epoch).
    pub retry_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct RecordNotificationFailed {
    pub metadata: CommandMetadata,
    pub aggregate_id: String,
    pub attempt: i32,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct NotificationQueued {
    pub metadata: EventMetadata,
    pub notification_id: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub parameters: Vec<TemplateParameter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct ProviderFailedOver {
    pub metadata: EventMetadata,
    pub notification_id: String,
    pub attempt: i32,
    pub from_provider: String,
    pub to_provider: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct NotificationSent {
    pub metadata: EventMetadata,
    pub notification_id: String,
    pub attempt: i32,
    pub provider: String,
    pub latency_ms: i64,
    pub provider_call_us: i64,
    pub provider_message_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct NotificationAttemptFailed {
    pub metadata: EventMetadata,
    pub notification_id: String,
    pub attempt: i32,
    pub reason: String,
    pub retry_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct NotificationFailed {
    pub metadata: EventMetadata,
    pub notification_id: String,
    pub attempt: i32,
    pub reason: String,
}

/// A delivery attempt put off (`notify.retry`): the failed attempt, why,
/// and when the next one is due. `permanent` means no further attempt may
/// be made (a provider refused the message itself): it goes to
/// `notify.dlq` at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.notify")]
pub struct NotificationRetry {
    /// The `NotificationQueued` event every delivery step derives its
    /// command ids from.
    pub cause: EventMetadata,
    pub notification_id: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub parameters: Vec<TemplateParameter>,
    pub failed_attempt: i32,
    pub reason: String,
    pub permanent: bool,
    pub not_before: i64,
}

impl NotificationRetry {
    pub const RECORD_NAME: &'static str = "foldline.notify.NotificationRetry";
}

crate::command_union! {
    /// Any record of `notify.commands`.
    pub enum NotifyCommandRecord aggregate_id = aggregate_id {
        Send(SendNotification) = "foldline.notify.SendNotification",
        RecordFailover(RecordProviderFailover) = "foldline.notify.RecordProviderFailover",
        RecordSent(RecordNotificationSent) = "foldline.notify.RecordNotificationSent",
        RecordAttemptFailed(RecordAttemptFailed) = "foldline.notify.RecordAttemptFailed",
        RecordFailed(RecordNotificationFailed) = "foldline.notify.RecordNotificationFailed",
    }
}

crate::event_union! {
    /// Any record of `notify.events`.
    pub enum NotifyEventRecord {
        Queued(NotificationQueued) = "foldline.notify.NotificationQueued",
        FailedOver(ProviderFailedOver) = "foldline.notify.ProviderFailedOver",
        Sent(NotificationSent) = "foldline.notify.NotificationSent",
        AttemptFailed(NotificationAttemptFailed) = "foldline.notify.NotificationAttemptFailed",
        Failed(NotificationFailed) = "foldline.notify.NotificationFailed",
    }
}
