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
//!
//! Where records live is [`IdempotencyRecords`] (`gateway.idempotency`):
//! the store (shared by replicas only when the store is), or Redis, where
//! the reservation is one atomic `SET NX EX` and every replica meets the
//! same record whatever its store. While Redis is unreachable a keyed
//! command is refused with 503 rather than reserved elsewhere: a record
//! reserved in the store during the outage would be invisible to the
//! replicas reading Redis afterwards, and a retry could then become a
//! second command under one command id (ARCHITECTURE.md, *Shared gateway
//! state*). Commands without a key are unaffected.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use foldline_eventsourcing::CommandId;
use foldline_platform::config::{CacheConfig, ConfigError, GatewayConfig, IdempotencyBackend};
use foldline_platform::shared_state::SharedState;
use foldline_platform::store::{RowKey, StoredRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::{decode_row, encode_row, GatewayError};
use crate::problem::Problem;
use crate::{DomainEdge, GatewayState};

const IDEMPOTENCY_TABLE: &str = "idempotency_keys";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Where `Idempotency-Key` records live (`gateway.idempotency.backend`).
#[derive(Clone, Debug)]
pub enum IdempotencyRecords {
    /// Rows of the `idempotency_keys` table of the projection store.
    Store,
    /// `<cache.key_prefix>idempotency:<command id>` in Redis, for `ttl`.
    Redis {
        shared: Arc<SharedState>,
        ttl: Duration,
    },
}

impl IdempotencyRecords {
    pub fn from_config(
        gateway: &GatewayConfig,
        cache: &CacheConfig,
    ) -> Result<IdempotencyRecords, ConfigError> {
        let config = &gateway.idempotency;
        Ok(match config.backend {
            IdempotencyBackend::Store => IdempotencyRecords::Store,
            IdempotencyBackend::Redis => IdempotencyRecords::Redis {
                shared: Arc::new(SharedState::new(
                    &cache.url,
                    &cache.key_prefix,
                    Duration::from_millis(config.timeout_ms),
                )?),
                ttl: Duration::from_secs(config.ttl_seconds),
            },
        })
    }

    /// Reserves `record` for `command_id` unless a record is there: `None`
    /// when this request is the first, else the first request's record.
    async fn reserve(
        &self,
        state: &GatewayState,
        command_id: CommandId,
        record: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, Problem> {
        match self {
            IdempotencyRecords::Store => {
                let key_row = RowKey::new(
                    IDEMPOTENCY_TABLE,
                    command_id.to_string().into_bytes(),
                    Vec::new(),
                );
                let row = StoredRow {
                    position: 0,
                    value: record,
                };
                let existing = state
                    .store
                    .insert_if_absent(key_row, row)
                    .await
                    .map_err(GatewayError::from)?;
                Ok(existing.map(|row| row.value))
            }
            IdempotencyRecords::Redis { shared, ttl } => shared
                .reserve(&format!("idempotency:{command_id}"), &record, *ttl)
                .await
                .map_err(|error| {
                    if shared.should_warn() {
                        tracing::warn!(%error, "idempotency records unreachable, refusing keyed commands");
                    }
                    Problem::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "idempotency_unavailable",
                        "requests with an idempotency-key cannot be accepted right now, retry later",
                    )
                    .retry_after(1)
                }),
        }
    }
}

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

/// Counts a keyed request whose key the window already held
/// (`foldline_gateway_idempotency_retries_total`), under the commands topic
/// of the domain whose collection `route` addresses.
fn count_retry(state: &GatewayState, route: &str, same_request: bool) {
    let topic = commands_topic_of(&state.domains, route);
    let verdict = if same_request {
        "same_request"
    } else {
        "other_request"
    };
    foldline_platform::metrics::metrics()
        .idempotency_retries
        .with_label_values(&[topic, verdict])
        .inc();
}

/// The commands topic of the domain whose collection a route (`METHOD
/// /path`) addresses; empty when none does.
fn commands_topic_of<'a>(domains: &'a BTreeMap<String, DomainEdge>, route: &str) -> &'a str {
    let path = route.split_once(' ').map_or(route, |(_, path)| path);
    domains
        .values()
        .find(|edge| {
            path.strip_prefix(edge.collection)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .map_or("", |edge| edge.commands_topic.as_str())
}

/// The identity of a command request after the idempotency check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandIdentity {
    pub command_id: CommandId,
    pub aggregate_id: String,
    /// The issue time and correlation id of the first request with this key.
    pub issued_at: i64,
    pub correlation_id: String,
    /// Whether an earlier request with the same key and body reserved this
    /// identity: a retry, to be answered from what the log settled, never
    /// from a dry run against today's read model.
    pub retry: bool,
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
            retry: false,
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
    let encoded = encode_row(IDEMPOTENCY_TABLE, &record)?;
    let existing = state
        .idempotency
        .reserve(state, command_id, encoded)
        .await?;
    let Some(existing) = existing else {
        return Ok(CommandIdentity {
            command_id,
            aggregate_id: record.aggregate_id,
            issued_at,
            correlation_id,
            retry: false,
        });
    };
    let first: IdempotencyRecord = decode_row(IDEMPOTENCY_TABLE, &existing)?;
    let same_request = first.request_hash == record.request_hash;
    count_retry(state, route, same_request);
    if !same_request {
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
        retry: true,
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
    fn a_retry_is_counted_under_the_commands_topic_of_the_route_s_domain() {
        let edge = |collection: &'static str, topic: &str| DomainEdge {
            noun: "thing",
            collection,
            commands_topic: topic.to_owned(),
            watermarks: None,
        };
        let domains = BTreeMap::from([
            ("orders".to_owned(), edge("/v1/orders", "p.orders.commands")),
            ("users".to_owned(), edge("/v1/users", "p.users.commands")),
        ]);
        assert_eq!(
            commands_topic_of(&domains, "POST /v1/users"),
            "p.users.commands"
        );
        assert_eq!(
            commands_topic_of(&domains, "POST /v1/orders/o-1/cancel"),
            "p.orders.commands"
        );
        assert_eq!(commands_topic_of(&domains, "POST /v1/usersx"), "");
        assert_eq!(commands_topic_of(&domains, "POST /v1/payments"), "");
    }

    #[test]
    fn records_written_before_the_rename_still_read() {
        let old = br#"{"request_hash":"h","order_id":"o"}"#;
        let record: IdempotencyRecord = decode_row(IDEMPOTENCY_TABLE, old).unwrap();
        assert_eq!(record.aggregate_id, "o");
    }
}
