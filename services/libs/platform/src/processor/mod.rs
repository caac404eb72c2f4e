//! The command processor: decides commands into events without broker
//! transactions, with exactly-once effect. Read `design.md` beside this file
//! for the invariants and why each failure case is safe.

mod log;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::types::Value;
use foldline_contracts::envelope::{headers, CommandOutcome, CommandRejected, EventMetadata};
use foldline_contracts::record::WireError;
use foldline_eventsourcing::gate::Admission;
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::log::{AggregateSlot, PartitionLog};
use crate::codec::{Codec, CodecError, Decoded};
use crate::config::KafkaConfig;
use crate::dlq::DeadLetters;
use crate::kafka::{
    close_off_the_runtime, commit_stored_offsets, group_consumer_config, producer_config,
    reader_config, store_next_offset,
};
use crate::shutdown::Shutdown;
use crate::store::{RowKey, Store, StoreError, StoredRow};

/// How a domain plugs into the processor. Every [`DomainWire`] is one
/// (`crate::domain`); tests implement it directly. Implementations only map
/// wire records and call the pure decider: no I/O.
///
/// [`DomainWire`]: crate::domain::DomainWire
pub trait CommandDomain: Send + Sync + 'static {
    type State: Clone + Default + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    type Command: Debug + Send + Sync + 'static;
    /// A record of the events topic: an event or a recorded rejection.
    type Record: Debug + Clone + Send + Sync + 'static;

    fn parse_command(&self, decoded: Decoded) -> Result<Self::Command, WireError>;
    fn command_envelope(&self, command: &Self::Command) -> CommandEnvelope;
    /// Decides `command` against `state` at `version`, returning the record
    /// to append (with its metadata filled in). Pure and deterministic.
    fn decide(&self, state: &Self::State, version: u64, command: &Self::Command) -> Self::Record;
    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, WireError>;
    fn record_to_avro(&self, record: &Self::Record) -> Result<Value, WireError>;
    fn record_name(&self, record: &Self::Record) -> &'static str;
    fn record_metadata<'r>(&self, record: &'r Self::Record) -> &'r EventMetadata;
    /// The refusal, when the record is a recorded rejection.
    fn rejection<'r>(&self, record: &'r Self::Record) -> Option<&'r CommandRejected>;
    /// Folds an event record into state (never called for rejections).
    fn evolve(&self, state: Self::State, record: &Self::Record) -> Self::State;
}

/// What the processor needs to know about any command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandEnvelope {
    pub command_id: String,
    pub correlation_id: String,
    pub aggregate_id: String,
    pub traceparent: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ProcessorTopics {
    pub commands: String,
    pub events: String,
    pub outcomes: String,
    pub dlq: String,
}

#[derive(Clone, Debug)]
pub struct ProcessorOptions {
    pub group: String,
    pub client_id: String,
    pub snapshot_every_commands: u64,
    pub max_batch: usize,
    /// How long a settled command id is remembered (the commands topic's retention).
    pub dedupe_horizon_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("cannot create kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "the log of {topic}/{partition} no longer holds offset {needed} (it starts at {log_start}): \
         refusing to fold a partial history"
    )]
    LogTruncated {
        topic: String,
        partition: i32,
        needed: i64,
        log_start: i64,
    },
    #[error("the snapshot of {topic}/{partition} is at offset {snapshot} but the log ends at {log_end}: the log was replaced")]
    SnapshotAheadOfLog {
        topic: String,
        partition: i32,
        snapshot: i64,
        log_end: i64,
    },
    #[error("cannot read {topic}/{partition}: {reason}")]
    Read {
        topic: String,
        partition: i32,
        reason: String,
    },
}

/// Tracks which partitions this member owns, and since which assignment.
/// Filled by librdkafka's rebalance callbacks, read by the loop.
struct AssignmentLedger {
    topic: String,
    owned: Mutex<HashMap<i32, u64>>,
    next_generation: AtomicU64,
}

impl AssignmentLedger {
    fn generation(&self, partition: i32) -> Option<u64> {
        self.owned
            .lock()
            .ok()
            .and_then(|owned| owned.get(&partition).copied())
    }
}

