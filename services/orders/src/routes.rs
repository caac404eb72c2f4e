//! The orders routes. Validation uses the pure domain (so obviously bad
//! input never reaches Kafka); the command flow, idempotency and errors are
//! the gateway's.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use foldline_contracts::orders::{self as wire, OrdersCommandRecord};
use foldline_eventsourcing::{Decider, DecisionContext, Rejection, Timestamp};
use foldline_gateway::commands::{self, identity_metadata, AggregateView};
use foldline_gateway::http::{
    decode_row, parse_json, parse_path_id, GatewayError, PageQuery, PageRequest,
};
use foldline_gateway::idempotency::identify;
use foldline_gateway::problem::{FieldError, Problem};
use foldline_gateway::time::rfc3339_millis;
use foldline_gateway::GatewayState;
use foldline_platform::store::Store;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Currency, CustomerId, Order, OrderCommand, OrderId, OrderLine, OrderState, PlaceOrder,
    Quantity, Sku,
};
use crate::projection::{order_key, CustomerOrderRow, OrderRow, ORDERS_BY_CUSTOMER, ORDER_BY_ID};
use crate::DOMAIN;

pub fn router() -> Router<GatewayState> {
    Router::new()
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/{order_id}", get(get_order))
        .route("/v1/orders/{order_id}/cancel", post(cancel_order))
        .route("/v1/orders/{order_id}/timeline", get(get_timeline))
        .route(
            "/v1/customers/{customer_id}/orders",
            get(list_customer_orders),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrderRequest {
    customer_id: String,
    currency: String,
    lines: Vec<LineRequest>,
    /// The payment provider's card token; absent: its default test card.
    #[serde(default)]
    card_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineRequest {
    sku: String,
    quantity: i64,
    unit_price: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelOrderRequest {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Serialize)]
struct LineView {
    sku: String,
    quantity: u32,
    unit_price: i64,
    line_total: i64,
}

#[derive(Debug, Serialize)]
struct OrderView {
    id: String,
    customer_id: String,
    status: &'static str,
    currency: &'static str,
    lines: Vec<LineView>,
    total: i64,
    version: u64,
    placed_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<String>,
    /// Why the order was rejected (`rejected`): `code` and `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<RejectionView>,
}

#[derive(Debug, Serialize)]
struct RejectionView {
    code: String,
    reason: String,
}

fn order_view(row: &OrderRow) -> Option<OrderView> {
    let details = row.state.details()?;
    Some(OrderView {
        id: details.order_id.to_string(),
        customer_id: details.customer_id.to_string(),
        status: details.status.as_str(),
        currency: details.currency.as_str(),
        lines: details
            .lines
            .iter()
            .map(|line| LineView {
                sku: line.sku.as_str().to_owned(),
                quantity: line.quantity.get(),
                unit_price: line.unit_price,
                line_total: line.line_total().unwrap_or(0),
            })
            .collect(),
        total: details.total,
        version: row.version,
        placed_at: rfc3339_millis(details.placed_at.millis()),
        updated_at: rfc3339_millis(details.updated_at.millis()),
        cancel_reason: details.cancel_reason.clone(),
        payment_id: details.payment_id.map(|id| id.to_string()),
        rejection: details
            .rejection
            .as_ref()
            .map(|(code, reason)| RejectionView {
                code: code.clone(),
                reason: reason.clone(),
            }),
    })
}

#[derive(Debug, Serialize)]
struct OrderSummaryView {
    id: String,
    status: String,
    currency: String,
    total: i64,
    version: u64,
    placed_at: String,
    updated_at: String,
}

impl From<CustomerOrderRow> for OrderSummaryView {
    fn from(row: CustomerOrderRow) -> Self {
        OrderSummaryView {
            id: row.order_id,
            status: row.status,
            currency: row.currency,
            total: row.total,
            version: row.version,
            placed_at: rfc3339_millis(row.placed_at),
            updated_at: rfc3339_millis(row.updated_at),
        }
    }
}

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<OrderSummaryView>,
    next_cursor: Option<String>,
}

async fn read_order(store: &Store, order_id: &str) -> Result<Option<OrderRow>, GatewayError> {
    match store.get(order_key(order_id)).await? {
        Some(row) => Ok(Some(decode_row(ORDER_BY_ID, &row.value)?)),
        None => Ok(None),
    }
}

/// Reads an order back for `Prefer: wait`.
struct OrdersView;

impl AggregateView for OrdersView {
    async fn read(
        &self,
        store: &Store,
        aggregate_id: &str,
        min_version: u64,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let Some(row) = read_order(store, aggregate_id).await? else {
            return Ok(None);
        };
        if row.version < min_version {
            return Ok(None);
        }
        let Some(view) = order_view(&row) else {
            return Ok(None);
        };
        serde_json::to_vec(&view)
            .map(Some)
            .map_err(|error| GatewayError::Row {
                table: ORDER_BY_ID,
                reason: error.to_string(),
            })
    }
}

fn validate_place(request: PlaceOrderRequest, order_id: OrderId) -> Result<PlaceOrder, Problem> {
    let mut errors = Vec::new();
    let mut error = |field: String, message: String| errors.push(FieldError { field, message });
    let customer_id = CustomerId::parse(&request.customer_id)
        .map_err(|reason| error("customer_id".to_owned(), reason.to_string()))
        .ok();
    let currency = Currency::parse(&request.currency)
        .map_err(|reason| error("currency".to_owned(), reason.to_string()))
        .ok();
    let mut lines = Vec::with_capacity(request.lines.len());
    for (index, line) in request.lines.iter().enumerate() {
        let sku = Sku::parse(&line.sku)
            .map_err(|reason| error(format!("lines[{index}].sku"), reason.to_string()));
        let quantity = Quantity::new(line.quantity)
            .map_err(|reason| error(format!("lines[{index}].quantity"), reason.to_string()));
        if let (Ok(sku), Ok(quantity)) = (sku, quantity) {
            lines.push(OrderLine {
                sku,
                quantity,
                unit_price: line.unit_price,
            });
        }
    }
    let (Some(customer_id), Some(currency)) = (customer_id, currency) else {
        return Err(Problem::invalid_fields(errors));
    };
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    let place = PlaceOrder {
        order_id,
        customer_id,
        currency,
        lines,
        card_token: request.card_token,
    };
    // The order rules (line count, duplicates, prices, total) are the
    // domain's: ask the pure decider instead of restating them here.
    let context = DecisionContext { now: Timestamp(0) };
    match Order::decide(
        &OrderState::default(),
        &OrderCommand::Place(place.clone()),
        &context,
    ) {
        Ok(_) => Ok(place),
        Err(rejection) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            rejection.code(),
            rejection.to_string(),
        )),
    }
}

