//! The notify read models, as a pure projection of admitted `notify.events`.
//!
//! Tables (Scylla-shaped: partition key, clustering key):
//! - `notification_by_id` (notification id, —): the notification as the log
//!   made it, with its attempts, failovers and delivery;
//! - `notifications_by_recipient` (recipient, newest first): the
//!   notification ids sent to one address;
//! - `notify_latency_samples` (channel + provider, notification id): the
//!   request → provider accepted latency of each delivery, from
//!   `NotificationSent`; the latency route folds them into HdrHistograms,
//!   so the figures survive restarts and replay to the same values. One row
//!   per notification, because a row may only ever be written from one log
//!   partition (the store's position guard keeps the highest offset's write:
//!   a running total fed by six partitions would drop increments);
//! - `notify_latency_providers` (channel, provider): which providers have
//!   samples (its value never changes, so the guard cannot lose anything).

use foldline_contracts::envelope::EventMetadata;
use foldline_eventsourcing::Decider;
use foldline_platform::gated::{json_row, read_json_row, Admitted, DomainProjection};
use foldline_platform::projector::{CurrentRows, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, Notification, NotificationEvent, NotificationState, Notifications};
use crate::latency::Sample;
use crate::wire::NotifyWire;

pub const NOTIFICATION_BY_ID: &str = "notification_by_id";
pub const NOTIFICATIONS_BY_RECIPIENT: &str = "notifications_by_recipient";
pub const NOTIFY_LATENCY_SAMPLES: &str = "notify_latency_samples";
pub const NOTIFY_LATENCY_PROVIDERS: &str = "notify_latency_providers";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationRow {
    pub version: u64,
    pub notification: Notification,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientRow {
    pub notification_id: String,
    pub queued_at: i64,
}

pub fn notification_key(notification_id: &str) -> RowKey {
    RowKey::new(
        NOTIFICATION_BY_ID,
        notification_id.as_bytes().to_vec(),
        Vec::new(),
    )
}

pub fn recipient_partition(recipient: &str) -> Vec<u8> {
    recipient.as_bytes().to_vec()
}

/// Newest first: the clustering key counts down from the end of time.
pub fn recipient_key(recipient: &str, queued_at: i64, notification_id: &str) -> RowKey {
    let mut clustering = (i64::MAX - queued_at.max(0)).to_be_bytes().to_vec();
    clustering.extend_from_slice(notification_id.as_bytes());
    RowKey::new(
        NOTIFICATIONS_BY_RECIPIENT,
        recipient_partition(recipient),
        clustering,
    )
}

pub fn providers_partition(channel: Channel) -> Vec<u8> {
    channel.as_str().as_bytes().to_vec()
}

pub fn provider_key(channel: Channel, provider: &str) -> RowKey {
    RowKey::new(
        NOTIFY_LATENCY_PROVIDERS,
        providers_partition(channel),
        provider.as_bytes().to_vec(),
    )
}

pub fn samples_partition(channel: Channel, provider: &str) -> Vec<u8> {
    let mut partition = channel.as_str().as_bytes().to_vec();
    partition.push(0);
    partition.extend_from_slice(provider.as_bytes());
    partition
}

pub fn sample_key(channel: Channel, provider: &str, notification_id: &str) -> RowKey {
    RowKey::new(
        NOTIFY_LATENCY_SAMPLES,
        samples_partition(channel, provider),
        notification_id.as_bytes().to_vec(),
    )
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NotifyProjection;

impl DomainProjection for NotifyProjection {
    type Wire = NotifyWire;
    const NAME: &'static str = "notify";

    fn rows_to_read(&self, _event: &NotificationEvent, metadata: &EventMetadata) -> Vec<RowKey> {
        vec![notification_key(&metadata.aggregate_id)]
    }

    fn project(
        &self,
        admitted: &Admitted<'_, NotifyWire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let key = notification_key(&admitted.metadata.aggregate_id);
        let state = read_json_row::<NotificationRow>(&key, current)?
            .map_or(NotificationState::Empty, |row| {
                NotificationState::Notification(Box::new(row.notification))
            });
        let NotificationState::Notification(notification) =
            Notifications::evolve(state, admitted.event)
        else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        if let NotificationEvent::Queued { at, .. } = admitted.event {
            let index = RecipientRow {
                notification_id: admitted.metadata.aggregate_id.clone(),
                queued_at: at.millis(),
            };
            rows.push((
                recipient_key(
                    notification.recipient.as_str(),
                    at.millis(),
                    &admitted.metadata.aggregate_id,
                ),
                json_row(NOTIFICATIONS_BY_RECIPIENT, admitted.offset, &index)?,
            ));
        }
        if let NotificationEvent::Sent { delivery, .. } = admitted.event {
            let provider = delivery.provider.as_str();
            let sample = Sample {
                latency_ms: delivery.latency_ms,
                provider_call_us: delivery.provider_call_us,
            };
            rows.push((
                sample_key(
                    notification.channel,
                    provider,
                    &admitted.metadata.aggregate_id,
                ),
                json_row(NOTIFY_LATENCY_SAMPLES, admitted.offset, &sample)?,
            ));
            rows.push((
                provider_key(notification.channel, provider),
                json_row(NOTIFY_LATENCY_PROVIDERS, admitted.offset, &())?,
            ));
        }
        let row = NotificationRow {
            version: admitted.version,
            notification: *notification,
        };
        rows.push((key, json_row(NOTIFICATION_BY_ID, admitted.offset, &row)?));
        Ok(rows)
    }
}
