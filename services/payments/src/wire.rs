//! The payments field mapping: domain ↔ wire. [`PaymentsWire`] declares it
//! to the platform, which derives deciding, stamping and folding from it.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::payments as wire;
use foldline_contracts::record::{invalid_field as field, WireError};
use foldline_platform::DomainWire;

use crate::domain::{
    Amount, CardToken, Currency, CustomerId, DeclineCode, Note, OrderId, PaymentCommand,
    PaymentEvent, PaymentId, PaymentTerms, Payments, ProviderReference, RefundId,
};

/// The payments domain as the platform runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct PaymentsWire;

impl DomainWire for PaymentsWire {
    type Decider = Payments;
    type Commands = wire::PaymentsCommandRecord;
    type Events = wire::PaymentsEventRecord;

    fn command_from_wire(record: &Self::Commands) -> Result<PaymentCommand, WireError> {
        command_from_wire(record)
    }

    fn event_to_wire(event: &PaymentEvent, metadata: EventMetadata) -> Self::Events {
        event_to_wire(event, metadata)
    }

    fn event_from_wire(record: &Self::Events) -> Result<PaymentEvent, WireError> {
        event_from_wire(record)
    }
}

fn payment_id(text: &str) -> Result<PaymentId, WireError> {
    field("payment_id", PaymentId::parse(text))
}

fn order_id(text: &str) -> Result<OrderId, WireError> {
    field("order_id", OrderId::parse(text))
}

fn refund_id(text: &str) -> Result<RefundId, WireError> {
    field("refund_id", RefundId::parse(text))
}

fn amount(minor_units: i64) -> Result<Amount, WireError> {
    field("amount", Amount::new(minor_units))
}

fn currency(text: &str) -> Result<Currency, WireError> {
    field("currency", Currency::parse(text))
}

fn note(name: &'static str, text: &str) -> Result<Note, WireError> {
    field(name, Note::parse(text))
}

fn reference(name: &'static str, text: &str) -> Result<ProviderReference, WireError> {
    field(name, ProviderReference::parse(text))
}

fn optional_reference(text: &Option<String>) -> Result<Option<ProviderReference>, WireError> {
    text.as_deref()
        .map(|text| reference("provider_reference", text))
        .transpose()
}

fn decline_code(text: &str) -> Result<DeclineCode, WireError> {
    field("code", DeclineCode::parse(text))
}

fn terms(
    payment: &str,
    order: &str,
    customer: &str,
    minor_units: i64,
    currency_code: &str,
    card_token: &str,
) -> Result<PaymentTerms, WireError> {
    Ok(PaymentTerms {
        payment_id: payment_id(payment)?,
        order_id: order_id(order)?,
        customer_id: field("customer_id", CustomerId::parse(customer))?,
        amount: amount(minor_units)?,
        currency: currency(currency_code)?,
        card_token: field("card_token", CardToken::parse(card_token))?,
    })
}

pub fn command_from_wire(
    record: &wire::PaymentsCommandRecord,
) -> Result<PaymentCommand, WireError> {
    use wire::PaymentsCommandRecord as W;
    Ok(match record {
        W::Authorize(authorize) => PaymentCommand::Authorize(terms(
            &authorize.payment_id,
            &authorize.order_id,
            &authorize.customer_id,
            authorize.amount,
            &authorize.currency,
            &authorize.card_token,
        )?),
        W::RecordAuthorization(answer) => PaymentCommand::RecordAuthorization {
            payment_id: payment_id(&answer.payment_id)?,
            provider_reference: reference("provider_reference", &answer.provider_reference)?,
        },
        W::RecordDecline(answer) => PaymentCommand::RecordDecline {
            payment_id: payment_id(&answer.payment_id)?,
            code: decline_code(&answer.code)?,
            reason: note("reason", &answer.reason)?,
            provider_reference: optional_reference(&answer.provider_reference)?,
        },
        W::Capture(capture) => PaymentCommand::Capture {
            payment_id: payment_id(&capture.payment_id)?,
        },
        W::RecordCapture(answer) => PaymentCommand::RecordCapture {
            payment_id: payment_id(&answer.payment_id)?,
            provider_reference: reference("provider_reference", &answer.provider_reference)?,
        },
        W::RecordCaptureFailure(answer) => PaymentCommand::RecordCaptureFailure {
            payment_id: payment_id(&answer.payment_id)?,
            reason: note("reason", &answer.reason)?,
        },
        W::Refund(refund) => PaymentCommand::Refund {
            payment_id: payment_id(&refund.payment_id)?,
            refund_id: refund_id(&refund.refund_id)?,
            amount: amount(refund.amount)?,
            reason: note("reason", &refund.reason)?,
        },
        W::RecordRefund(answer) => PaymentCommand::RecordRefund {
            payment_id: payment_id(&answer.payment_id)?,
            refund_id: refund_id(&answer.refund_id)?,
            provider_reference: reference("provider_reference", &answer.provider_reference)?,
        },
        W::RecordRefundFailure(answer) => PaymentCommand::RecordRefundFailure {
            payment_id: payment_id(&answer.payment_id)?,
            refund_id: refund_id(&answer.refund_id)?,
            reason: note("reason", &answer.reason)?,
        },
        W::Void(void) => PaymentCommand::Void {
            payment_id: payment_id(&void.payment_id)?,
            reason: note("reason", &void.reason)?,
        },
        W::RecordVoid(answer) => PaymentCommand::RecordVoid {
            payment_id: payment_id(&answer.payment_id)?,
            provider_reference: reference("provider_reference", &answer.provider_reference)?,
        },
        W::RecordVoidFailure(answer) => PaymentCommand::RecordVoidFailure {
            payment_id: payment_id(&answer.payment_id)?,
            reason: note("reason", &answer.reason)?,
        },
    })
}

