//! Delivery latency per channel and provider, against the seed's SLA
//! (P99 of request → provider accepted under 150 ms): the samples of the
//! projection folded into HdrHistograms.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The seed's SLA: P99 delivery latency at most this.
pub const SLA_P99_MS: u64 = 150;
/// Latencies above an hour are clamped to it (3 significant digits).
const MAX_TRACKED_MS: u64 = 3_600_000;
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// `notify_latency_samples` row: one delivery's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Request → provider accepted, milliseconds.
    pub latency_ms: u64,
    /// The accepting provider call alone, microseconds.
    pub provider_call_us: u64,
}

fn histogram(max: u64) -> Histogram<u64> {
    // Bounds are constants that satisfy hdrhistogram's rules.
    Histogram::<u64>::new_with_bounds(1, max, 3).unwrap_or_else(|_| {
        Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// A histogram's summary as the route shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// One provider's histograms.
#[derive(Debug)]
pub struct Latencies {
    end_to_end_ms: Histogram<u64>,
    provider_call_us: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            end_to_end_ms: histogram(MAX_TRACKED_MS),
            provider_call_us: histogram(MAX_TRACKED_US),
        }
    }
}

impl Latencies {
    pub fn record(&mut self, sample: &Sample) {
        self.end_to_end_ms
            .saturating_record(sample.latency_ms.clamp(1, MAX_TRACKED_MS));
        self.provider_call_us
            .saturating_record(sample.provider_call_us.clamp(1, MAX_TRACKED_US));
    }

    pub fn end_to_end(&self) -> Quantiles {
        quantiles(&self.end_to_end_ms)
    }

    pub fn provider_call(&self) -> Quantiles {
        quantiles(&self.provider_call_us)
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
    fn samples_fold_into_quantiles() {
        let mut latencies = Latencies::default();
        for value in 1..=100u64 {
            latencies.record(&Sample {
                latency_ms: value,
                provider_call_us: value * 1_000,
            });
        }
        let end_to_end = latencies.end_to_end();
        assert_eq!(end_to_end.count, 100);
        assert_eq!(end_to_end.p50, 50);
        assert_eq!(end_to_end.p99, 99);
        assert_eq!(end_to_end.max, 100);
        assert_eq!(latencies.provider_call().count, 100);
        assert!(latencies.provider_call().p99 >= 98_000);
        // A zero and an absurd value are clamped, not refused.
        latencies.record(&Sample {
            latency_ms: 0,
            provider_call_us: u64::MAX,
        });
        assert_eq!(latencies.end_to_end().count, 101);
    }
}
