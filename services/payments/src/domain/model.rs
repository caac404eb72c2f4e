//! The payment decider's commands, events, state and rejections.

use std::collections::BTreeMap;
use std::fmt;

use foldline_eventsourcing::{Rejection, RejectionKind};
use serde::{Deserialize, Serialize};

use super::values::{
    Amount, CardToken, Currency, CustomerId, DeclineCode, Note, OrderId, PaymentId,
    ProviderReference, RefundId,
};

/// What a payment is for: fixed when it is requested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentTerms {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub amount: Amount,
    pub currency: Currency,
    pub card_token: CardToken,
}

/// Commands, each addressed to the payment stream `payment_id`. The
/// `Record*` ones are the provider's answers, issued by the provider
/// worker, never by clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentCommand {
    Authorize(PaymentTerms),
    RecordAuthorization {
        payment_id: PaymentId,
        provider_reference: ProviderReference,
    },
    RecordDecline {
        payment_id: PaymentId,
        code: DeclineCode,
        reason: Note,
        provider_reference: Option<ProviderReference>,
    },
    Capture {
        payment_id: PaymentId,
    },
    RecordCapture {
        payment_id: PaymentId,
        provider_reference: ProviderReference,
    },
    RecordCaptureFailure {
        payment_id: PaymentId,
        reason: Note,
    },
    Refund {
        payment_id: PaymentId,
        refund_id: RefundId,
        amount: Amount,
        reason: Note,
    },
    RecordRefund {
        payment_id: PaymentId,
        refund_id: RefundId,
        provider_reference: ProviderReference,
    },
    RecordRefundFailure {
        payment_id: PaymentId,
        refund_id: RefundId,
        reason: Note,
    },
    Void {
        payment_id: PaymentId,
        reason: Note,
    },
    RecordVoid {
        payment_id: PaymentId,
        provider_reference: ProviderReference,
    },
    RecordVoidFailure {
        payment_id: PaymentId,
        reason: Note,
    },
}

impl PaymentCommand {
    pub fn payment_id(&self) -> PaymentId {
        match self {
            Self::Authorize(terms) => terms.payment_id,
            Self::RecordAuthorization { payment_id, .. }
            | Self::RecordDecline { payment_id, .. }
            | Self::Capture { payment_id }
            | Self::RecordCapture { payment_id, .. }
            | Self::RecordCaptureFailure { payment_id, .. }
            | Self::Refund { payment_id, .. }
            | Self::RecordRefund { payment_id, .. }
            | Self::RecordRefundFailure { payment_id, .. }
            | Self::Void { payment_id, .. }
            | Self::RecordVoid { payment_id, .. }
            | Self::RecordVoidFailure { payment_id, .. } => *payment_id,
        }
    }
}

/// Events carry every field their wire record does (the order id, amounts,
/// the reference being acted on), so a reader needs no earlier event to
/// understand one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    Requested(PaymentTerms),
    Authorized {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Amount,
        currency: Currency,
        provider_reference: ProviderReference,
    },
    Declined {
        payment_id: PaymentId,
        order_id: OrderId,
        code: DeclineCode,
        reason: Note,
        provider_reference: Option<ProviderReference>,
    },
    CaptureRequested {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Amount,
        currency: Currency,
        authorization: ProviderReference,
    },
    Captured {
        payment_id: PaymentId,
        order_id: OrderId,
        amount: Amount,
        currency: Currency,
        provider_reference: ProviderReference,
    },
    CaptureFailed {
        payment_id: PaymentId,
        order_id: OrderId,
        reason: Note,
    },
    RefundRequested {
        payment_id: PaymentId,
        order_id: OrderId,
        refund_id: RefundId,
        amount: Amount,
        currency: Currency,
        reason: Note,
        capture: ProviderReference,
    },
    RefundIssued {
        payment_id: PaymentId,
        order_id: OrderId,
        refund_id: RefundId,
        amount: Amount,
        currency: Currency,
        provider_reference: ProviderReference,
        refunded_total: i64,
        fully_refunded: bool,
    },
    RefundFailed {
        payment_id: PaymentId,
        order_id: OrderId,
        refund_id: RefundId,
        amount: Amount,
        reason: Note,
    },
    VoidRequested {
        payment_id: PaymentId,
        order_id: OrderId,
        reason: Note,
        authorization: ProviderReference,
    },
    Voided {
        payment_id: PaymentId,
        order_id: OrderId,
        reason: Note,
        provider_reference: ProviderReference,
    },
    VoidFailed {
        payment_id: PaymentId,
        order_id: OrderId,
        reason: Note,
    },
}

