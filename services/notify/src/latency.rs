//! Delivery latency per channel and provider, against the seed's SLA
//! (P99 of request → provider accepted under 150 ms). A row keeps an
//! HdrHistogram's recorded buckets (value, count), so it folds exactly and
//! the route computes quantiles from the same histogram.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The seed's SLA: P99 delivery latency at most this.
pub const SLA_P99_MS: u64 = 150;
/// Latencies above an hour are clamped to it (3 significant digits).
const MAX_TRACKED_MS: u64 = 3_600_000;
const MAX_TRACKED_US: u64 = 3_600_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyRow {
    /// Request → provider accepted, milliseconds: (value, count) buckets.
    pub end_to_end_ms: Vec<(u64, u64)>,
    /// The accepting provider call alone, microseconds.
    pub provider_call_us: Vec<(u64, u64)>,
}

fn histogram(buckets: &[(u64, u64)], max: u64) -> Histogram<u64> {
    // Bounds are constants that satisfy hdrhistogram's rules.
    let mut histogram = Histogram::<u64>::new_with_bounds(1, max, 3).unwrap_or_else(|_| {
        Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    });
    for (value, count) in buckets {
        histogram.saturating_record_n(*value, *count);
    }
    histogram
}

fn buckets(histogram: &Histogram<u64>) -> Vec<(u64, u64)> {
    histogram
        .iter_recorded()
        .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
        .collect()
}

/// A histogram's summary as the route shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl LatencyRow {
    pub fn record(&mut self, end_to_end_ms: u64, provider_call_us: u64) {
        let mut end_to_end = histogram(&self.end_to_end_ms, MAX_TRACKED_MS);
        end_to_end.saturating_record(end_to_end_ms.clamp(1, MAX_TRACKED_MS));
        self.end_to_end_ms = buckets(&end_to_end);
        let mut call = histogram(&self.provider_call_us, MAX_TRACKED_US);
        call.saturating_record(provider_call_us.clamp(1, MAX_TRACKED_US));
        self.provider_call_us = buckets(&call);
    }

    pub fn end_to_end(&self) -> Quantiles {
        quantiles(&histogram(&self.end_to_end_ms, MAX_TRACKED_MS))
    }

    pub fn provider_call(&self) -> Quantiles {
        quantiles(&histogram(&self.provider_call_us, MAX_TRACKED_US))
    }
}

fn quantiles(histogram: &Histogram<u64>) -> Quantiles {
    Quantiles {
        count: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p99: histogram.value_at_quantile(0.99),
        max: histogram.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_folds_into_the_same_quantiles_as_one_histogram() {
        let mut row = LatencyRow::default();
        for value in 1..=100u64 {
            row.record(value, value * 1_000);
        }
        let end_to_end = row.end_to_end();
        assert_eq!(end_to_end.count, 100);
        assert_eq!(end_to_end.p50, 50);
        assert_eq!(end_to_end.p99, 99);
        assert_eq!(end_to_end.max, 100);
        // Folding through JSON (the stored row) changes nothing.
        let stored: LatencyRow =
            serde_json::from_slice(&serde_json::to_vec(&row).unwrap()).unwrap();
        assert_eq!(stored.end_to_end(), end_to_end);
        assert_eq!(stored.provider_call().count, 100);
        assert!(row.provider_call().p99 >= 98_000);
    }
}
