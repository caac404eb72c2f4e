//! The payments routes. Payments are opened by the order saga through
//! `payments.commands`, never by clients; clients read them and ask for
//! refunds.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use foldline_contracts::payments::{self as wire, PaymentsCommandRecord};
use foldline_gateway::commands::{self, identity_metadata, AggregateView};
use foldline_gateway::http::{decode_row, parse_json, parse_path_id, GatewayError};
use foldline_gateway::idempotency::identify;
use foldline_gateway::problem::{FieldError, Problem};
use foldline_gateway::time::rfc3339_millis;
use foldline_gateway::GatewayState;
use foldline_platform::store::Store;
use serde::{Deserialize, Serialize};

use crate::domain::{Amount, Note, OrderId, Payment, PaymentId, RefundId, RefundStatus};
use crate::projection::{
    order_partition, payment_key, OrderPaymentRow, PaymentRow, PAYMENTS_BY_ORDER, PAYMENT_BY_ID,
};
use crate::DOMAIN;

/// The most payments one order lists (an order has one payment, a few
/// after retries; the bound keeps a hostile partition from being read whole).
const MAX_ORDER_PAYMENTS: usize = 100;

pub fn router() -> Router<GatewayState> {
    Router::new()
        .route("/v1/payments/{payment_id}", get(get_payment))
        .route("/v1/payments/{payment_id}/refunds", post(request_refund))
        .route("/v1/orders/{order_id}/payments", get(get_order_payments))
}

#[derive(Debug, Serialize)]
struct RefundView {
    refund_id: String,
    amount: i64,
    status: RefundStatus,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<String>,
}

/// A payment as clients see it. The card token is the provider's, but it
/// names a card: it is not shown.
#[derive(Debug, Serialize)]
struct PaymentView {
    id: String,
    order_id: String,
    customer_id: String,
    status: &'static str,
    amount: i64,
    currency: String,
    captured: i64,
    refunded: i64,
    refundable: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capture_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decline_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decline_reason: Option<String>,
    refunds: Vec<RefundView>,
    version: u64,
    requested_at: String,
    updated_at: String,
}

fn payment_view(row: &PaymentRow) -> PaymentView {
    let payment: &Payment = &row.payment;
    let terms = &payment.terms;
    PaymentView {
        id: terms.payment_id.to_string(),
        order_id: terms.order_id.to_string(),
        customer_id: terms.customer_id.to_string(),
        status: payment.status.as_str(),
        amount: terms.amount.minor_units(),
        currency: terms.currency.as_str().to_owned(),
        captured: match payment.capture {
            Some(_) => terms.amount.minor_units(),
            None => 0,
        },
        refunded: payment.refunded(),
        refundable: payment.refundable(),
        authorization_reference: payment
            .authorization
            .as_ref()
            .map(|reference| reference.as_str().to_owned()),
        capture_reference: payment
            .capture
            .as_ref()
            .map(|reference| reference.as_str().to_owned()),
        decline_code: payment
            .decline
            .as_ref()
            .map(|decline| decline.code.as_str()),
        decline_reason: payment
            .decline
            .as_ref()
            .map(|decline| decline.reason.as_str().to_owned()),
        refunds: payment
            .refunds
            .iter()
            .map(|(refund_id, refund)| RefundView {
                refund_id: refund_id.to_string(),
                amount: refund.amount.minor_units(),
                status: refund.status,
                reason: refund.reason.as_str().to_owned(),
                provider_reference: refund
                    .provider_reference
                    .as_ref()
                    .map(|reference| reference.as_str().to_owned()),
                failure: refund.failure.as_ref().map(|note| note.as_str().to_owned()),
            })
            .collect(),
        version: row.version,
        requested_at: rfc3339_millis(row.requested_at),
        updated_at: rfc3339_millis(row.updated_at),
    }
}

async fn read_payment(store: &Store, payment_id: &str) -> Result<Option<PaymentRow>, GatewayError> {
    match store.get(payment_key(payment_id)).await? {
        Some(row) => Ok(Some(decode_row::<PaymentRow>(PAYMENT_BY_ID, &row.value)?)),
        None => Ok(None),
    }
}

