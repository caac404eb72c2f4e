//! Figures: what one bucket of time (or all time) holds, and how buckets
//! merge.
//!
//! Every figure is an integer (a count, or an amount in minor units) or a
//! latency histogram; nothing is a float until a route renders a rate.
//! Merging is addition, so it is commutative and associative: the figures
//! of a minute are the same whichever order its partitions' rows are read
//! in, and an hour can be read as the sum of its partitions' hour rows.

use std::collections::BTreeMap;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;

/// The longest latency a histogram tells apart; longer ones are recorded
/// as this (a day: an order unpaid for longer is not a latency anymore).
pub const MAX_LATENCY_MS: u64 = 24 * 3_600_000;
/// Two significant digits: a percentile is exact to 1 %, and a bucket's
/// histogram stays a few kilobytes in memory, a few bytes serialised.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 2;

/// How finely a time series is bucketed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub const ALL: [Resolution; 2] = [Resolution::Minute, Resolution::Hour];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
        }
    }

    pub fn parse(text: &str) -> Option<Resolution> {
        Resolution::ALL
            .into_iter()
            .find(|resolution| resolution.as_str() == text)
    }

    pub fn width_ms(self) -> i64 {
        match self {
            Resolution::Minute => MINUTE_MS,
            Resolution::Hour => HOUR_MS,
        }
    }

    /// The start of the bucket holding `at` (epoch milliseconds).
    pub fn bucket_start(self, at: i64) -> i64 {
        at.div_euclid(self.width_ms()) * self.width_ms()
    }
}

/// The figures of one bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Counts and amounts (minor units), by metric name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sums: BTreeMap<String, i64>,
    /// Latency histograms in milliseconds, by metric name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latencies: BTreeMap<String, Latency>,
}

impl Figures {
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty() && self.latencies.is_empty()
    }

    /// Adds `amount` to the metric (saturating: a sum never wraps).
    pub fn add(&mut self, metric: impl Into<String>, amount: i64) {
        let sum = self.sums.entry(metric.into()).or_insert(0);
        *sum = sum.saturating_add(amount);
    }

    /// Counts one occurrence of the metric.
    pub fn count(&mut self, metric: impl Into<String>) {
        self.add(metric, 1);
    }

    /// Records one latency sample. A negative one (the later event's clock
    /// behind the earlier one's) is recorded as zero.
    pub fn record_latency(&mut self, metric: impl Into<String>, millis: i64) {
        self.latencies
            .entry(metric.into())
            .or_default()
            .record(millis);
    }

    pub fn merge(&mut self, other: &Figures) {
        for (metric, amount) in &other.sums {
            self.add(metric.clone(), *amount);
        }
        for (metric, latency) in &other.latencies {
            self.latencies
                .entry(metric.clone())
                .or_default()
                .merge(latency);
        }
    }

    pub fn sum(&self, metric: &str) -> i64 {
        self.sums.get(metric).copied().unwrap_or(0)
    }
}

/// A latency histogram (HdrHistogram), mergeable and stored as its V2
/// serialisation in base64.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            histogram: empty_histogram(),
        }
    }
}

fn empty_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is
    // a programming error caught by every test that records a latency.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_LATENCY_MS, LATENCY_SIGNIFICANT_DIGITS)
        .expect("the latency histogram bounds are valid")
}

/// A latency histogram summarised for clients (milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    pub fn record(&mut self, millis: i64) {
        self.histogram
            .saturating_record(u64::try_from(millis).unwrap_or(0));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, which is all `add` needs.
        if let Err(error) = self.histogram.add(&other.histogram) {
            tracing::error!(%error, "latency histograms of different bounds cannot merge");
        }
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The value at `quantile` (0..=1), 0 when empty.
    pub fn quantile(&self, quantile: f64) -> u64 {
        match self.histogram.is_empty() {
            true => 0,
            false => self.histogram.value_at_quantile(quantile),
        }
    }

    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            max: match self.histogram.is_empty() {
                true => 0,
                false => self.histogram.max(),
            },
        }
    }

    fn to_base64(&self) -> Result<String, String> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&self.histogram, &mut bytes)
            .map_err(|error| format!("cannot serialise a latency histogram: {error:?}"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    fn from_base64(text: &str) -> Result<Latency, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|error| format!("latency histogram is not base64: {error}"))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|error| format!("latency histogram does not deserialise: {error:?}"))?;
        // Re-bound it, so a histogram read back merges with fresh ones.
        let mut histogram = empty_histogram();
        histogram
            .add(&decoded)
            .map_err(|error| format!("latency histogram out of bounds: {error}"))?;
        Ok(Latency { histogram })
    }
}

impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_base64().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Latency, D::Error> {
        let text = String::deserialize(deserializer)?;
        Latency::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_at_the_minute_and_the_hour_of_the_event() {
        let at = 1_700_000_123_456;
        assert_eq!(Resolution::Minute.bucket_start(at), 1_700_000_100_000);
        assert_eq!(Resolution::Hour.bucket_start(at), 1_699_999_200_000);
        assert_eq!(Resolution::Minute.bucket_start(-1), -MINUTE_MS);
        assert_eq!(Resolution::parse("hour"), Some(Resolution::Hour));
        assert_eq!(Resolution::parse("day"), None);
    }

    #[test]
    fn merging_is_addition_in_any_order() {
        let mut a = Figures::default();
        a.count("orders.placed");
        a.add("orders.revenue.EUR", 1250);
        a.record_latency("latency", 40);
        let mut b = Figures::default();
        b.add("orders.revenue.EUR", 99);
        b.record_latency("latency", 400);
        b.record_latency("latency", -5);
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.sum("orders.revenue.EUR"), 1349);
        assert_eq!(ab.sum("orders.placed"), 1);
        let latency = ab.latencies["latency"].summary();
        assert_eq!(latency.count, 3);
        assert_eq!(latency.p50, 40);
        assert!(latency.max >= 400 && latency.max <= 404, "{latency:?}");
    }

    #[test]
    fn figures_survive_their_row_format_byte_for_byte() {
        let mut figures = Figures::default();
        figures.count("users.registered");
        for millis in [3, 17, 17, 250, 90_000, i64::MAX] {
            figures.record_latency("order_to_payment_ms", millis);
        }
        let bytes = serde_json::to_vec(&figures).unwrap();
        let back: Figures = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, figures);
        assert_eq!(serde_json::to_vec(&back).unwrap(), bytes);
        assert_eq!(back.latencies["order_to_payment_ms"].count(), 6);
    }

    #[test]
    fn a_garbled_histogram_is_an_error_not_an_empty_one() {
        let garbled = r#"{"latencies":{"x":"bm90IGEgaGlzdG9ncmFt"}}"#;
        assert!(serde_json::from_str::<Figures>(garbled).is_err());
        let not_base64 = r#"{"latencies":{"x":"%%%"}}"#;
        assert!(serde_json::from_str::<Figures>(not_base64).is_err());
    }
}
