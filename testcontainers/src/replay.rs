//! Reads a topic from the broker like any stock client would, and folds
//! `orders.events` through the very functions the system uses: the
//! processor's version gate ([`PartitionLog`]) and the orders projection.
//! What the gateway says can then be compared with what the log says.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use foldline_contracts::envelope::CommandOutcome;
use foldline_contracts::record::EventRecord;
use foldline_orders::domain::OrderState;
use foldline_orders::projection::{order_key, read_order_row, OrderRow};
use foldline_orders::{OrdersProjection, OrdersWire, DOMAIN};
use foldline_platform::codec::{Codec, Decoded};
use foldline_platform::domain::LogRecord;
use foldline_platform::gated::{outcome_key, CommandOutcomeRow, GatedProjection};
use foldline_platform::processor::{AggregateSlot, PartitionLog};
use foldline_platform::projector::{apply_in_memory, MemoryTable, Projection};
use foldline_platform::store::{RowKey, StoredRow};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::wait::Deadline;

/// One record as the broker serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl RawRecord {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// Which records a reader is served (`isolation.level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Committed records only, up to the last stable offset: what every
    /// Foldline reader reads.
    ReadCommitted,
    /// Everything, aborted and open transactions' records included, up to
    /// the high watermark: what a careless reader would fold.
    ReadUncommitted,
}

