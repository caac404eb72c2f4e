//! The REST layer: Confluent's routes, bodies and error codes.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{debug, error};

use super::avro::ParsedSchema;
use super::compat::{self, Against, CompatibilityLevel};
use super::record::MAX_VERSION;
use super::state::VersionSelector;
use super::{RegisterError, Registry, RegistryError};

/// Confluent's media type; every response carries it.
pub(crate) const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Schemas are small; anything larger is a mistake or an attack.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

pub(crate) fn router(registry: Registry) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_usages))
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all_versions),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(registry)
}

// ---- errors -------------------------------------------------------------

/// Every error the API answers with. The message is what the client sees;
/// internal causes are logged, never sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("subject '{0}' not found")]
    SubjectNotFound(String),
    #[error("version {0} not found")]
    VersionNotFound(u32),
    #[error("schema not found")]
    SchemaNotFound,
    #[error("subject '{0}' does not have subject-level compatibility configured")]
    SubjectLevelNotFound(String),
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    #[error("schema type '{0}' is not supported; this registry only accepts AVRO")]
    UnsupportedSchemaType(String),
    #[error("schema references are not supported")]
    ReferencesUnsupported,
    #[error("the specified version '{0}' is not a valid version id; allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("invalid compatibility level '{0}'; valid levels are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE")]
    InvalidLevel(String),
    #[error("invalid subject name")]
    InvalidSubject,
    #[error("registering with an explicit id or version is not permitted; this registry has no import mode")]
    ExplicitIdOrVersion,
    #[error("schema being registered is incompatible with an earlier schema for subject '{subject}'; details: {}", details.join("; "))]
    Incompatible {
        subject: String,
        details: Vec<String>,
    },
    #[error("malformed json body: {0}")]
    MalformedJson(String),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("unsupported media type '{0}'; send application/vnd.schemaregistry.v1+json or application/json")]
    UnsupportedMediaType(String),
    #[error("request body is larger than 1 MiB")]
    PayloadTooLarge,
    #[error("invalid path parameter")]
    InvalidPath,
    #[error("http 404 not found")]
    RouteNotFound,
    #[error("http 405 method not allowed")]
    MethodNotAllowed,
    #[error("the registry has run out of ids or versions")]
    Exhausted,
    #[error("operation timed out")]
    Timeout(#[source] RegistryError),
    #[error("error in the backend data store")]
    Store(#[source] RegistryError),
}

impl ApiError {
    /// HTTP status and Confluent error code.
    pub(crate) fn status_and_code(&self) -> (StatusCode, u32) {
        match self {
            Self::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            Self::VersionNotFound(_) => (StatusCode::NOT_FOUND, 40402),
            Self::SchemaNotFound => (StatusCode::NOT_FOUND, 40403),
            Self::SubjectLevelNotFound(_) => (StatusCode::NOT_FOUND, 40408),
            Self::InvalidSchema(_)
            | Self::UnsupportedSchemaType(_)
            | Self::ReferencesUnsupported => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            Self::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            Self::InvalidLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            Self::ExplicitIdOrVersion => (StatusCode::UNPROCESSABLE_ENTITY, 42205),
            Self::InvalidSubject => (StatusCode::UNPROCESSABLE_ENTITY, 42208),
            Self::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            Self::MalformedJson(_) | Self::InvalidPath => (StatusCode::BAD_REQUEST, 400),
            Self::InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, 422),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 415),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, 413),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, 404),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405),
            Self::Exhausted | Self::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
            Self::Timeout(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50002),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::ReadBackTimeout { .. } | RegistryError::ReplayTimeout { .. } => {
                Self::Timeout(error)
            }
            other => Self::Store(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            Self::Store(source) | Self::Timeout(source) => {
                error!(error = %source, error_code = code, "schema registry request failed");
            }
            other => debug!(error_code = code, message = %other, "schema registry request refused"),
        }
        reply(
            status,
            &json!({ "error_code": code, "message": self.to_string() }),
        )
    }
}

