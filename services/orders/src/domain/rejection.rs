//! Why a command was refused.
//!
//! Messages are shown to API clients as-is: they name only what the client
//! sent or owns (its SKUs, its amounts), never another order's data.

use foldline_eventsourcing::{Rejection, RejectionKind};
use thiserror::Error;

use super::values::{
    Sku, MAX_CARD_TOKEN_CHARS, MAX_CODE_CHARS, MAX_LINES, MAX_ORDER_TOTAL, MAX_REASON_CHARS,
    MAX_UNIT_PRICE,
};

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OrderRejection {
    #[error("order not found")]
    OrderNotFound,
    #[error("order already exists")]
    OrderAlreadyExists,
    #[error("command addresses a different order")]
    WrongOrder,
    #[error("order must have at least one line")]
    NoLines,
    #[error("order has {count} lines; at most {max} are allowed", max = MAX_LINES)]
    TooManyLines { count: usize },
    #[error("sku {sku} appears on more than one line")]
    DuplicateSku { sku: Sku },
    #[error(
        "unit price for sku {sku} must be between 0 and {max} minor units",
        max = MAX_UNIT_PRICE
    )]
    InvalidPrice { sku: Sku },
    #[error("order total exceeds {max} minor units", max = MAX_ORDER_TOTAL)]
    TotalOverflow,
    #[error("order is already cancelled")]
    AlreadyCancelled,
    #[error("order has already shipped")]
    AlreadyShipped,
    #[error("order is already paid")]
    AlreadyPaid,
    #[error("payment amount {actual} does not match order total {expected}")]
    PaymentAmountMismatch { expected: i64, actual: i64 },
    #[error("order is not awaiting payment")]
    NotAwaitingPayment,
    #[error("order has not been paid")]
    NotPaid,
    #[error("reason must not be blank")]
    ReasonRequired,
    #[error("reason must be at most {max} characters", max = MAX_REASON_CHARS)]
    ReasonTooLong,
    #[error("rejection code must be 1 to {max} characters of a-z, 0-9 and _", max = MAX_CODE_CHARS)]
    InvalidRejectionCode,
    #[error("card token must be 1 to {max} ascii letters, digits, underscores or hyphens", max = MAX_CARD_TOKEN_CHARS)]
    InvalidCardToken,
}

impl Rejection for OrderRejection {
    fn code(&self) -> &'static str {
        match self {
            Self::OrderNotFound => "order_not_found",
            Self::OrderAlreadyExists => "order_already_exists",
            Self::WrongOrder => "wrong_order",
            Self::NoLines => "no_lines",
            Self::TooManyLines { .. } => "too_many_lines",
            Self::DuplicateSku { .. } => "duplicate_sku",
            Self::InvalidPrice { .. } => "invalid_price",
            Self::TotalOverflow => "total_overflow",
            Self::AlreadyCancelled => "already_cancelled",
            Self::AlreadyShipped => "already_shipped",
            Self::AlreadyPaid => "already_paid",
            Self::PaymentAmountMismatch { .. } => "payment_amount_mismatch",
            Self::NotAwaitingPayment => "not_awaiting_payment",
            Self::NotPaid => "not_paid",
            Self::ReasonRequired => "reason_required",
            Self::ReasonTooLong => "reason_too_long",
            Self::InvalidRejectionCode => "invalid_rejection_code",
            Self::InvalidCardToken => "invalid_card_token",
        }
    }

    fn kind(&self) -> RejectionKind {
        match self {
            Self::OrderNotFound => RejectionKind::NotFound,
            // A command routed to another order's stream is a routing bug
            // upstream; no state change could make it succeed, so it is not a
            // conflict.
            Self::WrongOrder
            | Self::NoLines
            | Self::TooManyLines { .. }
            | Self::DuplicateSku { .. }
            | Self::InvalidPrice { .. }
            | Self::TotalOverflow
            | Self::PaymentAmountMismatch { .. }
            | Self::ReasonRequired
            | Self::ReasonTooLong
            | Self::InvalidRejectionCode
            | Self::InvalidCardToken => RejectionKind::Invalid,
            Self::OrderAlreadyExists
            | Self::AlreadyCancelled
            | Self::AlreadyShipped
            | Self::AlreadyPaid
            | Self::NotAwaitingPayment
            | Self::NotPaid => RejectionKind::Conflict,
        }
    }
}
