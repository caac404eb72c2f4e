//! The notify routes: queue a notification, read one back, list a
//! recipient's, read the local sink, and the delivery latency against the
//! SLA. The command flow, idempotency and errors are the gateway's.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use foldline_contracts::notify::{self as wire, NotifyCommandRecord};
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

use crate::domain::{Channel, Notification, NotificationId, Parameters, Recipient, Template};
use crate::hooks::relay::{NoticeOutcome, NoticeRow, NOTIFY_ORDER_NOTICES};
use crate::latency::{Latencies, Quantiles, Sample, SLA_P99_MS};
use crate::projection::{
    notification_key, providers_partition, recipient_partition, samples_partition, NotificationRow,
    RecipientRow, NOTIFICATIONS_BY_RECIPIENT, NOTIFICATION_BY_ID, NOTIFY_LATENCY_PROVIDERS,
    NOTIFY_LATENCY_SAMPLES,
};
use crate::providers::{SinkRow, NOTIFICATION_SINK};
use crate::wire::parameters_to_wire;
use crate::DOMAIN;

pub fn router() -> Router<GatewayState> {
    Router::new()
        .route(
            "/v1/notifications",
            post(send_notification).get(list_by_recipient),
        )
        .route("/v1/notifications/latency", get(latency))
        .route("/v1/notifications/sink", get(read_sink))
        .route("/v1/notifications/notices", get(read_notices))
        .route("/v1/notifications/{notification_id}", get(get_notification))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    channel: String,
    recipient: String,
    template: String,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RecipientQuery {
    recipient: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

#[derive(Debug, Serialize)]
struct FailoverView {
    attempt: u32,
    from: String,
    to: String,
    reason: String,
    at: String,
}

#[derive(Debug, Serialize)]
struct DeliveryView {
    attempt: u32,
    provider: String,
    latency_ms: u64,
    provider_call_us: u64,
    provider_message_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct NotificationView {
    id: String,
    channel: &'static str,
    recipient: String,
    template: String,
    parameters: BTreeMap<String, String>,
    status: &'static str,
    version: u64,
    failed_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_failure: Option<String>,
    failovers: Vec<FailoverView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<DeliveryView>,
    queued_at: String,
    updated_at: String,
}

fn view(row: &NotificationRow) -> NotificationView {
    let notification: &Notification = &row.notification;
    NotificationView {
        id: notification.notification_id.to_string(),
        channel: notification.channel.as_str(),
        recipient: notification.recipient.as_str().to_owned(),
        template: notification.template.as_str().to_owned(),
        parameters: notification
            .parameters
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        status: notification.status.as_str(),
        version: row.version,
        failed_attempts: notification.failed_attempts,
        retry_at: notification.retry_at.map(|at| rfc3339_millis(at.millis())),
        last_failure: notification
            .last_failure
            .as_ref()
            .map(|reason| reason.as_str().to_owned()),
        failovers: notification
            .failovers
            .iter()
            .map(|failover| FailoverView {
                attempt: failover.attempt.number(),
                from: failover.from.to_string(),
                to: failover.to.to_string(),
                reason: failover.reason.as_str().to_owned(),
                at: rfc3339_millis(failover.at.millis()),
            })
            .collect(),
        delivery: notification.delivery.as_ref().map(|delivery| DeliveryView {
            attempt: delivery.attempt.number(),
            provider: delivery.provider.to_string(),
            latency_ms: delivery.latency_ms,
            provider_call_us: delivery.provider_call_us,
            provider_message_id: delivery.provider_message_id.clone(),
        }),
        queued_at: rfc3339_millis(notification.queued_at.millis()),
        updated_at: rfc3339_millis(notification.updated_at.millis()),
    }
}

async fn read_notification(
    store: &Store,
    id: &str,
) -> Result<Option<NotificationRow>, GatewayError> {
    match store.get(notification_key(id)).await? {
        Some(row) => Ok(Some(decode_row(NOTIFICATION_BY_ID, &row.value)?)),
        None => Ok(None),
    }
}

fn to_body<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(value).map_err(|error| GatewayError::Row {
        table,
        reason: error.to_string(),
    })
}

struct NotificationReadBack;

impl AggregateView for NotificationReadBack {
    async fn read(
        &self,
        store: &Store,
        aggregate_id: &str,
        min_version: u64,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        match read_notification(store, aggregate_id).await? {
            Some(row) if row.version >= min_version => {
                to_body(NOTIFICATION_BY_ID, &view(&row)).map(Some)
            }
            _ => Ok(None),
        }
    }
}

fn field_error(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

struct ValidSend {
    channel: Channel,
    recipient: Recipient,
    template: Template,
    parameters: Parameters,
}

fn validate(request: &SendRequest) -> Result<ValidSend, Problem> {
    let mut errors = Vec::new();
    let channel = Channel::parse(&request.channel)
        .map_err(|error| errors.push(field_error("channel", error)))
        .ok();
    let recipient = channel.and_then(|channel| {
        Recipient::parse(channel, &request.recipient)
            .map_err(|error| errors.push(field_error("recipient", error)))
            .ok()
    });
    let template = Template::parse(&request.template)
        .map_err(|error| errors.push(field_error("template", error)))
        .ok();
    let parameters = Parameters::parse(
        request
            .parameters
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    )
    .map_err(|error| errors.push(field_error("parameters", error)))
    .ok();
    match (channel, recipient, template, parameters) {
        (Some(channel), Some(recipient), Some(template), Some(parameters)) if errors.is_empty() => {
            Ok(ValidSend {
                channel,
                recipient,
                template,
                parameters,
            })
        }
        _ => Err(Problem::invalid_fields(errors)),
    }
}

async fn send_notification(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = parse_json::<SendRequest>(&headers, body, false)?.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "a body is required",
        )
    })?;
    let valid = validate(&request)?;
    let identity = identify(
        &state,
        &headers,
        "POST /v1/notifications",
        &raw,
        Uuid::now_v7().to_string(),
    )
    .await?;
    let command = NotifyCommandRecord::Send(wire::SendNotification {
        metadata: identity_metadata(&state, &identity, &headers),
        aggregate_id: identity.aggregate_id.clone(),
        channel: valid.channel.as_str().to_owned(),
        recipient: valid.recipient.as_str().to_owned(),
        template: valid.template.as_str().to_owned(),
        parameters: parameters_to_wire(&valid.parameters),
    });
    commands::submit(
        &state,
        DOMAIN,
        &NotificationReadBack,
        &headers,
        command,
        StatusCode::CREATED,
    )
    .await
}