fn reply<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            bytes,
        )
            .into_response(),
        // Our bodies are plain data and always serialise; stay total anyway.
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            r#"{"error_code":50001,"message":"error in the backend data store"}"#,
        )
            .into_response(),
    }
}

fn ok<T: Serialize + ?Sized>(body: &T) -> Response {
    reply(StatusCode::OK, body)
}

// ---- request parsing ----------------------------------------------------

/// A JSON body with Confluent-style errors instead of axum's plain-text
/// rejections.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::InvalidBody("the request body could not be read".to_owned())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Accepts Confluent's media types, plain JSON, and (like Confluent) a
/// missing or octet-stream content type.
pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let raw = value.to_str().unwrap_or_default();
    let media = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let accepted = media == "application/json"
        || media == "application/octet-stream"
        || (media.starts_with("application/vnd.schemaregistry") && media.ends_with("+json"));
    if accepted {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            raw.chars().filter(|c| !c.is_control()).take(100).collect(),
        ))
    }
}

/// Syntax errors are 400 (not JSON at all), shape errors 422 (JSON, but not
/// the expected document), as Confluent does.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof => ApiError::MalformedJson(e.to_string()),
            Category::Data | Category::Io => ApiError::InvalidBody(e.to_string()),
        }
    })
}

/// `POST /subjects/{s}/versions`, `POST /subjects/{s}`, compatibility checks.
#[derive(Debug, Deserialize)]
pub(crate) struct SchemaRequest {
    #[serde(default)]
    schema: Option<String>,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Value>>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    version: Option<Value>,
}

impl SchemaRequest {
    /// Validates and parses the schema; returns its text too.
    fn parse(self) -> Result<(String, ParsedSchema), ApiError> {
        if let Some(kind) = &self.schema_type {
            if !kind.eq_ignore_ascii_case("AVRO") {
                return Err(ApiError::UnsupportedSchemaType(
                    kind.chars().filter(|c| !c.is_control()).take(50).collect(),
                ));
            }
        }
        if self.references.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::ReferencesUnsupported);
        }
        let text = self
            .schema
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::InvalidSchema("empty schema".to_owned()))?;
        let parsed = ParsedSchema::parse(&text)
            .map_err(|e| ApiError::InvalidSchema(lowercase_first(&e.to_string())))?;
        Ok((text, parsed))
    }

    /// Java clients send `"id": -1` / `"version": 0` for "unset"; only a
    /// real value asks for import mode.
    fn explicit_id_or_version(&self) -> bool {
        let set = |v: &Option<Value>| v.as_ref().and_then(Value::as_i64).is_some_and(|n| n > 0);
        set(&self.id) || set(&self.version)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConfigRequest {
    #[serde(default)]
    compatibility: Option<String>,
    /// Newer Confluent clients use the GET field name in PUT bodies too.
    #[serde(default, rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

impl ConfigRequest {
    fn level(self) -> Result<CompatibilityLevel, ApiError> {
        let raw = self
            .compatibility
            .or(self.compatibility_level)
            .unwrap_or_default();
        CompatibilityLevel::parse(&raw).ok_or_else(|| {
            ApiError::InvalidLevel(raw.chars().filter(|c| !c.is_control()).take(50).collect())
        })
    }
}

/// `latest` (or Confluent's `-1`) or a version in `1..=2^31-1`.
pub(crate) fn parse_version(raw: &str) -> Result<VersionSelector, ApiError> {
    if raw.eq_ignore_ascii_case("latest") || raw == "-1" {
        return Ok(VersionSelector::Latest);
    }
    raw.parse::<u32>()
        .ok()
        .filter(|v| (1..=MAX_VERSION).contains(v))
        .map(VersionSelector::Number)
        .ok_or_else(|| {
            ApiError::InvalidVersion(raw.chars().filter(|c| !c.is_control()).take(50).collect())
        })
}

/// Subjects are free-form in Confluent, but empty names and control
/// characters only ever come from bugs, and break logs and URLs.
pub(crate) fn validate_subject(subject: &str) -> Result<(), ApiError> {
    if subject.trim().is_empty() || subject.chars().any(char::is_control) {
        Err(ApiError::InvalidSubject)
    } else {
        Ok(())
    }
}

/// `true` if `name=true` is in the query string.
pub(crate) fn query_flag(query: Option<&str>, name: &str) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(key, value)| key == name && value.eq_ignore_ascii_case("true"))
}

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|_| ApiError::InvalidPath)
}

