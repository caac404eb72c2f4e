//! The [`Payments`] decider: one payment's state machine.
//!
//! ```text
//! Authorize ─► requested ─RecordAuthorization─► authorized ─Capture─► capturing ─RecordCapture─► captured
//!                  │                             │   ▲  ▲                  │                      │
//!             RecordDecline                    Void │  └─RecordCaptureFailure                Refund (≤ refundable)
//!                  ▼                             ▼   │                                            ▼
//!              declined                      voiding ┴RecordVoidFailure              refund pending ─RecordRefund─► issued
//!                                                │                                                 └RecordRefundFailure─► failed
//!                                           RecordVoid ─► voided
//! ```
//!
//! `Void` releases whatever the payment holds or may come to hold: a
//! `requested` payment is abandoned at once (declined, code `abandoned`)
//! and a later authorization of it is voided; a `captured` one is refunded
//! in full of what is left. See `services/orders/src/saga/design.md`.
//!
//! A refund reserves its amount when it is requested, so the sum of issued
//! and pending refunds never exceeds the captured amount, however many
//! refunds are in flight.

use foldline_eventsourcing::{Decider, DecisionContext};

use super::model::{
    Decline, Payment, PaymentCommand, PaymentEvent, PaymentRejection, PaymentState, PaymentStatus,
    Refund, RefundStatus,
};
use super::values::{Amount, DeclineCode, Note, PaymentId, RefundId};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default)]
pub struct Payments;

fn awaiting(
    payment: &Payment,
    status: PaymentStatus,
    operation: &'static str,
) -> Result<(), PaymentRejection> {
    match payment.status == status {
        true => Ok(()),
        false => Err(PaymentRejection::NoAnswerAwaited {
            operation,
            status: payment.status,
        }),
    }
}

fn authorized(payment: &Payment) -> Result<(), PaymentRejection> {
    match payment.status {
        PaymentStatus::Authorized => Ok(()),
        other => Err(PaymentRejection::NotAuthorized(other)),
    }
}

fn pending_refund(payment: &Payment, refund_id: RefundId) -> Result<&Refund, PaymentRejection> {
    let refund = payment
        .refunds
        .get(&refund_id)
        .ok_or(PaymentRejection::RefundNotFound(refund_id))?;
    match refund.status {
        RefundStatus::Pending => Ok(refund),
        _ => Err(PaymentRejection::RefundNotPending(refund_id)),
    }
}

impl Decider for Payments {
    type State = PaymentState;
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Rejection = PaymentRejection;

