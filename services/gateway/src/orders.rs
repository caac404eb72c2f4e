//! Orders routes.
//!
//! A command request: validate with the pure domain (so obviously bad input
//! never reaches Kafka) → reserve the idempotency key → produce the command
//! keyed by order id → 202 with the command's location, or, with
//! `Prefer: wait=N`, wait for the outcome the log settled and answer with the
//! order (201/200) or the rejection (404/409/422).

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use foldline_contracts::envelope::{headers as record_headers, CommandMetadata, CommandOutcome};
use foldline_contracts::orders::{self as wire, OrdersCommandRecord};
use foldline_eventsourcing::{CommandId, Decider, DecisionContext, Timestamp};
use foldline_orders::domain::{
    Currency, CustomerId, Order, OrderCommand, OrderId, OrderLine, OrderState, PlaceOrder,
    Quantity, RejectionKind, Sku,
};
use foldline_orders::processing::rejection_kind;
use foldline_orders::projection::{
    outcome_key, read_order_row, CommandOutcomeRow, CustomerOrderRow, OrderRow, ORDERS_BY_CUSTOMER,
};
use foldline_platform::store::{RowKey, StoredRow};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::problem::{FieldError, Problem};
use crate::time::rfc3339_millis;
use crate::GatewayState;

const IDEMPOTENCY_TABLE: &str = "idempotency_keys";
const ACCEPTED_COMMANDS_TABLE: &str = "accepted_commands";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

pub(crate) fn readiness_probe_key() -> RowKey {
    RowKey::new(ACCEPTED_COMMANDS_TABLE, b"readiness".to_vec(), Vec::new())
}

// ---------------------------------------------------------------- requests

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrderRequest {
    customer_id: String,
    currency: String,
    lines: Vec<LineRequest>,
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

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

// ---------------------------------------------------------------- responses

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
    })
}

#[derive(Debug, Serialize)]
struct CommandView {
    command_id: String,
    status: String,
    order_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<RejectionView>,
}

#[derive(Debug, Serialize)]
struct RejectionView {
    code: String,
    message: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    request_hash: String,
    order_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AcceptedCommand {
    order_id: String,
    accepted_at: i64,
}

// ---------------------------------------------------------------- parsing

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    allow_empty: bool,
) -> Result<Option<T>, Problem> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(status, "body_too_large", "the request body is too large")
        } else {
            Problem::new(
                status,
                "unreadable_body",
                "the request body could not be read",
            )
        }
    })?;
    if body.is_empty() && allow_empty {
        return Ok(None);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let is_json = content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ));
    }
    serde_json::from_slice::<T>(&body)
        .map(Some)
        .map_err(|error| {
            use serde_json::error::Category;
            match error.classify() {
                Category::Data => Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    format!("the request body does not fit the expected shape: {error}"),
                ),
                _ => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the request body is not valid json: {error}"),
                ),
            }
        })
}

fn parse_uuid_path<T, E>(
    text: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, Problem> {
    parse(text).map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    })
}

/// Seconds from `Prefer: wait=N` (RFC 7240), capped by configuration.
fn preferred_wait(headers: &HeaderMap, max_seconds: u64) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let (name, value) = preference.trim().split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then_some(value.trim())
        })
        .find_map(|value| value.parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds.min(max_seconds)))
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
        return Err(invalid_fields(errors));
    };
    if !errors.is_empty() {
        return Err(invalid_fields(errors));
    }
    let place = PlaceOrder {
        order_id,
        customer_id,
        currency,
        lines,
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

fn invalid_fields(errors: Vec<FieldError>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_fields",
        "some fields are invalid",
    )
    .with_errors(errors)
}

fn request_hash(route: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    // Hash the parsed JSON, not the bytes: whitespace is not a different request.
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|value| value.to_string().into_bytes())
        .unwrap_or_else(|_| body.to_vec());
    hasher.update(&canonical);
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

