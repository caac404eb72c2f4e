//! The users routes. Plaintext personal data exists only here, for the
//! length of a request: it is validated with the pure domain's values,
//! sealed under the user's data key before anything is produced, and opened
//! again per read. The command flow, idempotency and errors are the
//! gateway's.

// A Problem is the response itself: boxing it on a per-request path buys nothing.
#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use foldline_contracts::users::{self as wire, UsersCommandRecord};
use foldline_eventsourcing::{Decider, DecisionContext, Rejection, Timestamp};
use foldline_gateway::commands::{self, identity_metadata, AggregateView};
use foldline_gateway::http::{decode_row, parse_json, parse_path_id, GatewayError};
use foldline_gateway::idempotency::identify;
use foldline_gateway::problem::{FieldError, Problem};
use foldline_gateway::time::rfc3339_millis;
use foldline_gateway::GatewayState;
use foldline_platform::personal_data::{DataKey, DataKeys, PersonalDataError};
use foldline_platform::store::Store;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::domain::{
    ClaimKey, EmailAddress, Note, PersonName, Phone, PhoneChange, Sealed, User, UserCommand,
    UserId, UserStatus, Users, UsersState,
};
use crate::projection::{email_key, user_key, EmailRow, UserRow, USER_BY_EMAIL, USER_BY_ID};
use crate::DOMAIN;

pub const EMAIL: &str = "email";
pub const NAME: &str = "name";
pub const PHONE: &str = "phone";

pub fn router() -> Router<GatewayState> {
    Router::new()
        .route("/v1/users", post(register_user).get(find_user_by_email))
        .route("/v1/users/{user_id}", get(get_user).patch(change_user))
        .route("/v1/users/{user_id}/deactivate", post(deactivate_user))
        .route(
            "/v1/users/{user_id}/personal-data",
            delete(erase_personal_data),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    email: String,
    name: String,
    #[serde(default)]
    phone: Option<String>,
}

/// `phone: null` clears the phone; an absent `phone` keeps it.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeRequest {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    phone: Option<Option<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeactivateRequest {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseRequest {
    requested_by: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailQuery {
    email: String,
}

#[derive(Debug, Serialize)]
struct ErasureView {
    requested_by: String,
    reason: String,
    erased_at: String,
}

/// A user as clients see it. Personal fields are `null` once erased, and
/// `personal_data` says which: `present`, `erased` (the key is destroyed
/// and the projection dropped the sealed values) or `unavailable`.
#[derive(Debug, Serialize)]
struct UserView {
    id: String,
    status: &'static str,
    email: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    personal_data: &'static str,
    version: u64,
    registered_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deactivation_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    erasure: Option<ErasureView>,
}

fn data_keys(state: &GatewayState) -> Result<&DataKeys, Problem> {
    state.data_keys.as_ref().ok_or_else(|| {
        tracing::error!("the users routes are served without data keys");
        Problem::unavailable("the user service")
    })
}

fn key_problem(error: PersonalDataError) -> Problem {
    match error {
        PersonalDataError::Destroyed { .. } => Problem::new(
            StatusCode::CONFLICT,
            "user_erased",
            "the user's personal data is erased",
        ),
        error => {
            tracing::error!(%error, "personal data keys failed");
            Problem::unavailable("the user service")
        }
    }
}

/// Opens one sealed field; a value that does not open is reported once
/// and shown as unavailable rather than failing the whole read.
fn open(key: &DataKey, user_id: &str, field: &str, sealed: &Sealed) -> Option<String> {
    match key.open(user_id, field, sealed.as_str()) {
        Ok(plaintext) => Some(plaintext),
        Err(error) => {
            tracing::error!(%error, user_id, field, "a sealed field does not open");
            None
        }
    }
}

async fn user_view(keys: &DataKeys, row: &UserRow) -> Result<Option<UserView>, Problem> {
    let Some(user) = &row.user else {
        return Ok(None);
    };
    let user_id = user.user_id.to_string();
    let key = match &user.profile {
        Some(_) => keys.get(&user_id).await.map_err(key_problem)?,
        None => None,
    };
    let (email, name, phone, personal_data) = match (&user.profile, &key) {
        (Some(profile), Some(key)) => {
            let email = open(key, &user_id, EMAIL, &profile.email);
            let name = open(key, &user_id, NAME, &profile.name);
            let phone = profile
                .phone
                .as_ref()
                .and_then(|phone| open(key, &user_id, PHONE, phone));
            let complete = email.is_some() && name.is_some();
            (
                email,
                name,
                phone,
                if complete { "present" } else { "unavailable" },
            )
        }
        // Erased in the log, or its key already destroyed (the erasure
        // event is on its way through the projection).
        _ if user.status == UserStatus::Erased => (None, None, None, "erased"),
        (Some(_), None) => (None, None, None, "erased"),
        (None, _) => (None, None, None, "erased"),
    };
    Ok(Some(UserView {
        id: user_id,
        status: user.status.as_str(),
        email,
        name,
        phone,
        personal_data,
        version: row.version,
        registered_at: rfc3339_millis(user.registered_at.millis()),
        updated_at: rfc3339_millis(user.updated_at.millis()),
        deactivation_reason: user
            .deactivation_reason
            .as_ref()
            .map(|reason| reason.as_str().to_owned()),
        erasure: user.erasure.as_ref().map(|erasure| ErasureView {
            requested_by: erasure.requested_by.as_str().to_owned(),
            reason: erasure.reason.as_str().to_owned(),
            erased_at: rfc3339_millis(erasure.at.millis()),
        }),
    }))
}

async fn read_user(store: &Store, user_id: &str) -> Result<Option<UserRow>, GatewayError> {
    match store.get(user_key(user_id)).await? {
        Some(row) => Ok(Some(decode_row(USER_BY_ID, &row.value)?)),
        None => Ok(None),
    }
}

fn to_body(view: &UserView) -> Result<Vec<u8>, GatewayError> {
    serde_json::to_vec(view).map_err(|error| GatewayError::Row {
        table: USER_BY_ID,
        reason: error.to_string(),
    })
}

/// Reads a user back for `Prefer: wait`, once `ready` says the row shows
/// what the command did.
struct UserReadBack<'a> {
    keys: &'a DataKeys,
    user_id: String,
    ready: Ready,
}

