//! HTTP plumbing every route shares: reading JSON bodies and path ids,
//! `Prefer: wait`, paging cursors, response headers, and the one mapping of
//! internal failures to problem+json.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::Query;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use foldline_contracts::record::WireError;
use foldline_platform::codec::CodecError;
use foldline_platform::store::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::Problem;

pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;
/// The longest cursor this API issues, hex-encoded.
const MAX_CURSOR_CHARS: usize = 512;

/// A failure behind the gateway. Clients see only "unavailable": internals
/// are logged here, once, where the error becomes a response.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    #[error("cannot produce to kafka: {0}")]
    Produce(#[from] rdkafka::error::KafkaError),
    #[error("row of {table} cannot be read or written: {reason}")]
    Row { table: &'static str, reason: String },
    #[error("domain {0} is not served by this gateway")]
    UnknownDomain(String),
}

impl From<GatewayError> for Problem {
    fn from(error: GatewayError) -> Problem {
        tracing::error!(error = %error, "request failed behind the gateway");
        Problem::unavailable("the service")
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

/// JSON bytes of a row the gateway keeps; a value that cannot be encoded is
/// an error, never an empty row.
pub fn encode_row<T: Serialize>(table: &'static str, value: &T) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(value).map_err(|error| GatewayError::Row {
        table,
        reason: error.to_string(),
    })
}

/// Reads a row the gateway or a projection wrote; unreadable bytes are an
/// error, never "absent".
pub fn decode_row<T: DeserializeOwned>(
    table: &'static str,
    bytes: &[u8],
) -> Result<T, GatewayError> {
    serde_json::from_slice(bytes).map_err(|error| GatewayError::Row {
        table,
        reason: error.to_string(),
    })
}

/// Reads a JSON request body; `Ok(None)` for an empty body when allowed.
pub fn parse_json<T: DeserializeOwned>(
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
    if body.is_empty() {
        if allow_empty {
            return Ok(None);
        }
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "a body is required",
        ));
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

/// Parses an id from the path; an id that cannot exist is a 404, not a 400,
/// so probing the id space learns nothing.
pub fn parse_path_id<T, E>(
    text: &str,
    what: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, Problem> {
    parse(text).map_err(|_| Problem::not_found(what))
}

/// Seconds from `Prefer: wait=N` (RFC 7240), capped by configuration.
pub fn preferred_wait(headers: &HeaderMap, max_seconds: u64) -> Option<Duration> {
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

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// A validated page request: how many rows, after which clustering key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub after: Option<Vec<u8>>,
}

impl PageRequest {
    pub fn from_query(query: Result<Query<PageQuery>, QueryRejection>) -> Result<Self, Problem> {
        let Ok(Query(query)) = query else {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "the query string is malformed",
            ));
        };
        let limit = match query.limit.as_deref().map(str::parse::<usize>) {
            None => DEFAULT_PAGE,
            Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(_) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_limit",
                    format!("limit must be an integer from 1 to {MAX_PAGE}"),
                ))
            }
        };
        let after = match query.cursor.as_deref() {
            None | Some("") => None,
            Some(cursor) => Some(unhex(cursor).ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "the cursor is not one this api issued",
                )
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    /// Rows to fetch: one extra tells whether another page exists.
    pub fn fetch(&self) -> usize {
        self.limit + 1
    }

    /// Keeps one page of `rows` (clustering key, value) and the cursor of
    /// the next page, if there is one.
    pub fn page<T>(&self, mut rows: Vec<(Vec<u8>, T)>) -> (Vec<(Vec<u8>, T)>, Option<String>) {
        let has_more = rows.len() > self.limit;
        rows.truncate(self.limit);
        let next_cursor = if has_more {
            rows.last().map(|(clustering, _)| hex(clustering))
        } else {
            None
        };
        (rows, next_cursor)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > MAX_CURSOR_CHARS {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

/// Sets a header whose value we built; a value that is not a valid header
/// is left out rather than failing the response.
pub fn set_header(response: &mut Response, name: impl header::IntoHeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
    fn cursors_round_trip_and_garbage_is_refused() {
        let clustering = vec![0, 255, 16, 7];
        assert_eq!(unhex(&hex(&clustering)), Some(clustering));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex(&"a".repeat(MAX_CURSOR_CHARS + 2)), None);
    }

    #[test]
    fn a_page_keeps_its_limit_and_points_past_its_last_row() {
        let request = PageRequest {
            limit: 2,
            after: None,
        };
        let rows = vec![(vec![1], 'a'), (vec![2], 'b'), (vec![3], 'c')];
        let (page, next) = request.page(rows);
        assert_eq!(page.len(), 2);
        assert_eq!(next.as_deref(), Some("02"));
        let (page, next) = request.page(vec![(vec![1], 'a')]);
        assert_eq!((page.len(), next), (1, None));
    }

    #[test]
    fn a_row_that_cannot_be_encoded_is_an_error_not_an_empty_row() {
        // JSON object keys must be strings: a map keyed by bytes cannot be encoded.
        let unencodable: HashMap<Vec<u8>, u8> = HashMap::from([(vec![1], 1)]);
        assert!(matches!(
            encode_row("accepted_commands", &unencodable),
            Err(GatewayError::Row {
                table: "accepted_commands",
                ..
            })
        ));
        assert!(matches!(
            decode_row::<u8>("accepted_commands", b"not json"),
            Err(GatewayError::Row { .. })
        ));
    }

    #[test]
    fn internal_failures_reach_clients_as_unavailable_without_internals() {
        let problem = Problem::from(GatewayError::Row {
            table: "secret_table",
            reason: "disk on fire at /var/lib".to_owned(),
        });
        assert_eq!(problem.status, 503);
        assert!(
            !problem.detail.contains("secret_table"),
            "{}",
            problem.detail
        );
        assert!(!problem.detail.contains("/var/lib"), "{}", problem.detail);
    }
}
