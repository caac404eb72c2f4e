//! The platform's counters, served as Prometheus text on `GET /metrics`
//! (the gateway's listener, and `metrics.listen` for any process).
//!
//! Each counter marks a window the fault suite must provably hit: a
//! command read again, a restore, a resync after a foreign write, a stale
//! decision ignored, an aborted transaction, a parked record. The names
//! are a stable interface (ARCHITECTURE.md, *Metrics*): rename one only
//! with its documentation and its dashboards.
//!
//! Counters live in one process-wide registry: a process's counters start
//! at zero and die with it, so a scraper sums the last scrape of every
//! incarnation.

use std::sync::LazyLock;

use foldline_eventsourcing::gate::Admission;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every counter of this process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Commands read by the processor whose id its log already settled
    /// (a redelivery after a crash or rebalance, or a duplicate record).
    pub commands_already_settled: IntCounterVec,
    /// Commands decided and appended to the events topic (before
    /// verification: a voided round decides its commands again).
    pub decisions_appended: IntCounterVec,
    /// Restores begun (one per partition assignment or resync); more begun
    /// than [`Metrics::restores`] means one is under way (or was given up).
    pub restores_started: IntCounterVec,
    /// Partitions restored, by `from`: `snapshot` or `scratch` (offset 0).
    pub restores: IntCounterVec,
    /// Snapshots of a partition's state begun (serialised and handed to
    /// the store); more begun than [`Metrics::snapshots_written`] means one
    /// is being written (or failed).
    pub snapshots_started: IntCounterVec,
    /// Snapshots of a partition's state written.
    pub snapshots_written: IntCounterVec,
    /// Rounds whose partition state was voided because the log moved
    /// under it (a foreign write, a failed delivery, an aborted round):
    /// the next round re-reads the log.
    pub resyncs: IntCounterVec,
    /// Records the version gate did not apply, by `reader` (`restore`,
    /// `projector`) and `verdict` (`wrong_version`, `already_settled`,
    /// `foreign`).
    pub gate_ignored: IntCounterVec,
    /// Transactions that did not commit, by `outcome`: `aborted`, or
    /// `renewed` (fenced or fatal: a new producer fences the old one).
    pub transactions_failed: IntCounterVec,
    /// Records parked in a dead-letter topic, by `cause`.
    pub dead_lettered: IntCounterVec,
    /// Records a projector's gate admitted and folded into rows, counted
    /// once their batch is written, by `projector` (its consumer group).
    pub projector_records_applied: IntCounterVec,
    /// Keyed gateway requests whose `Idempotency-Key` was already reserved
    /// in the idempotency window, by `verdict`: `same_request` (answered
    /// as the first request: same command id, aggregate and stamp) or
    /// `other_request` (refused 422).
    pub idempotency_retries: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|error| panic!("metric {name} is malformed: {error}"));
    registry
        .register(Box::new(counter.clone()))
        .unwrap_or_else(|error| panic!("metric {name} is registered twice: {error}"));
    counter
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        Metrics {
            commands_already_settled: counter(
                &registry,
                "foldline_processor_commands_already_settled_total",
                "Commands read by the processor that its log had already settled (redelivered or duplicated).",
                &["topic"],
            ),
            decisions_appended: counter(
                &registry,
                "foldline_processor_decisions_appended_total",
                "Decisions the processor appended to its events topic.",
                &["topic"],
            ),
            restores_started: counter(
                &registry,
                "foldline_processor_restores_started_total",
                "Partition restores begun.",
                &["topic"],
            ),
            restores: counter(
                &registry,
                "foldline_processor_restores_total",
                "Partitions restored from the event log, from a snapshot or from scratch.",
                &["topic", "from"],
            ),
            snapshots_started: counter(
                &registry,
                "foldline_processor_snapshots_started_total",
                "Snapshots of a partition's state begun.",
                &["topic"],
            ),
            snapshots_written: counter(
                &registry,
                "foldline_processor_snapshots_written_total",
                "Snapshots of a partition's state written.",
                &["topic"],
            ),
            resyncs: counter(
                &registry,
                "foldline_processor_resyncs_total",
                "Rounds voided because the events log moved under the processor's state.",
                &["topic"],
            ),
            gate_ignored: counter(
                &registry,
                "foldline_gate_ignored_total",
                "Records the version gate did not apply, by reader and verdict.",
                &["topic", "reader", "verdict"],
            ),
            transactions_failed: counter(
                &registry,
                "foldline_processor_transactions_failed_total",
                "Transactions that did not commit: aborted, or renewed after a fenced or fatal producer.",
                &["topic", "outcome"],
            ),
            dead_lettered: counter(
                &registry,
                "foldline_dead_lettered_total",
                "Records parked in a dead-letter topic, by cause.",
                &["topic", "cause"],
            ),
            projector_records_applied: counter(
                &registry,
                "foldline_projector_records_applied_total",
                "Records a projector's gate admitted and folded into rows.",
                &["topic", "projector"],
            ),
            idempotency_retries: counter(
                &registry,
                "foldline_gateway_idempotency_retries_total",
                "Keyed requests whose idempotency key was already reserved, by verdict.",
                &["topic", "verdict"],
            ),
            registry,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's counters.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The label of a gate verdict that was not applied; `None` for an applied one.
pub fn verdict_label(admission: Admission) -> Option<&'static str> {
    match admission {
        Admission::Apply => None,
        Admission::WrongVersion { .. } => Some("wrong_version"),
        Admission::AlreadySettled => Some("already_settled"),
        Admission::Foreign => Some("foreign"),
    }
}