enum Ready {
    /// The user's own command: its version reached the settled one.
    AtVersion,
    /// A registration decided by the claim: the user exists.
    Registered,
    /// An address change decided by the claim: the user holds it.
    Holds(ClaimKey),
}

impl AggregateView for UserReadBack<'_> {
    async fn read(
        &self,
        store: &Store,
        _aggregate_id: &str,
        min_version: u64,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let Some(row) = read_user(store, &self.user_id).await? else {
            return Ok(None);
        };
        let ready = match (&self.ready, &row.user) {
            (_, None) => false,
            (Ready::AtVersion, Some(_)) => row.version >= min_version,
            (Ready::Registered, Some(_)) => true,
            (Ready::Holds(claim_key), Some(user)) => &user.claim_key == claim_key,
        };
        if !ready {
            return Ok(None);
        }
        match user_view(self.keys, &row).await {
            Ok(Some(view)) => to_body(&view).map(Some),
            Ok(None) => Ok(None),
            Err(_) => Err(GatewayError::Row {
                table: USER_BY_ID,
                reason: "the user's data key cannot be read".to_owned(),
            }),
        }
    }

    fn resource_id<'a>(&'a self, _aggregate_id: &'a str) -> &'a str {
        &self.user_id
    }
}

/// Submits a command whose answer is the user, read back once `view` says so.
async fn submit_for(
    state: &GatewayState,
    headers: &HeaderMap,
    view: UserReadBack<'_>,
    command: UsersCommandRecord,
    status: StatusCode,
) -> Result<Response, Problem> {
    commands::submit(state, DOMAIN, &view, headers, command, status).await
}

/// Submits a command of the user's own stream; the answer is the user at
/// the version the command settled.
async fn submit_for_user(
    state: &GatewayState,
    headers: &HeaderMap,
    keys: &DataKeys,
    user_id: String,
    command: UsersCommandRecord,
) -> Result<Response, Problem> {
    let view = UserReadBack {
        keys,
        user_id,
        ready: Ready::AtVersion,
    };
    submit_for(state, headers, view, command, StatusCode::OK).await
}

