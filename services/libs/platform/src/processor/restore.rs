//! A partition's state from the log: snapshots, and the restore that
//! folds the log from the newest snapshot (or offset 0) to its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::Instrument;

use super::assignment::{is_refusal, Generation, PartitionState, RebalanceEvent, Restoring};
use super::{
    retry, CommandDomain, LogFingerprint, PartitionLog, Processor, ProcessorError,
    ProcessorOptions, ProcessorTopics,
};
use crate::codec::{Codec, CodecError};
use crate::config::KafkaConfig;
use crate::kafka::{reader_config, with_overrides, EndOfPartitionReader};
use crate::metrics::{count_ignored, metrics};
use crate::shutdown::Shutdown;
use crate::store::{RowKey, Store, StoreError, StoredRow};

const SNAPSHOT_TABLE: &str = "processor_snapshots";

/// How long one watermark fetch may block on the broker.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a refused watermark fetch before the next one.
const WATERMARK_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How often a restore waiting out an unreachable broker says so.
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(30);

/// How long a restore waits for the next record of a log it knows is there
/// while the broker answers.
const RECORD_WAIT: Duration = Duration::from_secs(30);

/// How long a restore waits for a log's end that is behind its snapshot to
/// catch up before it calls the log replaced (`stable_watermarks`).
const STABLE_END_WAIT: Duration = Duration::from_secs(30);

/// What a restore needs, shared by the restores of every partition: each
/// runs on a task of its own, with a reader of its own, so the partitions
/// of an assignment restore in parallel (design.md, *State and restore*).
pub(super) struct Restorer<D: CommandDomain> {
    domain: Arc<D>,
    events: String,
    group: String,
    client_id: String,
    kafka: KafkaConfig,
    codec: Codec,
    store: Store,
}

impl<D: CommandDomain> Restorer<D> {
    pub(super) fn new(
        domain: Arc<D>,
        topics: &ProcessorTopics,
        options: &ProcessorOptions,
        kafka: &KafkaConfig,
        codec: Codec,
        store: Store,
    ) -> Restorer<D> {
        Restorer {
            domain,
            events: topics.events.clone(),
            group: options.group.clone(),
            client_id: options.client_id.clone(),
            kafka: kafka.clone(),
            codec,
            store,
        }
    }

    pub(super) fn snapshot_key(&self, partition: i32) -> RowKey {
        RowKey::new(
            SNAPSHOT_TABLE,
            format!("{}\u{0}{}", self.group, self.events).into_bytes(),
            partition.to_be_bytes().to_vec(),
        )
    }

    pub(super) fn read_error(&self, partition: i32, reason: impl Into<String>) -> ProcessorError {
        ProcessorError::Read {
            topic: self.events.clone(),
            partition,
            reason: reason.into(),
        }
    }