fn lowercase_first(message: &str) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---- handlers -----------------------------------------------------------

#[derive(Debug, Serialize)]
struct SubjectVersion<'a> {
    subject: &'a str,
    version: u32,
    id: u32,
    schema: &'a str,
}

async fn root() -> Response {
    ok(&json!({}))
}

async fn schema_types() -> Response {
    ok(&["AVRO"])
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Unknown and malformed ids are both "not found", as in Confluent.
fn parse_id(raw: &str) -> Result<u32, ApiError> {
    raw.parse::<u32>()
        .ok()
        .filter(|id| *id >= 1)
        .ok_or(ApiError::SchemaNotFound)
}

async fn schema_by_id(
    State(registry): State<Registry>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&path(id)?)?;
    let text = registry
        .schema_text(id)
        .await
        .ok_or(ApiError::SchemaNotFound)?;
    Ok(ok(&json!({ "schema": &*text })))
}

async fn schema_usages(
    State(registry): State<Registry>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_id(&path(id)?)?;
    let state = registry.state();
    if state.schema(id).is_none() {
        return Err(ApiError::SchemaNotFound);
    }
    let usages: Vec<Value> = state
        .usages(id, query_flag(query.as_deref(), "deleted"))
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(ok(&usages))
}

async fn list_subjects(State(registry): State<Registry>, RawQuery(query): RawQuery) -> Response {
    let subjects = registry
        .state()
        .subjects(query_flag(query.as_deref(), "deleted"));
    ok(&subjects)
}

async fn list_versions(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    let versions = registry
        .state()
        .versions(&subject, query_flag(query.as_deref(), "deleted"))
        .ok_or(ApiError::SubjectNotFound(subject))?;
    Ok(ok(&versions))
}

async fn register(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    validate_subject(&subject)?;
    if request.explicit_id_or_version() {
        return Err(ApiError::ExplicitIdOrVersion);
    }
    let (text, parsed) = request.parse()?;
    match registry.register(&subject, &text, &parsed).await {
        Ok(id) => Ok(ok(&json!({ "id": id }))),
        Err(RegisterError::Incompatible(details)) => {
            Err(ApiError::Incompatible { subject, details })
        }
        Err(RegisterError::Exhausted) => Err(ApiError::Exhausted),
        Err(RegisterError::Store(e)) => Err(e.into()),
    }
}

async fn lookup(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    let (_, parsed) = request.parse()?;
    let include_deleted = query_flag(query.as_deref(), "deleted");
    let state = registry.state();
    if !state.subject_exists(&subject, include_deleted) {
        return Err(ApiError::SubjectNotFound(subject));
    }
    let (version, id) = state
        .find_in_subject(&subject, &parsed.identity, include_deleted)
        .ok_or(ApiError::SchemaNotFound)?;
    let entry = state.schema(id).ok_or(ApiError::SchemaNotFound)?;
    Ok(ok(&SubjectVersion {
        subject: &subject,
        version,
        id,
        schema: &entry.text,
    }))
}

async fn get_version(
    State(registry): State<Registry>,
    params: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (subject, version) = path(params)?;
    let selector = parse_version(&version)?;
    let include_deleted = query_flag(query.as_deref(), "deleted");
    let state = registry.state();
    let (version, entry) = find_version(&state, &subject, selector, include_deleted)?;
    let schema = state.schema(entry.id).ok_or(ApiError::SchemaNotFound)?;
    Ok(ok(&SubjectVersion {
        subject: &subject,
        version,
        id: entry.id,
        schema: &schema.text,
    }))
}