fn field_error(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

fn claim_key(keys: &DataKeys, email: &EmailAddress) -> ClaimKey {
    ClaimKey::from_digest(&keys.kek().lookup_digest(email.as_str().as_bytes()))
}

/// What the idempotency check remembers of a body carrying personal data:
/// a keyed hash, so the fingerprint cannot be used to test guesses.
fn body_fingerprint(keys: &DataKeys, raw: &[u8]) -> [u8; 32] {
    keys.kek().lookup_digest(raw)
}

fn seal(key: &DataKey, user_id: &str, field: &str, plaintext: &str) -> Result<String, Problem> {
    key.seal(user_id, field, plaintext).map_err(key_problem)
}

struct ValidRegistration {
    email: EmailAddress,
    name: PersonName,
    phone: Option<Phone>,
}

fn validate_registration(request: &RegisterRequest) -> Result<ValidRegistration, Problem> {
    let mut errors = Vec::new();
    let email = EmailAddress::parse(&request.email)
        .map_err(|error| errors.push(field_error(EMAIL, error)))
        .ok();
    let name = PersonName::parse(&request.name)
        .map_err(|error| errors.push(field_error(NAME, error)))
        .ok();
    let phone = match &request.phone {
        None => Some(None),
        Some(phone) => Phone::parse(phone)
            .map(Some)
            .map_err(|error| errors.push(field_error(PHONE, error)))
            .ok(),
    };
    match (email, name, phone) {
        (Some(email), Some(name), Some(phone)) if errors.is_empty() => {
            Ok(ValidRegistration { email, name, phone })
        }
        _ => Err(Problem::invalid_fields(errors)),
    }
}

fn required_body<T>(parsed: Option<T>) -> Result<T, Problem> {
    parsed.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "a body is required",
        )
    })
}

async fn register_user(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = required_body(parse_json::<RegisterRequest>(&headers, body, false)?)?;
    let valid = validate_registration(&request)?;
    let keys = data_keys(&state)?;
    let identity = identify(
        &state,
        &headers,
        "POST /v1/users",
        &body_fingerprint(keys, &raw),
        Uuid::now_v7().to_string(),
    )
    .await?;
    let user_id = UserId::parse(&identity.aggregate_id).map_err(|_| {
        tracing::error!(aggregate_id = %identity.aggregate_id, "idempotency record holds a user id that is not a uuid");
        Problem::unavailable("the user service")
    })?;
    let subject = user_id.to_string();
    let key = keys.get_or_create(&subject).await.map_err(key_problem)?;
    let claim_key = claim_key(keys, &valid.email);
    let phone_sealed = match &valid.phone {
        Some(phone) => Some(seal(&key, &subject, PHONE, phone.as_str())?),
        None => None,
    };
    let command = UsersCommandRecord::ClaimEmail(wire::ClaimEmail {
        metadata: identity_metadata(&state, &identity, &headers),
        aggregate_id: claim_key.to_string(),
        user_id: subject.clone(),
        purpose: "register".to_owned(),
        email_sealed: seal(&key, &subject, EMAIL, valid.email.as_str())?,
        name_sealed: Some(seal(&key, &subject, NAME, valid.name.as_str())?),
        phone_sealed,
    });
    let view = UserReadBack {
        keys,
        user_id: subject,
        ready: Ready::Registered,
    };
    submit_for(&state, &headers, view, command, StatusCode::CREATED).await
}

/// The user as the projection has it; 404 when there is none.
async fn existing_user(state: &GatewayState, user_id: &str) -> Result<(UserRow, User), Problem> {
    let row = read_user(&state.store, user_id).await?;
    match row {
        Some(UserRow {
            user: Some(user),
            version,
        }) => Ok((
            UserRow {
                version,
                user: Some(user.clone()),
            },
            user,
        )),
        _ => Err(Problem::not_found("user")),
    }
}

/// Asks the pure decider about `command` against the projected user, so
/// an obviously refused change is answered without producing anything.
fn dry_run(user: &User, command: &UserCommand) -> Result<(), Problem> {
    let context = DecisionContext { now: Timestamp(0) };
    match Users::decide(&UsersState::User(user.clone()), command, &context) {
        Ok(crate::domain::UserEvent::EmailChangeRefused { reason, .. }) => Err(Problem::new(
            StatusCode::CONFLICT,
            "email_change_refused",
            reason,
        )),
        Ok(_) => Ok(()),
        Err(rejection) => Err(Problem::new(
            match rejection.kind() {
                foldline_eventsourcing::RejectionKind::Conflict => StatusCode::CONFLICT,
                foldline_eventsourcing::RejectionKind::NotFound => StatusCode::NOT_FOUND,
                foldline_eventsourcing::RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            },
            rejection.code(),
            rejection.to_string(),
        )),
    }
}