// ---------------------------------------------------------------- command flow

/// The identity of a command request after the idempotency check.
struct CommandIdentity {
    command_id: CommandId,
    order_id: String,
}

/// Resolves the command id (and, for a placement, the order id) of a request;
/// a reused key with a different body is refused.
async fn identify(
    state: &GatewayState,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    fresh_order_id: String,
) -> Result<CommandIdentity, Problem> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(CommandIdentity {
            command_id: CommandId(Uuid::now_v7()),
            order_id: fresh_order_id,
        });
    };
    let key = key
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN)
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                format!("idempotency-key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ascii characters"),
            )
        })?;
    let command_id = CommandId::from_idempotency_key(&state.config.client_id, key);
    let record = IdempotencyRecord {
        request_hash: request_hash(route, body),
        order_id: fresh_order_id,
    };
    let row = StoredRow {
        position: 0,
        value: serde_json::to_vec(&record).unwrap_or_default(),
    };
    let key_row = RowKey::new(
        IDEMPOTENCY_TABLE,
        command_id.to_string().into_bytes(),
        Vec::new(),
    );
    let existing = state
        .store
        .insert_if_absent(key_row, row)
        .await
        .map_err(|error| {
            tracing::error!(%error, "cannot reserve idempotency key");
            Problem::unavailable("the order service")
        })?;
    match existing.and_then(|row| serde_json::from_slice::<IdempotencyRecord>(&row.value).ok()) {
        None => Ok(CommandIdentity {
            command_id,
            order_id: record.order_id,
        }),
        Some(first) if first.request_hash == record.request_hash => Ok(CommandIdentity {
            command_id,
            order_id: first.order_id,
        }),
        Some(_) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this idempotency-key was already used with a different request",
        )),
    }
}

fn command_metadata(
    state: &GatewayState,
    command_id: CommandId,
    headers: &HeaderMap,
) -> CommandMetadata {
    CommandMetadata {
        command_id: command_id.to_string(),
        correlation_id: Uuid::now_v7().to_string(),
        causation_id: None,
        issued_at: now_millis(),
        issued_by: state.config.client_id.clone(),
        traceparent: headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .filter(|value| value.len() <= 128)
            .map(str::to_owned),
    }
}

