//! `Idempotency-Key`: the same client and key always name the same command,
//! on every gateway replica; the same key with another request is refused.
//!
//! The first request with a key reserves it (an insert-if-absent row in
//! `idempotency_keys`, keyed by the derived command id) together with the
//! aggregate id it chose, so a retry of a creation addresses the aggregate
//! the first attempt created instead of a fresh one, and with the moment and
//! correlation id it was issued under, so a retry re-produces the very same
//! command record (a command id names one command: the processor's
//! redecision and every reader see the same bytes, whichever copy they meet).

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use axum::http::{HeaderMap, StatusCode};
use foldline_eventsourcing::CommandId;
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::{decode_row, encode_row, GatewayError};
use crate::problem::Problem;
use crate::GatewayState;

const IDEMPOTENCY_TABLE: &str = "idempotency_keys";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    request_hash: String,
    /// The aggregate the first request addressed (for a creation: the id it
    /// chose). The field name is kept from when only orders existed.
    #[serde(rename = "order_id")]
    aggregate_id: String,
    /// When the first request was issued (absent in rows written before the
    /// stamp was kept: such a retry is stamped anew).
    #[serde(default)]
    issued_at: Option<i64>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// The identity of a command request after the idempotency check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandIdentity {
    pub command_id: CommandId,
    pub aggregate_id: String,
    /// The issue time and correlation id of the first request with this key.
    pub issued_at: i64,
    pub correlation_id: String,
}

/// Resolves the command id (and, for a creation, the aggregate id) of a
/// request. `route` and `body` identify the request; `fresh_aggregate_id` is
/// the aggregate it addresses when its key is new.
pub async fn identify(
    state: &GatewayState,
    headers: &HeaderMap,
    route: &str,
    body: &[u8],
    fresh_aggregate_id: String,
) -> Result<CommandIdentity, Problem> {
    let issued_at = crate::commands::now_millis();
    let correlation_id = Uuid::now_v7().to_string();
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(CommandIdentity {
            command_id: CommandId(Uuid::now_v7()),
            aggregate_id: fresh_aggregate_id,
            issued_at,
            correlation_id,
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
        aggregate_id: fresh_aggregate_id,
        issued_at: Some(issued_at),
        correlation_id: Some(correlation_id.clone()),
    };
    let row = StoredRow {
        position: 0,
        value: encode_row(IDEMPOTENCY_TABLE, &record)?,
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
        .map_err(GatewayError::from)?;
    let Some(existing) = existing else {
        return Ok(CommandIdentity {
            command_id,
            aggregate_id: record.aggregate_id,
            issued_at,
            correlation_id,
        });
    };
    let first: IdempotencyRecord = decode_row(IDEMPOTENCY_TABLE, &existing.value)?;
    if first.request_hash != record.request_hash {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this idempotency-key was already used with a different request",
        ));
    }
    Ok(CommandIdentity {
        command_id,
        aggregate_id: first.aggregate_id,
        issued_at: first.issued_at.unwrap_or(issued_at),
        correlation_id: first.correlation_id.unwrap_or(correlation_id),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_hash_ignores_whitespace_but_not_content() {
        let compact = request_hash("r", br#"{"a":1}"#);
        assert_eq!(compact, request_hash("r", b"{ \"a\" : 1 }"));
        assert_ne!(compact, request_hash("r", br#"{"a":2}"#));
        assert_ne!(compact, request_hash("other", br#"{"a":1}"#));
    }

    #[test]
    fn records_written_before_the_rename_still_read() {
        let old = br#"{"request_hash":"h","order_id":"o"}"#;
        let record: IdempotencyRecord = decode_row(IDEMPOTENCY_TABLE, old).unwrap();
        assert_eq!(record.aggregate_id, "o");
    }
}