async fn change_user(
    State(state): State<GatewayState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let user_id = parse_path_id(&user_id, "user", UserId::parse)?;
    let subject = user_id.to_string();
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = required_body(parse_json::<ChangeRequest>(&headers, body, false)?)?;
    let mut errors = Vec::new();
    let email = request
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|error| errors.push(field_error(EMAIL, error)))
        .ok()
        .flatten();
    let name = request
        .name
        .as_deref()
        .map(PersonName::parse)
        .transpose()
        .map_err(|error| errors.push(field_error(NAME, error)))
        .ok()
        .flatten();
    let phone = match &request.phone {
        None => Some(None),
        Some(None) => Some(Some(None)),
        Some(Some(phone)) => Phone::parse(phone)
            .map(|phone| Some(Some(phone)))
            .map_err(|error| errors.push(field_error(PHONE, error)))
            .ok(),
    };
    if request.email.is_some() && (request.name.is_some() || request.phone.is_some()) {
        errors.push(field_error(
            EMAIL,
            "an address change is its own request: send email alone",
        ));
    }
    if request.email.is_none() && request.name.is_none() && request.phone.is_none() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing_to_change",
            "the change names no field to change",
        ));
    }
    let Some(phone) = phone else {
        return Err(Problem::invalid_fields(errors));
    };
    if !errors.is_empty() {
        return Err(Problem::invalid_fields(errors));
    }
    let keys = data_keys(&state)?;
    let (_, user) = existing_user(&state, &subject).await?;
    let route = format!("PATCH /v1/users/{subject}");
    let fingerprint = body_fingerprint(keys, &raw);
    let identity = identify(&state, &headers, &route, &fingerprint, subject.clone()).await?;
    let key = match keys.get(&subject).await.map_err(key_problem)? {
        Some(key) => key,
        None => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "user_erased",
                "the user's personal data is erased",
            ))
        }
    };
    let metadata = identity_metadata(&state, &identity, &headers);
    if let Some(email) = email {
        let new_claim = claim_key(keys, &email);
        let email_sealed = seal(&key, &subject, EMAIL, email.as_str())?;
        // A retry is answered from the log (its first attempt may have
        // applied already), never refused by a dry run against the user
        // that attempt changed.
        if !identity.retry {
            dry_run(
                &user,
                &UserCommand::ChangeEmail {
                    user_id,
                    claim_key: new_claim.clone(),
                    email: Sealed::parse(&email_sealed)
                        .map_err(|_| Problem::unavailable("the user service"))?,
                },
            )?;
        }
        let command = UsersCommandRecord::ClaimEmail(wire::ClaimEmail {
            metadata,
            aggregate_id: new_claim.to_string(),
            user_id: subject.clone(),
            purpose: "change".to_owned(),
            email_sealed,
            name_sealed: None,
            phone_sealed: None,
        });
        return submit_for(
            &state,
            &headers,
            UserReadBack {
                keys,
                user_id: subject,
                ready: Ready::Holds(new_claim),
            },
            command,
            StatusCode::OK,
        )
        .await;
    }
    let name_sealed = match &name {
        Some(name) => Some(seal(&key, &subject, NAME, name.as_str())?),
        None => None,
    };
    let (phone_sealed, clear_phone) = match &phone {
        None => (None, false),
        Some(None) => (None, true),
        Some(Some(phone)) => (Some(seal(&key, &subject, PHONE, phone.as_str())?), false),
    };
    let sealed =
        |text: &str| Sealed::parse(text).map_err(|_| Problem::unavailable("the user service"));
    let phone_change = match (&phone_sealed, clear_phone) {
        (Some(phone), _) => PhoneChange::Set(sealed(phone)?),
        (None, true) => PhoneChange::Clear,
        (None, false) => PhoneChange::Keep,
    };
    if !identity.retry {
        dry_run(
            &user,
            &UserCommand::ChangeProfile {
                user_id,
                name: name_sealed.as_deref().map(sealed).transpose()?,
                phone: phone_change,
            },
        )?;
    }
    let command = UsersCommandRecord::ChangeProfile(wire::ChangeProfile {
        metadata,
        aggregate_id: subject.clone(),
        name_sealed,
        phone_sealed,
        clear_phone,
    });
    submit_for_user(&state, &headers, keys, subject, command).await
}

async fn deactivate_user(
    State(state): State<GatewayState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let user_id = parse_path_id(&user_id, "user", UserId::parse)?.to_string();
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = parse_json::<DeactivateRequest>(&headers, body, true)?.unwrap_or_default();
    let reason = Note::parse(&request.reason)
        .map_err(|error| Problem::invalid_fields(vec![field_error("reason", error)]))?;
    let keys = data_keys(&state)?;
    let route = format!("POST /v1/users/{user_id}/deactivate");
    let identity = identify(&state, &headers, &route, &raw, user_id.clone()).await?;
    let command = UsersCommandRecord::Deactivate(wire::DeactivateUser {
        metadata: identity_metadata(&state, &identity, &headers),
        aggregate_id: user_id.clone(),
        reason: reason.as_str().to_owned(),
    });
    submit_for_user(&state, &headers, keys, user_id, command).await
}

