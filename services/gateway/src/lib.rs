//! The gateway: a thin HTTP edge over the command and read sides of every
//! domain.
//!
//! # Layout
//! - [`admission`]: the bound on unsettled commands per domain; past it a
//!   command is refused with 503 before it is produced.
//! - [`problem`]: RFC 9457 problem details, the only error shape.
//! - [`http`]: request plumbing every route shares (JSON bodies, path ids,
//!   `Prefer: wait`, paging cursors) and [`GatewayError`](http::GatewayError),
//!   the one mapping of internal failures to problem+json.
//! - [`idempotency`]: `Idempotency-Key` → the same command id, every replica
//!   (records in the store or in Redis).
//! - [`rate_limit`]: requests per client and window, per replica or shared
//!   through Redis; 429 past it.
//! - [`commands`]: submit a command, wait for its outcome, answer; and
//!   `GET /v1/commands/{id}` for any domain.
//! - [`outcomes`]: follows every domain's `D.outcomes` so requests can wait.
//! - [`time`]: RFC 3339 rendering of log timestamps.
//!
//! Domain routes live in their domain crates and plug in through an
//! [`EdgeDeclaration`]. Nothing here decides anything: validation uses the
//! pure domain, the decision happens in the domain's processor, reads come
//! from projections.

pub mod admission;
pub mod commands;
pub mod http;
pub mod idempotency;
pub mod outcomes;
pub mod problem;
pub mod rate_limit;
pub mod time;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use foldline_platform::codec::Codec;
use foldline_platform::config::GatewayConfig;
use foldline_platform::personal_data::DataKeys;
use foldline_platform::projector::Watermarks;
use foldline_platform::store::Store;
use rdkafka::producer::FutureProducer;
use tokio::sync::Semaphore;

use crate::admission::Admission;
use crate::http::GatewayError;
use crate::idempotency::IdempotencyRecords;
use crate::outcomes::Outcomes;
use crate::problem::Problem;
use crate::rate_limit::{RateLimit, Verdict};

/// What a domain crate declares to the edge: its routes and how clients
/// name its aggregates.
#[derive(Clone, Copy)]
pub struct EdgeDeclaration {
    /// The domain's name in the topology.
    pub domain: &'static str,
    /// What clients call one aggregate: `order` gives `order_id` and
    /// `order_version` fields in command views.
    pub noun: &'static str,
    /// The collection path; one aggregate lives at `{collection}/{id}`.
    pub collection: &'static str,
    pub routes: fn() -> Router<GatewayState>,
    /// Whether the routes seal personal data, so the gateway needs the
    /// key-encryption key ([`GatewayState::data_keys`]).
    pub personal_data: bool,
}

impl std::fmt::Debug for EdgeDeclaration {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EdgeDeclaration")
            .field("domain", &self.domain)
            .field("collection", &self.collection)
            .finish_non_exhaustive()
    }
}

/// One served domain, as the running gateway knows it.
#[derive(Clone, Debug)]
pub struct DomainEdge {
    pub noun: &'static str,
    pub collection: &'static str,
    pub commands_topic: String,
    /// The domain projector's progress when it runs in this process.
    pub watermarks: Option<Watermarks>,
}

impl DomainEdge {
    pub fn id_field(&self) -> String {
        format!("{}_id", self.noun)
    }

    pub fn version_field(&self) -> String {
        format!("{}_version", self.noun)
    }
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    pub config: GatewayConfig,
    pub producer: FutureProducer,
    pub codec: Codec,
    pub store: Store,
    pub outcomes: Outcomes,
    /// Shared with `outcomes`, which gives slots back as commands settle.
    pub admission: Admission,
    /// Served domains by name.
    pub domains: Arc<BTreeMap<String, DomainEdge>>,
    pub in_flight: Arc<Semaphore>,
    /// Per-subject data keys, when a served domain holds personal data.
    pub data_keys: Option<DataKeys>,
    /// Where `Idempotency-Key` records live.
    pub idempotency: IdempotencyRecords,
    /// Requests per client, when limited.
    pub rate_limit: Option<Arc<RateLimit>>,
}

impl GatewayState {
    pub fn edge(&self, domain: &str) -> Result<&DomainEdge, GatewayError> {
        self.domains
            .get(domain)
            .ok_or_else(|| GatewayError::UnknownDomain(domain.to_owned()))
    }
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GatewayState")
            .field("config", &self.config)
            .field("domains", &self.domains.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The whole HTTP API: the shared routes plus every declared domain's.
pub fn router(state: GatewayState, declarations: &[EdgeDeclaration]) -> Router {
    router_with_reads(state, declarations, &[])
}

/// [`router`] plus read-only routes that belong to no domain (analytics),
/// behind the same limits.
pub fn router_with_reads(
    state: GatewayState,
    declarations: &[EdgeDeclaration],
    reads: &[fn() -> Router<GatewayState>],
) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let mut routes = Router::new()
        .route("/v1/commands/{command_id}", get(commands::get_command))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    for declaration in declarations {
        routes = routes.merge((declaration.routes)());
    }
    for read in reads {
        routes = routes.merge(read());
    }
    routes
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .with_state(state)
}

/// Sheds load past the concurrency limit and bounds every request's time.
/// A command (a POST under a domain's collection) for a domain with no
/// admission slot left is refused here, before its body is read or
/// validated: under overload a refusal must cost as little as possible.
async fn limits(State(state): State<GatewayState>, request: Request, next: Next) -> Response {
    // First of all: a client past its rate costs the least possible.
    if let Some(limit) = &state.rate_limit {
        let probe = matches!(request.uri().path(), "/healthz" | "/readyz");
        if !probe {
            if let Verdict::Limited { retry_after } = limit.check(&limit.client(&request)).await {
                return Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests from this client, retry later",
                )
                .retry_after(rate_limit::retry_after_seconds(retry_after))
                .into_response();
            }
        }
    }
    if request.method() == axum::http::Method::POST {
        let path = request.uri().path();
        let full = state.domains.iter().any(|(domain, edge)| {
            path.starts_with(edge.collection) && state.admission.is_full(domain)
        });
        if full {
            return overloaded(&state);
        }
    }
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight, retry later",
        )
        .retry_after(1)
        .into_response();
    };
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long, retry later",
        )
        .retry_after(1)
        .into_response(),
    }
}

fn overloaded(state: &GatewayState) -> Response {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!(
            "{} commands are still being settled, retry later",
            state.config.max_unsettled_commands
        ),
    )
    .retry_after(1)
    .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<GatewayState>) -> Response {
    let store_ok = state
        .store
        .get(commands::readiness_probe_key())
        .await
        .is_ok();
    if store_ok && state.outcomes.is_ready() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        Problem::unavailable("the gateway").into_response()
    }
}

async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "no_route", "no such route")
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address is the rate limit's client when no header names one.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