fn text(value: &impl AsText) -> String {
    value.text().to_owned()
}

trait AsText {
    fn text(&self) -> &str;
}

impl AsText for Note {
    fn text(&self) -> &str {
        self.as_str()
    }
}

impl AsText for ProviderReference {
    fn text(&self) -> &str {
        self.as_str()
    }
}

impl AsText for Currency {
    fn text(&self) -> &str {
        self.as_str()
    }
}

pub fn event_to_wire(event: &PaymentEvent, metadata: EventMetadata) -> wire::PaymentsEventRecord {
    use wire::PaymentsEventRecord as W;
    match event {
        PaymentEvent::Requested(terms) => W::Requested(wire::PaymentRequested {
            metadata,
            payment_id: terms.payment_id.to_string(),
            order_id: terms.order_id.to_string(),
            customer_id: terms.customer_id.to_string(),
            amount: terms.amount.minor_units(),
            currency: text(&terms.currency),
            card_token: terms.card_token.as_str().to_owned(),
        }),
        PaymentEvent::Authorized {
            payment_id,
            order_id,
            amount,
            currency,
            provider_reference,
        } => W::Authorized(wire::PaymentAuthorized {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            amount: amount.minor_units(),
            currency: text(currency),
            provider_reference: text(provider_reference),
        }),
        PaymentEvent::Declined {
            payment_id,
            order_id,
            code,
            reason,
            provider_reference,
        } => W::Declined(wire::PaymentDeclined {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            code: code.as_str().to_owned(),
            reason: text(reason),
            provider_reference: provider_reference.as_ref().map(text),
        }),
        PaymentEvent::CaptureRequested {
            payment_id,
            order_id,
            amount,
            currency,
            authorization,
        } => W::CaptureRequested(wire::CaptureRequested {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            amount: amount.minor_units(),
            currency: text(currency),
            provider_reference: text(authorization),
        }),
        PaymentEvent::Captured {
            payment_id,
            order_id,
            amount,
            currency,
            provider_reference,
        } => W::Captured(wire::PaymentCaptured {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            amount: amount.minor_units(),
            currency: text(currency),
            provider_reference: text(provider_reference),
        }),
        PaymentEvent::CaptureFailed {
            payment_id,
            order_id,
            reason,
        } => W::CaptureFailed(wire::CaptureFailed {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            reason: text(reason),
        }),
        PaymentEvent::RefundRequested {
            payment_id,
            order_id,
            refund_id,
            amount,
            currency,
            reason,
            capture,
        } => W::RefundRequested(wire::RefundRequested {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            refund_id: refund_id.to_string(),
            amount: amount.minor_units(),
            currency: text(currency),
            reason: text(reason),
            provider_reference: text(capture),
        }),
        PaymentEvent::RefundIssued {
            payment_id,
            order_id,
            refund_id,
            amount,
            currency,
            provider_reference,
            refunded_total,
            fully_refunded,
        } => W::RefundIssued(wire::RefundIssued {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            refund_id: refund_id.to_string(),
            amount: amount.minor_units(),
            currency: text(currency),
            provider_reference: text(provider_reference),
            refunded_total: *refunded_total,
            fully_refunded: *fully_refunded,
        }),
        PaymentEvent::RefundFailed {
            payment_id,
            order_id,
            refund_id,
            amount,
            reason,
        } => W::RefundFailed(wire::RefundFailed {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            refund_id: refund_id.to_string(),
            amount: amount.minor_units(),
            reason: text(reason),
        }),
        PaymentEvent::VoidRequested {
            payment_id,
            order_id,
            reason,
            authorization,
        } => W::VoidRequested(wire::VoidRequested {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            reason: text(reason),
            provider_reference: text(authorization),
        }),
        PaymentEvent::Voided {
            payment_id,
            order_id,
            reason,
            provider_reference,
        } => W::Voided(wire::AuthorizationVoided {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            reason: text(reason),
            provider_reference: text(provider_reference),
        }),
        PaymentEvent::VoidFailed {
            payment_id,
            order_id,
            reason,
        } => W::VoidFailed(wire::VoidFailed {
            metadata,
            payment_id: payment_id.to_string(),
            order_id: order_id.to_string(),
            reason: text(reason),
        }),
    }
}