async fn get_version_schema(
    State(registry): State<Registry>,
    params: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (subject, version) = path(params)?;
    let selector = parse_version(&version)?;
    let include_deleted = query_flag(query.as_deref(), "deleted");
    let state = registry.state();
    let (_, entry) = find_version(&state, &subject, selector, include_deleted)?;
    let schema = state.schema(entry.id).ok_or(ApiError::SchemaNotFound)?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        schema.text.to_string(),
    )
        .into_response())
}

fn find_version<'s>(
    state: &'s super::state::State,
    subject: &str,
    selector: VersionSelector,
    include_deleted: bool,
) -> Result<(u32, &'s super::state::VersionEntry), ApiError> {
    if !state.subject_exists(subject, include_deleted) {
        return Err(ApiError::SubjectNotFound(subject.to_owned()));
    }
    state
        .version(subject, selector, include_deleted)
        .ok_or(match selector {
            VersionSelector::Number(n) => ApiError::VersionNotFound(n),
            // Unreachable while the subject has a visible version; kept
            // total rather than panicking.
            VersionSelector::Latest => ApiError::SubjectNotFound(subject.to_owned()),
        })
}

fn compatibility_reply(result: Result<(), Vec<String>>, verbose: bool) -> Response {
    let is_compatible = result.is_ok();
    if verbose {
        let messages = result.err().unwrap_or_default();
        ok(&json!({ "is_compatible": is_compatible, "messages": messages }))
    } else {
        ok(&json!({ "is_compatible": is_compatible }))
    }
}

