//! The provider simulator: a small card processor over HTTP, the API of
//! [`super::http`], with configurable declines, latency, errors, lost
//! answers and outages, that keeps idempotency keys the way Stripe
//! documents them and counts what it really did.
//!
//! Idempotency (per `Idempotency-Key`):
//! - a request is fingerprinted (method, path, canonical JSON body); the
//!   first request with a key reserves it, executes, and stores its answer;
//! - the same key with the same fingerprint gets the stored answer, status
//!   and body, and executes nothing;
//! - the same key with another fingerprint is refused (400
//!   `idempotency_key_reused`);
//! - the same key while its first request still executes is refused (409
//!   `idempotency_key_in_use`): of concurrent requests exactly one executes;
//! - requests refused before they execute (an outage, an injected error, a
//!   malformed body, parameters that fail validation, a client that gave
//!   up during the latency) store nothing, so a retry executes normally.
//!
//! A lost answer (`lost_answer_rate`) can leave its key unreachable for a
//! while (`unreachable_after_lost_answer_ms`: every request with it is
//! refused with 503 until then), the way a provider that executed and then
//! dropped off the network looks to its client: the authorization is held,
//! and no answer comes before the client's deadline.
//!
//! `GET /v1/simulator/counts` reports the effects really executed (an
//! authorization, a capture, a refund, a void), in total and per caller
//! reference: the ground truth for "charged twice".

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use foldline_platform::payments_config::ProviderSimulatorConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::http::{ErrorBody, IDEMPOTENCY_KEY, KEY_IN_USE};
use super::{AuthorizeRequest, CaptureRequest, RefundRequest};

/// What the simulator really did for one caller reference (a payment id).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceCounts {
    pub authorizations: u64,
    pub captures: u64,
    pub captured: i64,
    pub refunds: u64,
    pub refunded: i64,
    pub voids: u64,
}

/// `GET /v1/simulator/counts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub authorizations: u64,
    pub declines: u64,
    pub captures: u64,
    pub refunds: u64,
    pub voids: u64,
    /// Answered from the idempotency store, executing nothing.
    pub replayed: u64,
    /// Refused before executing: outages and injected errors.
    pub unavailable: u64,
    /// Executed, but the answer was dropped (504).
    pub lost_answers: u64,
    pub by_reference: BTreeMap<String, ReferenceCounts>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthorizationStatus {
    Authorized,
    Captured,
    Voided,
}

#[derive(Clone, Debug)]
struct Authorization {
    amount: i64,
    reference: String,
    status: AuthorizationStatus,
}

#[derive(Clone, Debug)]
struct Capture {
    amount: i64,
    refunded: i64,
    reference: String,
}

#[derive(Clone, Debug)]
enum KeyEntry {
    InFlight {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: StatusCode,
        body: Value,
    },
}

#[derive(Debug)]
struct Ledger {
    rng: u64,
    next_id: u64,
    keys: HashMap<String, KeyEntry>,
    /// Keys whose answer was lost, refused until the instant given.
    unreachable_until: HashMap<String, Instant>,
    authorizations: HashMap<String, Authorization>,
    captures: HashMap<String, Capture>,
    counts: Counts,
}

impl Ledger {
    /// xorshift64*: a seeded, repeatable draw in [0, 1).
    fn draw(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:08}", self.next_id)
    }
}

#[derive(Debug)]
struct Shared {
    config: ProviderSimulatorConfig,
    started: Instant,
    ledger: Mutex<Ledger>,
}

/// A running simulator's state; clone to share.
#[derive(Clone, Debug)]
pub struct Simulator(Arc<Shared>);

type Answer = (StatusCode, Value);

fn error(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Answer {
    let body = ErrorBody {
        kind: kind.to_owned(),
        code: code.to_owned(),
        message: message.into(),
        reference: None,
    };
    (status, json!({ "error": body }))
}

fn invalid(message: impl Into<String>) -> Answer {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "parameter_invalid",
        message,
    )
}

fn missing(what: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "resource_missing",
        format!("no such {what}"),
    )
}