    fn decide(
        state: &PaymentState,
        command: &PaymentCommand,
        _context: &DecisionContext,
    ) -> Result<PaymentEvent, PaymentRejection> {
        let payment = match (&state.payment, command) {
            (None, PaymentCommand::Authorize(terms)) => {
                return Ok(PaymentEvent::Requested(terms.clone()))
            }
            (Some(_), PaymentCommand::Authorize(terms)) => {
                return Err(PaymentRejection::AlreadyExists(terms.payment_id))
            }
            (None, other) => return Err(PaymentRejection::NotFound(other.payment_id())),
            (Some(payment), _) => payment,
        };
        let terms = &payment.terms;
        let payment_id = terms.payment_id;
        let order_id = terms.order_id;
        match command {
            PaymentCommand::Authorize(_) => Err(PaymentRejection::AlreadyExists(payment_id)),
            PaymentCommand::RecordAuthorization {
                provider_reference, ..
            } => {
                if let Some(reason) = abandoned(payment) {
                    // We gave up before the provider answered, yet it
                    // authorized: release the hold rather than keep it.
                    return Ok(PaymentEvent::VoidRequested {
                        payment_id,
                        order_id,
                        reason,
                        authorization: provider_reference.clone(),
                    });
                }
                awaiting(payment, PaymentStatus::Requested, "authorization")?;
                Ok(PaymentEvent::Authorized {
                    payment_id,
                    order_id,
                    amount: terms.amount,
                    currency: terms.currency.clone(),
                    provider_reference: provider_reference.clone(),
                })
            }
            PaymentCommand::RecordDecline {
                code,
                reason,
                provider_reference,
                ..
            } => {
                awaiting(payment, PaymentStatus::Requested, "authorization")?;
                Ok(PaymentEvent::Declined {
                    payment_id,
                    order_id,
                    code: *code,
                    reason: reason.clone(),
                    provider_reference: provider_reference.clone(),
                })
            }
            PaymentCommand::Capture { .. } => {
                authorized(payment)?;
                Ok(PaymentEvent::CaptureRequested {
                    payment_id,
                    order_id,
                    amount: terms.amount,
                    currency: terms.currency.clone(),
                    authorization: reference_of(payment.authorization.as_ref())?,
                })
            }
            PaymentCommand::RecordCapture {
                provider_reference, ..
            } => {
                awaiting(payment, PaymentStatus::Capturing, "capture")?;
                Ok(PaymentEvent::Captured {
                    payment_id,
                    order_id,
                    amount: terms.amount,
                    currency: terms.currency.clone(),
                    provider_reference: provider_reference.clone(),
                })
            }
            PaymentCommand::RecordCaptureFailure { reason, .. } => {
                awaiting(payment, PaymentStatus::Capturing, "capture")?;
                Ok(PaymentEvent::CaptureFailed {
                    payment_id,
                    order_id,
                    reason: reason.clone(),
                })
            }
            PaymentCommand::Refund {
                refund_id,
                amount,
                reason,
                ..
            } => {
                if payment.status != PaymentStatus::Captured {
                    return Err(PaymentRejection::NotCaptured(payment.status));
                }
                if payment.refunds.contains_key(refund_id) {
                    return Err(PaymentRejection::RefundExists(*refund_id));
                }
                let refundable = payment.refundable();
                if amount.minor_units() > refundable {
                    return Err(PaymentRejection::RefundExceedsCaptured {
                        requested: amount.minor_units(),
                        refundable,
                    });
                }
                Ok(PaymentEvent::RefundRequested {
                    payment_id,
                    order_id,
                    refund_id: *refund_id,
                    amount: *amount,
                    currency: terms.currency.clone(),
                    reason: reason.clone(),
                    capture: reference_of(payment.capture.as_ref())?,
                })
            }
            PaymentCommand::RecordRefund {
                refund_id,
                provider_reference,
                ..
            } => {
                let refund = pending_refund(payment, *refund_id)?;
                let refunded_total = payment.refunded() + refund.amount.minor_units();
                Ok(PaymentEvent::RefundIssued {
                    payment_id,
                    order_id,
                    refund_id: *refund_id,
                    amount: refund.amount,
                    currency: terms.currency.clone(),
                    provider_reference: provider_reference.clone(),
                    refunded_total,
                    fully_refunded: refunded_total == terms.amount.minor_units(),
                })
            }
            PaymentCommand::RecordRefundFailure {
                refund_id, reason, ..
            } => {
                let refund = pending_refund(payment, *refund_id)?;
                Ok(PaymentEvent::RefundFailed {
                    payment_id,
                    order_id,
                    refund_id: *refund_id,
                    amount: refund.amount,
                    reason: reason.clone(),
                })
            }
            PaymentCommand::Void { reason, .. } => match payment.status {
                // Nothing is held yet: stop waiting for the provider. Its
                // authorization, if it comes, is voided (RecordAuthorization).
                PaymentStatus::Requested => Ok(PaymentEvent::Declined {
                    payment_id,
                    order_id,
                    code: DeclineCode::Abandoned,
                    reason: reason.clone(),
                    provider_reference: None,
                }),
                // The money was taken: voiding it is giving back all that
                // is still refundable, under the one refund id of voids.
                PaymentStatus::Captured => {
                    let refundable = payment.refundable();
                    let refund_id = void_refund_id(payment_id);
                    if payment.refunds.contains_key(&refund_id) || refundable == 0 {
                        return Err(PaymentRejection::NotAuthorized(payment.status));
                    }
                    Ok(PaymentEvent::RefundRequested {
                        payment_id,
                        order_id,
                        refund_id,
                        amount: Amount::new(refundable)
                            .map_err(|_| PaymentRejection::NotAuthorized(payment.status))?,
                        currency: terms.currency.clone(),
                        reason: reason.clone(),
                        capture: reference_of(payment.capture.as_ref())?,
                    })
                }
                _ => {
                    authorized(payment)?;
                    Ok(PaymentEvent::VoidRequested {
                        payment_id,
                        order_id,
                        reason: reason.clone(),
                        authorization: reference_of(payment.authorization.as_ref())?,
                    })
                }
            },
            PaymentCommand::RecordVoid {
                provider_reference, ..
            } => {
                awaiting(payment, PaymentStatus::Voiding, "void")?;
                Ok(PaymentEvent::Voided {
                    payment_id,
                    order_id,
                    reason: payment.void_reason.clone().unwrap_or_default(),
                    provider_reference: provider_reference.clone(),
                })
            }
            PaymentCommand::RecordVoidFailure { reason, .. } => {
                awaiting(payment, PaymentStatus::Voiding, "void")?;
                Ok(PaymentEvent::VoidFailed {
                    payment_id,
                    order_id,
                    reason: reason.clone(),
                })
            }
        }
    }

