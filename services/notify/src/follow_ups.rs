//! What an admitted notify event obliges the delivery worker to do (pure):
//! a queued notification is delivered. Everything after the first attempt
//! travels through `notify.retry`, not the outbox, so a failing provider
//! never holds a partition (see `design.md`).

use foldline_contracts::envelope::EventMetadata;
use foldline_platform::gated::Admitted;
use foldline_platform::outbox::Reactor;
use serde::{Deserialize, Serialize};

use crate::domain::{Attempt, NotificationEvent};
use crate::providers::Message;
use crate::wire::NotifyWire;

/// One delivery to make: the message, which attempt, and the event that
/// queued it (every command the attempt records derives its id from it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverNotification {
    pub cause: EventMetadata,
    pub message: Message,
    pub attempt: Attempt,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct NotifyFollowUps;

impl Reactor for NotifyFollowUps {
    type Wire = NotifyWire;
    type FollowUp = DeliverNotification;
    const NAME: &'static str = "deliveries";

    fn react(&self, admitted: &Admitted<'_, NotifyWire>) -> Vec<DeliverNotification> {
        follow_ups(admitted.event, admitted.metadata)
    }
}

/// The follow-ups of one admitted event. Pure.
pub fn follow_ups(event: &NotificationEvent, cause: &EventMetadata) -> Vec<DeliverNotification> {
    match event {
        NotificationEvent::Queued {
            notification_id,
            channel,
            recipient,
            template,
            parameters,
            ..
        } => vec![DeliverNotification {
            cause: cause.clone(),
            message: Message {
                notification_id: *notification_id,
                channel: *channel,
                recipient: recipient.clone(),
                template: template.clone(),
                parameters: parameters.clone(),
            },
            attempt: Attempt::FIRST,
        }],
        NotificationEvent::ProviderFailedOver { .. }
        | NotificationEvent::Sent { .. }
        | NotificationEvent::AttemptFailed { .. }
        | NotificationEvent::Failed { .. } => Vec::new(),
    }
}