impl Simulator {
    pub fn new(config: ProviderSimulatorConfig) -> Self {
        let seed = config.seed.max(1);
        Self(Arc::new(Shared {
            config,
            started: Instant::now(),
            ledger: Mutex::new(Ledger {
                rng: seed,
                next_id: 0,
                keys: HashMap::new(),
                unreachable_until: HashMap::new(),
                authorizations: HashMap::new(),
                captures: HashMap::new(),
                counts: Counts::default(),
            }),
        }))
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock leaves plain data behind; the
        // simulator keeps serving rather than poisoning every later request.
        self.0
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn counts(&self) -> Counts {
        self.ledger().counts.clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/authorizations", post(authorize))
            .route("/v1/authorizations/{id}/capture", post(capture))
            .route("/v1/authorizations/{id}/void", post(void))
            .route("/v1/captures/{id}/refunds", post(refund))
            .route("/v1/simulator/counts", get(counts))
            .route("/healthz", get(|| async { "ok" }))
            .fallback(|| async { respond(missing("route")) })
            .with_state(self.clone())
    }

    fn in_outage(&self) -> bool {
        let elapsed = self.0.started.elapsed().as_millis() as u64;
        self.0
            .config
            .outages
            .iter()
            .any(|window| (window.after_ms..window.after_ms + window.for_ms).contains(&elapsed))
    }

    /// Whether `key` lost its answer less than
    /// `unreachable_after_lost_answer_ms` ago.
    fn unreachable(&self, key: &str) -> bool {
        let mut ledger = self.ledger();
        match ledger.unreachable_until.get(key) {
            Some(until) if Instant::now() < *until => true,
            Some(_) => {
                ledger.unreachable_until.remove(key);
                false
            }
            None => false,
        }
    }

    /// The idempotent frame around one operation: `execute` runs at most
    /// once per key, under the ledger lock, after the configured latency.
    async fn idempotent(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
        execute: impl FnOnce(&mut Ledger, &Value) -> Answer,
    ) -> Answer {
        self.ledger().counts.requests += 1;
        let bearer = headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .filter(|key| !key.trim().is_empty());
        if bearer.is_none() {
            return error(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "api_key_missing",
                "send an API key as Authorization: Bearer <key>",
            );
        }
        if self.in_outage() || self.ledger().draw() < self.0.config.error_rate {
            self.ledger().counts.unavailable += 1;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "unavailable",
                "the provider is unavailable, retry with the same idempotency key",
            );
        }
        let Some(key) = headers
            .get(IDEMPOTENCY_KEY)
            .and_then(|value| value.to_str().ok())
            .filter(|key| !key.is_empty() && key.len() <= 255)
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "idempotency_key_required",
                "every POST needs an Idempotency-Key of 1 to 255 characters",
            );
        };
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(value @ Value::Object(_)) => value,
            _ => return invalid("the body must be a JSON object"),
        };
        if self.unreachable(key) {
            self.ledger().counts.unavailable += 1;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "unavailable",
                "the provider cannot be reached, retry with the same idempotency key",
            );
        }
        // serde_json's map is ordered: equal parameters print alike.
        let fingerprint = format!("{method} {path} {parsed}");
        {
            let mut ledger = self.ledger();
            let reused = || {
                error(
                    StatusCode::BAD_REQUEST,
                    "idempotency_error",
                    "idempotency_key_reused",
                    "this idempotency key was used with other parameters",
                )
            };
            match ledger.keys.get(key) {
                Some(KeyEntry::Done {
                    fingerprint: stored,
                    status,
                    body,
                }) => {
                    if *stored != fingerprint {
                        return reused();
                    }
                    let answer = (*status, body.clone());
                    ledger.counts.replayed += 1;
                    return answer;
                }
                Some(KeyEntry::InFlight {
                    fingerprint: stored,
                }) => {
                    if *stored != fingerprint {
                        return reused();
                    }
                    return error(
                        StatusCode::CONFLICT,
                        "idempotency_error",
                        KEY_IN_USE,
                        "a request with this idempotency key is still executing",
                    );
                }
                None => {
                    ledger.keys.insert(
                        key.to_owned(),
                        KeyEntry::InFlight {
                            fingerprint: fingerprint.clone(),
                        },
                    );
                }
            }
        }
        let mut reservation = Reservation {
            simulator: self,
            key,
            armed: true,
        };
        if self.0.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.0.config.latency_ms)).await;
        }
        reservation.armed = false;
        let mut ledger = self.ledger();
        let (status, body) = execute(&mut ledger, &parsed);
        if status == StatusCode::BAD_REQUEST {
            // Parameters that fail validation never began executing: like
            // Stripe, keep no result under the key.
            ledger.keys.remove(key);
            return (status, body);
        }
        ledger.keys.insert(
            key.to_owned(),
            KeyEntry::Done {
                fingerprint,
                status,
                body: body.clone(),
            },
        );
        if ledger.draw() < self.0.config.lost_answer_rate {
            ledger.counts.lost_answers += 1;
            let unreachable = self.0.config.unreachable_after_lost_answer_ms;
            if unreachable > 0 {
                ledger.unreachable_until.insert(
                    key.to_owned(),
                    Instant::now() + Duration::from_millis(unreachable),
                );
            }
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                "answer_lost",
                "the answer was lost on the way, retry with the same idempotency key",
            );
        }
        (status, body)
    }
}

