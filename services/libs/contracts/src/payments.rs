//! Payments commands (on `payments.commands`) and events (on
//! `payments.events`).
//!
//! One aggregate: a payment, keyed by its UUID (`payment_id`), for one
//! order. Money is integer minor units (cents) with an ISO 4217 currency.
//! Every provider operation is two records: a request command decided into
//! a `*Requested` event, which the provider worker performs, and the
//! provider's answer, recorded as a `Record*` command whose command id
//! derives from the requested event's id (so a re-performed step records
//! the same command, which the processor de-duplicates). See
//! `services/payments/src/design.md`.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::{CommandMetadata, EventMetadata};

/// Hold `amount` on a card for an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct AuthorizePayment {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub customer_id: String,
    /// Minor units (cents), > 0.
    pub amount: i64,
    /// ISO 4217, three upper-case letters.
    pub currency: String,
    /// The provider's token for the card (never a card number).
    pub card_token: String,
}

/// The provider authorized the payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordAuthorization {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    /// The provider's id of the authorization.
    pub provider_reference: String,
}

/// The provider declined, or no answer came within the deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordDecline {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    /// `card_declined`, `insufficient_funds`, `provider_rejected` or `deadline_exceeded`.
    pub code: String,
    pub reason: String,
    pub provider_reference: Option<String>,
}

/// Capture the whole authorized amount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct CapturePayment {
    pub metadata: CommandMetadata,
    pub payment_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordCapture {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordCaptureFailure {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub reason: String,
}

/// Refund part or all of what was captured; never more than what is left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RefundPayment {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    /// UUID naming this refund within the payment.
    pub refund_id: String,
    /// Minor units, > 0.
    pub amount: i64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordRefund {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub refund_id: String,
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordRefundFailure {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub refund_id: String,
    pub reason: String,
}

/// Release an authorization that will not be captured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct VoidAuthorization {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordVoid {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RecordVoidFailure {
    pub metadata: CommandMetadata,
    pub payment_id: String,
    pub reason: String,
}

/// A payment was opened; the provider worker will ask for an authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct PaymentRequested {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount: i64,
    pub currency: String,
    pub card_token: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct PaymentAuthorized {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct PaymentDeclined {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub code: String,
    pub reason: String,
    pub provider_reference: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct CaptureRequested {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    /// The authorization being captured.
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct PaymentCaptured {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    pub provider_reference: String,
}

/// The capture failed for good; the payment is authorized again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct CaptureFailed {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RefundRequested {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub refund_id: String,
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    /// The capture being refunded.
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RefundIssued {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub refund_id: String,
    pub amount: i64,
    pub currency: String,
    pub provider_reference: String,
    /// Everything refunded so far, this refund included.
    pub refunded_total: i64,
    /// Whether the whole captured amount is now refunded.
    pub fully_refunded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct RefundFailed {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub refund_id: String,
    pub amount: i64,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct VoidRequested {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub reason: String,
    /// The authorization being released.
    pub provider_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct AuthorizationVoided {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub reason: String,
    pub provider_reference: String,
}

/// The void failed for good; the payment is authorized again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline.payments")]
pub struct VoidFailed {
    pub metadata: EventMetadata,
    pub payment_id: String,
    pub order_id: String,
    pub reason: String,
}

crate::command_union! {
    /// Any record of `payments.commands`.
    pub enum PaymentsCommandRecord aggregate_id = payment_id {
        Authorize(AuthorizePayment) = "foldline.payments.AuthorizePayment",
        RecordAuthorization(RecordAuthorization) = "foldline.payments.RecordAuthorization",
        RecordDecline(RecordDecline) = "foldline.payments.RecordDecline",
        Capture(CapturePayment) = "foldline.payments.CapturePayment",
        RecordCapture(RecordCapture) = "foldline.payments.RecordCapture",
        RecordCaptureFailure(RecordCaptureFailure) = "foldline.payments.RecordCaptureFailure",
        Refund(RefundPayment) = "foldline.payments.RefundPayment",
        RecordRefund(RecordRefund) = "foldline.payments.RecordRefund",
        RecordRefundFailure(RecordRefundFailure) = "foldline.payments.RecordRefundFailure",
        Void(VoidAuthorization) = "foldline.payments.VoidAuthorization",
        RecordVoid(RecordVoid) = "foldline.payments.RecordVoid",
        RecordVoidFailure(RecordVoidFailure) = "foldline.payments.RecordVoidFailure",
    }
}

crate::event_union! {
    /// Any record of `payments.events`.
    pub enum PaymentsEventRecord {
        Requested(PaymentRequested) = "foldline.payments.PaymentRequested",
        Authorized(PaymentAuthorized) = "foldline.payments.PaymentAuthorized",
        Declined(PaymentDeclined) = "foldline.payments.PaymentDeclined",
        CaptureRequested(CaptureRequested) = "foldline.payments.CaptureRequested",
        Captured(PaymentCaptured) = "foldline.payments.PaymentCaptured",
        CaptureFailed(CaptureFailed) = "foldline.payments.CaptureFailed",
        RefundRequested(RefundRequested) = "foldline.payments.RefundRequested",
        RefundIssued(RefundIssued) = "foldline.payments.RefundIssued",
        RefundFailed(RefundFailed) = "foldline.payments.RefundFailed",
        VoidRequested(VoidRequested) = "foldline.payments.VoidRequested",
        Voided(AuthorizationVoided) = "foldline.payments.AuthorizationVoided",
        VoidFailed(VoidFailed) = "foldline.payments.VoidFailed",
    }
}
