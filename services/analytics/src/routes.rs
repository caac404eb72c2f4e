//! `GET /v1/analytics/summary` and `GET /v1/analytics/series`.

// Handlers answer with a `Problem` by value, as every route crate does.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use foldline_contracts::topology::Topology;
use foldline_gateway::http::GatewayError;
use foldline_gateway::problem::Problem;
use foldline_gateway::time::rfc3339_millis;
use foldline_gateway::GatewayState;
use serde::{Deserialize, Serialize};

use crate::adapters::{
    ORDERS_REVENUE, PAYMENTS_APPROVED, PAYMENTS_AUTHORIZED, PAYMENTS_DECLINED,
    PAYMENTS_PROVIDER_DECLINED,
};
use crate::figures::{Figures, LatencySummary, Resolution};
use crate::read::{self, MAX_BUCKETS};
use crate::sources::Catalog;

/// Buckets a series spans when the request names no `from`.
const DEFAULT_BUCKETS: i64 = 60;

pub fn router() -> Router<GatewayState> {
    Router::new()
        .route("/v1/analytics/summary", get(summary))
        .route("/v1/analytics/series", get(series))
}

fn catalog() -> Result<&'static Catalog, Problem> {
    static CATALOG: OnceLock<Result<Catalog, String>> = OnceLock::new();
    let catalog = CATALOG.get_or_init(|| {
        Topology::embedded()
            .map_err(|error| error.to_string())
            .and_then(|topology| Catalog::of(&topology).map_err(|error| error.to_string()))
    });
    catalog.as_ref().map_err(|error| {
        tracing::error!(%error, "the analytics catalog cannot be read from the topology");
        Problem::unavailable("analytics")
    })
}

/// A metric holding latencies rather than sums.
fn is_latency(metric: &str) -> bool {
    metric.ends_with("_ms")
}

#[derive(Debug, Serialize)]
struct Approval {
    approved: i64,
    declined: i64,
    /// approved / (approved + declined) in basis points (1/100 of a
    /// percent), rounded down; absent before the first payment outcome.
    rate_basis_points: Option<i64>,
}

impl Approval {
    fn of(figures: &Figures, approved: &str, declined: &str) -> Approval {
        let approved = figures.sum(approved);
        let declined = figures.sum(declined);
        let outcomes = approved.saturating_add(declined);
        Approval {
            approved,
            declined,
            rate_basis_points: (outcomes > 0).then(|| approved.saturating_mul(10_000) / outcomes),
        }
    }
}

#[derive(Debug, Serialize)]
struct SummaryView {
    /// Every count and amount, all time, by metric.
    sums: BTreeMap<String, i64>,
    /// Revenue (confirmed orders) by currency, minor units.
    revenue: BTreeMap<String, i64>,
    /// Payment outcomes as the orders log records them.
    payment_approval: Approval,
    /// The provider's answers as the payments log records them.
    provider_approval: Approval,
    /// Latency percentiles by metric, milliseconds.
    latencies_ms: BTreeMap<String, LatencySummary>,
    /// What `GET /v1/analytics/series?metric=` accepts.
    metrics: Vec<String>,
}

impl SummaryView {
    fn of(totals: &Figures, catalog: &Catalog) -> SummaryView {
        let revenue_prefix = format!("{ORDERS_REVENUE}.");
        SummaryView {
            sums: totals.sums.clone(),
            revenue: totals
                .sums
                .iter()
                .filter_map(|(metric, amount)| {
                    metric
                        .strip_prefix(&revenue_prefix)
                        .map(|currency| (currency.to_owned(), *amount))
                })
                .collect(),
            payment_approval: Approval::of(totals, PAYMENTS_APPROVED, PAYMENTS_DECLINED),
            provider_approval: Approval::of(
                totals,
                PAYMENTS_AUTHORIZED,
                PAYMENTS_PROVIDER_DECLINED,
            ),
            latencies_ms: totals
                .latencies
                .iter()
                .map(|(metric, latency)| (metric.clone(), latency.summary()))
                .collect(),
            metrics: catalog.metrics().to_vec(),
        }
    }
}

async fn summary(State(state): State<GatewayState>) -> Result<Response, Problem> {
    let catalog = catalog()?;
    let totals = read::totals(&state.store, catalog)
        .await
        .map_err(GatewayError::from)?;
    Ok(Json(SummaryView::of(&totals, catalog)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    metric: Option<String>,
    resolution: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// A validated series request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SeriesRequest {
    metric: String,
    resolution: Resolution,
    from: i64,
    to: i64,
}

fn bad_request(code: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, code, detail)
}

/// RFC 3339 (`2026-12-02T08:00:00Z`) or epoch milliseconds.
fn parse_instant(field: &str, text: &str) -> Result<i64, Problem> {
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(millis);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.timestamp_millis())
        .map_err(|_| {
            bad_request(
                "invalid_time",
                format!("{field} must be an RFC 3339 timestamp or epoch milliseconds"),
            )
        })
}

