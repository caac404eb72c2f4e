//! A fake notification provider API on loopback, for the notify tests and
//! benches: it accepts, answers slowly, fails (503), stalls (never answers
//! in time) or recovers on cue,
//! refuses one recipient outright (422), and counts what it accepted per
//! notification id.
//!
//! It speaks the protocol of `foldline_notify::providers`: `POST
//! /v1/messages` with the message as JSON and `Idempotency-Key`. A fake
//! started with `honours_idempotency_key` answers a repeated key with the
//! first answer and does not count it again (it counts it as absorbed); one
//! without counts every acceptance, so a second delivery shows.
//!
//! `GET /v1/fake/accepted` serves the counts to a checker outside the test
//! process (`{"accepted": {id: times}, "calls": n, "absorbed_repeats": n}`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The recipient every fake refuses with 422: a poison notification.
pub const REFUSED_RECIPIENT: &str = "+15550000000";

/// What the fake does with the next requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Accept,
    /// 503 at once.
    Fail,
    /// Holds the request far longer than any client timeout.
    Stall,
    /// Answers as [`Behaviour::Accept`] after this delay (a degraded network).
    Slow(Duration),
}

#[derive(Debug, Default)]
struct Counts {
    /// Notification id → times accepted (a key-honouring fake: at most 1).
    accepted: BTreeMap<String, u32>,
    /// When each acceptance happened, in order.
    accepted_at: Vec<(Instant, String)>,
    calls: usize,
    absorbed_repeats: usize,
}

#[derive(Debug)]
struct Shared {
    behaviour: Mutex<Behaviour>,
    honours_key: bool,
    counts: Mutex<Counts>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake provider; stops when dropped.
#[derive(Debug)]
pub struct FakeProvider {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let behaviour = *lock(&shared.behaviour);
    lock(&shared.counts).calls += 1;
    match behaviour {
        Behaviour::Fail => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Behaviour::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        Behaviour::Slow(delay) => tokio::time::sleep(delay).await,
        Behaviour::Accept => {}
    }
    if body.get("recipient").and_then(Value::as_str) == Some(REFUSED_RECIPIENT) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "recipient refused").into_response();
    }
    let Some(id) = body.get("notification_id").and_then(Value::as_str) else {
        return (StatusCode::BAD_REQUEST, "no notification_id").into_response();
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut counts = lock(&shared.counts);
    if shared.honours_key && !key.is_empty() && counts.accepted.contains_key(&key) {
        counts.absorbed_repeats += 1;
        return Json(json!({"message_id": format!("m-{key}")})).into_response();
    }
    *counts.accepted.entry(id.to_owned()).or_default() += 1;
    counts.accepted_at.push((Instant::now(), id.to_owned()));
    Json(json!({"message_id": format!("m-{id}")})).into_response()
}

async fn counts(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let counts = lock(&shared.counts);
    Json(json!({
        "accepted": counts.accepted,
        "calls": counts.calls,
        "absorbed_repeats": counts.absorbed_repeats,
    }))
}

impl FakeProvider {
    /// Starts a fake on a free loopback port, accepting.
    pub async fn start(honours_idempotency_key: bool) -> anyhow::Result<FakeProvider> {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour::Accept),
            honours_key: honours_idempotency_key,
            counts: Mutex::new(Counts::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind a fake provider")?;
        let address = listener.local_addr().context("read the fake's address")?;
        let app = Router::new()
            .route("/v1/messages", post(message))
            .route("/v1/fake/accepted", get(counts))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("fake provider {address} stopped: {error}");
            }
        });
        Ok(FakeProvider {
            address,
            shared,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *lock(&self.shared.behaviour) = behaviour;
    }

    /// Notification id → times accepted.
    pub fn accepted(&self) -> BTreeMap<String, u32> {
        lock(&self.shared.counts).accepted.clone()
    }

    /// Acceptances after `since`.
    pub fn accepted_since(&self, since: Instant) -> Vec<(Instant, String)> {
        lock(&self.shared.counts)
            .accepted_at
            .iter()
            .filter(|(at, _)| *at >= since)
            .cloned()
            .collect()
    }

    /// Requests received, whatever was answered.
    pub fn calls(&self) -> usize {
        lock(&self.shared.counts).calls
    }

    /// Repeated keys answered without counting (key-honouring fakes only).
    pub fn absorbed_repeats(&self) -> usize {
        lock(&self.shared.counts).absorbed_repeats
    }
}