    /// Rebuilds the partition from the best verified prefix (memory is gone
    /// by now, so: the snapshot, else the log start) and catches up to the
    /// log end. `None` when shutdown came first.
    pub(super) async fn restore(
        &self,
        partition: i32,
        shutdown: &Shutdown,
    ) -> Result<Option<PartitionState<D::State>>, ProcessorError> {
        let started = Instant::now();
        metrics()
            .restores_started
            .with_label_values(&[self.events.as_str()])
            .inc();
        let key = self.snapshot_key(partition);
        let snapshot = retry::until_settled(
            "read snapshot",
            shutdown,
            || self.store.get(key.clone()),
            StoreError::is_transient,
        )
        .await;
        let snapshot = match snapshot {
            None => return Ok(None),
            Some(Ok(row)) => row,
            Some(Err(error)) => {
                tracing::warn!(%error, "cannot read the snapshot, folding from the log start");
                None
            }
        };
        let mut log = match snapshot
            .map(|row| serde_json::from_slice::<PartitionLog<D::State>>(&row.value))
        {
            Some(Ok(log)) if log.partition == partition => log,
            Some(Ok(_)) | Some(Err(_)) => {
                tracing::warn!("ignoring unreadable snapshot, folding from the log start");
                PartitionLog::empty(partition)
            }
            None => PartitionLog::empty(partition),
        };
        let reader = Reader::create(
            &self.kafka,
            &format!("{}-restore-{partition}", self.client_id),
        )?;
        let Some((log_start, log_end)) = self
            .stable_watermarks(&reader, partition, log.next_offset, shutdown)
            .await?
        else {
            return Ok(None);
        };
        check_restorable(&self.events, partition, log.next_offset, log_start, log_end)?;
        // The snapshot's last record, read back: the log it was folded from.
        let fingerprint = match log.last_folded() {
            Some(fingerprint) if fingerprint.offset >= log_start => Some(fingerprint.clone()),
            Some(fingerprint) => {
                // Truncated to the snapshot's end: what follows is still there.
                tracing::warn!(
                    offset = fingerprint.offset,
                    log_start,
                    "the snapshot's last record is no longer in the log: cannot check it is the same log"
                );
                None
            }
            None => None,
        };
        let from = log.next_offset;
        let folding = Instant::now();
        if self
            .catch_up(&reader, &mut log, log_end, fingerprint, shutdown)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let folded = log_end - from;
        let fold_seconds = folding.elapsed().as_secs_f64();
        tracing::info!(
            from,
            to = log_end,
            aggregates = log.aggregate_count(),
            settled = log.settled_count(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            events_per_second = if fold_seconds > 0.0 {
                (folded as f64 / fold_seconds) as u64
            } else {
                0
            },
            "restored partition from the event log"
        );
        metrics()
            .restores
            .with_label_values(&[
                self.events.as_str(),
                if from > 0 { "snapshot" } else { "scratch" },
            ])
            .inc();
        Ok(Some(PartitionState {
            log,
            settled_since_snapshot: 0,
            // The end the fold reached is past every marker written so far.
            marker_pending: false,
        }))
    }

    /// The watermarks, waited for (within `STABLE_END_WAIT`) while the end
    /// is behind `next_offset`: a `read_committed` reader's end is the last
    /// stable offset, which stays below a committed transaction until its
    /// markers are written (late after a broker restart: the coordinator
    /// sends them again), and a restarted broker's high watermark starts
    /// below its log end. Only an end that stays behind is a replaced log
    /// (`check_restorable`). `None` on shutdown.
    async fn stable_watermarks(
        &self,
        reader: &Reader,
        partition: i32,
        next_offset: i64,
        shutdown: &Shutdown,
    ) -> Result<Option<(i64, i64)>, ProcessorError> {
        let waiting = tokio::time::Instant::now();
        let mut delays = retry::delays();
        loop {
            let Some((log_start, log_end)) = self.watermarks(reader, partition, shutdown).await?
            else {
                return Ok(None);
            };
            if next_offset <= log_end || waiting.elapsed() >= STABLE_END_WAIT {
                return Ok(Some((log_start, log_end)));
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            tracing::warn!(
                snapshot = next_offset,
                log_end,
                retry_in_ms = delay.as_millis() as u64,
                "the log's stable end is behind the snapshot: waiting for it (transaction markers not yet written, a restarted broker)"
            );
            tokio::select! {
                () = shutdown.clone().wait() => return Ok(None),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// The events partition's `(low, high)` watermarks; `None` on shutdown.
    ///
    /// An unreachable broker is waited out, however long it takes (the
    /// process rides out a broker outage, design.md's failure table): a
    /// restore gives up only on the authorizer's refusal. `fetch_watermarks`
    /// blocks on the broker, so it runs on a blocking thread: an outage must
    /// not stall an async worker (the drain deadline on shutdown runs on
    /// those). The thread checks for shutdown between attempts, and this
    /// future stops waiting for it at once.
    async fn watermarks(
        &self,
        reader: &Reader,
        partition: i32,
        shutdown: &Shutdown,
    ) -> Result<Option<(i64, i64)>, ProcessorError> {
        let reader = reader.shared();
        let topic = self.events.clone();
        let stop = shutdown.clone();
        let span = tracing::Span::current();
        let fetch = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let waiting = std::time::Instant::now();
            let mut reported = waiting;
            loop {
                if stop.is_triggered() {
                    return Ok(None);
                }
                match reader.fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT) {
                    Ok(watermarks) => {
                        if reported > waiting {
                            tracing::info!(
                                waited_ms = waiting.elapsed().as_millis() as u64,
                                "the broker answers again: the restore goes on"
                            );
                        }
                        return Ok(Some(watermarks));
                    }
                    Err(error) if is_refusal(&error) => return Err(error),
                    Err(error) => {
                        if reported.elapsed() >= OUTAGE_REPORT_EVERY
                            || (reported == waiting && waiting.elapsed() >= WATERMARK_TIMEOUT)
                        {
                            reported = std::time::Instant::now();
                            tracing::warn!(
                                %error,
                                waited_ms = waiting.elapsed().as_millis() as u64,
                                "the broker does not answer for the log's watermarks: the restore waits for it"
                            );
                        }
                        std::thread::sleep(WATERMARK_RETRY_PAUSE);
                    }
                }
            }
        });
        let fetched = tokio::select! {
            () = shutdown.clone().wait() => return Ok(None),
            fetched = fetch => fetched,
        };
        match fetched {
            Ok(Ok(watermarks)) => Ok(watermarks),
            Ok(Err(error)) => Err(ProcessorError::NotAuthorized {
                resource: format!("topic {}", self.events),
                reason: error.to_string(),
            }),
            Err(error) => {
                Err(self.read_error(partition, format!("watermark fetch failed: {error}")))
            }
        }
    }

    /// Whether the broker answers a watermark fetch now (one attempt,
    /// off the async workers).
    async fn broker_answers(&self, reader: &Reader, partition: i32) -> bool {
        let reader = reader.shared();
        let topic = self.events.clone();
        tokio::task::spawn_blocking(move || {
            reader
                .fetch_watermarks(&topic, partition, WATERMARK_TIMEOUT)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Folds `[log.next_offset, end)` of the events partition into `log`;
    /// `None` on shutdown. With a `fingerprint` (below `next_offset`), the
    /// read starts there and the record found must be that one.
    async fn catch_up(
        &self,
        reader: &Reader,
        log: &mut PartitionLog<D::State>,
        end: i64,
        mut fingerprint: Option<LogFingerprint>,
        shutdown: &Shutdown,
    ) -> Result<Option<()>, ProcessorError> {
        if log.next_offset >= end && fingerprint.is_none() {
            log.next_offset = end;
            return Ok(Some(()));
        }
        let partition = log.partition;
        let consumer = reader.consumer();
        let start = fingerprint
            .as_ref()
            .map_or(log.next_offset, |fingerprint| fingerprint.offset);
        self.assign(reader, partition, start)?;
        let mut wait_until = tokio::time::Instant::now() + RECORD_WAIT;
        // Whether the broker was unreachable since the last record came: a
        // silence that is the outage's is waited out, not failed on.
        let mut outage = false;
        while fingerprint.is_some() || log.next_offset < end {
            let received = tokio::select! {
                () = shutdown.clone().wait() => return Ok(None),
                received = tokio::time::timeout_at(wait_until, consumer.recv()) => received,
            };
            let message = match received {
                Ok(Ok(message)) => message.detach(),
                // The reader reached the partition's end (its last stable
                // offset: `read_committed`), at or past `end`: what lies
                // before `end` and was not delivered is transaction markers
                // and aborted records, which no reader folds.
                Ok(Err(KafkaError::PartitionEOF(eof))) if eof == partition => {
                    if let Some(expected) = fingerprint.take() {
                        check_fingerprint(&self.events, partition, &expected, None)?;
                    }
                    log.next_offset = log.next_offset.max(end);
                    break;
                }
                // A broker gone for a moment (restarting, a leader moving):
                // librdkafka reconnects by itself.
                Ok(Err(error)) => {
                    tracing::warn!(%error, partition, "reading the event log");
                    outage = true;
                    continue;
                }
                Err(_) => {
                    let answers = self.broker_answers(reader, partition).await;
                    match after_silence(outage, answers) {
                        Silence::Fail => {
                            return Err(self.read_error(
                                partition,
                                format!(
                                    "no record past offset {} within {}s while the broker answers",
                                    log.next_offset,
                                    RECORD_WAIT.as_secs()
                                ),
                            ))
                        }
                        Silence::WaitOutTheOutage => {
                            // Until the broker answers, then the read starts
                            // afresh where the fold stands.
                            if self
                                .watermarks(reader, partition, shutdown)
                                .await?
                                .is_none()
                            {
                                return Ok(None);
                            }
                            let position = fingerprint
                                .as_ref()
                                .map_or(log.next_offset, |fingerprint| fingerprint.offset);
                            self.assign(reader, partition, position)?;
                            outage = false;
                            wait_until = tokio::time::Instant::now() + RECORD_WAIT;
                            continue;
                        }
                    }
                }
            };
            outage = false;
            wait_until = tokio::time::Instant::now() + RECORD_WAIT;
            let offset = message.offset();
            if let Some(expected) = fingerprint.take() {
                let found = if offset == expected.offset {
                    let Some(record) = self.decode_record(&message, shutdown).await else {
                        return Ok(None);
                    };
                    Found::Record(
                        record.map(|record| self.domain.record_metadata(&record).event_id.clone()),
                    )
                } else {
                    Found::NextAt(offset)
                };
                check_fingerprint(&self.events, partition, &expected, Some(found))?;
            }
            if offset < log.next_offset {
                continue;
            }
            let Some(record) = self.decode_record(&message, shutdown).await else {
                return Ok(None);
            };
            match record {
                Some(record) => {
                    let admission = log.fold(self.domain.as_ref(), &record, offset);
                    count_ignored(&self.events, "restore", admission);
                }
                None => {
                    // Not something any decision wrote: every reader skips it alike.
                    tracing::warn!(offset, "skipping undecodable record in the event log");
                    log.next_offset = offset + 1;
                }
            }
        }
        Ok(Some(()))
    }

    /// Points the reader at `offset` of the events partition.
    fn assign(&self, reader: &Reader, partition: i32, offset: i64) -> Result<(), ProcessorError> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.events, partition, Offset::Offset(offset))
            .map_err(|error| self.read_error(partition, error.to_string()))?;
        reader
            .consumer()
            .assign(&assignment)
            .map_err(|error| self.read_error(partition, error.to_string()))
    }

    /// The domain's record in `message`; `Some(None)` when it is none of
    /// ours (undecodable), `None` on shutdown.
    async fn decode_record(
        &self,
        message: &rdkafka::message::OwnedMessage,
        shutdown: &Shutdown,
    ) -> Option<Option<D::Record>> {
        let Some(payload) = message.payload() else {
            return Some(None);
        };
        let decoded = retry::until_settled(
            "decode event",
            shutdown,
            || self.codec.decode(payload),
            CodecError::is_transient,
        )
        .await?;
        Some(
            decoded
                .ok()
                .and_then(|decoded| self.domain.parse_record(decoded).ok()),
        )
    }
}

/// What a restore does when no record of a log it knows is there came
/// within `RECORD_WAIT`.
#[derive(Debug, PartialEq, Eq)]
enum Silence {
    /// The broker was or is unreachable: the silence is the outage's. Wait
    /// for the broker, then read afresh from where the fold stands.
    WaitOutTheOutage,
    /// The broker answered all along and still delivered nothing: the
    /// restore fails (`Read`, transient) rather than hang.
    Fail,
}

/// `outage`: a read failed since the last record came; `answers`: the
/// broker answers a watermark fetch now.
fn after_silence(outage: bool, answers: bool) -> Silence {
    if outage || !answers {
        Silence::WaitOutTheOutage
    } else {
        Silence::Fail
    }
}

/// Whether a partition's next snapshot is due, `settled` commands after its
/// last; `entries`: the aggregates and remembered commands its state holds,
/// when the interval scales with them (`processor.snapshot_scales_with_state`).
///
/// A snapshot serialises the whole state, so it costs time in proportion to
/// `entries`, on the task that settles the partition's commands. At a fixed
/// interval that cost per command grew with the state: in issue 7's profile
/// the JSON of snapshots took a growing share of the processor until
/// settled commands/s fell by a third within a minute. Waiting for at least
/// as many commands as the state holds entries keeps the cost per command
/// constant, and a restore then folds no more records past the snapshot
/// than the snapshot held entries, so its time stays proportional to the
/// state it rebuilds.
fn snapshot_due(settled: u64, every_commands: u64, entries: Option<u64>) -> bool {
    settled >= every_commands.max(entries.unwrap_or(0))
}

/// What a restore found where the snapshot's last folded record was.
#[derive(Debug)]
enum Found {
    /// A record at that offset: its event id, `None` if undecodable.
    Record(Option<String>),
    /// No record there (an aborted record or a transaction marker): the
    /// first record after it is at this offset.
    NextAt(i64),
}

/// Whether the log holds, at the snapshot's last folded offset, the very
/// record the snapshot folded there (`found`: `None` when the log holds no
/// record from there to its end). A replaced log fails loudly: folding on
/// would graft its records onto another history.
fn check_fingerprint(
    topic: &str,
    partition: i32,
    expected: &LogFingerprint,
    found: Option<Found>,
) -> Result<(), ProcessorError> {
    let found = match found {
        Some(Found::Record(Some(event_id))) if event_id == expected.event_id => return Ok(()),
        Some(Found::Record(Some(event_id))) => format!("event {event_id}"),
        Some(Found::Record(None)) => "a record none of our decisions wrote".to_owned(),
        Some(Found::NextAt(next)) => format!("no record (the next is at offset {next})"),
        None => "no record (nor any after it)".to_owned(),
    };
    Err(ProcessorError::SnapshotOfAnotherLog {
        topic: topic.to_owned(),
        partition,
        offset: expected.offset,
        expected_event_id: expected.event_id.clone(),
        found,
    })
}

/// A restore's own reader of the events topic. Dropping a consumer can
/// block on the broker, and a restore may be dropped anywhere (its
/// partition revoked mid-fold aborts its task), so it is dropped on a
/// blocking thread.
struct Reader(Option<Arc<StreamConsumer<EndOfPartitionReader>>>);

impl Reader {
    fn create(kafka: &KafkaConfig, client_id: &str) -> Result<Reader, ProcessorError> {
        // The end of the log is found by the end-of-partition event: under
        // read_committed, a transaction marker is the last offset of a
        // partition and is never delivered as a record.
        let consumer: StreamConsumer<EndOfPartitionReader> = with_overrides(
            reader_config(kafka, client_id),
            kafka,
            &[("enable.partition.eof", "true")],
        )
        .create_with_context(EndOfPartitionReader)?;
        Ok(Reader(Some(Arc::new(consumer))))
    }

    fn consumer(&self) -> &StreamConsumer<EndOfPartitionReader> {
        self.0
            .as_deref()
            .expect("a reader holds its consumer until dropped")
    }

    /// For the blocking threads that fetch watermarks.
    fn shared(&self) -> Arc<StreamConsumer<EndOfPartitionReader>> {
        Arc::clone(
            self.0
                .as_ref()
                .expect("a reader holds its consumer until dropped"),
        )
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let Some(consumer) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || drop(consumer));
            }
            Err(_) => drop(consumer),
        }
    }
}