    fn evolve(mut state: PaymentState, event: &PaymentEvent) -> PaymentState {
        if let PaymentEvent::Requested(terms) = event {
            state.payment = Some(Payment {
                terms: terms.clone(),
                status: PaymentStatus::Requested,
                authorization: None,
                capture: None,
                void: None,
                void_reason: None,
                decline: None,
                last_failure: None,
                refunds: Default::default(),
            });
            return state;
        }
        let Some(payment) = state.payment.as_mut() else {
            return state;
        };
        match event {
            PaymentEvent::Requested(_) => {}
            PaymentEvent::Authorized {
                provider_reference, ..
            } => {
                payment.status = PaymentStatus::Authorized;
                payment.authorization = Some(provider_reference.clone());
            }
            PaymentEvent::Declined { code, reason, .. } => {
                payment.status = PaymentStatus::Declined;
                payment.decline = Some(Decline {
                    code: *code,
                    reason: reason.clone(),
                });
            }
            PaymentEvent::CaptureRequested { .. } => payment.status = PaymentStatus::Capturing,
            PaymentEvent::Captured {
                provider_reference, ..
            } => {
                payment.status = PaymentStatus::Captured;
                payment.capture = Some(provider_reference.clone());
                payment.last_failure = None;
            }
            PaymentEvent::CaptureFailed { reason, .. }
            | PaymentEvent::VoidFailed { reason, .. } => {
                payment.status = PaymentStatus::Authorized;
                payment.last_failure = Some(reason.clone());
            }
            PaymentEvent::RefundRequested {
                refund_id,
                amount,
                reason,
                ..
            } => {
                payment.refunds.insert(
                    *refund_id,
                    Refund {
                        amount: *amount,
                        reason: reason.clone(),
                        status: RefundStatus::Pending,
                        provider_reference: None,
                        failure: None,
                    },
                );
            }
            PaymentEvent::RefundIssued {
                refund_id,
                provider_reference,
                ..
            } => {
                if let Some(refund) = payment.refunds.get_mut(refund_id) {
                    refund.status = RefundStatus::Issued;
                    refund.provider_reference = Some(provider_reference.clone());
                }
            }
            PaymentEvent::RefundFailed {
                refund_id, reason, ..
            } => {
                if let Some(refund) = payment.refunds.get_mut(refund_id) {
                    refund.status = RefundStatus::Failed;
                    refund.failure = Some(reason.clone());
                }
            }
            PaymentEvent::VoidRequested {
                reason,
                authorization,
                ..
            } => {
                payment.status = PaymentStatus::Voiding;
                payment.void_reason = Some(reason.clone());
                // A late authorization of an abandoned payment is first
                // known here.
                payment.authorization = Some(authorization.clone());
            }
            PaymentEvent::Voided {
                provider_reference, ..
            } => {
                payment.status = PaymentStatus::Voided;
                payment.void = Some(provider_reference.clone());
            }
        }
        state
    }
}

/// Why a payment we declined on our own (deadline, void) is abandoned, if
/// it is: an authorization arriving now is released at once.
fn abandoned(payment: &Payment) -> Option<Note> {
    match (&payment.status, &payment.decline) {
        (PaymentStatus::Declined, Some(decline)) if decline.code.is_ours() => {
            Some(decline.reason.clone())
        }
        _ => None,
    }
}

/// The refund a void of a captured payment issues: one per payment, so a
/// repeated void finds it and refunds nothing more.
pub(super) fn void_refund_id(payment_id: PaymentId) -> RefundId {
    RefundId::from_uuid(Uuid::new_v5(&payment_id.as_uuid(), b"void"))
}

/// The provider reference a later operation acts on. An authorized or
/// captured payment always has one (the events that set the status set it),
/// so its absence is a state that cannot be reached.
fn reference_of(
    reference: Option<&super::values::ProviderReference>,
) -> Result<super::values::ProviderReference, PaymentRejection> {
    reference.cloned().ok_or(PaymentRejection::NoAnswerAwaited {
        operation: "provider reference",
        status: PaymentStatus::Requested,
    })
}