/// Where a payment is in its life. `Capturing` and `Voiding` wait for the
/// provider's answer to an operation already asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Requested,
    Authorized,
    Declined,
    Capturing,
    Captured,
    Voiding,
    Voided,
}

impl PaymentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Authorized => "authorized",
            Self::Declined => "declined",
            Self::Capturing => "capturing",
            Self::Captured => "captured",
            Self::Voiding => "voiding",
            Self::Voided => "voided",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Reserved against the captured amount, asked of the provider.
    Pending,
    Issued,
    /// Refused for good; its amount is refundable again.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub amount: Amount,
    pub reason: Note,
    pub status: RefundStatus,
    pub provider_reference: Option<ProviderReference>,
    pub failure: Option<Note>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decline {
    pub code: DeclineCode,
    pub reason: Note,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub terms: PaymentTerms,
    pub status: PaymentStatus,
    pub authorization: Option<ProviderReference>,
    pub capture: Option<ProviderReference>,
    pub void: Option<ProviderReference>,
    /// Why the last void was asked for.
    pub void_reason: Option<Note>,
    pub decline: Option<Decline>,
    /// Why the last capture or void failed, while the payment is
    /// authorized again.
    pub last_failure: Option<Note>,
    pub refunds: BTreeMap<RefundId, Refund>,
}

impl Payment {
    /// Minor units refunded by the provider so far.
    pub fn refunded(&self) -> i64 {
        self.refunds_in(&[RefundStatus::Issued])
    }

    /// Minor units still refundable: captured, less issued and pending
    /// refunds. Zero unless captured.
    pub fn refundable(&self) -> i64 {
        match self.status {
            PaymentStatus::Captured => {
                self.terms.amount.minor_units()
                    - self.refunds_in(&[RefundStatus::Issued, RefundStatus::Pending])
            }
            _ => 0,
        }
    }

    fn refunds_in(&self, statuses: &[RefundStatus]) -> i64 {
        self.refunds
            .values()
            .filter(|refund| statuses.contains(&refund.status))
            .map(|refund| refund.amount.minor_units())
            .sum()
    }
}

/// The state of one payment stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    pub payment: Option<Payment>,
}

/// Why a payment command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRejection {
    #[error("payment {0} does not exist")]
    NotFound(PaymentId),
    #[error("payment {0} already exists")]
    AlreadyExists(PaymentId),
    #[error("payment is {status}: no {operation} answer is awaited")]
    NoAnswerAwaited {
        operation: &'static str,
        status: PaymentStatus,
    },
    #[error("payment is {0}, not authorized")]
    NotAuthorized(PaymentStatus),
    #[error("payment is {0}, not captured")]
    NotCaptured(PaymentStatus),
    #[error(
        "refund of {requested} exceeds the {refundable} still refundable of what was captured"
    )]
    RefundExceedsCaptured { requested: i64, refundable: i64 },
    #[error("refund {0} already exists")]
    RefundExists(RefundId),
    #[error("refund {0} does not exist")]
    RefundNotFound(RefundId),
    #[error("refund {0} is not awaiting an answer")]
    RefundNotPending(RefundId),
}

impl Rejection for PaymentRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "payment_not_found",
            Self::AlreadyExists(_) => "payment_exists",
            Self::NoAnswerAwaited { .. } => "no_answer_awaited",
            Self::NotAuthorized(_) => "payment_not_authorized",
            Self::NotCaptured(_) => "payment_not_captured",
            Self::RefundExceedsCaptured { .. } => "refund_exceeds_captured",
            Self::RefundExists(_) => "refund_exists",
            Self::RefundNotFound(_) => "refund_not_found",
            Self::RefundNotPending(_) => "refund_not_pending",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::NotFound(_) | Self::RefundNotFound(_) => RejectionKind::NotFound,
            _ => RejectionKind::Conflict,
        }
    }
}
