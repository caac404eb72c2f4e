//! The fold: one source topic's records into figure rows, exactly once.
//!
//! Each source topic (a domain's events, a domain's dead letters) is folded
//! by the platform's projector loop into rows that **one partition of that
//! topic owns**: the figures of a bucket are kept per source partition
//! (`analytics_figures`, partition key = resolution, source, partition), so
//! every row has one writer at a time and its position is an offset of one
//! log partition. Reading merges the partitions' rows (addition).
//!
//! A record counts at most once because two guards stand in front of every
//! figure row, both written in the same store batch as the figures:
//! - **events**: the version gate (`foldline_platform::gate`), with the
//!   fold's own gate rows in `analytics_state` (each aggregate's version,
//!   each settled command): a duplicate, a stale decision or a zombie's
//!   write is not admitted, exactly as the domain's own projection decides;
//! - **dead letters**: a row per origin (topic, partition, offset) already
//!   counted, so a record parked again (by a restarted consumer, or by
//!   another consumer of the same poison) counts once.
//!
//! A replay or redelivery of a record the rows already reflect finds its
//! command settled (or its origin seen) and writes nothing; the store's
//! position guard would refuse its rows anyway. A record lands in the
//! bucket of its own event time (`occurred_at`; a dead letter's broker
//! timestamp), never its arrival time, so a late record changes only its
//! own minute and hour.

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::record::{EventRecord, WireError};
use foldline_eventsourcing::gate::{Admission, StreamVersion};
use foldline_platform::codec::Decoded;
use foldline_platform::dlq::headers as dlq_headers;
use foldline_platform::gate;
use foldline_platform::gated::{json_row, read_json_row};
use foldline_platform::projector::{CurrentRows, Projection, ProjectionError};
use foldline_platform::store::{RowKey, StoredRow};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;
use serde::{Deserialize, Serialize};

use crate::figures::{Figures, Resolution};

pub const FIGURES: &str = "analytics_figures";
pub const STATE: &str = "analytics_state";

/// What a figure row covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// One bucket, by its start (epoch milliseconds).
    Bucket(Resolution, i64),
    /// All time.
    Total,
}

impl Span {
    fn name(self) -> &'static str {
        match self {
            Span::Bucket(resolution, _) => resolution.as_str(),
            Span::Total => "total",
        }
    }

    /// The spans an event at `at` counts in.
    pub fn of(at: i64) -> [Span; 3] {
        [
            Span::Bucket(Resolution::Minute, Resolution::Minute.bucket_start(at)),
            Span::Bucket(Resolution::Hour, Resolution::Hour.bucket_start(at)),
            Span::Total,
        ]
    }
}

/// The partition key of one source partition's rows of one resolution.
pub fn figures_partition(span_name: &str, source: &str, partition: i32) -> Vec<u8> {
    let mut key = span_name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// A bucket start as a clustering key: big-endian with the sign bit
/// flipped, so byte order is time order (negative times included).
pub fn bucket_clustering(start: i64) -> Vec<u8> {
    ((start as u64) ^ (1 << 63)).to_be_bytes().to_vec()
}

pub fn bucket_from_clustering(clustering: &[u8]) -> Option<i64> {
    let bytes: [u8; 8] = clustering.try_into().ok()?;
    Some((u64::from_be_bytes(bytes) ^ (1 << 63)) as i64)
}

pub fn figures_key(source: &str, partition: i32, span: Span) -> RowKey {
    let clustering = match span {
        Span::Bucket(_, start) => bucket_clustering(start),
        Span::Total => Vec::new(),
    };
    RowKey::new(
        FIGURES,
        figures_partition(span.name(), source, partition),
        clustering,
    )
}

fn state_key(kind: &str, source: &str, id: &str) -> RowKey {
    let mut key = kind.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(source.as_bytes());
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    RowKey::new(STATE, key, Vec::new())
}

fn aggregate_key(source: &str, aggregate_id: &str) -> RowKey {
    state_key("aggregate", source, aggregate_id)
}

fn settled_key(source: &str, command_id: &str) -> RowKey {
    state_key("settled", source, command_id)
}

fn letter_key(source: &str, partition: i32, origin: &str) -> RowKey {
    state_key("letter", source, &format!("{partition}\0{origin}"))
}

/// What the fold remembers of one aggregate besides its version: the facts
/// a later event of the same aggregate joins with (an order's placement
/// time and currency). It lives in the aggregate's gate row, which the
/// gate needs anyway, so the join costs no row of its own: the keyed state
/// is bounded by the number of aggregates, exactly like the domain's gate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// A notification's channel, from its `NotificationQueued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The template of a notification that is an order notice (queued by
    /// an orders or payments event), from its `NotificationQueued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_notice: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AggregateRow {
    version: u64,
    #[serde(default)]
    join: JoinState,
}