impl ClientContext for AssignmentLedger {}

impl ConsumerContext for AssignmentLedger {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            if let Ok(mut owned) = self.owned.lock() {
                for element in partitions.elements_for_topic(&self.topic) {
                    owned.remove(&element.partition());
                }
            }
            tracing::info!(topic = %self.topic, revoked = ?partition_numbers(partitions, &self.topic), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            if let Ok(mut owned) = self.owned.lock() {
                for element in partitions.elements_for_topic(&self.topic) {
                    let generation = self.next_generation.fetch_add(1, Ordering::SeqCst);
                    owned.insert(element.partition(), generation);
                }
            }
            tracing::info!(topic = %self.topic, assigned = ?partition_numbers(partitions, &self.topic), "partitions assigned");
        }
    }
}

fn partition_numbers(partitions: &TopicPartitionList, topic: &str) -> Vec<i32> {
    partitions
        .elements_for_topic(topic)
        .iter()
        .map(|element| element.partition())
        .collect()
}

struct OwnedPartition<S> {
    generation: u64,
    log: PartitionLog<S>,
    settled_since_snapshot: u64,
}

/// A command ready to decide, with the message that carried it.
struct PendingCommand<C> {
    envelope: CommandEnvelope,
    command: C,
}

/// Runs the command processor until `shutdown`. Returns an error only for
/// conditions an operator must look at (a truncated log); everything
/// transient is retried.
pub async fn run<D: CommandDomain>(
    domain: Arc<D>,
    topics: ProcessorTopics,
    options: ProcessorOptions,
    kafka: &KafkaConfig,
    codec: Codec,
    store: Store,
    shutdown: Shutdown,
) -> Result<(), ProcessorError> {
    let ledger = AssignmentLedger {
        topic: topics.commands.clone(),
        owned: Mutex::new(HashMap::new()),
        next_generation: AtomicU64::new(1),
    };
    let consumer: StreamConsumer<AssignmentLedger> =
        group_consumer_config(kafka, &options.client_id, &options.group)
            .create_with_context(ledger)?;
    consumer.subscribe(&[&topics.commands])?;
    let reader: StreamConsumer =
        reader_config(kafka, &format!("{}-restore", options.client_id)).create()?;
    let producer: FutureProducer = producer_config(kafka, &options.client_id).create()?;
    let dead_letters =
        DeadLetters::new(producer.clone(), topics.dlq.clone(), options.group.clone());
    let mut processor = Processor {
        domain,
        topics,
        options,
        codec,
        store,
        reader,
        producer,
        dead_letters,
        partitions: HashMap::new(),
    };
    tracing::info!(group = %processor.options.group, topic = %processor.topics.commands, "command processor started");
    loop {
        let first = tokio::select! {
            () = shutdown.clone().wait() => break,
            received = consumer.recv() => received,
        };
        let first = match first {
            Ok(message) => message.detach(),
            Err(error) => {
                tracing::warn!(%error, "command consumer error");
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < processor.options.max_batch {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(message.detach()),
                Some(Err(error)) => {
                    tracing::warn!(%error, "command consumer error");
                    break;
                }
                None => break,
            }
        }
        let mut by_partition: Vec<(i32, Vec<OwnedMessage>)> = Vec::new();
        for message in batch {
            match by_partition
                .iter_mut()
                .find(|(partition, _)| *partition == message.partition())
            {
                Some((_, messages)) => messages.push(message),
                None => by_partition.push((message.partition(), vec![message])),
            }
        }
        for (partition, messages) in by_partition {
            let Some(generation) = consumer.context().generation(partition) else {
                // Revoked while queued: the new owner will redeliver these.
                continue;
            };
            let Some(last_offset) = messages.last().map(|message| message.offset()) else {
                continue;
            };
            let processed = processor
                .process(partition, generation, messages, &shutdown)
                .await?;
            // An interrupted batch is not done: its commands must be read
            // again by whoever owns the partition next.
            if processed == Processed::Done
                && consumer.context().generation(partition) == Some(generation)
            {
                if let Err(error) = store_next_offset(
                    &consumer,
                    &processor.topics.commands,
                    partition,
                    last_offset + 1,
                ) {
                    tracing::warn!(%error, partition, "cannot store command offset");
                }
            }
        }
    }
    close_off_the_runtime(move || {
        commit_stored_offsets(&consumer, "command offsets");
        drop(consumer);
        drop(processor);
    })
    .await;
    tracing::info!("command processor stopped");
    Ok(())
}

struct Processor<D: CommandDomain> {
    domain: Arc<D>,
    topics: ProcessorTopics,
    options: ProcessorOptions,
    codec: Codec,
    store: Store,
    reader: StreamConsumer,
    producer: FutureProducer,
    dead_letters: DeadLetters,
    partitions: HashMap<i32, OwnedPartition<D::State>>,
}

const SNAPSHOT_TABLE: &str = "processor_snapshots";

/// Retries a transient failure with capped exponential backoff until it
/// succeeds or shutdown is requested (then evaluates to `None`). A macro
/// rather than a function taking an async closure: the retried future
/// borrows the processor, and spawned tasks must stay `Send`.
macro_rules! with_backoff {
    ($shutdown:expr, $what:expr, $attempt:expr, $is_transient:expr $(,)?) => {{
        let mut delay = Duration::from_millis(20);
        loop {
            match $attempt {
                Err(error) if $is_transient(&error) => {
                    if $shutdown.is_triggered() {
                        break None;
                    }
                    tracing::warn!(%error, what = $what, retry_in_ms = delay.as_millis() as u64, "transient failure, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => break Some(other),
            }
        }
    }};
}

impl<D: CommandDomain> Processor<D> {
    fn snapshot_key(&self, partition: i32) -> RowKey {
        RowKey::new(
            SNAPSHOT_TABLE,
            format!("{}\u{0}{}", self.options.group, self.topics.events).into_bytes(),
            partition.to_be_bytes().to_vec(),
        )
    }

    /// Decodes, decides, appends and settles one partition's commands.
    async fn process(
        &mut self,
        partition: i32,
        generation: u64,
        messages: Vec<OwnedMessage>,
        shutdown: &Shutdown,
    ) -> Result<Processed, ProcessorError> {
        let mut pending = Vec::with_capacity(messages.len());
        for message in &messages {
            match self.read_command(message, shutdown).await {
                Read::Command(command) => pending.push(command),
                Read::Parked => {}
                Read::Interrupted => return Ok(Processed::Interrupted),
            }
        }
        let mut attempt: u32 = 0;
        loop {
            let owned = self
                .partitions
                .get(&partition)
                .map(|owned| owned.generation);
            if owned != Some(generation) {
                self.restore(partition, generation, shutdown).await?;
            }
            match self.settle(partition, &pending, shutdown).await {
                Settlement::Done => return Ok(Processed::Done),
                Settlement::Stopped => return Ok(Processed::Interrupted),
                Settlement::LogMovedUnderUs => {
                    // Someone else wrote to the partition (a zombie or a new
                    // owner), or a delivery failed: our speculative state is
                    // void. Re-read the log and let it decide.
                    self.partitions.remove(&partition);
                    attempt += 1;
                    let delay = Duration::from_millis(10 * u64::from(attempt.min(50)));
                    tracing::warn!(
                        partition,
                        attempt,
                        "events partition moved under us, resynchronising from the log"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Reads one command record; poison goes to the dead-letter topic.
    async fn read_command(&self, message: &OwnedMessage, shutdown: &Shutdown) -> Read<D::Command> {
        let Some(payload) = message.payload() else {
            self.dead_letters
                .park(message, "command record has no value")
                .await;
            return Read::Parked;
        };
        let Some(decoded) = with_backoff!(
            shutdown,
            "decode command",
            self.codec.decode(payload).await,
            CodecError::is_transient,
        ) else {
            return Read::Interrupted;
        };
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => {
                self.dead_letters.park(message, &error.to_string()).await;
                return Read::Parked;
            }
        };
        let command = match self.domain.parse_command(decoded) {
            Ok(command) => command,
            Err(error) => {
                self.dead_letters.park(message, &error.to_string()).await;
                return Read::Parked;
            }
        };
        let envelope = self.domain.command_envelope(&command);
        // Co-partitioning is what makes a partition's log a complete history
        // of its aggregates; a command keyed elsewhere would break it.
        if message.key() != Some(envelope.aggregate_id.as_bytes()) {
            self.dead_letters
                .park(message, "command key is not its aggregate id")
                .await;
            return Read::Parked;
        }
        Read::Command(PendingCommand { envelope, command })
    }

    async fn settle(
        &mut self,
        partition: i32,
        pending: &[PendingCommand<D::Command>],
        shutdown: &Shutdown,
    ) -> Settlement {
        let Some(owned) = self.partitions.get_mut(&partition) else {
            return Settlement::LogMovedUnderUs;
        };
        let mut appended: Vec<Appended> = Vec::new();
        let mut decided_here: HashSet<&str> = HashSet::new();
        for PendingCommand { envelope, command } in pending {
            if owned.log.settled(&envelope.command_id).is_some()
                || decided_here.contains(envelope.command_id.as_str())
            {
                continue;
            }
            let slot = owned.log.aggregate(&envelope.aggregate_id);
            let record = self.domain.decide(&slot.state, slot.version, command);
            let expected_offset = owned.log.next_offset;
            let admission = owned
                .log
                .fold(self.domain.as_ref(), &record, expected_offset);
            debug_assert_eq!(
                admission,
                Admission::Apply,
                "a fresh decision always passes the gate"
            );
            let value = match self.domain.record_to_avro(&record) {
                Ok(value) => value,
                Err(error) => {
                    tracing::error!(%error, "decided record does not fit its schema");
                    return Settlement::LogMovedUnderUs;
                }
            };
            let record_name = self.domain.record_name(&record);
            let encoded = with_backoff!(
                shutdown,
                "encode event",
                self.codec
                    .encode_value(&self.topics.events, record_name, value.clone())
                    .await,
                CodecError::is_transient,
            );
            let bytes = match encoded {
                None => return Settlement::Stopped,
                Some(Ok(bytes)) => bytes,
                Some(Err(error)) => {
                    tracing::error!(%error, record_name, "cannot encode decided record");
                    return Settlement::LogMovedUnderUs;
                }
            };
            let metadata = self.domain.record_metadata(&record);
            let headers = record_headers(metadata, record_name, envelope.traceparent.as_deref());
            decided_here.insert(envelope.command_id.as_str());
            appended.push(Appended {
                expected_offset,
                key: envelope.aggregate_id.clone(),
                bytes,
                headers,
            });
        }

        if !self.append_verified(partition, &appended).await {
            return Settlement::LogMovedUnderUs;
        }

        let Some(owned) = self.partitions.get_mut(&partition) else {
            return Settlement::LogMovedUnderUs;
        };
        owned.settled_since_snapshot += appended.len() as u64;
        let outcomes: Vec<CommandOutcome> = pending
            .iter()
            .filter_map(|command| owned.log.settled(&command.envelope.command_id).cloned())
            .collect();
        if self.publish_outcomes(&outcomes, shutdown).await.is_none() {
            return Settlement::Stopped;
        }
        self.maybe_snapshot(partition).await;
        Settlement::Done
    }

    /// Appends a batch's records to `D.events[partition]` and reports
    /// whether every one landed exactly where the fold assumed: then no
    /// foreign write interleaved and our decisions are the log's (rule 4).
    ///
    /// The transactional seam: on a broker with transactions, this step,
    /// `publish_outcomes` and the command offset the loop stores afterwards
    /// become one transaction (begin, send, `send_offsets_to_transaction`,
    /// commit), and a fenced producer answers `false` here. See design.md.
    async fn append_verified(&self, partition: i32, appended: &[Appended]) -> bool {
        // Enqueue in order: librdkafka keeps per-partition order with the
        // idempotent producer.
        let mut deliveries = Vec::with_capacity(appended.len());
        for record in appended {
            let message = FutureRecord::to(&self.topics.events)
                .partition(partition)
                .key(record.key.as_str())
                .payload(record.bytes.as_slice())
                .headers(record.headers.clone());
            match self.producer.send_result(message) {
                Ok(delivery) => deliveries.push((record.expected_offset, delivery)),
                Err((error, _)) => {
                    tracing::warn!(%error, partition, "cannot enqueue event");
                    return false;
                }
            }
        }
        let mut verified = true;
        for (expected_offset, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(delivery))
                    if delivery.offset == expected_offset && delivery.partition == partition => {}
                Ok(Ok(delivery)) => {
                    tracing::warn!(
                        partition,
                        expected_offset,
                        landed = delivery.offset,
                        "event landed after a foreign write"
                    );
                    verified = false;
                }
                Ok(Err((error, _))) => {
                    tracing::warn!(%error, partition, "event delivery failed");
                    verified = false;
                }
                Err(_) => verified = false,
            }
        }
        verified
    }

    async fn publish_outcomes(
        &self,
        outcomes: &[CommandOutcome],
        shutdown: &Shutdown,
    ) -> Option<()> {
        let mut encoded = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let bytes = with_backoff!(
                shutdown,
                "encode outcome",
                {
                    self.codec
                        .encode(&self.topics.outcomes, CommandOutcome::RECORD_NAME, outcome)
                        .await
                },
                CodecError::is_transient,
            )?;
            match bytes {
                Ok(bytes) => encoded.push((outcome, bytes)),
                Err(error) => tracing::error!(%error, "cannot encode command outcome"),
            }
        }
        for (outcome, bytes) in &encoded {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: headers::COMMAND_ID,
                    value: Some(&outcome.command_id),
                })
                .insert(Header {
                    key: headers::CORRELATION_ID,
                    value: Some(&outcome.correlation_id),
                })
                .insert(Header {
                    key: headers::CONTENT_TYPE,
                    value: Some(headers::AVRO_CONFLUENT),
                });
            loop {
                let record = FutureRecord::to(&self.topics.outcomes)
                    .key(outcome.command_id.as_str())
                    .payload(bytes.as_slice())
                    .headers(headers.clone());
                match self.producer.send(record, Duration::from_secs(10)).await {
                    Ok(_) => break,
                    Err((error, _)) => {
                        if shutdown.is_triggered() {
                            return None;
                        }
                        tracing::warn!(%error, "cannot publish outcome yet, retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
        Some(())
    }

    async fn maybe_snapshot(&mut self, partition: i32) {
        let key = self.snapshot_key(partition);
        let Some(owned) = self.partitions.get_mut(&partition) else {
            return;
        };
        if owned.settled_since_snapshot < self.options.snapshot_every_commands {
            return;
        }
        let newest = owned.log.next_offset;
        if let Some(horizon) = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|now| now.as_millis() as i64 - self.options.dedupe_horizon_ms)
        {
            owned.log.forget_settled_before(horizon);
        }
        let bytes = match serde_json::to_vec(&owned.log) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, partition, "cannot serialise snapshot");
                return;
            }
        };
        owned.settled_since_snapshot = 0;
        let row = StoredRow {
            position: newest,
            value: bytes,
        };
        // A failed snapshot only lengthens the next restore: log, go on.
        if let Err(error) = self.store.put(key, row).await {
            tracing::warn!(%error, partition, "cannot write snapshot");
        } else {
            tracing::debug!(partition, offset = newest, "wrote aggregate snapshot");
        }
    }

    /// Rebuilds the partition from the best verified prefix (memory is gone
    /// by now, so: the snapshot, else the log start) and catches up to the
    /// log end.
    async fn restore(
        &mut self,
        partition: i32,
        generation: u64,
        shutdown: &Shutdown,
    ) -> Result<(), ProcessorError> {
        let key = self.snapshot_key(partition);
        let snapshot = with_backoff!(
            shutdown,
            "read snapshot",
            self.store.get(key.clone()).await,
            StoreError::is_transient
        )
        .and_then(Result::ok)
        .flatten();
        let mut log = match snapshot
            .map(|row| serde_json::from_slice::<PartitionLog<D::State>>(&row.value))
        {
            Some(Ok(log)) if log.partition == partition => log,
            Some(Ok(_)) | Some(Err(_)) => {
                tracing::warn!(
                    partition,
                    "ignoring unreadable snapshot, folding from the log start"
                );
                PartitionLog::empty(partition)
            }
            None => PartitionLog::empty(partition),
        };
        let (log_start, log_end) = self.watermarks(partition).await?;
        check_restorable(
            &self.topics.events,
            partition,
            log.next_offset,
            log_start,
            log_end,
        )?;
        let from = log.next_offset;
        self.catch_up(&mut log, log_end, shutdown).await?;
        tracing::info!(
            partition,
            from,
            to = log_end,
            aggregates = log.aggregate_count(),
            settled = log.settled_count(),
            "restored partition from the event log"
        );
        self.partitions.insert(
            partition,
            OwnedPartition {
                generation,
                log,
                settled_since_snapshot: 0,
            },
        );
        Ok(())
    }

    async fn watermarks(&self, partition: i32) -> Result<(i64, i64), ProcessorError> {
        let mut last_error = String::new();
        for _ in 0..10 {
            match self.reader.fetch_watermarks(
                &self.topics.events,
                partition,
                Duration::from_secs(5),
            ) {
                Ok(watermarks) => return Ok(watermarks),
                Err(error) => last_error = error.to_string(),
            }
        }
        Err(ProcessorError::Read {
            topic: self.topics.events.clone(),
            partition,
            reason: last_error,
        })
    }

    /// Folds `[log.next_offset, end)` of the events partition into `log`.
    async fn catch_up(
        &self,
        log: &mut PartitionLog<D::State>,
        end: i64,
        shutdown: &Shutdown,
    ) -> Result<(), ProcessorError> {
        if log.next_offset >= end {
            log.next_offset = end;
            return Ok(());
        }
        let partition = log.partition;
        let read_error = |reason: String| ProcessorError::Read {
            topic: self.topics.events.clone(),
            partition,
            reason,
        };
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(
                &self.topics.events,
                log.partition,
                Offset::Offset(log.next_offset),
            )
            .map_err(|error| read_error(error.to_string()))?;
        self.reader
            .assign(&assignment)
            .map_err(|error| read_error(error.to_string()))?;
        while log.next_offset < end {
            let message =
                match tokio::time::timeout(Duration::from_secs(30), self.reader.recv()).await {
                    Ok(Ok(message)) => message.detach(),
                    Ok(Err(error)) => return Err(read_error(error.to_string())),
                    Err(_) => {
                        return Err(read_error(format!(
                            "no record past offset {} within 30s",
                            log.next_offset
                        )))
                    }
                };
            if message.offset() < log.next_offset {
                continue;
            }
            let offset = message.offset();
            let record = match message.payload() {
                Some(payload) => {
                    let decoded = with_backoff!(
                        shutdown,
                        "decode event",
                        self.codec.decode(payload).await,
                        CodecError::is_transient
                    );
                    match decoded {
                        None => return Err(read_error("stopped while restoring".to_owned())),
                        Some(Ok(decoded)) => self.domain.parse_record(decoded).ok(),
                        Some(Err(_)) => None,
                    }
                }
                None => None,
            };
            match record {
                Some(record) => {
                    log.fold(self.domain.as_ref(), &record, offset);
                }
                None => {
                    // Not something any decision wrote: every reader skips it alike.
                    tracing::warn!(
                        partition = log.partition,
                        offset,
                        "skipping undecodable record in the event log"
                    );
                    log.next_offset = offset + 1;
                }
            }
        }
        self.reader
            .unassign()
            .map_err(|error| read_error(error.to_string()))?;
        Ok(())
    }
}

/// Whether a fold that stopped before `next_offset` can continue on a log
/// holding `[log_start, log_end)`: it cannot when records it needs are
/// gone (truncated) or when the log is shorter than what was folded (the
/// topic was replaced). Either way folding on would build a state the log
/// does not imply, so the processor stops and says why.
fn check_restorable(
    topic: &str,
    partition: i32,
    next_offset: i64,
    log_start: i64,
    log_end: i64,
) -> Result<(), ProcessorError> {
    if next_offset < log_start {
        return Err(ProcessorError::LogTruncated {
            topic: topic.to_owned(),
            partition,
            needed: next_offset,
            log_start,
        });
    }
    if next_offset > log_end {
        return Err(ProcessorError::SnapshotAheadOfLog {
            topic: topic.to_owned(),
            partition,
            snapshot: next_offset,
            log_end,
        });
    }
    Ok(())
}

/// A decided record, encoded, with the offset its fold assumed.
struct Appended {
    expected_offset: i64,
    key: String,
    bytes: Vec<u8>,
    headers: OwnedHeaders,
}

/// What became of one command record.
enum Read<C> {
    Command(PendingCommand<C>),
    /// Poison, now in the dead-letter topic: done with.
    Parked,
    /// Shutdown came first: not done with.
    Interrupted,
}

/// Whether a batch is done with, so its offsets may be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Processed {
    Done,
    Interrupted,
}

enum Settlement {
    Done,
    Stopped,
    LogMovedUnderUs,
}

/// The headers every events-topic record carries.
pub fn record_headers(
    metadata: &EventMetadata,
    record_name: &str,
    traceparent: Option<&str>,
) -> OwnedHeaders {
    let version = metadata.aggregate_version.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(&metadata.event_id),
        })
        .insert(Header {
            key: headers::COMMAND_ID,
            value: Some(&metadata.command_id),
        })
        .insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(&metadata.correlation_id),
        })
        .insert(Header {
            key: headers::CAUSATION_ID,
            value: Some(&metadata.causation_id),
        })
        .insert(Header {
            key: headers::CONTENT_TYPE,
            value: Some(headers::AVRO_CONFLUENT),
        })
        .insert(Header {
            key: headers::RECORD_TYPE,
            value: Some(record_name),
        })
        .insert(Header {
            key: headers::SCHEMA_VERSION,
            value: Some(headers::CONTRACT_VERSION),
        })
        .insert(Header {
            key: headers::AGGREGATE_VERSION,
            value: Some(&version),
        });
    if let Some(traceparent) = traceparent {
        headers = headers.insert(Header {
            key: headers::TRACEPARENT,
            value: Some(traceparent),
        });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_continues_anywhere_inside_the_log() {
        assert!(check_restorable("orders.events", 0, 0, 0, 0).is_ok());
        assert!(check_restorable("orders.events", 0, 0, 0, 10).is_ok());
        assert!(check_restorable("orders.events", 0, 7, 5, 10).is_ok());
        assert!(check_restorable("orders.events", 0, 10, 5, 10).is_ok());
    }

    #[test]
    fn a_log_truncated_below_the_snapshot_is_refused_loudly() {
        let error = check_restorable("orders.events", 3, 4, 5, 10).unwrap_err();
        assert!(matches!(
            error,
            ProcessorError::LogTruncated {
                needed: 4,
                log_start: 5,
                partition: 3,
                ..
            }
        ));
        assert_eq!(
            error.to_string(),
            "the log of orders.events/3 no longer holds offset 4 (it starts at 5): refusing to fold a \
             partial history"
        );
        // No snapshot and a truncated log: a fold from 0 is just as partial.
        assert!(check_restorable("orders.events", 0, 0, 1, 10).is_err());
    }

    #[test]
    fn a_snapshot_ahead_of_the_log_is_refused_loudly() {
        let error = check_restorable("orders.events", 2, 11, 0, 10).unwrap_err();
        assert!(matches!(
            error,
            ProcessorError::SnapshotAheadOfLog {
                snapshot: 11,
                log_end: 10,
                ..
            }
        ));
        assert!(
            error.to_string().contains("the log was replaced"),
            "{error}"
        );
    }
}