/// Checks against one version (or, for `latest`, what registration would
/// check against).
async fn check_version(
    State(registry): State<Registry>,
    params: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<Response, ApiError> {
    let (subject, version) = path(params)?;
    let selector = parse_version(&version)?;
    let (_, candidate) = request.parse()?;
    let verbose = query_flag(query.as_deref(), "verbose");
    let state = registry.state();
    let level = state.effective_level(&subject);
    let live = state.live_schemas(&subject);
    let result = match selector {
        VersionSelector::Latest => {
            let existing: Vec<(u32, &apache_avro::Schema)> =
                live.iter().map(|(v, s)| (*v, &**s)).collect();
            compat::check(level, Against::Level, &candidate.schema, &existing)
        }
        VersionSelector::Number(n) => {
            let (_, entry) = find_version(&state, &subject, selector, false)?;
            let old = state.schema(entry.id).ok_or(ApiError::VersionNotFound(n))?;
            compat::check(
                level,
                Against::All,
                &candidate.schema,
                &[(n, &*old.parsed.schema)],
            )
        }
    };
    Ok(compatibility_reply(result, verbose))
}

/// Checks against every live version.
async fn check_all_versions(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    JsonBody(request): JsonBody<SchemaRequest>,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    let (_, candidate) = request.parse()?;
    let verbose = query_flag(query.as_deref(), "verbose");
    let state = registry.state();
    let live = state.live_schemas(&subject);
    let existing: Vec<(u32, &apache_avro::Schema)> = live.iter().map(|(v, s)| (*v, &**s)).collect();
    let result = compat::check(
        state.effective_level(&subject),
        Against::All,
        &candidate.schema,
        &existing,
    );
    Ok(compatibility_reply(result, verbose))
}

async fn get_global_config(State(registry): State<Registry>) -> Response {
    let level = registry.state().global_level();
    ok(&json!({ "compatibilityLevel": level.as_str() }))
}

async fn put_global_config(
    State(registry): State<Registry>,
    JsonBody(request): JsonBody<ConfigRequest>,
) -> Result<Response, ApiError> {
    let level = request.level()?;
    registry.set_level(None, Some(level)).await?;
    Ok(ok(&json!({ "compatibility": level.as_str() })))
}

async fn get_subject_config(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    let state = registry.state();
    let level = match state.subject_level(&subject) {
        Some(level) => level,
        None if query_flag(query.as_deref(), "defaultToGlobal") => state.global_level(),
        None => return Err(ApiError::SubjectLevelNotFound(subject)),
    };
    Ok(ok(&json!({ "compatibilityLevel": level.as_str() })))
}

async fn put_subject_config(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<ConfigRequest>,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    validate_subject(&subject)?;
    let level = request.level()?;
    registry.set_level(Some(&subject), Some(level)).await?;
    Ok(ok(&json!({ "compatibility": level.as_str() })))
}

async fn delete_subject_config(
    State(registry): State<Registry>,
    subject: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let subject = path(subject)?;
    let previous = registry
        .state()
        .subject_level(&subject)
        .ok_or_else(|| ApiError::SubjectLevelNotFound(subject.clone()))?;
    registry.set_level(Some(&subject), None).await?;
    Ok(ok(&json!({ "compatibilityLevel": previous.as_str() })))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, Value, Option<String>) {
        let response = error.into_response();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), BODY_LIMIT)
            .await
            .expect("in-memory body");
        let body: Value = serde_json::from_slice(&bytes).expect("json body");
        (status, body, content_type)
    }

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(parse_version("latest").ok(), Some(VersionSelector::Latest));
        assert_eq!(parse_version("LATEST").ok(), Some(VersionSelector::Latest));
        assert_eq!(parse_version("-1").ok(), Some(VersionSelector::Latest));
        assert_eq!(parse_version("1").ok(), Some(VersionSelector::Number(1)));
        assert_eq!(
            parse_version("2147483647").ok(),
            Some(VersionSelector::Number(2_147_483_647))
        );
        for bad in ["0", "abc", "", "-2", "2147483648", "1.5", " 1", "+1x"] {
            let err = parse_version(bad).expect_err(bad);
            assert_eq!(
                err.status_and_code(),
                (StatusCode::UNPROCESSABLE_ENTITY, 42202),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_syntax_errors_are_400_and_shape_errors_422() {
        for garbage in [&b""[..], b"{", b"not json", b"\xff\xfe", b"{\"schema\": }"] {
            let err = parse_json::<SchemaRequest>(garbage).expect_err("garbage");
            assert_eq!(err.status_and_code(), (StatusCode::BAD_REQUEST, 400));
        }
        for wrong in [
            &br#"{"schema": 5}"#[..],
            br#""schema""#,
            br#"{"schema": {"type":"int"}}"#,
        ] {
            let err = parse_json::<SchemaRequest>(wrong).expect_err("wrong shape");
            assert_eq!(
                err.status_and_code(),
                (StatusCode::UNPROCESSABLE_ENTITY, 422)
            );
        }
        // serde reads `[]` as a struct with every (defaulted) field absent;
        // it is refused one step later, as an empty schema.
        let empty: SchemaRequest = parse_json(b"[]").expect("defaults");
        assert_eq!(
            empty.parse().err().map(|e| e.status_and_code().1),
            Some(42201)
        );
        let fine: SchemaRequest =
            parse_json(br#"{"schema":"\"int\"","unknownField":1,"metadata":{}}"#).expect("lenient");
        assert!(fine.parse().is_ok());
    }

    #[test]
    fn schema_requests_are_validated() {
        let request = |body: &[u8]| parse_json::<SchemaRequest>(body).expect("json");
        let code =
            |r: Result<(String, ParsedSchema), ApiError>| r.err().map(|e| e.status_and_code().1);
        assert_eq!(code(request(br#"{}"#).parse()), Some(42201));
        assert_eq!(code(request(br#"{"schema":""}"#).parse()), Some(42201));
        assert_eq!(code(request(br#"{"schema":"{bad"}"#).parse()), Some(42201));
        assert_eq!(
            code(request(br#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}"#).parse()),
            Some(42201)
        );
        assert_eq!(
            code(request(br#"{"schema":"\"int\"","references":[{"name":"a","subject":"b","version":1}]}"#).parse()),
            Some(42201)
        );
        assert_eq!(
            code(request(br#"{"schema":"\"int\"","schemaType":"AVRO","references":[]}"#).parse()),
            None
        );
        assert!(request(br#"{"schema":"\"int\"","id":3}"#).explicit_id_or_version());
        assert!(!request(br#"{"schema":"\"int\"","id":-1,"version":0}"#).explicit_id_or_version());
    }

    #[test]
    fn config_requests_are_validated() {
        let level = |body: &[u8]| parse_json::<ConfigRequest>(body).expect("json").level();
        assert_eq!(
            level(br#"{"compatibility":"FULL"}"#).ok(),
            Some(CompatibilityLevel::Full)
        );
        assert_eq!(
            level(br#"{"compatibilityLevel":"NONE"}"#).ok(),
            Some(CompatibilityLevel::None)
        );
        for bad in [
            &br#"{"compatibility":"SIDEWAYS"}"#[..],
            br#"{}"#,
            br#"{"compatibility":""}"#,
        ] {
            assert_eq!(
                level(bad).err().map(|e| e.status_and_code()),
                Some((StatusCode::UNPROCESSABLE_ENTITY, 42203))
            );
        }
    }

    #[test]
    fn content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(value).expect("header"),
            );
            check_content_type(&headers)
        };
        assert!(check_content_type(&HeaderMap::new()).is_ok());
        assert!(with("application/vnd.schemaregistry.v1+json").is_ok());
        assert!(with("application/vnd.schemaregistry+json; charset=utf-8").is_ok());
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON").is_ok());
        assert_eq!(
            with("text/plain").err().map(|e| e.status_and_code()),
            Some((StatusCode::UNSUPPORTED_MEDIA_TYPE, 415))
        );
    }

    #[test]
    fn subjects_and_query_flags() {
        assert!(validate_subject("orders-value").is_ok());
        assert!(validate_subject("a/b c").is_ok());
        assert!(validate_subject("").is_err());
        assert!(validate_subject("  ").is_err());
        assert!(validate_subject("a\nb").is_err());
        assert!(query_flag(Some("deleted=true"), "deleted"));
        assert!(query_flag(Some("verbose=false&deleted=TRUE"), "deleted"));
        assert!(!query_flag(Some("deleted=false"), "deleted"));
        assert!(!query_flag(Some("deleted"), "deleted"));
        assert!(!query_flag(None, "deleted"));
    }

    #[tokio::test]
    async fn error_bodies_are_confluent_shaped_and_lowercase() {
        let (status, body, content_type) = body_of(ApiError::SchemaNotFound).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"error_code": 40403, "message": "schema not found"})
        );
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));

        let (status, body, _) = body_of(ApiError::Incompatible {
            subject: "s".to_owned(),
            details: vec!["a".to_owned(), "b".to_owned()],
        })
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error_code"], 409);
        let message = body["message"].as_str().expect("message");
        assert!(
            message.starts_with("schema being registered is incompatible"),
            "{message}"
        );
        assert!(message.ends_with("details: a; b"), "{message}");

        let (status, body, _) = body_of(ApiError::MalformedJson("eof".to_owned())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error_code"], 400);
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_details() {
        let (status, body, _) = body_of(ApiError::from(RegistryError::Write {
            topic: "_secret_topic".to_owned(),
            source: rdkafka::error::KafkaError::Canceled,
        }))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            json!({"error_code": 50001, "message": "error in the backend data store"})
        );

        let (_, body, _) = body_of(ApiError::from(RegistryError::ReadBackTimeout {
            topic: "_schemas".to_owned(),
            offset: 3,
        }))
        .await;
        assert_eq!(
            body,
            json!({"error_code": 50002, "message": "operation timed out"})
        );
    }

    #[test]
    fn every_message_is_lowercase_first() {
        let errors = [
            ApiError::SubjectNotFound("S".to_owned()),
            ApiError::VersionNotFound(2),
            ApiError::InvalidVersion("x".to_owned()),
            ApiError::InvalidLevel("x".to_owned()),
            ApiError::RouteNotFound,
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType("text/plain".to_owned()),
        ];
        for error in errors {
            let message = error.to_string();
            let first = message.chars().next().expect("non-empty");
            assert!(!first.is_uppercase(), "{message}");
        }
    }
}