/// The row marking a command settled, or a dead letter's origin counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SeenRow {}

/// How one domain's events become figures: the one piece of code a domain
/// adds to analytics. Pure.
pub trait EventsAdapter: Send + Sync + 'static {
    /// The events topic's record union (from `foldline-contracts`).
    type Events: EventRecord;
    /// The domain, as named in the topology.
    const DOMAIN: &'static str;
    /// The metrics it writes; a trailing `*` names a family
    /// (`orders.revenue.*`: one per currency).
    const METRICS: &'static [&'static str];

    /// The figures one admitted event adds at its event time. `join` is
    /// its aggregate's join state, to read and update.
    fn fold(&self, event: &Self::Events, join: &mut JoinState, figures: &mut Figures);
}

/// Metrics every events fold writes, whatever the domain: refusals are
/// events too (`foldline.CommandRejected`).
pub fn rejected_metric(domain: &str) -> String {
    format!("{domain}.commands_rejected")
}

/// A domain's events topic folded through its adapter, behind the gate.
#[derive(Debug)]
pub struct EventsFold<A> {
    /// The source topic's name without the environment prefix: rows are
    /// keyed by it.
    source: String,
    adapter: A,
}

impl<A: EventsAdapter> EventsFold<A> {
    pub fn new(source: impl Into<String>, adapter: A) -> Self {
        Self {
            source: source.into(),
            adapter,
        }
    }

    fn gate_keys(&self, metadata: &EventMetadata) -> [RowKey; 2] {
        [
            aggregate_key(&self.source, &metadata.aggregate_id),
            settled_key(&self.source, &metadata.command_id),
        ]
    }
}

/// `delta` added to the figure rows of `spans`, at `offset`.
fn figure_upserts(
    source: &str,
    partition: i32,
    offset: i64,
    spans: &[Span],
    delta: &Figures,
    current: &CurrentRows,
) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
    let mut upserts = Vec::with_capacity(spans.len());
    if delta.is_empty() {
        return Ok(upserts);
    }
    for span in spans {
        let key = figures_key(source, partition, *span);
        let mut figures: Figures = read_json_row(&key, current)?.unwrap_or_default();
        figures.merge(delta);
        upserts.push((key, json_row(FIGURES, offset, &figures)?));
    }
    Ok(upserts)
}

impl<A: EventsAdapter> Projection for EventsFold<A> {
    type Record = A::Events;

    fn parse_record(&self, decoded: Decoded) -> Result<A::Events, WireError> {
        A::Events::from_avro(&decoded.record_name, &decoded.value)
    }

    fn rows_to_read(&self, record: &A::Events) -> Vec<RowKey> {
        self.gate_keys(record.metadata()).to_vec()
    }

    fn rows_to_read_at(&self, record: &A::Events, partition: i32) -> Vec<RowKey> {
        let mut keys = self.rows_to_read(record);
        keys.extend(
            Span::of(record.metadata().occurred_at)
                .into_iter()
                .map(|span| figures_key(&self.source, partition, span)),
        );
        keys
    }

    fn project(
        &self,
        record: &A::Events,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let metadata = record.metadata();
        let [aggregate_key, settled_key] = self.gate_keys(metadata);
        let aggregate: AggregateRow = read_json_row(&aggregate_key, current)?.unwrap_or_default();
        let already_settled = matches!(current.get(&settled_key), Some(Some(_)));
        let verdict = gate::judge(
            metadata,
            record.rejection(),
            StreamVersion(aggregate.version),
            already_settled,
        );
        if verdict.admission != Admission::Apply {
            return Ok(Vec::new());
        }
        let mut delta = Figures::default();
        let mut upserts = vec![(settled_key, json_row(STATE, offset, &SeenRow {})?)];
        match record.rejection() {
            Some(_) => delta.count(rejected_metric(A::DOMAIN)),
            None => {
                let mut join = aggregate.join;
                self.adapter.fold(record, &mut join, &mut delta);
                let row = AggregateRow {
                    version: verdict.version_after.0,
                    join,
                };
                upserts.push((aggregate_key, json_row(STATE, offset, &row)?));
            }
        }
        upserts.extend(figure_upserts(
            &self.source,
            partition,
            offset,
            &Span::of(metadata.occurred_at),
            &delta,
            current,
        )?);
        Ok(upserts)
    }
}