pub fn event_from_wire(record: &wire::PaymentsEventRecord) -> Result<PaymentEvent, WireError> {
    use wire::PaymentsEventRecord as W;
    Ok(match record {
        W::Requested(event) => PaymentEvent::Requested(terms(
            &event.payment_id,
            &event.order_id,
            &event.customer_id,
            event.amount,
            &event.currency,
            &event.card_token,
        )?),
        W::Authorized(event) => PaymentEvent::Authorized {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            amount: amount(event.amount)?,
            currency: currency(&event.currency)?,
            provider_reference: reference("provider_reference", &event.provider_reference)?,
        },
        W::Declined(event) => PaymentEvent::Declined {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            code: decline_code(&event.code)?,
            reason: note("reason", &event.reason)?,
            provider_reference: optional_reference(&event.provider_reference)?,
        },
        W::CaptureRequested(event) => PaymentEvent::CaptureRequested {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            amount: amount(event.amount)?,
            currency: currency(&event.currency)?,
            authorization: reference("provider_reference", &event.provider_reference)?,
        },
        W::Captured(event) => PaymentEvent::Captured {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            amount: amount(event.amount)?,
            currency: currency(&event.currency)?,
            provider_reference: reference("provider_reference", &event.provider_reference)?,
        },
        W::CaptureFailed(event) => PaymentEvent::CaptureFailed {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            reason: note("reason", &event.reason)?,
        },
        W::RefundRequested(event) => PaymentEvent::RefundRequested {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            refund_id: refund_id(&event.refund_id)?,
            amount: amount(event.amount)?,
            currency: currency(&event.currency)?,
            reason: note("reason", &event.reason)?,
            capture: reference("provider_reference", &event.provider_reference)?,
        },
        W::RefundIssued(event) => PaymentEvent::RefundIssued {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            refund_id: refund_id(&event.refund_id)?,
            amount: amount(event.amount)?,
            currency: currency(&event.currency)?,
            provider_reference: reference("provider_reference", &event.provider_reference)?,
            refunded_total: event.refunded_total,
            fully_refunded: event.fully_refunded,
        },
        W::RefundFailed(event) => PaymentEvent::RefundFailed {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            refund_id: refund_id(&event.refund_id)?,
            amount: amount(event.amount)?,
            reason: note("reason", &event.reason)?,
        },
        W::VoidRequested(event) => PaymentEvent::VoidRequested {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            reason: note("reason", &event.reason)?,
            authorization: reference("provider_reference", &event.provider_reference)?,
        },
        W::Voided(event) => PaymentEvent::Voided {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            reason: note("reason", &event.reason)?,
            provider_reference: reference("provider_reference", &event.provider_reference)?,
        },
        W::VoidFailed(event) => PaymentEvent::VoidFailed {
            payment_id: payment_id(&event.payment_id)?,
            order_id: order_id(&event.order_id)?,
            reason: note("reason", &event.reason)?,
        },
        W::CommandRejected(_) => {
            return Err(WireError::UnknownRecord {
                record: "foldline.CommandRejected".to_owned(),
            })
        }
    })
}
