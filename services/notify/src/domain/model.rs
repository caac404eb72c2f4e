//! Commands, events, state and rejections of a notification stream.

use foldline_eventsourcing::{Rejection, RejectionKind, Timestamp};
use serde::{Deserialize, Serialize};

use super::values::{
    Attempt, Channel, NotificationId, Parameters, ProviderName, Reason, Recipient, Template,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotificationCommand {
    /// A client asks for a notification (the only client command).
    Send {
        notification_id: NotificationId,
        channel: Channel,
        recipient: Recipient,
        template: Template,
        parameters: Parameters,
    },
    /// The worker moved an attempt from one provider to the next in the
    /// channel's chain (the first was failing, or its breaker was open).
    RecordFailover {
        notification_id: NotificationId,
        attempt: Attempt,
        from: ProviderName,
        to: ProviderName,
        reason: Reason,
    },
    /// A provider accepted the notification.
    RecordSent {
        notification_id: NotificationId,
        delivery: Delivery,
    },
    /// Every provider of the chain failed this attempt; another is due.
    RecordAttemptFailed {
        notification_id: NotificationId,
        attempt: Attempt,
        reason: Reason,
        retry_at: Timestamp,
    },
    /// The last attempt failed, or a provider refused the message itself.
    RecordFailed {
        notification_id: NotificationId,
        attempt: Attempt,
        reason: Reason,
    },
}

/// How a notification was delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub attempt: Attempt,
    pub provider: ProviderName,
    /// Request (the send's issue time) to provider accepted.
    pub latency_ms: u64,
    /// The accepting provider call alone.
    pub provider_call_us: u64,
    pub provider_message_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationEvent {
    Queued {
        notification_id: NotificationId,
        channel: Channel,
        recipient: Recipient,
        template: Template,
        parameters: Parameters,
        at: Timestamp,
    },
    ProviderFailedOver {
        notification_id: NotificationId,
        attempt: Attempt,
        from: ProviderName,
        to: ProviderName,
        reason: Reason,
        at: Timestamp,
    },
    Sent {
        notification_id: NotificationId,
        delivery: Delivery,
        at: Timestamp,
    },
    AttemptFailed {
        notification_id: NotificationId,
        attempt: Attempt,
        reason: Reason,
        retry_at: Timestamp,
        at: Timestamp,
    },
    Failed {
        notification_id: NotificationId,
        attempt: Attempt,
        reason: Reason,
        at: Timestamp,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt failed; the next is due at `retry_at`.
    Retrying,
    /// A provider accepted it: final.
    Sent,
    /// No provider took it and no attempt is left: final.
    Failed,
}

impl NotificationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self, Self::Sent | Self::Failed)
    }
}

/// One move from a provider to the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    pub attempt: Attempt,
    pub from: ProviderName,
    pub to: ProviderName,
    pub reason: Reason,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub notification_id: NotificationId,
    pub channel: Channel,
    pub recipient: Recipient,
    pub template: Template,
    pub parameters: Parameters,
    pub status: NotificationStatus,
    pub queued_at: Timestamp,
    pub updated_at: Timestamp,
    /// Attempts recorded as failed so far.
    pub failed_attempts: u32,
    pub retry_at: Option<Timestamp>,
    pub last_failure: Option<Reason>,
    pub failovers: Vec<Failover>,
    pub delivery: Option<Delivery>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationState {
    #[default]
    Empty,
    Notification(Box<Notification>),
}

impl NotificationState {
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Self::Empty => None,
            Self::Notification(notification) => Some(notification.as_ref()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyRejection {
    #[error("notification {0} exists already")]
    NotificationExists(NotificationId),
    #[error("notification {0} does not exist")]
    NotFound(NotificationId),
    #[error("notification {id} is {status} already")]
    Settled {
        id: NotificationId,
        status: &'static str,
    },
    #[error("attempt {attempt} is out of order: attempt {expected} is the next")]
    StaleAttempt { attempt: u32, expected: u32 },
    #[error("a failover moves to another provider, not to {0}")]
    SameProvider(ProviderName),
}

impl Rejection for NotifyRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::NotificationExists(_) => "notification_exists",
            Self::NotFound(_) => "notification_not_found",
            Self::Settled { .. } => "notification_settled",
            Self::StaleAttempt { .. } => "stale_attempt",
            Self::SameProvider(_) => "same_provider",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotificationExists(_) | Self::Settled { .. } | Self::StaleAttempt { .. } => {
                RejectionKind::Conflict
            }
            Self::NotFound(_) => RejectionKind::NotFound,
            Self::SameProvider(_) => RejectionKind::Invalid,
        }
    }
}
