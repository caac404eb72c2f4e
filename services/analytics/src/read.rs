//! Reading figures back: every source partition's rows of a span, merged.

use std::collections::BTreeMap;

use foldline_platform::store::{Store, StoreError, StoredRow};
use futures::future::try_join_all;

use crate::figures::{Figures, Resolution};
use crate::fold::{
    bucket_clustering, bucket_from_clustering, figures_key, figures_partition, Span, FIGURES,
};
use crate::sources::Catalog;

/// The most buckets one series answers (a day of minutes).
pub const MAX_BUCKETS: i64 = 1_440;

fn decode(row: &StoredRow) -> Result<Figures, StoreError> {
    serde_json::from_slice(&row.value)
        .map_err(|error| StoreError::Corrupt(format!("row of {FIGURES} does not decode: {error}")))
}

fn partitions(catalog: &Catalog) -> impl Iterator<Item = (&str, i32)> + '_ {
    catalog.sources.iter().flat_map(|(source, partitions)| {
        (0..*partitions).map(move |partition| (source.as_str(), partition))
    })
}

/// The all-time figures of every source.
pub async fn totals(store: &Store, catalog: &Catalog) -> Result<Figures, StoreError> {
    let rows = try_join_all(
        partitions(catalog)
            .map(|(source, partition)| store.get(figures_key(source, partition, Span::Total))),
    )
    .await?;
    let mut totals = Figures::default();
    for row in rows.iter().flatten() {
        totals.merge(&decode(row)?);
    }
    Ok(totals)
}

/// The figures of every bucket from the one holding `from` to the one
/// holding `to` (both epoch milliseconds, `from <= to`), dense: a bucket
/// without rows holds empty figures. At most [`MAX_BUCKETS`].
pub async fn series(
    store: &Store,
    catalog: &Catalog,
    resolution: Resolution,
    from: i64,
    to: i64,
) -> Result<BTreeMap<i64, Figures>, StoreError> {
    let first = resolution.bucket_start(from);
    let last = resolution.bucket_start(to);
    let buckets = ((last - first) / resolution.width_ms() + 1).clamp(1, MAX_BUCKETS);
    let last = first + (buckets - 1) * resolution.width_ms();
    let limit = usize::try_from(buckets).unwrap_or(1);
    // Strictly after the clustering key of the instant before the first bucket.
    let after = bucket_clustering(first.saturating_sub(1));
    let scans = try_join_all(partitions(catalog).map(|(source, partition)| {
        store.scan(
            FIGURES,
            figures_partition(resolution.as_str(), source, partition),
            Some(after.clone()),
            limit,
        )
    }))
    .await?;
    let mut series: BTreeMap<i64, Figures> = (0..buckets)
        .map(|index| (first + index * resolution.width_ms(), Figures::default()))
        .collect();
    for (clustering, row) in scans.iter().flatten() {
        let Some(start) = bucket_from_clustering(clustering) else {
            return Err(StoreError::Corrupt(format!(
                "row of {FIGURES} has a clustering key of {} bytes",
                clustering.len()
            )));
        };
        if start > last {
            continue;
        }
        if let Some(bucket) = series.get_mut(&start) {
            bucket.merge(&decode(row)?);
        }
    }
    Ok(series)
}