/// Reads a payment back for `Prefer: wait`.
struct PaymentReadBack;

impl AggregateView for PaymentReadBack {
    async fn read(
        &self,
        store: &Store,
        aggregate_id: &str,
        min_version: u64,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        match read_payment(store, aggregate_id).await? {
            Some(row) if row.version >= min_version => serde_json::to_vec(&payment_view(&row))
                .map(Some)
                .map_err(|error| GatewayError::Row {
                    table: PAYMENT_BY_ID,
                    reason: error.to_string(),
                }),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: i64,
    #[serde(default)]
    reason: String,
}

fn field_error(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

/// `POST /v1/payments/{id}/refunds` `{"amount": minor units, "reason": ...}`.
/// The refund's id is its command's, so a retry with the same
/// `Idempotency-Key` is the same refund, never a second one.
async fn request_refund(
    State(state): State<GatewayState>,
    Path(payment_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let payment_id = parse_path_id(&payment_id, "payment", PaymentId::parse)?.to_string();
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let Some(request) = parse_json::<RefundBody>(&headers, body, false)? else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "a body is required",
        ));
    };
    let mut errors = Vec::new();
    let amount = Amount::new(request.amount)
        .map_err(|error| errors.push(field_error("amount", error)))
        .ok();
    let reason = Note::parse(&request.reason)
        .map_err(|error| errors.push(field_error("reason", error)))
        .ok();
    let (Some(amount), Some(reason)) = (amount, reason) else {
        return Err(Problem::invalid_fields(errors));
    };
    let route = format!("POST /v1/payments/{payment_id}/refunds");
    let identity = identify(&state, &headers, &route, &raw, payment_id.clone()).await?;
    let refund_id = RefundId::from_uuid(identity.command_id.0);
    let command = PaymentsCommandRecord::Refund(wire::RefundPayment {
        metadata: identity_metadata(&state, &identity, &headers),
        payment_id,
        refund_id: refund_id.to_string(),
        amount: amount.minor_units(),
        reason: reason.as_str().to_owned(),
    });
    commands::submit(
        &state,
        DOMAIN,
        &PaymentReadBack,
        &headers,
        command,
        StatusCode::OK,
    )
    .await
}

async fn get_payment(
    State(state): State<GatewayState>,
    Path(payment_id): Path<String>,
) -> Result<Response, Problem> {
    let payment_id = parse_path_id(&payment_id, "payment", PaymentId::parse)?.to_string();
    match read_payment(&state.store, &payment_id).await? {
        Some(row) => Ok(Json(payment_view(&row)).into_response()),
        None => Err(Problem::not_found("payment")),
    }
}

#[derive(Debug, Serialize)]
struct OrderPaymentView {
    payment_id: String,
    status: &'static str,
    amount: i64,
    currency: String,
    refunded: i64,
    version: u64,
    updated_at: String,
}

#[derive(Debug, Serialize)]
struct OrderPaymentsView {
    order_id: String,
    payments: Vec<OrderPaymentView>,
}

async fn get_order_payments(
    State(state): State<GatewayState>,
    Path(order_id): Path<String>,
) -> Result<Response, Problem> {
    let order_id = parse_path_id(&order_id, "order", OrderId::parse)?.to_string();
    let rows = state
        .store
        .scan(
            PAYMENTS_BY_ORDER,
            order_partition(&order_id),
            None,
            MAX_ORDER_PAYMENTS,
        )
        .await
        .map_err(GatewayError::from)?;
    let mut payments = Vec::with_capacity(rows.len());
    for (_, row) in rows {
        let row = decode_row::<OrderPaymentRow>(PAYMENTS_BY_ORDER, &row.value)?;
        payments.push(OrderPaymentView {
            payment_id: row.payment_id,
            status: row.status.as_str(),
            amount: row.amount,
            currency: row.currency,
            refunded: row.refunded,
            version: row.version,
            updated_at: rfc3339_millis(row.updated_at),
        });
    }
    Ok(Json(OrderPaymentsView { order_id, payments }).into_response())
}
