//! The notify field mapping: domain ↔ wire. [`NotifyWire`] declares it to
//! the platform, which derives deciding, stamping and folding from it.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::notify as wire;
use foldline_contracts::record::{invalid_field as field, CommandRecord, EventRecord, WireError};
use foldline_eventsourcing::Timestamp;
use foldline_platform::DomainWire;

use crate::domain::{
    Attempt, Channel, Delivery, NotificationCommand, NotificationEvent, NotificationId,
    Notifications, Parameters, ProviderName, Reason, Recipient, Template,
};

/// The notify domain as the platform runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotifyWire;

impl DomainWire for NotifyWire {
    type Decider = Notifications;
    type Commands = wire::NotifyCommandRecord;
    type Events = wire::NotifyEventRecord;

    fn command_from_wire(record: &Self::Commands) -> Result<NotificationCommand, WireError> {
        command_from_wire(record)
    }

    fn event_to_wire(event: &NotificationEvent, metadata: EventMetadata) -> Self::Events {
        event_to_wire(event, metadata)
    }

    fn event_from_wire(record: &Self::Events) -> Result<NotificationEvent, WireError> {
        event_from_wire(record)
    }
}

fn notification_id(name: &'static str, text: &str) -> Result<NotificationId, WireError> {
    field(name, NotificationId::parse(text))
}

fn provider(name: &'static str, text: &str) -> Result<ProviderName, WireError> {
    field(name, ProviderName::parse(text))
}

fn reason(text: &str) -> Result<Reason, WireError> {
    field("reason", Reason::parse(text))
}

fn attempt(number: i32) -> Result<Attempt, WireError> {
    field("attempt", Attempt::new(i64::from(number)))
}

fn wire_attempt(attempt: Attempt) -> i32 {
    i32::try_from(attempt.number()).unwrap_or(i32::MAX)
}

