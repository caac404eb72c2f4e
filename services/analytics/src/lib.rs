//! Analytics (analytics-service): the read side of every domain.
//!
//! Every domain's events topic and dead-letter topic, as the topology's
//! `analytics` groups declare them, is folded by the platform's projector
//! loop into figures per minute, per hour and for all time: counts, amounts
//! in minor units and latency histograms. A fold like any other: a fresh
//! replay yields the same figures, and a record delivered twice, or
//! written twice, counts once. Rules and failure cases: `design.md`.
//!
//! # Layout
//! - [`figures`]: what a bucket holds, and how buckets merge.
//! - [`fold`]: the exactly-once fold of one source into rows
//!   ([`EventsFold`](fold::EventsFold) behind the version gate,
//!   [`DlqFold`](fold::DlqFold) by origin), the row keys.
//! - [`adapters`]: each domain's events → figures, one pure type per domain
//!   (orders, users, payments).
//! - [`sources`]: the sources from the topology, and running their folds.
//! - [`read`]: merging the partitions' rows back into figures.
//! - [`routes`]: `GET /v1/analytics/summary` and `GET /v1/analytics/series`.

pub mod adapters;
pub mod figures;
pub mod fold;
pub mod read;
pub mod routes;
pub mod sources;

#[cfg(test)]
mod fold_tests;

use foldline_platform::store::Migration;

pub use crate::sources::{folds, AnalyticsError};

/// The analytics tables (`schemas/cql/`), applied by `foldline migrate`.
pub const CQL_MIGRATIONS: &[Migration] = &[Migration {
    id: "0006_analytics",
    cql: include_str!("../../../schemas/cql/0006_analytics.cql"),
}];