async fn get_notification(
    State(state): State<GatewayState>,
    Path(notification_id): Path<String>,
) -> Result<Response, Problem> {
    let id = parse_path_id(&notification_id, "notification", NotificationId::parse)?;
    match read_notification(&state.store, &id.to_string()).await? {
        Some(row) => Ok(Json(view(&row)).into_response()),
        None => Err(Problem::not_found("notification")),
    }
}

/// The recipient as stored: whichever channel's rules the text fits.
fn normalised_recipient(text: Option<&str>) -> Result<String, Problem> {
    let text = text.filter(|text| !text.trim().is_empty()).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "recipient is required",
        )
    })?;
    Channel::ALL
        .into_iter()
        .find_map(|channel| Recipient::parse(channel, text).ok())
        .map(|recipient| recipient.as_str().to_owned())
        .ok_or_else(|| {
            Problem::invalid_fields(vec![field_error(
                "recipient",
                "must be an email address, an E.164 phone number or an http(s) url",
            )])
        })
}

fn recipient_query(
    query: Result<Query<RecipientQuery>, QueryRejection>,
) -> Result<(String, PageRequest), Problem> {
    let Ok(Query(query)) = query else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is malformed",
        ));
    };
    let recipient = normalised_recipient(query.recipient.as_deref())?;
    let page = PageRequest::from_query(Ok(Query(query.page)))?;
    Ok((recipient, page))
}

#[derive(Debug, Serialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

async fn list_by_recipient(
    State(state): State<GatewayState>,
    query: Result<Query<RecipientQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let (recipient, page) = recipient_query(query)?;
    let rows = state
        .store
        .scan(
            NOTIFICATIONS_BY_RECIPIENT,
            recipient_partition(&recipient),
            page.after.clone(),
            page.fetch(),
        )
        .await
        .map_err(GatewayError::from)?;
    let (rows, next_cursor) = page.page(rows);
    let mut items = Vec::new();
    for (_, row) in rows {
        let index: RecipientRow = decode_row(NOTIFICATIONS_BY_RECIPIENT, &row.value)?;
        if let Some(notification) = read_notification(&state.store, &index.notification_id).await? {
            items.push(view(&notification));
        }
    }
    Ok(Json(Page { items, next_cursor }).into_response())
}