/// Produces the command and, when asked, waits for its outcome.
async fn submit(
    state: &GatewayState,
    headers: &HeaderMap,
    command: OrdersCommandRecord,
    created_status: StatusCode,
) -> Response {
    let command_id = command.metadata().command_id.clone();
    let order_id = command.order_id().to_owned();
    let wait = preferred_wait(headers, state.config.max_wait_seconds);
    let receiver = wait.map(|_| state.outcomes.subscribe(&command_id));

    let accepted = AcceptedCommand {
        order_id: order_id.clone(),
        accepted_at: command.metadata().issued_at,
    };
    let accepted_row = StoredRow {
        position: 0,
        value: serde_json::to_vec(&accepted).unwrap_or_default(),
    };
    let accepted_key = RowKey::new(
        ACCEPTED_COMMANDS_TABLE,
        command_id.clone().into_bytes(),
        Vec::new(),
    );
    if let Err(error) = state
        .store
        .insert_if_absent(accepted_key, accepted_row)
        .await
    {
        tracing::error!(%error, "cannot record accepted command");
        return Problem::unavailable("the order service").into_response();
    }
    if let Err(problem) = produce(state, &command).await {
        state.outcomes.forget(&command_id);
        return problem.into_response();
    }

    let (Some(wait), Some(receiver)) = (wait, receiver) else {
        return pending_response(&command_id, &order_id);
    };
    let deadline = tokio::time::Instant::now() + wait;
    // A retry of a settled command finds its outcome in the projection.
    let outcome = match read_outcome_row(state, &command_id).await {
        Some(row) => Some(Settled::from_row(row)),
        None => tokio::time::timeout_at(deadline, receiver)
            .await
            .ok()
            .and_then(Result::ok)
            .map(Settled::from_outcome),
    };
    state.outcomes.forget(&command_id);
    let Some(outcome) = outcome else {
        return pending_response(&command_id, &order_id);
    };
    if let Some((code, message)) = outcome.rejection {
        let status = match rejection_kind(&code) {
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
            RejectionKind::Conflict => StatusCode::CONFLICT,
            RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        };
        return Problem::new(status, &code, message).into_response();
    }
    // Read-your-writes: answer with the order once the projection has it.
    if let Some(watermarks) = &state.watermarks {
        watermarks
            .wait_for(outcome.partition, outcome.offset, deadline)
            .await;
    }
    loop {
        if let Some(row) = read_order(state, &order_id).await {
            if row.version >= outcome.version {
                if let Some(view) = order_view(&row) {
                    let mut response = (created_status, Json(view)).into_response();
                    set_header(
                        &mut response,
                        header::LOCATION,
                        &format!("/v1/orders/{order_id}"),
                    );
                    set_header(&mut response, "preference-applied", "wait");
                    set_header(&mut response, "foldline-command-id", &command_id);
                    return response;
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return pending_response(&command_id, &order_id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Settled {
    version: u64,
    partition: i32,
    offset: i64,
    rejection: Option<(String, String)>,
}

impl Settled {
    fn from_outcome(outcome: CommandOutcome) -> Settled {
        Settled {
            version: outcome.aggregate_version.max(0) as u64,
            partition: outcome.event_partition,
            offset: outcome.event_offset,
            rejection: (!outcome.is_accepted()).then(|| {
                (
                    outcome.rejection_code.unwrap_or_default(),
                    outcome.rejection_message.unwrap_or_default(),
                )
            }),
        }
    }

    fn from_row(row: CommandOutcomeRow) -> Settled {
        Settled {
            version: row.order_version,
            partition: row.event_partition,
            offset: row.event_offset,
            rejection: (row.status != "accepted").then(|| {
                (
                    row.rejection_code.unwrap_or_default(),
                    row.rejection_message.unwrap_or_default(),
                )
            }),
        }
    }
}

fn set_header(response: &mut Response, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

fn pending_response(command_id: &str, order_id: &str) -> Response {
    let body =
        serde_json::json!({"command_id": command_id, "order_id": order_id, "status": "pending"});
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    set_header(
        &mut response,
        header::LOCATION,
        &format!("/v1/commands/{command_id}"),
    );
    response
}

async fn produce(state: &GatewayState, command: &OrdersCommandRecord) -> Result<(), Problem> {
    let value = foldline_orders::wire::command_record_to_avro(command).map_err(|error| {
        tracing::error!(error, "command does not fit its schema");
        Problem::unavailable("the order service")
    })?;
    let bytes = state
        .codec
        .encode_value(&state.orders_commands_topic, command.record_name(), value)
        .await
        .map_err(|error| {
            tracing::error!(%error, "cannot encode command");
            Problem::unavailable("the order service")
        })?;
    let metadata = command.metadata();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: record_headers::COMMAND_ID,
            value: Some(&metadata.command_id),
        })
        .insert(Header {
            key: record_headers::CORRELATION_ID,
            value: Some(&metadata.correlation_id),
        })
        .insert(Header {
            key: record_headers::CONTENT_TYPE,
            value: Some(record_headers::AVRO_CONFLUENT),
        })
        .insert(Header {
            key: record_headers::RECORD_TYPE,
            value: Some(command.record_name()),
        })
        .insert(Header {
            key: record_headers::SCHEMA_VERSION,
            value: Some(record_headers::CONTRACT_VERSION),
        });
    let headers = match &metadata.traceparent {
        Some(traceparent) => headers.insert(Header {
            key: record_headers::TRACEPARENT,
            value: Some(traceparent),
        }),
        None => headers,
    };
    let record = FutureRecord::to(&state.orders_commands_topic)
        .key(command.order_id())
        .payload(&bytes)
        .headers(headers);
    state
        .producer
        .send(record, Duration::from_secs(5))
        .await
        .map(|_| ())
        .map_err(|(error, _)| {
            tracing::error!(%error, "cannot produce command");
            Problem::unavailable("the order service")
        })
}

async fn read_outcome_row(state: &GatewayState, command_id: &str) -> Option<CommandOutcomeRow> {
    let row = state.store.get(outcome_key(command_id)).await.ok()??;
    serde_json::from_slice(&row.value).ok()
}

async fn read_order(state: &GatewayState, order_id: &str) -> Option<OrderRow> {
    let row = state
        .store
        .get(foldline_orders::projection::order_key(order_id))
        .await
        .ok()??;
    read_order_row(&row)
}

// ---------------------------------------------------------------- handlers

pub async fn place_order(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = match parse_json::<PlaceOrderRequest>(&headers, body, false) {
        Ok(Some(request)) => request,
        Ok(None) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "a body is required",
            )
            .into_response()
        }
        Err(problem) => return problem.into_response(),
    };
    let identity = match identify(
        &state,
        &headers,
        "POST /v1/orders",
        &raw,
        Uuid::now_v7().to_string(),
    )
    .await
    {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    let Ok(order_id) = OrderId::parse(&identity.order_id) else {
        return Problem::unavailable("the order service").into_response();
    };
    let place = match validate_place(request, order_id) {
        Ok(place) => place,
        Err(problem) => return problem.into_response(),
    };
    let command = OrdersCommandRecord::Place(wire::PlaceOrder {
        metadata: command_metadata(&state, identity.command_id, &headers),
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
    });
    submit(&state, &headers, command, StatusCode::CREATED).await
}

pub async fn cancel_order(
    State(state): State<GatewayState>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let order_id = match parse_uuid_path(&order_id, "order", OrderId::parse) {
        Ok(order_id) => order_id.to_string(),
        Err(problem) => return problem.into_response(),
    };
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = match parse_json::<CancelOrderRequest>(&headers, body, true) {
        Ok(request) => request.unwrap_or_default(),
        Err(problem) => return problem.into_response(),
    };
    let route = format!("POST /v1/orders/{order_id}/cancel");
    let identity = match identify(&state, &headers, &route, &raw, order_id.clone()).await {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    let command = OrdersCommandRecord::Cancel(wire::CancelOrder {
        metadata: command_metadata(&state, identity.command_id, &headers),
        order_id,
        reason: request.reason,
    });
    submit(&state, &headers, command, StatusCode::OK).await
}

pub async fn get_order(
    State(state): State<GatewayState>,
    Path(order_id): Path<String>,
) -> Response {
    let order_id = match parse_uuid_path(&order_id, "order", OrderId::parse) {
        Ok(order_id) => order_id.to_string(),
        Err(problem) => return problem.into_response(),
    };
    match state
        .store
        .get(foldline_orders::projection::order_key(&order_id))
        .await
    {
        Ok(Some(row)) => match read_order_row(&row).as_ref().and_then(order_view) {
            Some(view) => Json(view).into_response(),
            None => Problem::not_found("order").into_response(),
        },
        Ok(None) => Problem::not_found("order").into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot read order");
            Problem::unavailable("the order store").into_response()
        }
    }
}

pub async fn get_command(
    State(state): State<GatewayState>,
    Path(command_id): Path<String>,
) -> Response {
    let command_id = match parse_uuid_path(&command_id, "command", |text| text.parse::<CommandId>())
    {
        Ok(command_id) => command_id.to_string(),
        Err(problem) => return problem.into_response(),
    };
    if let Some(row) = read_outcome_row(&state, &command_id).await {
        let rejection = match (&row.rejection_code, &row.rejection_message) {
            (Some(code), Some(message)) => Some(RejectionView {
                code: code.clone(),
                message: message.clone(),
            }),
            _ => None,
        };
        return Json(CommandView {
            command_id,
            status: row.status,
            order_id: row.order_id,
            order_version: Some(row.order_version),
            rejection,
        })
        .into_response();
    }
    let accepted_key = RowKey::new(
        ACCEPTED_COMMANDS_TABLE,
        command_id.clone().into_bytes(),
        Vec::new(),
    );
    match state.store.get(accepted_key).await {
        Ok(Some(row)) => {
            let order_id = serde_json::from_slice::<AcceptedCommand>(&row.value)
                .map(|accepted| accepted.order_id)
                .unwrap_or_default();
            Json(CommandView {
                command_id,
                status: "pending".to_owned(),
                order_id,
                order_version: None,
                rejection: None,
            })
            .into_response()
        }
        Ok(None) => Problem::not_found("command").into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot read command");
            Problem::unavailable("the order store").into_response()
        }
    }
}

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<OrderSummaryView>,
    next_cursor: Option<String>,
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 512 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

pub async fn list_customer_orders(
    State(state): State<GatewayState>,
    Path(customer_id): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let customer_id = match parse_uuid_path(&customer_id, "customer", CustomerId::parse) {
        Ok(customer_id) => customer_id.to_string(),
        Err(problem) => return problem.into_response(),
    };
    let Ok(Query(query)) = query else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is malformed",
        )
        .into_response();
    };
    let limit = match query.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
        Some(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                format!("limit must be an integer from 1 to {MAX_PAGE}"),
            )
            .into_response()
        }
    };
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => match unhex(cursor) {
            Some(after) => Some(after),
            None => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "the cursor is not one this api issued",
                )
                .into_response()
            }
        },
    };
    // One extra row tells whether another page exists.
    match state
        .store
        .scan(
            ORDERS_BY_CUSTOMER,
            customer_id.into_bytes(),
            after,
            limit + 1,
        )
        .await
    {
        Ok(rows) => {
            let has_more = rows.len() > limit;
            let rows: Vec<_> = rows.into_iter().take(limit).collect();
            let next_cursor = if has_more {
                rows.last().map(|(clustering, _)| hex(clustering))
            } else {
                None
            };
            let items = rows
                .iter()
                .filter_map(|(_, row)| serde_json::from_slice::<CustomerOrderRow>(&row.value).ok())
                .map(OrderSummaryView::from)
                .collect();
            Json(Page { items, next_cursor }).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "cannot list customer orders");
            Problem::unavailable("the order store").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_wait_is_parsed_and_capped() {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", HeaderValue::from_static("respond-async, wait=5"));
        assert_eq!(preferred_wait(&headers, 20), Some(Duration::from_secs(5)));
        headers.insert("prefer", HeaderValue::from_static("wait=999"));
        assert_eq!(preferred_wait(&headers, 20), Some(Duration::from_secs(20)));
        headers.insert("prefer", HeaderValue::from_static("wait=soon"));
        assert_eq!(preferred_wait(&headers, 20), None);
        assert_eq!(preferred_wait(&HeaderMap::new(), 20), None);
    }

    #[test]
    fn the_request_hash_ignores_whitespace_but_not_content() {
        let compact = request_hash("r", br#"{"a":1}"#);
        assert_eq!(compact, request_hash("r", b"{ \"a\" : 1 }"));
        assert_ne!(compact, request_hash("r", br#"{"a":2}"#));
        assert_ne!(compact, request_hash("other", br#"{"a":1}"#));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let clustering = vec![0, 255, 16, 7];
        assert_eq!(unhex(&hex(&clustering)), Some(clustering));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
    }

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
        };
        let problem = validate_place(request, OrderId(Uuid::nil())).unwrap_err();
        assert_eq!(problem.code, "no_lines");
    }
}
