//! [`Notifications`]: the decider of a notification stream.
//!
//! queued ─▶ (failed over)* ─▶ sent
//!    │                         ▲
//!    └──▶ attempt failed ──────┤ (retrying, attempts in order)
//!                 └────────────┴──▶ failed
//!
//! Sent and failed are final: a late report of another attempt (a crash
//! re-performed one) is refused as `notification_settled`, so the log
//! records one outcome per notification whatever the worker repeated.

use foldline_eventsourcing::{Decider, DecisionContext};

use super::model::{
    Failover, Notification, NotificationCommand, NotificationEvent, NotificationState,
    NotificationStatus, NotifyRejection,
};
use super::values::NotificationId;

#[derive(Debug)]
pub struct Notifications;

fn open(state: &NotificationState, id: NotificationId) -> Result<&Notification, NotifyRejection> {
    let notification = state.notification().ok_or(NotifyRejection::NotFound(id))?;
    match notification.status.is_final() {
        true => Err(NotifyRejection::Settled {
            id,
            status: notification.status.as_str(),
        }),
        false => Ok(notification),
    }
}

fn next_attempt(notification: &Notification) -> u32 {
    notification.failed_attempts.saturating_add(1)
}

impl Decider for Notifications {
    type State = NotificationState;
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Rejection = NotifyRejection;

    fn decide(
        state: &NotificationState,
        command: &NotificationCommand,
        context: &DecisionContext,
    ) -> Result<NotificationEvent, NotifyRejection> {
        let at = context.now;
        match command {
            NotificationCommand::Send {
                notification_id,
                channel,
                recipient,
                template,
                parameters,
            } => match state {
                NotificationState::Notification(_) => {
                    Err(NotifyRejection::NotificationExists(*notification_id))
                }
                NotificationState::Empty => Ok(NotificationEvent::Queued {
                    notification_id: *notification_id,
                    channel: *channel,
                    recipient: recipient.clone(),
                    template: template.clone(),
                    parameters: parameters.clone(),
                    at,
                }),
            },
            NotificationCommand::RecordFailover {
                notification_id,
                attempt,
                from,
                to,
                reason,
            } => {
                open(state, *notification_id)?;
                if from == to {
                    return Err(NotifyRejection::SameProvider(to.clone()));
                }
                Ok(NotificationEvent::ProviderFailedOver {
                    notification_id: *notification_id,
                    attempt: *attempt,
                    from: from.clone(),
                    to: to.clone(),
                    reason: reason.clone(),
                    at,
                })
            }
            NotificationCommand::RecordSent {
                notification_id,
                delivery,
            } => {
                // Any attempt may succeed late (a crash re-performed it):
                // the provider took it, so it is recorded.
                open(state, *notification_id)?;
                Ok(NotificationEvent::Sent {
                    notification_id: *notification_id,
                    delivery: delivery.clone(),
                    at,
                })
            }
            NotificationCommand::RecordAttemptFailed {
                notification_id,
                attempt,
                reason,
                retry_at,
            } => {
                let notification = open(state, *notification_id)?;
                let expected = next_attempt(notification);
                if attempt.number() != expected {
                    return Err(NotifyRejection::StaleAttempt {
                        attempt: attempt.number(),
                        expected,
                    });
                }
                Ok(NotificationEvent::AttemptFailed {
                    notification_id: *notification_id,
                    attempt: *attempt,
                    reason: reason.clone(),
                    retry_at: *retry_at,
                    at,
                })
            }
            NotificationCommand::RecordFailed {
                notification_id,
                attempt,
                reason,
            } => {
                let notification = open(state, *notification_id)?;
                let expected = next_attempt(notification);
                if attempt.number() < expected {
                    return Err(NotifyRejection::StaleAttempt {
                        attempt: attempt.number(),
                        expected,
                    });
                }
                Ok(NotificationEvent::Failed {
                    notification_id: *notification_id,
                    attempt: *attempt,
                    reason: reason.clone(),
                    at,
                })
            }
        }
    }

    fn evolve(state: NotificationState, event: &NotificationEvent) -> NotificationState {
        if let NotificationEvent::Queued {
            notification_id,
            channel,
            recipient,
            template,
            parameters,
            at,
        } = event
        {
            return NotificationState::Notification(Box::new(Notification {
                notification_id: *notification_id,
                channel: *channel,
                recipient: recipient.clone(),
                template: template.clone(),
                parameters: parameters.clone(),
                status: NotificationStatus::Queued,
                queued_at: *at,
                updated_at: *at,
                failed_attempts: 0,
                retry_at: None,
                last_failure: None,
                failovers: Vec::new(),
                delivery: None,
            }));
        }
        let NotificationState::Notification(mut notification) = state else {
            // Only a queued stream has later events: nothing else was
            // decided against an empty one.
            return state;
        };
        match event {
            NotificationEvent::Queued { .. } => {}
            NotificationEvent::ProviderFailedOver {
                attempt,
                from,
                to,
                reason,
                at,
                ..
            } => {
                notification.failovers.push(Failover {
                    attempt: *attempt,
                    from: from.clone(),
                    to: to.clone(),
                    reason: reason.clone(),
                    at: *at,
                });
                notification.updated_at = *at;
            }
            NotificationEvent::Sent { delivery, at, .. } => {
                notification.status = NotificationStatus::Sent;
                notification.delivery = Some(delivery.clone());
                notification.retry_at = None;
                notification.updated_at = *at;
            }
            NotificationEvent::AttemptFailed {
                attempt,
                reason,
                retry_at,
                at,
                ..
            } => {
                notification.status = NotificationStatus::Retrying;
                notification.failed_attempts = attempt.number();
                notification.retry_at = Some(*retry_at);
                notification.last_failure = Some(reason.clone());
                notification.updated_at = *at;
            }
            NotificationEvent::Failed {
                attempt,
                reason,
                at,
                ..
            } => {
                notification.status = NotificationStatus::Failed;
                notification.failed_attempts = attempt.number();
                notification.retry_at = None;
                notification.last_failure = Some(reason.clone());
                notification.updated_at = *at;
            }
        }
        NotificationState::Notification(notification)
    }
}
