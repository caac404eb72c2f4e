//! The command side of every domain's routes: record the command as
//! accepted, produce it keyed by its aggregate, and answer 202 with its
//! location — or, with `Prefer: wait=N`, wait for the outcome the log
//! settled and for the projection to reach it, then answer with the
//! aggregate (201/200) or the rejection (404/409/422). Also
//! `GET /v1/commands/{id}`, for any domain.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use foldline_contracts::envelope::{CommandMetadata, CommandOutcome};
use foldline_contracts::record::CommandRecord;
use foldline_eventsourcing::{CommandId, RejectionKind};
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, COMMAND_OUTCOMES};
use foldline_platform::headers::command_headers;
use foldline_platform::store::{RowKey, Store, StoredRow};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::http::{
    decode_row, encode_row, parse_path_id, preferred_wait, set_header, GatewayError,
};
use crate::idempotency::CommandIdentity;
use crate::problem::Problem;
use crate::{DomainEdge, GatewayState};

const ACCEPTED_COMMANDS_TABLE: &str = "accepted_commands";
/// How often a waiting request re-reads the projection once the outcome is
/// known but the projection has not caught up (only when no in-process
/// projector reports its progress).
const PROJECTION_POLL: Duration = Duration::from_millis(5);

pub(crate) fn readiness_probe_key() -> RowKey {
    RowKey::new(ACCEPTED_COMMANDS_TABLE, b"readiness".to_vec(), Vec::new())
}