async fn place_order(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = parse_json::<PlaceOrderRequest>(&headers, body, false)?.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "a body is required",
        )
    })?;
    let identity = identify(
        &state,
        &headers,
        "POST /v1/orders",
        &raw,
        Uuid::now_v7().to_string(),
    )
    .await?;
    // The id is ours (fresh, or from the first request with this key).
    let order_id = OrderId::parse(&identity.aggregate_id).map_err(|_| {
        tracing::error!(aggregate_id = %identity.aggregate_id, "idempotency record holds an order id that is not a uuid");
        Problem::unavailable("the order service")
    })?;
    let place = validate_place(request, order_id)?;
    let command = OrdersCommandRecord::Place(wire::PlaceOrder {
        metadata: identity_metadata(&state, &identity, &headers),
        order_id: place.order_id.to_string(),
        customer_id: place.customer_id.to_string(),
        currency: place.currency.as_str().to_owned(),
        lines: place
            .lines
            .iter()
            .map(|line| wire::OrderLine {
                sku: line.sku.as_str().to_owned(),
                quantity: line.quantity.get() as i32,
                unit_price: line.unit_price,
            })
            .collect(),
        card_token: place.card_token.clone(),
    });
    commands::submit(
        &state,
        DOMAIN,
        &OrdersView,
        &headers,
        command,
        StatusCode::CREATED,
    )
    .await
}

async fn cancel_order(
    State(state): State<GatewayState>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let order_id = parse_path_id(&order_id, "order", OrderId::parse)?.to_string();
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = parse_json::<CancelOrderRequest>(&headers, body, true)?.unwrap_or_default();
    let route = format!("POST /v1/orders/{order_id}/cancel");
    let identity = identify(&state, &headers, &route, &raw, order_id.clone()).await?;
    let command = OrdersCommandRecord::Cancel(wire::CancelOrder {
        metadata: identity_metadata(&state, &identity, &headers),
        order_id,
        reason: request.reason,
    });
    commands::submit(
        &state,
        DOMAIN,
        &OrdersView,
        &headers,
        command,
        StatusCode::OK,
    )
    .await
}