fn non_negative(name: &'static str, value: i64) -> Result<u64, WireError> {
    field(
        name,
        u64::try_from(value).map_err(|_| "must not be negative"),
    )
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The parts of a queued notification, read from any record carrying them.
#[derive(Debug)]
pub struct Request {
    pub channel: Channel,
    pub recipient: Recipient,
    pub template: Template,
    pub parameters: Parameters,
}

pub fn request_from_wire(
    channel: &str,
    recipient: &str,
    template: &str,
    parameters: &[wire::TemplateParameter],
) -> Result<Request, WireError> {
    let channel = field("channel", Channel::parse(channel))?;
    Ok(Request {
        channel,
        recipient: field("recipient", Recipient::parse(channel, recipient))?,
        template: field("template", Template::parse(template))?,
        parameters: field(
            "parameters",
            Parameters::parse(
                parameters
                    .iter()
                    .map(|parameter| (parameter.name.as_str(), parameter.value.as_str())),
            ),
        )?,
    })
}

pub fn parameters_to_wire(parameters: &Parameters) -> Vec<wire::TemplateParameter> {
    parameters
        .iter()
        .map(|(name, value)| wire::TemplateParameter {
            name: name.to_owned(),
            value: value.to_owned(),
        })
        .collect()
}

fn delivery_from_wire(
    attempt_number: i32,
    provider_name: &str,
    latency_ms: i64,
    provider_call_us: i64,
    provider_message_id: &Option<String>,
) -> Result<Delivery, WireError> {
    Ok(Delivery {
        attempt: attempt(attempt_number)?,
        provider: provider("provider", provider_name)?,
        latency_ms: non_negative("latency_ms", latency_ms)?,
        provider_call_us: non_negative("provider_call_us", provider_call_us)?,
        provider_message_id: provider_message_id.clone(),
    })
}

pub fn command_from_wire(
    record: &wire::NotifyCommandRecord,
) -> Result<NotificationCommand, WireError> {
    use wire::NotifyCommandRecord as W;
    let id = notification_id("aggregate_id", record.aggregate_id())?;
    Ok(match record {
        W::Send(send) => {
            let request = request_from_wire(
                &send.channel,
                &send.recipient,
                &send.template,
                &send.parameters,
            )?;
            NotificationCommand::Send {
                notification_id: id,
                channel: request.channel,
                recipient: request.recipient,
                template: request.template,
                parameters: request.parameters,
            }
        }
        W::RecordFailover(failover) => NotificationCommand::RecordFailover {
            notification_id: id,
            attempt: attempt(failover.attempt)?,
            from: provider("from_provider", &failover.from_provider)?,
            to: provider("to_provider", &failover.to_provider)?,
            reason: reason(&failover.reason)?,
        },
        W::RecordSent(sent) => NotificationCommand::RecordSent {
            notification_id: id,
            delivery: delivery_from_wire(
                sent.attempt,
                &sent.provider,
                sent.latency_ms,
                sent.provider_call_us,
                &sent.provider_message_id,
            )?,
        },
        W::RecordAttemptFailed(failed) => NotificationCommand::RecordAttemptFailed {
            notification_id: id,
            attempt: attempt(failed.attempt)?,
            reason: reason(&failed.reason)?,
            retry_at: Timestamp(failed.retry_at),
        },
        W::RecordFailed(failed) => NotificationCommand::RecordFailed {
            notification_id: id,
            attempt: attempt(failed.attempt)?,
            reason: reason(&failed.reason)?,
        },
    })
}

pub fn event_to_wire(
    event: &NotificationEvent,
    metadata: EventMetadata,
) -> wire::NotifyEventRecord {
    use wire::NotifyEventRecord as W;
    match event {
        NotificationEvent::Queued {
            notification_id,
            channel,
            recipient,
            template,
            parameters,
            ..
        } => W::Queued(wire::NotificationQueued {
            metadata,
            notification_id: notification_id.to_string(),
            channel: channel.as_str().to_owned(),
            recipient: recipient.as_str().to_owned(),
            template: template.as_str().to_owned(),
            parameters: parameters_to_wire(parameters),
        }),
        NotificationEvent::ProviderFailedOver {
            notification_id,
            attempt,
            from,
            to,
            reason,
            ..
        } => W::FailedOver(wire::ProviderFailedOver {
            metadata,
            notification_id: notification_id.to_string(),
            attempt: wire_attempt(*attempt),
            from_provider: from.as_str().to_owned(),
            to_provider: to.as_str().to_owned(),
            reason: reason.as_str().to_owned(),
        }),
        NotificationEvent::Sent {
            notification_id,
            delivery,
            ..
        } => W::Sent(wire::NotificationSent {
            metadata,
            notification_id: notification_id.to_string(),
            attempt: wire_attempt(delivery.attempt),
            provider: delivery.provider.as_str().to_owned(),
            latency_ms: saturating(delivery.latency_ms),
            provider_call_us: saturating(delivery.provider_call_us),
            provider_message_id: delivery.provider_message_id.clone(),
        }),
        NotificationEvent::AttemptFailed {
            notification_id,
            attempt,
            reason,
            retry_at,
            ..
        } => W::AttemptFailed(wire::NotificationAttemptFailed {
            metadata,
            notification_id: notification_id.to_string(),
            attempt: wire_attempt(*attempt),
            reason: reason.as_str().to_owned(),
            retry_at: retry_at.millis(),
        }),
        NotificationEvent::Failed {
            notification_id,
            attempt,
            reason,
            ..
        } => W::Failed(wire::NotificationFailed {
            metadata,
            notification_id: notification_id.to_string(),
            attempt: wire_attempt(*attempt),
            reason: reason.as_str().to_owned(),
        }),
    }
}

pub fn event_from_wire(record: &wire::NotifyEventRecord) -> Result<NotificationEvent, WireError> {
    use wire::NotifyEventRecord as W;
    let at = Timestamp(record.metadata().occurred_at);
    Ok(match record {
        W::Queued(queued) => {
            let request = request_from_wire(
                &queued.channel,
                &queued.recipient,
                &queued.template,
                &queued.parameters,
            )?;
            NotificationEvent::Queued {
                notification_id: notification_id("notification_id", &queued.notification_id)?,
                channel: request.channel,
                recipient: request.recipient,
                template: request.template,
                parameters: request.parameters,
                at,
            }
        }
        W::FailedOver(failover) => NotificationEvent::ProviderFailedOver {
            notification_id: notification_id("notification_id", &failover.notification_id)?,
            attempt: attempt(failover.attempt)?,
            from: provider("from_provider", &failover.from_provider)?,
            to: provider("to_provider", &failover.to_provider)?,
            reason: reason(&failover.reason)?,
            at,
        },
        W::Sent(sent) => NotificationEvent::Sent {
            notification_id: notification_id("notification_id", &sent.notification_id)?,
            delivery: delivery_from_wire(
                sent.attempt,
                &sent.provider,
                sent.latency_ms,
                sent.provider_call_us,
                &sent.provider_message_id,
            )?,
            at,
        },
        W::AttemptFailed(failed) => NotificationEvent::AttemptFailed {
            notification_id: notification_id("notification_id", &failed.notification_id)?,
            attempt: attempt(failed.attempt)?,
            reason: reason(&failed.reason)?,
            retry_at: Timestamp(failed.retry_at),
            at,
        },
        W::Failed(failed) => NotificationEvent::Failed {
            notification_id: notification_id("notification_id", &failed.notification_id)?,
            attempt: attempt(failed.attempt)?,
            reason: reason(&failed.reason)?,
            at,
        },
        W::CommandRejected(_) => {
            return Err(WireError::UnknownRecord {
                record: "foldline.CommandRejected".to_owned(),
            })
        }
    })
}