/// A key reserved by a request that has not executed yet. A request
/// dropped in that window (its client gave up and disconnected) executed
/// nothing, so its key is released and a retry executes normally.
struct Reservation<'a> {
    simulator: &'a Simulator,
    key: &'a str,
    armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut ledger = self.simulator.ledger();
            if matches!(ledger.keys.get(self.key), Some(KeyEntry::InFlight { .. })) {
                ledger.keys.remove(self.key);
            }
        }
    }
}

fn respond((status, body): Answer) -> Response {
    (status, Json(body)).into_response()
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Value) -> Result<T, Answer> {
    serde_json::from_value(body.clone()).map_err(|error| invalid(error.to_string()))
}

fn execute_authorize(simulator: &Simulator, ledger: &mut Ledger, body: &Value) -> Answer {
    let request: AuthorizeRequest = match parse(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    if request.amount <= 0 {
        return invalid("amount must be a positive number of minor units");
    }
    if request.currency.len() != 3 || !request.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return invalid("currency must be an ISO 4217 code");
    }
    if request.card_token.is_empty() || request.reference.is_empty() {
        return invalid("card_token and reference must not be empty");
    }
    let config = &simulator.0.config;
    let declined = if config.decline_card_tokens.contains(&request.card_token) {
        Some(("card_declined", "the card was declined"))
    } else if config
        .decline_amount_above
        .is_some_and(|limit| request.amount > limit)
    {
        Some(("insufficient_funds", "the card has insufficient funds"))
    } else {
        None
    };
    if let Some((code, message)) = declined {
        ledger.counts.declines += 1;
        return error(StatusCode::PAYMENT_REQUIRED, "card_error", code, message);
    }
    let id = ledger.id("auth");
    ledger.authorizations.insert(
        id.clone(),
        Authorization {
            amount: request.amount,
            reference: request.reference.clone(),
            status: AuthorizationStatus::Authorized,
        },
    );
    ledger.counts.authorizations += 1;
    ledger
        .counts
        .by_reference
        .entry(request.reference)
        .or_default()
        .authorizations += 1;
    (
        StatusCode::CREATED,
        json!({"id": id, "status": "authorized", "amount": request.amount, "currency": request.currency}),
    )
}