impl<D: CommandDomain> Processor<D> {
    /// Applies a rebalance and starts restoring, each on its own task, every
    /// partition it assigns: restore is eager, so a partition's first
    /// command after a failover waits for its fold only as long as the
    /// fold is not yet done, and partitions fold side by side.
    pub(super) fn apply_rebalance(&mut self, event: &RebalanceEvent, shutdown: &Shutdown) {
        self.partitions.apply(event);
        if let RebalanceEvent::Assigned(assigned) = event {
            for &partition in assigned {
                if let Some(generation) = self.partitions.generation(partition) {
                    let restoring = self.spawn_restore(partition, shutdown);
                    self.partitions.restoring(partition, generation, restoring);
                }
            }
        }
    }

    fn spawn_restore(&self, partition: i32, shutdown: &Shutdown) -> Restoring<D::State> {
        let restorer = Arc::clone(&self.restorer);
        let shutdown = shutdown.clone();
        let span = tracing::info_span!("restore", partition);
        Restoring::spawn(
            async move { restorer.restore(partition, &shutdown).await }.instrument(span),
        )
    }

    /// The partition's state rebuilt from the log for `generation`: the
    /// restore its assignment started, else (after a voided batch) a new
    /// one. `None` when shutdown came first.
    pub(super) async fn restore(
        &mut self,
        partition: i32,
        generation: Generation,
        shutdown: &Shutdown,
    ) -> Result<Option<PartitionState<D::State>>, ProcessorError> {
        let restoring = match self.partitions.take_restoring(partition, generation) {
            Some(restoring) => restoring,
            None => self.spawn_restore(partition, shutdown),
        };
        tokio::select! {
            () = shutdown.clone().wait() => Ok(None),
            joined = restoring.join() => joined.unwrap_or_else(|error| {
                Err(self.restorer.read_error(partition, format!("the restore task failed: {error}")))
            }),
        }
    }