impl Isolation {
    fn level(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// Every committed record of every partition of `topic`, from the log start
/// to the end read when the call starts; sorted by partition, offset.
/// Uses a consumer with a manual assignment (no group membership, no commits).
pub async fn read_topic(bootstrap_servers: &str, topic: &str) -> anyhow::Result<Vec<RawRecord>> {
    read_topic_as(bootstrap_servers, topic, Isolation::ReadCommitted).await
}

/// [`read_topic`] at the given isolation level. The end of a partition is
/// its watermark at that level (the last stable offset, or the high
/// watermark) read when the call starts, and a partition is done when a
/// record at or past it arrived or the reader hit the partition's end: the
/// last offsets before the end may be transaction markers, which no reader
/// is ever served.
pub async fn read_topic_as(
    bootstrap_servers: &str,
    topic: &str,
    isolation: Isolation,
) -> anyhow::Result<Vec<RawRecord>> {
    let deadline = Deadline::secs(60);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", "foldline-it-reader")
        .set(
            "group.id",
            format!("foldline-it-reader-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation.level())
        .set("enable.partition.eof", "true")
        .set("log_level", "3")
        .create()
        .context("cannot create the topic reader")?;
    let partitions = partitions_of(&consumer, topic, deadline)?;
    let mut assignment = TopicPartitionList::new();
    // partition -> the high watermark to read up to
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .with_context(|| format!("cannot read the watermarks of {topic}/{partition}"))?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .with_context(|| format!("cannot assign {topic}/{partition}"))?;
            ends.insert(partition, high);
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return Ok(records);
    }
    consumer
        .assign(&assignment)
        .with_context(|| format!("cannot assign the partitions of {topic}"))?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut at_end: std::collections::HashSet<i32> = std::collections::HashSet::new();
    let done = |next: &HashMap<i32, i64>, at_end: &std::collections::HashSet<i32>| {
        ends.iter().all(|(partition, end)| {
            at_end.contains(partition) || next.get(partition).is_some_and(|offset| offset >= end)
        })
    };
    while !done(&next, &at_end) {
        let message = match tokio::time::timeout(deadline.remaining(), consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                continue;
            }
            Ok(Err(error)) => return Err(error).with_context(|| format!("cannot read {topic}")),
            Err(_) => anyhow::bail!(
                "reading {topic} did not reach the high watermarks {ends:?} within {:?} (reached {next:?})",
                deadline.budget()
            ),
        };
        let partition = message.partition();
        let Some(end) = ends.get(&partition) else {
            continue;
        };
        if message.offset() >= *end {
            continue;
        }
        next.insert(partition, message.offset() + 1);
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        records.push(RawRecord {
            partition,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    records.sort_by_key(|record| (record.partition, record.offset));
    records.dedup_by_key(|record| (record.partition, record.offset));
    Ok(records)
}

/// The offsets `group` committed on `topic`, by partition (partitions
/// without a commit are absent). Reads them without joining the group.
pub fn committed_offsets(
    bootstrap_servers: &str,
    group: &str,
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .context("cannot create the offsets reader")?;
    let mut wanted = TopicPartitionList::new();
    for partition in partitions_of(&consumer, topic, Deadline::secs(10))? {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .with_context(|| format!("cannot read the offsets {group} committed on {topic}"))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect())
}

fn partitions_of(
    consumer: &StreamConsumer,
    topic: &str,
    deadline: Deadline,
) -> anyhow::Result<Vec<i32>> {
    loop {
        let last = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => {
                let partitions: Vec<i32> = metadata
                    .topics()
                    .iter()
                    .filter(|candidate| candidate.name() == topic && candidate.error().is_none())
                    .flat_map(|candidate| {
                        candidate
                            .partitions()
                            .iter()
                            .map(|partition| partition.id())
                    })
                    .collect();
                if !partitions.is_empty() {
                    return Ok(partitions);
                }
                format!("{topic} has no partitions in the metadata")
            }
            Err(error) => error.to_string(),
        };
        if deadline.passed() {
            anyhow::bail!("cannot list the partitions of {topic}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One record of `orders.events` and the gate's verdict on it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayedRecord {
    pub partition: i32,
    pub offset: i64,
    pub record_name: String,
    pub command_id: String,
    pub aggregate_id: String,
    /// The aggregate version the record claims to leave behind.
    pub aggregate_version: i64,
    pub is_rejection: bool,
    /// Whether the gate admitted it (it settled its command).
    pub admitted: bool,
    /// The gate's verdict, as `Debug` text.
    pub verdict: String,
}

/// `orders.events` folded per partition through the gate and the projection.
#[derive(Debug)]
pub struct Replay {
    pub logs: BTreeMap<i32, PartitionLog<OrderState>>,
    pub records: Vec<ReplayedRecord>,
    /// `(partition, offset, reason)` of records that do not decode.
    pub undecodable: Vec<(i32, i64, String)>,
    /// The projection's tables, as the store would hold them.
    pub rows: HashMap<RowKey, StoredRow>,
}

impl Replay {
    /// How the log settled `command_id`.
    pub fn settled(&self, command_id: &str) -> Option<&CommandOutcome> {
        self.logs.values().find_map(|log| log.settled(command_id))
    }

    /// Every admitted record of `command_id` (exactly one when settled).
    pub fn admissions(&self, command_id: &str) -> Vec<&ReplayedRecord> {
        self.records
            .iter()
            .filter(|record| record.admitted && record.command_id == command_id)
            .collect()
    }

    /// Every record of `command_id`, admitted or not.
    pub fn records_of(&self, command_id: &str) -> Vec<&ReplayedRecord> {
        self.records
            .iter()
            .filter(|record| record.command_id == command_id)
            .collect()
    }

    /// Command ids admitted more than once (across all partitions).
    pub fn admitted_more_than_once(&self) -> Vec<(String, Vec<(i32, i64)>)> {
        let mut admitted: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
        for record in self.records.iter().filter(|record| record.admitted) {
            admitted
                .entry(record.command_id.as_str())
                .or_default()
                .push((record.partition, record.offset));
        }
        admitted
            .into_iter()
            .filter(|(_, positions)| positions.len() > 1)
            .map(|(command_id, positions)| (command_id.to_owned(), positions))
            .collect()
    }

    /// The partitions on which `order_id` exists, with its folded state.
    pub fn aggregates(&self, order_id: &str) -> Vec<(i32, AggregateSlot<OrderState>)> {
        self.logs
            .iter()
            .map(|(partition, log)| (*partition, log.aggregate(order_id)))
            .filter(|(_, slot)| slot.version > 0)
            .collect()
    }

    /// The order as the gate folded it (`None` if never placed).
    pub fn aggregate(&self, order_id: &str) -> Option<AggregateSlot<OrderState>> {
        self.aggregates(order_id)
            .into_iter()
            .next()
            .map(|(_, slot)| slot)
    }

    /// The `order_by_id` row the projection computes.
    pub fn projected_order(&self, order_id: &str) -> Option<OrderRow> {
        self.rows
            .get(&order_key(order_id))
            .and_then(|row| read_order_row(row).ok())
    }

    /// The `command_outcomes` row the projection computes.
    pub fn projected_outcome(&self, command_id: &str) -> Option<CommandOutcomeRow> {
        self.rows
            .get(&outcome_key(command_id))
            .and_then(|row| serde_json::from_slice(&row.value).ok())
    }

    /// How many records were admitted.
    pub fn admitted_count(&self) -> usize {
        self.records.iter().filter(|record| record.admitted).count()
    }
}

/// Reads every partition of `<prefix>orders.events` from offset 0 to its
/// high watermark and folds it through [`PartitionLog`] (per partition) and
/// [`OrdersProjection`] (into an in-memory table with the store's position
/// guard).
pub async fn replay_orders_events(
    bootstrap_servers: &str,
    prefix: &str,
    registry_url: &str,
) -> anyhow::Result<Replay> {
    let topic = format!("{prefix}orders.events");
    let raw = read_topic(bootstrap_servers, &topic).await?;
    let codec = Codec::new(registry_url)
        .map_err(|error| anyhow::anyhow!("cannot create the codec: {error}"))?;
    let mut replay = Replay {
        logs: BTreeMap::new(),
        records: Vec::with_capacity(raw.len()),
        undecodable: Vec::new(),
        rows: HashMap::new(),
    };
    for record in raw {
        let log = replay
            .logs
            .entry(record.partition)
            .or_insert_with(|| PartitionLog::empty(record.partition));
        let decoded = match &record.payload {
            Some(payload) => decode(&codec, payload).await,
            None => Err("no value".to_owned()),
        };
        let event = match decoded {
            Ok(event) => event,
            Err(reason) => {
                // Skipped by every reader alike, as the processor does.
                log.next_offset = record.offset + 1;
                replay
                    .undecodable
                    .push((record.partition, record.offset, reason));
                continue;
            }
        };
        let metadata = event.wire.metadata().clone();
        let settled_before = log.settled(&metadata.command_id).is_some();
        let verdict = log.fold(&OrdersWire, &event, record.offset);
        let admitted = !settled_before
            && log.settled(&metadata.command_id).is_some_and(|outcome| {
                outcome.event_offset == record.offset && outcome.event_partition == record.partition
            });
        project(&mut replay.rows, &event, record.partition, record.offset)?;
        replay.records.push(ReplayedRecord {
            partition: record.partition,
            offset: record.offset,
            record_name: event.wire.record_name().to_owned(),
            command_id: metadata.command_id,
            aggregate_id: metadata.aggregate_id,
            aggregate_version: metadata.aggregate_version,
            is_rejection: event.wire.rejection().is_some(),
            admitted,
            verdict: format!("{verdict:?}"),
        });
    }
    Ok(replay)
}

/// One record of `D.outcomes`, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishedOutcome {
    pub partition: i32,
    pub offset: i64,
    pub outcome: CommandOutcome,
}

/// Every record of `<prefix>orders.outcomes` a reader at `isolation` is
/// served, decoded (one that does not decode fails the call: the processor
/// writes nothing else there).
pub async fn read_outcomes(
    bootstrap_servers: &str,
    prefix: &str,
    registry_url: &str,
    isolation: Isolation,
) -> anyhow::Result<Vec<PublishedOutcome>> {
    let topic = format!("{prefix}orders.outcomes");
    let raw = read_topic_as(bootstrap_servers, &topic, isolation).await?;
    let codec = Codec::new(registry_url)
        .map_err(|error| anyhow::anyhow!("cannot create the codec: {error}"))?;
    let mut outcomes = Vec::with_capacity(raw.len());
    for record in raw {
        let payload = record.payload.as_deref().with_context(|| {
            format!(
                "{topic}/{}@{} has no value",
                record.partition, record.offset
            )
        })?;
        let decoded = codec
            .decode(payload)
            .await
            .map_err(|error| anyhow::anyhow!("decode {topic}@{}: {error}", record.offset))?;
        let outcome = decoded
            .into_record::<CommandOutcome>()
            .map_err(|error| anyhow::anyhow!("read {topic}@{}: {error}", record.offset))?;
        outcomes.push(PublishedOutcome {
            partition: record.partition,
            offset: record.offset,
            outcome,
        });
    }
    Ok(outcomes)
}

async fn decode(codec: &Codec, payload: &[u8]) -> Result<LogRecord<OrdersWire>, String> {
    let mut attempts = 0;
    let decoded = loop {
        match codec.decode(payload).await {
            Ok(decoded) => break decoded,
            Err(error) if error.is_transient() && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    };
    LogRecord::parse(&decoded).map_err(|error| error.to_string())
}

/// Folds every committed record of `topic` (a full name) through
/// `projection`, its gate included, into an in-memory table exactly as its
/// projector writes the store (`apply_in_memory`): the rows a projector
/// started from scratch on this log would hold, for any domain's
/// projection. A record that does not decode is skipped, as the projector
/// parks it; how many were is the second value.
pub async fn replay_projection<P: Projection>(
    bootstrap_servers: &str,
    registry_url: &str,
    topic: &str,
    projection: &P,
) -> anyhow::Result<(MemoryTable, usize)> {
    let raw = read_topic(bootstrap_servers, topic).await?;
    let codec = Codec::new(registry_url)
        .map_err(|error| anyhow::anyhow!("cannot create the codec: {error}"))?;
    let mut table = MemoryTable::new();
    let mut undecodable = 0;
    for record in raw {
        let Some(payload) = &record.payload else {
            undecodable += 1;
            continue;
        };
        let decoded = match decode_value(&codec, payload).await {
            Ok(decoded) => decoded,
            Err(_) => {
                undecodable += 1;
                continue;
            }
        };
        let Ok(parsed) = projection.parse_record(decoded) else {
            undecodable += 1;
            continue;
        };
        apply_in_memory(
            projection,
            &mut table,
            &parsed,
            record.partition,
            record.offset,
        )
        .with_context(|| {
            format!(
                "project {topic} partition {} offset {}",
                record.partition, record.offset
            )
        })?;
    }
    Ok((table, undecodable))
}

/// Decodes a value, waiting out a registry that is briefly unreachable.
async fn decode_value(codec: &Codec, payload: &[u8]) -> Result<Decoded, String> {
    let mut attempts = 0;
    loop {
        match codec.decode(payload).await {
            Ok(decoded) => return Ok(decoded),
            Err(error) if error.is_transient() && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Applies one record like the projector loop does to the store.
fn project(
    rows: &mut HashMap<RowKey, StoredRow>,
    event: &LogRecord<OrdersWire>,
    partition: i32,
    offset: i64,
) -> anyhow::Result<()> {
    let projection = GatedProjection::new(DOMAIN, OrdersProjection);
    apply_in_memory(&projection, rows, event, partition, offset)
        .with_context(|| format!("project partition {partition} offset {offset}"))
}

#[cfg(test)]
mod tests {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    use super::*;

    /// The harness against the real broker: create a topic through the admin
    /// API, produce keyed records with headers, read them all back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn read_topic_returns_every_record_of_every_partition() {
        let broker = crate::broker().unwrap();
        let topic = format!("selftest-{}", uuid::Uuid::new_v4().simple());
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .create()
            .unwrap();
        let results = admin
            .create_topics(
                [&NewTopic::new(&topic, 3, TopicReplication::Fixed(-1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
        for index in 0..30 {
            let key = format!("key-{index}");
            let value = format!("value-{index}");
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&value).headers(
                        OwnedHeaders::new().insert(Header {
                            key: "index",
                            value: Some(&key),
                        }),
                    ),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
        let records = read_topic(broker.bootstrap_servers(), &topic)
            .await
            .unwrap();
        assert_eq!(records.len(), 30);
        let mut values: Vec<String> = records
            .iter()
            .map(|record| String::from_utf8(record.payload.clone().unwrap()).unwrap())
            .collect();
        values.sort();
        let mut expected: Vec<String> = (0..30).map(|index| format!("value-{index}")).collect();
        expected.sort();
        assert_eq!(values, expected);
        assert!(records
            .iter()
            .all(|record| record.header("index") == record.key.as_deref()));
        let partitions: std::collections::BTreeSet<i32> =
            records.iter().map(|record| record.partition).collect();
        assert!(partitions.len() > 1, "30 keys all landed on {partitions:?}");
    }
}