fn execute_capture(ledger: &mut Ledger, authorization: &str, body: &Value) -> Answer {
    let request: CaptureRequest = match parse(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let Some(held) = ledger.authorizations.get(authorization).cloned() else {
        return missing("authorization");
    };
    match held.status {
        AuthorizationStatus::Authorized => {}
        AuthorizationStatus::Captured => {
            return error(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "already_captured",
                "the authorization is already captured",
            )
        }
        AuthorizationStatus::Voided => {
            return error(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "authorization_voided",
                "the authorization was voided",
            )
        }
    }
    if request.amount <= 0 || request.amount > held.amount {
        return invalid("amount must be positive and at most the authorized amount");
    }
    let id = ledger.id("cap");
    if let Some(held) = ledger.authorizations.get_mut(authorization) {
        held.status = AuthorizationStatus::Captured;
    }
    ledger.captures.insert(
        id.clone(),
        Capture {
            amount: request.amount,
            refunded: 0,
            reference: held.reference.clone(),
        },
    );
    ledger.counts.captures += 1;
    let counts = ledger
        .counts
        .by_reference
        .entry(held.reference)
        .or_default();
    counts.captures += 1;
    counts.captured += request.amount;
    (
        StatusCode::OK,
        json!({"id": id, "status": "captured", "amount": request.amount}),
    )
}

fn execute_void(ledger: &mut Ledger, authorization: &str) -> Answer {
    let Some(held) = ledger.authorizations.get(authorization).cloned() else {
        return missing("authorization");
    };
    if held.status != AuthorizationStatus::Authorized {
        return error(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "authorization_not_voidable",
            "only an uncaptured, unvoided authorization can be voided",
        );
    }
    let id = ledger.id("void");
    if let Some(held) = ledger.authorizations.get_mut(authorization) {
        held.status = AuthorizationStatus::Voided;
    }
    ledger.counts.voids += 1;
    ledger
        .counts
        .by_reference
        .entry(held.reference)
        .or_default()
        .voids += 1;
    (StatusCode::OK, json!({"id": id, "status": "voided"}))
}

fn execute_refund(ledger: &mut Ledger, capture: &str, body: &Value) -> Answer {
    let request: RefundRequest = match parse(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let Some(captured) = ledger.captures.get(capture).cloned() else {
        return missing("capture");
    };
    if request.amount <= 0 {
        return invalid("amount must be a positive number of minor units");
    }
    if captured.refunded + request.amount > captured.amount {
        return error(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "refund_exceeds_captured",
            format!(
                "{} is more than the {} left to refund",
                request.amount,
                captured.amount - captured.refunded
            ),
        );
    }
    let id = ledger.id("re");
    if let Some(captured) = ledger.captures.get_mut(capture) {
        captured.refunded += request.amount;
    }
    ledger.counts.refunds += 1;
    let counts = ledger
        .counts
        .by_reference
        .entry(captured.reference)
        .or_default();
    counts.refunds += 1;
    counts.refunded += request.amount;
    (
        StatusCode::CREATED,
        json!({"id": id, "status": "refunded", "amount": request.amount}),
    )
}

async fn authorize(
    State(simulator): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let inner = simulator.clone();
    respond(
        simulator
            .idempotent(
                &Method::POST,
                "/v1/authorizations",
                &headers,
                &body,
                |ledger, body| execute_authorize(&inner, ledger, body),
            )
            .await,
    )
}

async fn capture(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/authorizations/{id}/capture");
    respond(
        simulator
            .idempotent(&Method::POST, &path, &headers, &body, |ledger, body| {
                execute_capture(ledger, &id, body)
            })
            .await,
    )
}

async fn void(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/authorizations/{id}/void");
    respond(
        simulator
            .idempotent(&Method::POST, &path, &headers, &body, |ledger, _| {
                execute_void(ledger, &id)
            })
            .await,
    )
}

async fn refund(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/captures/{id}/refunds");
    respond(
        simulator
            .idempotent(&Method::POST, &path, &headers, &body, |ledger, body| {
                execute_refund(ledger, &id, body)
            })
            .await,
    )
}

async fn counts(State(simulator): State<Simulator>) -> Json<Counts> {
    Json(simulator.counts())
}

/// Serves `simulator` on `listener` until `shutdown` resolves.
pub async fn serve(
    simulator: Simulator,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, simulator.router())
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use foldline_platform::payments_config::{OutageWindow, ProviderClientConfig};

    use super::*;
    use crate::provider::http::HttpProvider;
    use crate::provider::{PaymentProvider, ProviderAnswer, ProviderError};

    async fn start(config: ProviderSimulatorConfig) -> (Simulator, HttpProvider, String) {
        let simulator = Simulator::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(simulator.clone(), listener, std::future::pending()));
        let provider = HttpProvider::new(&ProviderClientConfig {
            url: url.clone(),
            ..ProviderClientConfig::default()
        })
        .unwrap();
        (simulator, provider, url)
    }

    fn quiet() -> ProviderSimulatorConfig {
        ProviderSimulatorConfig {
            decline_card_tokens: vec!["tok_chargeDeclined".to_owned()],
            decline_amount_above: Some(1_000),
            ..ProviderSimulatorConfig::default()
        }
    }

    fn hold(amount: i64, card_token: &str, reference: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            amount,
            currency: "EUR".to_owned(),
            card_token: card_token.to_owned(),
            reference: reference.to_owned(),
        }
    }

    fn approved(answer: Result<ProviderAnswer, ProviderError>) -> String {
        match answer {
            Ok(ProviderAnswer::Approved { reference }) => reference,
            other => panic!("not approved: {other:?}"),
        }
    }

    /// Retries `key` while the simulator refuses it (for at most 10 s).
    async fn approved_once_reachable(
        provider: &HttpProvider,
        key: &str,
        request: &AuthorizeRequest,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match provider.authorize(key, request).await {
                Ok(answer) => return approved(Ok(answer)),
                Err(error) if error.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    #[tokio::test]
    async fn the_same_key_gets_the_same_answer_and_executes_once() {
        let (simulator, provider, _) = start(quiet()).await;
        let first = approved(provider.authorize("k1", &hold(500, "tok_visa", "p1")).await);
        let again = approved(provider.authorize("k1", &hold(500, "tok_visa", "p1")).await);
        assert_eq!(first, again);
        let reused = provider.authorize("k1", &hold(501, "tok_visa", "p1")).await;
        assert!(
            matches!(&reused, Err(ProviderError::Permanent(reason)) if reason.contains("idempotency_key_reused")),
            "{reused:?}"
        );
        let counts = simulator.counts();
        assert_eq!((counts.authorizations, counts.replayed), (1, 1));
        assert_eq!(counts.by_reference["p1"].authorizations, 1);
    }

    #[tokio::test]
    async fn of_concurrent_requests_with_one_key_exactly_one_executes() {
        let (simulator, provider, _) = start(ProviderSimulatorConfig {
            latency_ms: 300,
            ..quiet()
        })
        .await;
        let request = hold(500, "tok_visa", "p1");
        let (left, right) = tokio::join!(
            provider.authorize("same", &request),
            provider.authorize("same", &request)
        );
        let answers = [left, right];
        let executed = answers.iter().filter(|answer| answer.is_ok()).count();
        let in_use = answers
            .iter()
            .filter(|answer| matches!(answer, Err(error) if error.is_transient()))
            .count();
        assert_eq!((executed, in_use), (1, 1), "{answers:?}");
        // The loser's retry gets the winner's answer.
        let winner = answers.into_iter().find_map(Result::ok);
        assert_eq!(provider.authorize("same", &request).await.ok(), winner);
        assert_eq!(simulator.counts().authorizations, 1);
    }

    #[tokio::test]
    async fn decline_rules_by_card_token_and_amount_are_stored_answers() {
        let (simulator, provider, _) = start(quiet()).await;
        for (key, request, code) in [
            ("d1", hold(500, "tok_chargeDeclined", "p1"), "card_declined"),
            ("d2", hold(1_001, "tok_visa", "p2"), "insufficient_funds"),
        ] {
            for _ in 0..2 {
                let answer = provider.authorize(key, &request).await;
                assert!(
                    matches!(&answer, Ok(ProviderAnswer::Refused { code: got, .. }) if got == code),
                    "{answer:?}"
                );
            }
        }
        let counts = simulator.counts();
        assert_eq!(
            (counts.declines, counts.authorizations, counts.replayed),
            (2, 0, 2)
        );
        assert!(counts.by_reference.is_empty());
    }

    #[tokio::test]
    async fn an_outage_refuses_before_executing_so_the_retry_executes() {
        let (simulator, provider, _) = start(ProviderSimulatorConfig {
            outages: vec![OutageWindow {
                after_ms: 0,
                for_ms: 300,
            }],
            ..quiet()
        })
        .await;
        let request = hold(500, "tok_visa", "p1");
        let refused = provider.authorize("k", &request).await;
        assert!(refused.unwrap_err().is_transient());
        let reference = approved_once_reachable(&provider, "k", &request).await;
        assert!(reference.starts_with("auth_"));
        let counts = simulator.counts();
        assert_eq!(counts.authorizations, 1);
        assert!(counts.unavailable >= 1);
    }

    #[tokio::test]
    async fn a_lost_answer_keeps_its_key_unreachable_then_replays_what_was_executed() {
        let (simulator, provider, _) = start(ProviderSimulatorConfig {
            lost_answer_rate: 1.0,
            unreachable_after_lost_answer_ms: 300,
            ..quiet()
        })
        .await;
        let request = hold(500, "tok_visa", "p1");
        let lost = provider.authorize("k", &request).await;
        assert!(lost.unwrap_err().is_transient());
        let refused = provider.authorize("k", &request).await;
        assert!(
            matches!(&refused, Err(ProviderError::Transient(reason)) if reason.contains("503")),
            "{refused:?}"
        );
        // Another key is not affected (its own answer is lost, though).
        assert!(provider
            .authorize("other", &hold(500, "tok_visa", "p2"))
            .await
            .unwrap_err()
            .is_transient());
        let reference = approved_once_reachable(&provider, "k", &request).await;
        assert!(reference.starts_with("auth_"));
        let counts = simulator.counts();
        assert_eq!(counts.by_reference["p1"].authorizations, 1, "{counts:?}");
        assert_eq!((counts.lost_answers, counts.replayed), (2, 1), "{counts:?}");
        assert!(counts.unavailable >= 1, "{counts:?}");
    }

    #[tokio::test]
    async fn captures_refunds_and_voids_keep_the_ledger_straight() {
        let (simulator, provider, _) = start(quiet()).await;
        let held = approved(provider.authorize("a", &hold(900, "tok_visa", "p1")).await);
        let captured = approved(
            provider
                .capture("c", &held, &CaptureRequest { amount: 900 })
                .await,
        );
        let void_after_capture = provider.void("v", &held).await;
        assert!(matches!(
            void_after_capture,
            Ok(ProviderAnswer::Refused { .. })
        ));
        let refund = |key: &'static str, amount: i64| {
            let provider = provider.clone();
            let captured = captured.clone();
            async move {
                provider
                    .refund(
                        key,
                        &captured,
                        &RefundRequest {
                            amount,
                            reference: key.to_owned(),
                        },
                    )
                    .await
            }
        };
        approved(refund("r1", 400).await);
        let over = refund("r2", 501).await;
        assert!(
            matches!(&over, Ok(ProviderAnswer::Refused { code, .. }) if code == "refund_exceeds_captured"),
            "{over:?}"
        );
        approved(refund("r3", 500).await);
        let missing = provider
            .capture("x", "auth_nope", &CaptureRequest { amount: 1 })
            .await;
        assert!(
            matches!(missing, Ok(ProviderAnswer::Refused { code, .. }) if code == "resource_missing")
        );
        let counts = simulator.counts();
        let p1 = &counts.by_reference["p1"];
        assert_eq!(
            (
                p1.authorizations,
                p1.captures,
                p1.captured,
                p1.refunds,
                p1.refunded,
                p1.voids
            ),
            (1, 1, 900, 2, 900, 0)
        );
        let second = approved(provider.authorize("a2", &hold(100, "tok_visa", "p2")).await);
        approved(provider.void("v2", &second).await);
        assert_eq!(simulator.counts().by_reference["p2"].voids, 1);
    }

    #[tokio::test]
    async fn garbage_requests_are_refused_and_execute_nothing() {
        let (simulator, _, url) = start(quiet()).await;
        let client = reqwest::Client::new();
        let authorizations = format!("{url}/v1/authorizations");
        let body = serde_json::to_string(&hold(500, "tok_visa", "p1")).unwrap();
        let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
            (
                client
                    .post(&authorizations)
                    .header(IDEMPOTENCY_KEY, "k")
                    .body(body.clone()),
                401,
                "api_key_missing",
            ),
            (
                client
                    .post(&authorizations)
                    .bearer_auth("sk")
                    .body(body.clone()),
                400,
                "idempotency_key_required",
            ),
            (
                client
                    .post(&authorizations)
                    .bearer_auth("sk")
                    .header(IDEMPOTENCY_KEY, "k")
                    .body("not json"),
                400,
                "parameter_invalid",
            ),
            (
                client
                    .post(&authorizations)
                    .bearer_auth("sk")
                    .header(IDEMPOTENCY_KEY, "k2")
                    .body(
                        r#"{"amount": -1, "currency": "EUR", "card_token": "t", "reference": "p"}"#,
                    ),
                400,
                "parameter_invalid",
            ),
            (
                client
                    .post(&authorizations)
                    .bearer_auth("sk")
                    .header(IDEMPOTENCY_KEY, "k3")
                    .body(
                        r#"{"amount": 5, "currency": "euro", "card_token": "t", "reference": "p"}"#,
                    ),
                400,
                "parameter_invalid",
            ),
            (
                client.post(format!("{url}/v1/nowhere")).bearer_auth("sk"),
                404,
                "resource_missing",
            ),
        ];
        for (request, status, code) in cases {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), status);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{body}");
        }
        assert_eq!(simulator.counts().authorizations, 0);
    }
}