/// Counts a gate verdict of `reader` on `topic` when it was not applied.
pub fn count_ignored(topic: &str, reader: &str, admission: Admission) {
    if let Some(verdict) = verdict_label(admission) {
        metrics()
            .gate_ignored
            .with_label_values(&[topic, reader, verdict])
            .inc();
    }
}

/// Every counter in the Prometheus text exposition format.
pub fn render() -> String {
    let mut text = Vec::new();
    // Encoding counters into a Vec cannot fail: the encoder only reports
    // malformed families, and every family here is built by `Metrics::new`.
    if let Err(error) = TextEncoder::new().encode(&METRICS.registry.gather(), &mut text) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_stable_names_and_labels() {
        metrics()
            .restores
            .with_label_values(&["t.events", "snapshot"])
            .inc();
        count_ignored(
            "t.events",
            "restore",
            Admission::WrongVersion { current: 3 },
        );
        count_ignored("t.events", "restore", Admission::Apply);
        let text = render();
        assert!(
            text.contains(r#"foldline_processor_restores_total{from="snapshot",topic="t.events"}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"foldline_gate_ignored_total{reader="restore",topic="t.events",verdict="wrong_version"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn the_snapshot_projector_and_idempotency_counters_have_their_stable_names() {
        let metrics = metrics();
        metrics
            .snapshots_started
            .with_label_values(&["s.events"])
            .inc();
        metrics
            .projector_records_applied
            .with_label_values(&["s.events", "s-orders-projector"])
            .inc();
        metrics
            .idempotency_retries
            .with_label_values(&["s.commands", "same_request"])
            .inc();
        let text = render();
        for series in [
            r#"foldline_processor_snapshots_started_total{topic="s.events"} 1"#,
            r#"foldline_projector_records_applied_total{projector="s-orders-projector",topic="s.events"} 1"#,
            r#"foldline_gateway_idempotency_retries_total{topic="s.commands",verdict="same_request"} 1"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }

    #[test]
    fn an_applied_record_is_not_counted_as_ignored() {
        assert_eq!(verdict_label(Admission::Apply), None);
        assert_eq!(verdict_label(Admission::Foreign), Some("foreign"));
        assert_eq!(
            verdict_label(Admission::AlreadySettled),
            Some("already_settled")
        );
    }
}