impl SeriesRequest {
    fn parse(
        query: Result<Query<SeriesQuery>, QueryRejection>,
        catalog: &Catalog,
        now: i64,
    ) -> Result<SeriesRequest, Problem> {
        let Ok(Query(query)) = query else {
            return Err(bad_request(
                "invalid_query",
                "the query string is malformed or names an unknown parameter (metric, resolution, from, to)",
            ));
        };
        let metric = match query.metric {
            None => return Err(bad_request("invalid_metric", "metric is required")),
            Some(metric) if !catalog.knows(&metric) => {
                return Err(bad_request(
                    "invalid_metric",
                    format!(
                        "metric {metric:?} is not one analytics folds; see metrics in GET /v1/analytics/summary"
                    ),
                ))
            }
            Some(metric) => metric,
        };
        let resolution = match query.resolution.as_deref() {
            None => Resolution::Minute,
            Some(text) => Resolution::parse(text).ok_or_else(|| {
                bad_request("invalid_resolution", "resolution must be minute or hour")
            })?,
        };
        let to = match query.to.as_deref() {
            None => now,
            Some(text) => parse_instant("to", text)?,
        };
        let from = match query.from.as_deref() {
            None => to.saturating_sub((DEFAULT_BUCKETS - 1) * resolution.width_ms()),
            Some(text) => parse_instant("from", text)?,
        };
        if from > to {
            return Err(bad_request("invalid_range", "from must not be after to"));
        }
        let buckets = (resolution.bucket_start(to) - resolution.bucket_start(from))
            / resolution.width_ms()
            + 1;
        if buckets > MAX_BUCKETS {
            return Err(bad_request(
                "range_too_large",
                format!("a series spans at most {MAX_BUCKETS} buckets; this one spans {buckets}"),
            ));
        }
        Ok(SeriesRequest {
            metric,
            resolution,
            from,
            to,
        })
    }
}

#[derive(Debug, Serialize)]
struct Point {
    start: String,
    start_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<LatencySummary>,
}

#[derive(Debug, Serialize)]
struct SeriesView {
    metric: String,
    resolution: &'static str,
    from: String,
    to: String,
    points: Vec<Point>,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

async fn series(
    State(state): State<GatewayState>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let catalog = catalog()?;
    let request = SeriesRequest::parse(query, catalog, now_millis())?;
    let buckets = read::series(
        &state.store,
        catalog,
        request.resolution,
        request.from,
        request.to,
    )
    .await
    .map_err(GatewayError::from)?;
    let points = buckets
        .iter()
        .map(|(start, figures)| {
            let (value, latency) = match is_latency(&request.metric) {
                true => (
                    None,
                    Some(
                        figures
                            .latencies
                            .get(&request.metric)
                            .cloned()
                            .unwrap_or_default()
                            .summary(),
                    ),
                ),
                false => (Some(figures.sum(&request.metric)), None),
            };
            Point {
                start: rfc3339_millis(*start),
                start_ms: *start,
                value,
                latency,
            }
        })
        .collect();
    Ok(Json(SeriesView {
        metric: request.metric,
        resolution: request.resolution.as_str(),
        from: rfc3339_millis(request.from),
        to: rfc3339_millis(request.to),
        points,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use axum::http::Uri;

    use super::*;

    fn parse(query: &str) -> Result<SeriesRequest, Problem> {
        let uri: Uri = format!("/v1/analytics/series?{query}").parse().unwrap();
        let catalog = Catalog::of(&Topology::embedded().unwrap()).unwrap();
        SeriesRequest::parse(Query::try_from_uri(&uri), &catalog, 1_800_000_000_000)
    }

    fn code(query: &str) -> String {
        let problem = parse(query).unwrap_err();
        assert_eq!(problem.status, 400, "{query}");
        problem.code
    }

    #[test]
    fn a_series_request_reads_rfc3339_or_millis_with_defaults() {
        let request = parse(
            "metric=orders.placed&resolution=hour&from=2026-12-02T07:00:00Z&to=1796202000000",
        )
        .unwrap();
        assert_eq!(request.resolution, Resolution::Hour);
        assert_eq!(request.from, 1_796_194_800_000);
        assert_eq!(request.to, 1_796_202_000_000);
        let defaults = parse("metric=orders.revenue.EUR").unwrap();
        assert_eq!(defaults.resolution, Resolution::Minute);
        assert_eq!(defaults.to, 1_800_000_000_000);
        assert_eq!(defaults.to - defaults.from, 59 * 60_000);
    }

    #[test]
    fn bad_series_requests_are_problems_naming_the_parameter() {
        assert_eq!(code(""), "invalid_metric");
        assert_eq!(code("metric=orders.nope"), "invalid_metric");
        assert_eq!(
            code("metric=orders.placed&resolution=day"),
            "invalid_resolution"
        );
        assert_eq!(code("metric=orders.placed&from=yesterday"), "invalid_time");
        assert_eq!(
            code("metric=orders.placed&to=2026-13-01T00:00:00Z"),
            "invalid_time"
        );
        assert_eq!(code("metric=orders.placed&from=10&to=5"), "invalid_range");
        assert_eq!(
            code("metric=orders.placed&resolution=minute&from=0&to=86400000"),
            "range_too_large"
        );
        assert_eq!(code("metric=orders.placed&surprise=1"), "invalid_query");
        // A day of minutes is the most one request spans.
        assert!(parse("metric=orders.placed&from=0&to=86399999").is_ok());
    }

    #[test]
    fn the_approval_rate_is_integer_basis_points() {
        let rate = |figures: &Figures| {
            Approval::of(figures, PAYMENTS_APPROVED, PAYMENTS_DECLINED).rate_basis_points
        };
        let mut figures = Figures::default();
        assert_eq!(rate(&figures), None);
        figures.add(PAYMENTS_APPROVED, 2);
        figures.add(PAYMENTS_DECLINED, 1);
        assert_eq!(rate(&figures), Some(6_666));
    }
}