    /// Writes a snapshot of the partition once enough commands settled
    /// since the last one.
    pub(super) async fn maybe_snapshot(&mut self, partition: i32, generation: Generation) {
        let key = self.restorer.snapshot_key(partition);
        let Some(state) = self.partitions.usable(partition, generation) else {
            return;
        };
        let entries = (state.log.aggregate_count() + state.log.settled_count()) as u64;
        let scaled = self.options.snapshot_scales_with_state.then_some(entries);
        if !snapshot_due(
            state.settled_since_snapshot,
            self.options.snapshot_every_commands,
            scaled,
        ) {
            return;
        }
        let newest = state.log.next_offset;
        // Begun and written are both logged and counted: the fault suite
        // freezes the processor between the two to kill it mid-snapshot.
        metrics()
            .snapshots_started
            .with_label_values(&[self.restorer.events.as_str()])
            .inc();
        let topic = self.restorer.events.as_str();
        tracing::info!(
            topic,
            partition,
            offset = newest,
            "writing aggregate snapshot"
        );
        if let Some(horizon) = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|now| now.as_millis() as i64 - self.options.dedupe_horizon_ms)
        {
            state.log.forget_settled_before(horizon);
        }
        let bytes = match serde_json::to_vec(&state.log) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(%error, topic, partition, offset = newest, "aggregate snapshot not written: cannot serialise it");
                return;
            }
        };
        state.settled_since_snapshot = 0;
        let row = StoredRow {
            position: newest,
            value: bytes,
        };
        // A failed snapshot only lengthens the next restore: log, go on.
        match self.store.put(key, row).await {
            Ok(()) => {
                metrics()
                    .snapshots_written
                    .with_label_values(&[self.restorer.events.as_str()])
                    .inc();
                tracing::info!(
                    topic,
                    partition,
                    offset = newest,
                    "wrote aggregate snapshot"
                )
            }
            Err(error) => {
                tracing::warn!(%error, topic, partition, offset = newest, "aggregate snapshot not written")
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_log_fails_the_restore_only_while_the_broker_answers() {
        // Given a broker that answered all along, when no record comes:
        assert_eq!(after_silence(false, true), Silence::Fail);
        // Given an unreachable broker, or one that just came back after
        // failing reads: the silence is the outage's, waited out.
        assert_eq!(after_silence(false, false), Silence::WaitOutTheOutage);
        assert_eq!(after_silence(true, false), Silence::WaitOutTheOutage);
        assert_eq!(after_silence(true, true), Silence::WaitOutTheOutage);
    }

    #[test]
    fn a_snapshot_waits_for_the_interval_or_for_as_many_commands_as_the_state_holds() {
        // Given a small state, the configured interval decides.
        assert!(!snapshot_due(999, 1_000, Some(10)));
        assert!(snapshot_due(1_000, 1_000, Some(10)));
        // Given a state larger than the interval, it waits for as many
        // commands as the state holds entries.
        assert!(!snapshot_due(1_000, 1_000, Some(40_000)));
        assert!(!snapshot_due(39_999, 1_000, Some(40_000)));
        assert!(snapshot_due(40_000, 1_000, Some(40_000)));
        // Not scaled, the interval alone decides, whatever the state.
        assert!(snapshot_due(1_000, 1_000, None));
    }

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

    fn fingerprint() -> LogFingerprint {
        LogFingerprint {
            offset: 41,
            event_id: "0b8c6f0e-5d3a-5a4e-9a57-3f0e2c1d9b11".to_owned(),
        }
    }

    #[test]
    fn the_snapshot_s_own_record_at_its_offset_lets_the_fold_continue() {
        let expected = fingerprint();
        let found = Found::Record(Some(expected.event_id.clone()));
        assert!(check_fingerprint("orders.events", 4, &expected, Some(found)).is_ok());
    }

    #[test]
    fn a_replaced_log_at_least_as_long_as_the_snapshot_is_refused_loudly() {
        let expected = fingerprint();
        let other = Found::Record(Some("5c1d2b9e-0000-4000-8000-000000000001".to_owned()));
        let error = check_fingerprint("orders.events", 4, &expected, Some(other)).unwrap_err();
        assert!(!error.is_transient());
        assert!(matches!(
            &error,
            ProcessorError::SnapshotOfAnotherLog {
                partition: 4,
                offset: 41,
                expected_event_id,
                ..
            } if *expected_event_id == expected.event_id
        ));
        assert_eq!(
            error.to_string(),
            "the snapshot of orders.events/4 folded event 0b8c6f0e-5d3a-5a4e-9a57-3f0e2c1d9b11 at offset 41 \
             but the log holds event 5c1d2b9e-0000-4000-8000-000000000001 there: the log was replaced"
        );
        // No record there at all: a marker or an aborted record of the new log.
        for found in [Some(Found::NextAt(43)), None, Some(Found::Record(None))] {
            let error = check_fingerprint("orders.events", 4, &expected, found).unwrap_err();
            assert!(
                matches!(
                    error,
                    ProcessorError::SnapshotOfAnotherLog { offset: 41, .. }
                ),
                "{error}"
            );
            assert!(
                error.to_string().contains("the log was replaced"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_snapshot_written_before_fingerprints_still_restores() {
        let old = r#"{"partition":2,"next_offset":7,"aggregates":{"a":{"state":3,"version":3}},"settled":{}}"#;
        let log: PartitionLog<u64> = serde_json::from_str(old).unwrap();
        assert_eq!((log.partition, log.next_offset), (2, 7));
        assert_eq!(log.last_folded(), None);
        assert_eq!(log.aggregate("a").version, 3);
        // Written again, it round-trips (with the field, now null).
        let again: PartitionLog<u64> =
            serde_json::from_slice(&serde_json::to_vec(&log).unwrap()).unwrap();
        assert_eq!(again, log);
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
