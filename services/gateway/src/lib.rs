//! The gateway: a thin HTTP edge over the command and read sides.
//!
//! # Layout
//! - [`problem`]: RFC 9457 problem details, the only error shape.
//! - [`outcomes`]: follows `D.outcomes` so requests can wait for their command.
//! - [`orders`]: the orders routes: validate → command → produce; reads from
//!   the projection store.
//! - [`time`]: RFC 3339 rendering of log timestamps.
//!
//! Nothing here decides anything: validation uses the pure domain, the
//! decision happens in the orders processor, reads come from projections.

pub mod orders;
pub mod outcomes;
pub mod problem;
pub mod time;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use foldline_platform::codec::Codec;
use foldline_platform::config::GatewayConfig;
use foldline_platform::projector::Watermarks;
use foldline_platform::store::Store;
use rdkafka::producer::FutureProducer;
use tokio::sync::Semaphore;

use crate::outcomes::Outcomes;
use crate::problem::Problem;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct GatewayState {
    pub config: GatewayConfig,
    pub producer: FutureProducer,
    pub codec: Codec,
    pub store: Store,
    pub outcomes: Outcomes,
    /// The orders projector's progress when it runs in this process.
    pub watermarks: Option<Watermarks>,
    pub orders_commands_topic: String,
    pub in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GatewayState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub fn router(state: GatewayState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    Router::new()
        .route("/v1/orders", post(orders::place_order))
        .route("/v1/orders/{order_id}", get(orders::get_order))
        .route("/v1/orders/{order_id}/cancel", post(orders::cancel_order))
        .route(
            "/v1/customers/{customer_id}/orders",
            get(orders::list_customer_orders),
        )
        .route("/v1/commands/{command_id}", get(orders::get_command))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), limits))
        .with_state(state)
}

/// Sheds load past the concurrency limit and bounds every request's time.
async fn limits(State(state): State<GatewayState>, request: Request, next: Next) -> Response {
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

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<GatewayState>) -> Response {
    let store_ok = state.store.get(orders::readiness_probe_key()).await.is_ok();
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
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