async fn erase_personal_data(
    State(state): State<GatewayState>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let user_id = parse_path_id(&user_id, "user", UserId::parse)?.to_string();
    let raw = body.as_ref().map(|bytes| bytes.clone()).unwrap_or_default();
    let request = required_body(parse_json::<EraseRequest>(&headers, body, false)?)?;
    let mut errors = Vec::new();
    let requested_by = Note::parse_required(&request.requested_by)
        .map_err(|error| errors.push(field_error("requested_by", error)))
        .ok();
    let reason = Note::parse_required(&request.reason)
        .map_err(|error| errors.push(field_error("reason", error)))
        .ok();
    let (Some(requested_by), Some(reason)) = (requested_by, reason) else {
        return Err(Problem::invalid_fields(errors));
    };
    let keys = data_keys(&state)?;
    let route = format!("DELETE /v1/users/{user_id}/personal-data");
    let identity = identify(&state, &headers, &route, &raw, user_id.clone()).await?;
    let command = UsersCommandRecord::Erase(wire::ErasePersonalData {
        metadata: identity_metadata(&state, &identity, &headers),
        aggregate_id: user_id.clone(),
        requested_by: requested_by.as_str().to_owned(),
        reason: reason.as_str().to_owned(),
    });
    submit_for_user(&state, &headers, keys, user_id, command).await
}

async fn get_user(
    State(state): State<GatewayState>,
    Path(user_id): Path<String>,
) -> Result<Response, Problem> {
    let user_id = parse_path_id(&user_id, "user", UserId::parse)?.to_string();
    let keys = data_keys(&state)?;
    // The hot read: through the cache when one caches `user_by_id` (the
    // row holds personal data sealed, as in the store).
    let cached = state.store.get_cached(user_key(&user_id)).await;
    let Some(row) = cached.map_err(GatewayError::from)? else {
        return Err(Problem::not_found("user"));
    };
    let row: UserRow = decode_row(USER_BY_ID, &row.value)?;
    match user_view(keys, &row).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(Problem::not_found("user")),
    }
}

async fn find_user_by_email(
    State(state): State<GatewayState>,
    query: Result<Query<EmailQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Ok(Query(query)) = query else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_query",
            "the query must be ?email=<address>",
        ));
    };
    let email = EmailAddress::parse(&query.email)
        .map_err(|error| Problem::invalid_fields(vec![field_error(EMAIL, error)]))?;
    let keys = data_keys(&state)?;
    let claim_key = claim_key(keys, &email);
    let holder = match state
        .store
        .get(email_key(claim_key.as_str()))
        .await
        .map_err(GatewayError::from)?
    {
        Some(row) => decode_row::<EmailRow>(USER_BY_EMAIL, &row.value)?.holder,
        None => None,
    };
    let Some(holder) = holder else {
        return Err(Problem::not_found("user"));
    };
    let Some(row) = read_user(&state.store, &holder.to_string()).await? else {
        return Err(Problem::not_found("user"));
    };
    match user_view(keys, &row).await? {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(Problem::not_found("user")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_validation_names_every_bad_field() {
        let request = RegisterRequest {
            email: "not-an-address".to_owned(),
            name: " ".to_owned(),
            phone: Some("12".to_owned()),
        };
        let Err(problem) = validate_registration(&request) else {
            panic!("invalid");
        };
        assert_eq!(problem.status, 422);
        let fields: Vec<_> = problem
            .errors
            .iter()
            .map(|error| error.field.as_str())
            .collect();
        assert_eq!(fields, [EMAIL, NAME, PHONE]);
        let valid = validate_registration(&RegisterRequest {
            email: " Ada@Example.org".to_owned(),
            name: "Ada".to_owned(),
            phone: None,
        });
        assert_eq!(
            valid
                .ok()
                .map(|valid| valid.email.as_str().to_owned())
                .as_deref(),
            Some("ada@example.org")
        );
    }

    #[test]
    fn a_change_body_tells_absent_from_null_phone() {
        let keep: ChangeRequest = serde_json::from_str(r#"{"name":"Ada"}"#).unwrap();
        assert_eq!(keep.phone, None);
        let clear: ChangeRequest = serde_json::from_str(r#"{"phone":null}"#).unwrap();
        assert_eq!(clear.phone, Some(None));
        let set: ChangeRequest = serde_json::from_str(r#"{"phone":"+4420794609"}"#).unwrap();
        assert_eq!(set.phone, Some(Some("+4420794609".to_owned())));
        assert!(serde_json::from_str::<ChangeRequest>(r#"{"nick":"x"}"#).is_err());
    }
}