#[derive(Debug, Serialize)]
struct SinkView {
    notification_id: String,
    provider: String,
    channel: &'static str,
    template: String,
    parameters: BTreeMap<String, String>,
    accepted_at: String,
}

async fn read_sink(
    State(state): State<GatewayState>,
    query: Result<Query<RecipientQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let (recipient, page) = recipient_query(query)?;
    let rows = state
        .store
        .scan(
            NOTIFICATION_SINK,
            recipient.as_bytes().to_vec(),
            page.after.clone(),
            page.fetch(),
        )
        .await
        .map_err(GatewayError::from)?;
    let (rows, next_cursor) = page.page(rows);
    let items = rows
        .into_iter()
        .map(|(_, row)| {
            let sunk: SinkRow = decode_row(NOTIFICATION_SINK, &row.value)?;
            Ok(SinkView {
                notification_id: sunk.message.notification_id.to_string(),
                provider: sunk.provider.to_string(),
                channel: sunk.message.channel.as_str(),
                template: sunk.message.template.as_str().to_owned(),
                parameters: sunk
                    .message
                    .parameters
                    .iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect(),
                accepted_at: rfc3339_millis(sunk.accepted_at),
            })
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    Ok(Json(Page { items, next_cursor }).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoticesQuery {
    order_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct NoticeView {
    event_id: String,
    template: String,
    #[serde(flatten)]
    outcome: NoticeOutcome,
    recorded_at: String,
}

/// What became of each notice about an order (queued, or skipped and why).
async fn read_notices(
    State(state): State<GatewayState>,
    query: Result<Query<NoticesQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let order_id = match query {
        Ok(Query(NoticesQuery {
            order_id: Some(order_id),
        })) if Uuid::parse_str(&order_id).is_ok() => order_id,
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "order_id (a UUID) is required",
            ))
        }
    };
    let rows = state
        .store
        .scan(NOTIFY_ORDER_NOTICES, order_id.into_bytes(), None, 100)
        .await
        .map_err(GatewayError::from)?;
    let items = rows
        .into_iter()
        .map(|(_, row)| {
            let notice: NoticeRow = decode_row(NOTIFY_ORDER_NOTICES, &row.value)?;
            Ok(NoticeView {
                event_id: notice.event_id,
                template: notice.template,
                outcome: notice.outcome,
                recorded_at: rfc3339_millis(notice.recorded_at),
            })
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

#[derive(Debug, Serialize)]
struct LatencyView {
    channel: &'static str,
    provider: String,
    /// Request → provider accepted, milliseconds.
    end_to_end_ms: Quantiles,
    /// The accepting provider call alone, microseconds.
    provider_call_us: Quantiles,
    sla_p99_ms: u64,
    p99_breaches_sla: bool,
}

/// Most providers a channel's latency listing reads.
const MAX_PROVIDERS: usize = 64;
/// Samples read per store round trip.
const SAMPLE_PAGE: usize = 1_000;

async fn latency(State(state): State<GatewayState>) -> Result<Response, Problem> {
    let mut views = Vec::new();
    for channel in Channel::ALL {
        let providers = state
            .store
            .scan(
                NOTIFY_LATENCY_PROVIDERS,
                providers_partition(channel),
                None,
                MAX_PROVIDERS,
            )
            .await
            .map_err(GatewayError::from)?;
        for (provider, _) in providers {
            let provider = String::from_utf8_lossy(&provider).into_owned();
            let mut latencies = Latencies::default();
            let mut after = None;
            loop {
                let samples = state
                    .store
                    .scan(
                        NOTIFY_LATENCY_SAMPLES,
                        samples_partition(channel, &provider),
                        after.clone(),
                        SAMPLE_PAGE,
                    )
                    .await
                    .map_err(GatewayError::from)?;
                let full = samples.len() == SAMPLE_PAGE;
                for (clustering, row) in samples {
                    let sample: Sample = decode_row(NOTIFY_LATENCY_SAMPLES, &row.value)?;
                    latencies.record(&sample);
                    after = Some(clustering);
                }
                if !full {
                    break;
                }
            }
            let end_to_end = latencies.end_to_end();
            views.push(LatencyView {
                channel: channel.as_str(),
                provider,
                p99_breaches_sla: end_to_end.p99 > SLA_P99_MS,
                end_to_end_ms: end_to_end,
                provider_call_us: latencies.provider_call(),
                sla_p99_ms: SLA_P99_MS,
            });
        }
    }
    Ok(Json(serde_json::json!({ "providers": views })).into_response())
}