async fn get_order(
    State(state): State<GatewayState>,
    Path(order_id): Path<String>,
) -> Result<Response, Problem> {
    let order_id = parse_path_id(&order_id, "order", OrderId::parse)?.to_string();
    // The hot read: through the cache when one is configured.
    let cached = state.store.get_cached(order_key(&order_id)).await;
    let row = match cached.map_err(GatewayError::from)? {
        Some(row) => Some(decode_row::<OrderRow>(ORDER_BY_ID, &row.value)?),
        None => None,
    };
    match row.as_ref().and_then(order_view) {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(Problem::not_found("order")),
    }
}

#[derive(Debug, Serialize)]
struct TimelineView {
    order_id: String,
    events: Vec<TimelineEventView>,
}

#[derive(Debug, Serialize)]
struct TimelineEventView {
    domain: String,
    /// The record's short name (`OrderPlaced`, `PaymentAuthorized`, …).
    event: String,
    event_id: String,
    aggregate_id: String,
    aggregate_version: i64,
    correlation_id: String,
    causation_id: String,
    occurred_at: String,
}

/// Every event of every domain that the order's chains caused (placing
/// it, and each later request on it, such as a cancel), causes first.
async fn get_timeline(
    State(state): State<GatewayState>,
    Path(order_id): Path<String>,
) -> Result<Response, Problem> {
    let order_id = parse_path_id(&order_id, "order", OrderId::parse)?.to_string();
    let entries = foldline_platform::timeline::read(&state.store, DOMAIN, &order_id)
        .await
        .map_err(|error| match error {
            foldline_platform::timeline::TimelineError::Store(error) => GatewayError::from(error),
            foldline_platform::timeline::TimelineError::UnreadableRow { table, reason } => {
                GatewayError::Row { table, reason }
            }
        })?;
    if entries.is_empty() {
        return Err(Problem::not_found("order"));
    }
    let events = entries
        .into_iter()
        .map(|entry| TimelineEventView {
            event: entry
                .record
                .rsplit('.')
                .next()
                .unwrap_or(&entry.record)
                .to_owned(),
            domain: entry.domain,
            event_id: entry.event_id,
            aggregate_id: entry.aggregate_id,
            aggregate_version: entry.aggregate_version,
            correlation_id: entry.correlation_id,
            causation_id: entry.causation_id,
            occurred_at: rfc3339_millis(entry.occurred_at),
        })
        .collect();
    Ok(Json(TimelineView { order_id, events }).into_response())
}

async fn list_customer_orders(
    State(state): State<GatewayState>,
    Path(customer_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let customer_id = parse_path_id(&customer_id, "customer", CustomerId::parse)?.to_string();
    let page = PageRequest::from_query(query)?;
    let rows = state
        .store
        .scan(
            ORDERS_BY_CUSTOMER,
            customer_id.into_bytes(),
            page.after.clone(),
            page.fetch(),
        )
        .await
        .map_err(GatewayError::from)?;
    let (rows, next_cursor) = page.page(rows);
    let items = rows
        .iter()
        .map(|(_, row)| decode_row::<CustomerOrderRow>(ORDERS_BY_CUSTOMER, &row.value))
        .map(|row| row.map(OrderSummaryView::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page { items, next_cursor }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_validation_names_every_bad_field() {
        let request = PlaceOrderRequest {
            customer_id: "nope".to_owned(),
            currency: "ABC".to_owned(),
            lines: vec![LineRequest {
                sku: "".to_owned(),
                quantity: -1,
                unit_price: 100,
            }],
            card_token: None,
        };
        let problem = validate_place(request, OrderId(Uuid::nil())).unwrap_err();
        assert_eq!(problem.status, 422);
        let fields: Vec<_> = problem
            .errors
            .iter()
            .map(|error| error.field.as_str())
            .collect();
        assert_eq!(
            fields,
            vec![
                "customer_id",
                "currency",
                "lines[0].sku",
                "lines[0].quantity"
            ]
        );
    }

    #[test]
    fn domain_rules_are_checked_before_anything_is_produced() {
        let request = PlaceOrderRequest {
            customer_id: Uuid::nil().to_string(),
            currency: "EUR".to_owned(),
            lines: vec![],
            card_token: None,
        };
        let problem = validate_place(request, OrderId(Uuid::nil())).unwrap_err();
        assert_eq!(problem.code, "no_lines");
    }
}