/// One record of a dead-letter topic, read off its headers (its value is
/// poison by definition and never decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// `topic/partition/offset` of the parked record; for a record without
    /// the origin headers (no consumer of ours parked it), its own place.
    pub origin: String,
    /// `poison`, `undecidable`, or `unknown` without the header.
    pub cause: String,
    /// When it was parked (the broker timestamp); `None` counts in the
    /// all-time figures only.
    pub parked_at: Option<i64>,
}

impl DeadLetter {
    pub fn from_message(message: &OwnedMessage) -> DeadLetter {
        let header = |name: &str| -> Option<String> {
            let headers = message.headers()?;
            headers
                .iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
                .map(|value| String::from_utf8_lossy(value).into_owned())
        };
        let origin = match (
            header(dlq_headers::TOPIC),
            header(dlq_headers::PARTITION),
            header(dlq_headers::OFFSET),
        ) {
            (Some(topic), Some(partition), Some(offset)) => format!("{topic}/{partition}/{offset}"),
            _ => format!(
                "{}/{}/{} (no origin headers)",
                message.topic(),
                message.partition(),
                message.offset()
            ),
        };
        DeadLetter {
            origin,
            cause: header(dlq_headers::CAUSE).unwrap_or_else(|| "unknown".to_owned()),
            parked_at: message.timestamp().to_millis(),
        }
    }
}

/// A domain's dead-letter topic folded into counts (`dlq.<domain>` and
/// `dlq.<domain>.<cause>`), each origin counted once.
#[derive(Debug)]
pub struct DlqFold {
    source: String,
    domain: String,
}

impl DlqFold {
    pub fn new(source: impl Into<String>, domain: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            domain: domain.into(),
        }
    }

    fn spans(letter: &DeadLetter) -> Vec<Span> {
        match letter.parked_at {
            Some(at) => Span::of(at).to_vec(),
            None => vec![Span::Total],
        }
    }
}

/// The metrics a dead-letter fold writes for `domain`.
pub fn dlq_metric(domain: &str) -> String {
    format!("dlq.{domain}")
}

impl Projection for DlqFold {
    type Record = DeadLetter;

    /// Never called: [`DlqFold::parse_raw`] reads every record. A value
    /// handed here anyway is refused rather than guessed at.
    fn parse_record(&self, decoded: Decoded) -> Result<DeadLetter, WireError> {
        Err(WireError::UnknownRecord {
            record: decoded.record_name,
        })
    }

    fn parse_raw(&self, message: &OwnedMessage) -> Option<Result<DeadLetter, WireError>> {
        Some(Ok(DeadLetter::from_message(message)))
    }

    fn rows_to_read(&self, _letter: &DeadLetter) -> Vec<RowKey> {
        Vec::new()
    }

    fn rows_to_read_at(&self, letter: &DeadLetter, partition: i32) -> Vec<RowKey> {
        let mut keys = vec![letter_key(&self.source, partition, &letter.origin)];
        keys.extend(
            Self::spans(letter)
                .into_iter()
                .map(|span| figures_key(&self.source, partition, span)),
        );
        keys
    }

    fn project(
        &self,
        letter: &DeadLetter,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let seen = letter_key(&self.source, partition, &letter.origin);
        if matches!(current.get(&seen), Some(Some(_))) {
            return Ok(Vec::new());
        }
        let mut delta = Figures::default();
        let metric = dlq_metric(&self.domain);
        delta.count(format!("{metric}.{}", letter.cause));
        delta.count(metric);
        let mut upserts = vec![(seen, json_row(STATE, offset, &SeenRow {})?)];
        upserts.extend(figure_upserts(
            &self.source,
            partition,
            offset,
            &Self::spans(letter),
            &delta,
            current,
        )?);
        Ok(upserts)
    }
}