/// How a domain's routes read one aggregate back for `Prefer: wait`.
pub trait AggregateView: Sync {
    /// The aggregate's projected view as a JSON body (the very bytes `GET`
    /// of the aggregate answers), once the projection reflects at least
    /// `min_version`; `None` before that, without building the body.
    fn read(
        &self,
        store: &Store,
        aggregate_id: &str,
        min_version: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, GatewayError>> + Send;

    /// The id clients know the resource by (its `Location`), when the
    /// command addresses another aggregate on its behalf (a user's
    /// registration is decided by its email claim).
    fn resource_id<'a>(&'a self, aggregate_id: &'a str) -> &'a str {
        aggregate_id
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct AcceptedCommand {
    /// The field name is kept from when only orders existed.
    #[serde(rename = "order_id")]
    aggregate_id: String,
    accepted_at: i64,
    #[serde(default)]
    domain: String,
}

pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The metadata of a command this gateway issues now.
pub fn command_metadata(
    state: &GatewayState,
    command_id: CommandId,
    headers: &HeaderMap,
) -> CommandMetadata {
    stamped_metadata(
        state,
        command_id,
        Uuid::now_v7().to_string(),
        now_millis(),
        headers,
    )
}

/// The metadata of the command `identity` names: a retry with the same
/// `Idempotency-Key` gets the first request's issue time and correlation id,
/// so it re-produces the same record rather than a second command under the
/// same id.
pub fn identity_metadata(
    state: &GatewayState,
    identity: &CommandIdentity,
    headers: &HeaderMap,
) -> CommandMetadata {
    stamped_metadata(
        state,
        identity.command_id,
        identity.correlation_id.clone(),
        identity.issued_at,
        headers,
    )
}

fn stamped_metadata(
    state: &GatewayState,
    command_id: CommandId,
    correlation_id: String,
    issued_at: i64,
    headers: &HeaderMap,
) -> CommandMetadata {
    CommandMetadata {
        command_id: command_id.to_string(),
        correlation_id,
        causation_id: None,
        issued_at,
        issued_by: state.config.client_id.clone(),
        traceparent: headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .filter(|value| value.len() <= 128)
            .map(str::to_owned),
    }
}

/// Produces `command` for `domain` and, when asked, waits for its outcome.
/// `created_status` is the success status once settled (201 for a creation).
pub async fn submit<C: CommandRecord, V: AggregateView>(
    state: &GatewayState,
    domain: &str,
    view: &V,
    headers: &HeaderMap,
    command: C,
    created_status: StatusCode,
) -> Result<Response, Problem> {
    let edge = state.edge(domain)?;
    let command_id = command.metadata().command_id.clone();
    let aggregate_id = command.aggregate_id().to_owned();
    if let Err(refused) = state.admission.admit(domain, &command_id) {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            refused.to_string(),
        )
        .retry_after(1));
    }
    let wait = preferred_wait(headers, state.config.max_wait_seconds);
    let receiver = wait.map(|_| state.outcomes.subscribe(&command_id));

    let accepted = AcceptedCommand {
        aggregate_id: aggregate_id.clone(),
        accepted_at: command.metadata().issued_at,
        domain: domain.to_owned(),
    };
    let accepted_row = StoredRow {
        position: 0,
        value: encode_row(ACCEPTED_COMMANDS_TABLE, &accepted)?,
    };
    let accepted_key = RowKey::new(
        ACCEPTED_COMMANDS_TABLE,
        command_id.clone().into_bytes(),
        Vec::new(),
    );
    let recorded = state
        .store
        .insert_if_absent(accepted_key, accepted_row)
        .await;
    if let Err(error) = recorded {
        state.outcomes.forget(&command_id);
        state.admission.release(&command_id);
        return Err(GatewayError::from(error).into());
    }
    if let Err(error) = produce(state, edge, &command).await {
        // Not produced, so nothing will settle it. (A produce that timed
        // out may still land; its slot then comes back on its outcome or
        // expiry, whichever is first, which only errs towards admitting.)
        state.outcomes.forget(&command_id);
        state.admission.release(&command_id);
        return Err(error.into());
    }

    let (Some(wait), Some(receiver)) = (wait, receiver) else {
        return Ok(pending_response(
            edge,
            &command_id,
            view.resource_id(&aggregate_id),
        ));
    };
    let deadline = tokio::time::Instant::now() + wait;
    // A retry of a settled command finds its outcome in the projection.
    let settled = match read_outcome_row(&state.store, &command_id).await {
        Ok(Some(row)) => Some(Settled::from_outcome(row.outcome)),
        Ok(None) => tokio::time::timeout_at(deadline, receiver)
            .await
            .ok()
            .and_then(Result::ok)
            .map(Settled::from_outcome),
        Err(error) => {
            state.outcomes.forget(&command_id);
            return Err(error.into());
        }
    };
    state.outcomes.forget(&command_id);
    let Some(settled) = settled else {
        return Ok(pending_response(
            edge,
            &command_id,
            view.resource_id(&aggregate_id),
        ));
    };
    if let Some(rejection) = settled.rejection {
        let status = match rejection.kind {
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
            RejectionKind::Conflict => StatusCode::CONFLICT,
            RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        };
        return Err(Problem::new(status, &rejection.code, rejection.message));
    }
    // Read-your-writes: answer with the aggregate once the projection has it.
    if let Some(watermarks) = &edge.watermarks {
        watermarks
            .wait_for(settled.partition, settled.offset, deadline)
            .await;
    }
    loop {
        if let Some(body) = view
            .read(&state.store, &aggregate_id, settled.version)
            .await?
        {
            let mut response = (
                created_status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            set_header(
                &mut response,
                header::LOCATION,
                &format!("{}/{}", edge.collection, view.resource_id(&aggregate_id)),
            );
            set_header(&mut response, "preference-applied", "wait");
            set_header(&mut response, "foldline-command-id", &command_id);
            return Ok(response);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(pending_response(
                edge,
                &command_id,
                view.resource_id(&aggregate_id),
            ));
        }
        tokio::time::sleep(PROJECTION_POLL).await;
    }
}

struct SettledRejection {
    code: String,
    kind: RejectionKind,
    message: String,
}

/// A command's outcome, from the outcomes topic or the projection.
struct Settled {
    version: u64,
    partition: i32,
    offset: i64,
    rejection: Option<SettledRejection>,
}

impl Settled {
    fn from_outcome(outcome: CommandOutcome) -> Settled {
        let accepted = outcome.is_accepted();
        Settled {
            version: u64::try_from(outcome.aggregate_version).unwrap_or(0),
            partition: outcome.event_partition,
            offset: outcome.event_offset,
            rejection: (!accepted).then(|| SettledRejection {
                code: outcome.rejection_code.unwrap_or_default(),
                kind: RejectionKind::from_log(outcome.rejection_kind.as_deref().unwrap_or("")),
                message: outcome.rejection_message.unwrap_or_default(),
            }),
        }
    }
}

fn pending_response(edge: &DomainEdge, command_id: &str, aggregate_id: &str) -> Response {
    let mut body = Map::new();
    body.insert("command_id".to_owned(), Value::from(command_id));
    body.insert(edge.id_field(), Value::from(aggregate_id));
    body.insert("status".to_owned(), Value::from("pending"));
    let mut response = (StatusCode::ACCEPTED, Json(Value::Object(body))).into_response();
    set_header(
        &mut response,
        header::LOCATION,
        &format!("/v1/commands/{command_id}"),
    );
    response
}

async fn produce<C: CommandRecord>(
    state: &GatewayState,
    edge: &DomainEdge,
    command: &C,
) -> Result<(), GatewayError> {
    let value = command.to_avro()?;
    let bytes = state
        .codec
        .encode_value(&edge.commands_topic, command.record_name(), value)
        .await?;
    let headers = command_headers(command.metadata(), command.record_name());
    let record = FutureRecord::to(&edge.commands_topic)
        .key(command.aggregate_id())
        .payload(&bytes)
        .headers(headers);
    state
        .producer
        .send(record, Duration::from_secs(5))
        .await
        .map(|_| ())
        .map_err(|(error, _)| GatewayError::Produce(error))
}

async fn read_outcome_row(
    store: &Store,
    command_id: &str,
) -> Result<Option<CommandOutcomeRow>, GatewayError> {
    match store.get(outcome_key(command_id)).await? {
        Some(row) => Ok(Some(decode_row(COMMAND_OUTCOMES, &row.value)?)),
        None => Ok(None),
    }
}

/// `GET /v1/commands/{id}`: how the log settled a command of any domain,
/// or `pending` while it is accepted but not settled.
pub async fn get_command(
    State(state): State<GatewayState>,
    Path(command_id): Path<String>,
) -> Result<Response, Problem> {
    let command_id =
        parse_path_id(&command_id, "command", |text| text.parse::<CommandId>())?.to_string();
    if let Some(row) = read_outcome_row(&state.store, &command_id).await? {
        let edge = state.edge(&row.domain)?;
        let outcome = row.outcome;
        let mut aggregate = Map::new();
        aggregate.insert(edge.id_field(), Value::from(outcome.aggregate_id));
        aggregate.insert(edge.version_field(), Value::from(outcome.aggregate_version));
        let rejection = match (outcome.rejection_code, outcome.rejection_message) {
            (Some(code), Some(message)) => Some(RejectionView { code, message }),
            _ => None,
        };
        return Ok(Json(CommandView {
            command_id,
            status: outcome.status,
            aggregate,
            rejection,
        })
        .into_response());
    }
    let accepted_key = RowKey::new(
        ACCEPTED_COMMANDS_TABLE,
        command_id.clone().into_bytes(),
        Vec::new(),
    );
    let Some(row) = state
        .store
        .get(accepted_key)
        .await
        .map_err(GatewayError::from)?
    else {
        return Err(Problem::not_found("command"));
    };
    let accepted: AcceptedCommand = decode_row(ACCEPTED_COMMANDS_TABLE, &row.value)?;
    let edge = state.edge(&accepted.domain)?;
    let mut aggregate = Map::new();
    aggregate.insert(edge.id_field(), Value::from(accepted.aggregate_id));
    Ok(Json(CommandView {
        command_id,
        status: "pending".to_owned(),
        aggregate,
        rejection: None,
    })
    .into_response())
}

/// `GET /v1/commands/{id}`: the aggregate's fields are named by its domain
/// (`order_id`, `order_version`), so they are a flattened map.
#[derive(Debug, Serialize)]
struct CommandView {
    command_id: String,
    status: String,
    #[serde(flatten)]
    aggregate: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection: Option<RejectionView>,
}

#[derive(Debug, Serialize)]
struct RejectionView {
    code: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accepted_row_written_before_domains_existed_still_reads() {
        let old = br#"{"order_id":"o","accepted_at":1}"#;
        let row: AcceptedCommand = decode_row(ACCEPTED_COMMANDS_TABLE, old).unwrap();
        assert_eq!((row.aggregate_id.as_str(), row.domain.as_str()), ("o", ""));
    }

    #[test]
    fn a_command_view_names_the_aggregate_by_its_domain_in_a_stable_order() {
        let mut aggregate = Map::new();
        aggregate.insert("order_id".to_owned(), Value::from("o"));
        aggregate.insert("order_version".to_owned(), Value::from(2));
        let view = CommandView {
            command_id: "c".to_owned(),
            status: "rejected".to_owned(),
            aggregate,
            rejection: Some(RejectionView {
                code: "already_cancelled".to_owned(),
                message: "order is already cancelled".to_owned(),
            }),
        };
        assert_eq!(
            serde_json::to_string(&view).unwrap(),
            r#"{"command_id":"c","status":"rejected","order_id":"o","order_version":2,"rejection":{"code":"already_cancelled","message":"order is already cancelled"}}"#
        );
    }

    #[test]
    fn a_rejected_outcome_keeps_its_code_and_kind() {
        let outcome = CommandOutcome {
            command_id: "c".to_owned(),
            correlation_id: "c".to_owned(),
            aggregate_id: "a".to_owned(),
            status: CommandOutcome::REJECTED.to_owned(),
            aggregate_version: 3,
            event_id: "e".to_owned(),
            event_type: "foldline.CommandRejected".to_owned(),
            event_partition: 1,
            event_offset: 9,
            rejection_code: Some("already_cancelled".to_owned()),
            rejection_kind: Some("conflict".to_owned()),
            rejection_message: Some("order is already cancelled".to_owned()),
            decided_at: 0,
        };
        let settled = Settled::from_outcome(outcome);
        let rejection = settled.rejection.expect("rejected");
        assert_eq!(rejection.kind, RejectionKind::Conflict);
        assert_eq!(rejection.code, "already_cancelled");
        assert_eq!(
            (settled.partition, settled.offset, settled.version),
            (1, 9, 3)
        );
    }
}
