//! The projector: folds an events topic into store rows.
//!
//! A projection is pure: given a record, its log position and the current
//! rows it asked for, it returns row upserts. The loop does the I/O: read
//! rows (all of a batch's at once, concurrently; then through an in-batch
//! overlay so a batch sees its own writes), write
//! the batch with the partition checkpoints in one store write, then store
//! the consumer offsets. Redelivery re-applies records whose positions the
//! rows already reflect: the store's position guard makes that a no-op, so
//! a replay yields byte-identical rows.
//!
//! **The store decides where a projection resumes**, not the group offset.
//! A checkpoint is written in the same atomic store write as the rows it
//! covers, so it can never disagree with them; the group offset is
//! committed separately and later, by another system, and can run ahead of
//! the rows (rows restored from an older backup, a store wiped or swapped
//! while the group stays: resuming there would skip records for good) or
//! behind them (a crash between the store write and the commit, an offset
//! reset: only wasted re-projection). So on assignment the projector reads
//! its checkpoints and assigns the partitions at them itself; a partition
//! without a checkpoint has no rows in this store and starts at the log's
//! beginning. The group offset is still committed, for lag monitoring.

use std::collections::HashMap;
use std::sync::Arc;

use foldline_contracts::record::WireError;
use foldline_eventsourcing::gate::Admission;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::codec::{Codec, Decoded};
use crate::config::KafkaConfig;
use crate::dlq::{DeadLetterError, DeadLetters, Screened};
use crate::kafka::{group_consumer_config, producer_config, store_next_offset};
use crate::metrics::{count_ignored, metrics};
use crate::processor::assignment::{
    assign_at, close, poll, RebalanceEvent, RebalanceEvents, StartAt,
};
use crate::processor::retry;
use crate::shutdown::Shutdown;
use crate::store::{Checkpoint, RowKey, Store, StoreError, StoredRow, WriteBatch};

/// The rows one record writes.
type Upserts = Vec<(RowKey, StoredRow)>;

/// How many row reads one batch keeps in flight against the store.
const CONCURRENT_READS: usize = 32;

/// Current rows a projection asked for; `None` when absent.
pub type CurrentRows = HashMap<RowKey, Option<StoredRow>>;

/// A fold of an events topic into rows.
///
/// Domains do not implement this directly: they write a
/// [`DomainProjection`](crate::gated::DomainProjection) and
/// [`GatedProjection`](crate::gated::GatedProjection) adds the gate.
pub trait Projection: Send + Sync + 'static {
    type Record: Send + Sync + 'static;

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, WireError>;
    /// Reads a record off the message itself, its value left undecoded:
    /// for folds of topics whose values are not ours to decode (a
    /// dead-letter topic holds poison by definition). `None`, the default,
    /// means decode the value and call [`Projection::parse_record`]; an
    /// error parks the record like any other poison.
    fn parse_raw(&self, _message: &OwnedMessage) -> Option<Result<Self::Record, WireError>> {
        None
    }
    /// The rows `project` needs to see for `record`.
    fn rows_to_read(&self, record: &Self::Record) -> Vec<RowKey>;
    /// The rows `project` needs to see for `record` read from `partition`:
    /// by default [`Projection::rows_to_read`]. Rows keyed by an aggregate
    /// need no partition (an aggregate lives in one); rows that a partition
    /// of the topic owns, such as counters summing many aggregates, do.
    fn rows_to_read_at(&self, record: &Self::Record, _partition: i32) -> Vec<RowKey> {
        self.rows_to_read(record)
    }
    /// The version gate's verdict on `record`, given the rows of
    /// [`Projection::rows_to_read_at`], for the projector's counters;
    /// `None` for a projection without a gate.
    fn admission(&self, _record: &Self::Record, _current: &CurrentRows) -> Option<Admission> {
        None
    }

    /// The upserts `record` at `partition`/`offset` causes. Pure.
    fn project(
        &self,
        record: &Self::Record,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError>;
}

/// A table held in memory, keyed like the store.
pub type MemoryTable = HashMap<RowKey, StoredRow>;

/// Applies one record to an in-memory table exactly as the loop applies it
/// to the store: read the rows the projection asks for, write its upserts
/// unless the table holds a row of a later or equal position. What replay
/// and audit tools (and tests) use to fold a log without a store.
pub fn apply_in_memory<P: Projection>(
    projection: &P,
    table: &mut MemoryTable,
    record: &P::Record,
    partition: i32,
    offset: i64,
) -> Result<(), ProjectionError> {
    let current: CurrentRows = projection
        .rows_to_read_at(record, partition)
        .into_iter()
        .map(|key| {
            let row = table.get(&key).cloned();
            (key, row)
        })
        .collect();
    for (key, row) in projection.project(record, partition, offset, &current)? {
        let newer_stored = table
            .get(&key)
            .is_some_and(|existing| existing.position >= row.position);
        if !newer_stored {
            table.insert(key, row);
        }
    }
    Ok(())
}

/// Why a projection cannot turn an admitted record into rows. Permanent:
/// skipping the record would leave the rows diverged from the log for good,
/// so the projector stops and says why instead.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("row of {table} cannot be read: {reason}")]
    UnreadableRow { table: &'static str, reason: String },
    #[error("row of {table} cannot be written: {reason}")]
    UnwritableRow { table: &'static str, reason: String },
}

#[derive(Clone, Debug)]
pub struct ProjectorOptions {
    /// Consumer group and checkpoint name.
    pub name: String,
    pub client_id: String,
    pub topic: String,
    pub dlq: String,
    pub max_batch: usize,
}

/// Why the projector stopped. Transient failures (a store or registry
/// outage, a broker hiccup) are retried inside the loop; these are not.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Permanent: the configuration does not make a client, or the consumer
    /// refuses the assignment the projector chose.
    #[error("cannot use kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Permanent: the store answers, but not with anything usable (corrupt).
    #[error("cannot use the projection store: {0}")]
    Store(#[from] StoreError),
    /// Permanent: a poison record can be neither parked nor skipped.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// Permanent: an admitted record does not turn into rows.
    #[error("cannot project {topic}/{partition} at offset {offset}: {source}")]
    Projection {
        topic: String,
        partition: i32,
        offset: i64,
        source: ProjectionError,
    },
}

impl ProjectorError {
    /// Always `false`: what is transient never leaves the loop.
    pub fn is_transient(&self) -> bool {
        false
    }
}

/// The highest position projected per partition, for read-your-writes waits.
#[derive(Clone, Debug)]
pub struct Watermarks {
    receiver: watch::Receiver<HashMap<i32, i64>>,
}

impl Watermarks {
    /// Waits until `partition` has projected `offset`, or `deadline` passes.
    pub async fn wait_for(
        &self,
        partition: i32,
        offset: i64,
        deadline: tokio::time::Instant,
    ) -> bool {
        let mut receiver = self.receiver.clone();
        let reached =
            |map: &HashMap<i32, i64>| map.get(&partition).is_some_and(|next| *next > offset);
        tokio::time::timeout_at(deadline, receiver.wait_for(reached))
            .await
            .is_ok_and(|result| result.is_ok())
    }
}

/// A projector's handle: its watermarks, known before it runs.
#[derive(Debug)]
pub struct ProjectorHandle {
    sender: watch::Sender<HashMap<i32, i64>>,
}

pub fn watermarks() -> (ProjectorHandle, Watermarks) {
    let (sender, receiver) = watch::channel(HashMap::new());
    (ProjectorHandle { sender }, Watermarks { receiver })
}

pub async fn run<P: Projection>(
    projection: Arc<P>,
    options: ProjectorOptions,
    kafka: &KafkaConfig,
    codec: Codec,
    store: Store,
    handle: ProjectorHandle,
    shutdown: Shutdown,
) -> Result<(), ProjectorError> {
    let span = tracing::info_span!("projector", projector = %options.name, topic = %options.topic);
    async move {
        let (context, mut rebalances) =
            RebalanceEvents::new(options.topic.clone(), StartAt::Chosen);
        let consumer: StreamConsumer<RebalanceEvents> =
            group_consumer_config(kafka, &options.client_id, &options.name)
                .create_with_context(context)?;
        consumer.subscribe(&[&options.topic])?;
        let producer: FutureProducer = producer_config(kafka, &options.client_id).create()?;
        let dead_letters = DeadLetters::new(producer, options.dlq.clone(), options.name.clone());
        let projector = Projector {
            projection,
            options,
            codec,
            store,
            dead_letters,
            handle,
        };
        tracing::info!("projector started");
        let stopped = projector
            .poll_and_project(&consumer, &mut rebalances, &shutdown)
            .await;
        close(consumer, "projector offsets", ()).await;
        // A failure is the caller's to report: it is returned, not logged.
        if stopped.is_ok() {
            tracing::info!("projector stopped");
        }
        stopped
    }
    .instrument(span)
    .await
}

struct Projector<P> {
    projection: Arc<P>,
    options: ProjectorOptions,
    codec: Codec,
    store: Store,
    dead_letters: DeadLetters,
    handle: ProjectorHandle,
}

impl<P: Projection> Projector<P> {
    async fn poll_and_project(
        &self,
        consumer: &StreamConsumer<RebalanceEvents>,
        rebalances: &mut mpsc::UnboundedReceiver<RebalanceEvent>,
        shutdown: &Shutdown,
    ) -> Result<(), ProjectorError> {
        loop {
            let Some(polled) = poll(consumer, rebalances, self.options.max_batch, shutdown).await
            else {
                return Ok(());
            };
            if let Some(assigned) = net_assignment(&polled.rebalances) {
                let Some(starts) = self.checkpoints(&assigned, shutdown).await? else {
                    return Ok(());
                };
                assign_at(consumer, &self.options.topic, &starts)?;
            }
            let batch: Vec<OwnedMessage> = polled
                .records
                .into_iter()
                .flat_map(|(_, messages)| messages)
                .collect();
            if batch.is_empty() {
                continue;
            }
            let span = tracing::info_span!("batch", records = batch.len());
            let Some(checkpoints) = self
                .project(&batch, shutdown)
                .instrument(span.clone())
                .await?
            else {
                return Ok(());
            };
            for checkpoint in &checkpoints {
                if let Err(error) = store_next_offset(
                    consumer,
                    &self.options.topic,
                    checkpoint.partition,
                    checkpoint.next_offset,
                ) {
                    span.in_scope(|| tracing::warn!(%error, partition = checkpoint.partition, "cannot store projector offset"));
                }
            }
            self.advance_watermarks(&checkpoints);
        }
    }

    /// Where each assigned partition resumes: its checkpoint, else the log
    /// start (see the module documentation). `None` on shutdown.
    async fn checkpoints(
        &self,
        partitions: &[i32],
        shutdown: &Shutdown,
    ) -> Result<Option<Vec<(i32, Offset)>>, ProjectorError> {
        let mut starts = Vec::with_capacity(partitions.len());
        let mut resumed = Vec::new();
        for &partition in partitions {
            let checkpoint = retry::until_settled(
                "read projection checkpoint",
                shutdown,
                || {
                    self.store
                        .checkpoint(&self.options.name, &self.options.topic, partition)
                },
                StoreError::is_transient,
            )
            .await;
            let start = match checkpoint {
                None => return Ok(None),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(Some(next_offset))) => {
                    resumed.push(Checkpoint {
                        projector: self.options.name.clone(),
                        topic: self.options.topic.clone(),
                        partition,
                        next_offset,
                    });
                    Offset::Offset(next_offset)
                }
                Some(Ok(None)) => Offset::Beginning,
            };
            tracing::info!(partition, start = ?start, "projection resumes where its store says");
            starts.push((partition, start));
        }
        // The rows up to a checkpoint are in the store already: waiters for
        // them need not wait for this projector to read anything.
        self.advance_watermarks(&resumed);
        Ok(Some(starts))
    }

    fn advance_watermarks(&self, checkpoints: &[Checkpoint]) {
        self.handle.sender.send_modify(|map| {
            for checkpoint in checkpoints {
                let next = map.entry(checkpoint.partition).or_insert(0);
                *next = (*next).max(checkpoint.next_offset);
            }
        });
    }

    /// Projects and writes one batch; returns the checkpoints written, or
    /// `None` when stopped mid-way (nothing is written then).
    async fn project(
        &self,
        batch: &[OwnedMessage],
        shutdown: &Shutdown,
    ) -> Result<Option<Vec<Checkpoint>>, ProjectorError> {
        let write = self.project_batch(batch, shutdown).await?;
        let Some((write, verdicts)) = write else {
            return Ok(None);
        };
        let checkpoints = write.checkpoints.clone();
        // Never skip: a store outage stalls the partition, it does not lose records.
        let written = retry::until_settled(
            "write projection batch",
            shutdown,
            || self.store.write(write.clone()),
            StoreError::is_transient,
        )
        .await;
        match written {
            None => Ok(None),
            Some(Ok(())) => {
                self.count(&verdicts);
                Ok(Some(checkpoints))
            }
            Some(Err(error)) => Err(error.into()),
        }
    }

    /// Counts a written batch's gate verdicts: records applied, and
    /// records the gate ignored (`foldline_gate_ignored_total`, reader
    /// `projector`: copies of settled commands, stale or foreign records).
    fn count(&self, verdicts: &[Admission]) {
        let topic = self.options.topic.as_str();
        for &admission in verdicts {
            match admission {
                Admission::Apply => metrics()
                    .projector_records_applied
                    .with_label_values(&[topic, self.options.name.as_str()])
                    .inc(),
                ignored => count_ignored(topic, "projector", ignored),
            }
        }
    }

    /// Projects one batch into a write, with the gate's verdict on each of
    /// its records (for the counters, once it is written); `None` when
    /// stopped mid-way.
    async fn project_batch(
        &self,
        batch: &[OwnedMessage],
        shutdown: &Shutdown,
    ) -> Result<Option<(WriteBatch, Vec<Admission>)>, ProjectorError> {
        // Screen every record first, so the rows the batch reads are known
        // up front and read from the store concurrently: one round trip's
        // latency per batch instead of one per record (a CQL read is a
        // network round trip). Nothing is written before the batch's one
        // store write, so screening ahead changes no outcome.
        let mut screened = Vec::with_capacity(batch.len());
        for message in batch {
            match self.screen(message, shutdown).await? {
                Screened::Stopped => return Ok(None),
                admitted_or_parked => screened.push((message, admitted_or_parked)),
            }
        }
        let mut wanted = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (message, screened) in &screened {
            if let Screened::Admitted(record) = screened {
                for key in self.projection.rows_to_read_at(record, message.partition()) {
                    if seen.insert(key.clone()) {
                        wanted.push(key);
                    }
                }
            }
        }
        let Some(before) = self.read_rows(wanted, shutdown).await? else {
            return Ok(None);
        };
        let mut overlay: CurrentRows = HashMap::new();
        let mut write = WriteBatch::default();
        let mut verdicts = Vec::new();
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        for (message, screened) in screened {
            next_offsets.insert(message.partition(), message.offset() + 1);
            let Screened::Admitted(record) = screened else {
                continue;
            };
            let span = tracing::debug_span!(
                "record",
                partition = message.partition(),
                offset = message.offset()
            );
            let (upserts, admission) =
                span.in_scope(|| self.project_record(message, &record, &overlay, &before))?;
            verdicts.extend(admission);
            for (key, row) in upserts {
                overlay.insert(key.clone(), Some(row.clone()));
                write.upserts.push((key, row));
            }
        }
        write.checkpoints = next_offsets
            .into_iter()
            .map(|(partition, next_offset)| Checkpoint {
                projector: self.options.name.clone(),
                topic: self.options.topic.clone(),
                partition,
                next_offset,
            })
            .collect();
        Ok(Some((write, verdicts)))
    }

    /// Decodes one record, parking poison in the dead-letter topic.
    async fn screen(
        &self,
        message: &OwnedMessage,
        shutdown: &Shutdown,
    ) -> Result<Screened<P::Record>, ProjectorError> {
        Ok(match self.projection.parse_raw(message) {
            Some(Ok(record)) => Screened::Admitted(record),
            Some(Err(error)) => {
                self.dead_letters
                    .reject(message, &error.to_string(), shutdown)
                    .await?
            }
            None => {
                self.dead_letters
                    .screen(
                        &self.codec,
                        message,
                        "event",
                        |decoded| self.projection.parse_record(decoded),
                        shutdown,
                    )
                    .await?
            }
        })
    }

    /// The store's rows at `keys`, read concurrently (at most
    /// [`CONCURRENT_READS`] at once), each retried while the store's error
    /// is transient; `None` when stopped.
    async fn read_rows(
        &self,
        keys: Vec<RowKey>,
        shutdown: &Shutdown,
    ) -> Result<Option<CurrentRows>, ProjectorError> {
        use futures::StreamExt;

        let mut reads = futures::stream::iter(keys)
            .map(|key| async move {
                let read = retry::until_settled(
                    "read projection row",
                    shutdown,
                    || self.store.get(key.clone()),
                    StoreError::is_transient,
                )
                .await;
                (key, read)
            })
            .buffer_unordered(CONCURRENT_READS);
        let mut rows = CurrentRows::new();
        while let Some((key, read)) = reads.next().await {
            match read {
                None => return Ok(None),
                Some(row) => {
                    rows.insert(key, row?);
                }
            }
        }
        Ok(Some(rows))
    }

    /// The upserts of one admitted record and the gate's verdict on it,
    /// from the rows the batch wrote so far (`overlay`) over the rows the
    /// store held before the batch (`before`).
    fn project_record(
        &self,
        message: &OwnedMessage,
        record: &P::Record,
        overlay: &CurrentRows,
        before: &CurrentRows,
    ) -> Result<(Upserts, Option<Admission>), ProjectorError> {
        let mut current = CurrentRows::new();
        for key in self.projection.rows_to_read_at(record, message.partition()) {
            let row = overlay
                .get(&key)
                .or_else(|| before.get(&key))
                .cloned()
                .flatten();
            current.insert(key, row);
        }
        let upserts = self
            .projection
            .project(record, message.partition(), message.offset(), &current)
            .map_err(|source| ProjectorError::Projection {
                topic: self.options.topic.clone(),
                partition: message.partition(),
                offset: message.offset(),
                source,
            })?;
        let admission = self.projection.admission(record, &current);
        Ok((upserts, admission))
    }
}

/// The partitions to assign after a round's rebalances, if the round
/// assigned any: the last assignment, less whatever a later revocation in
/// the same round took back (assigning those would resurrect partitions
/// the group has given to someone else).
fn net_assignment(rebalances: &[RebalanceEvent]) -> Option<Vec<i32>> {
    let mut assigned: Option<Vec<i32>> = None;
    for event in rebalances {
        match event {
            RebalanceEvent::Assigned(partitions) => {
                assigned
                    .get_or_insert_with(Vec::new)
                    .extend(partitions.iter().copied());
            }
            RebalanceEvent::Revoked(partitions) => {
                if let Some(assigned) = &mut assigned {
                    assigned.retain(|partition| !partitions.contains(partition));
                }
            }
        }
    }
    assigned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_after_an_assignment_takes_its_partitions_back() {
        assert_eq!(net_assignment(&[]), None);
        assert_eq!(
            net_assignment(&[RebalanceEvent::Revoked(vec![0, 1])]),
            None,
            "a revocation alone assigns nothing"
        );
        assert_eq!(
            net_assignment(&[
                RebalanceEvent::Revoked(vec![0, 1]),
                RebalanceEvent::Assigned(vec![1, 2]),
            ]),
            Some(vec![1, 2])
        );
        assert_eq!(
            net_assignment(&[
                RebalanceEvent::Assigned(vec![1, 2]),
                RebalanceEvent::Revoked(vec![2]),
            ]),
            Some(vec![1])
        );
    }
}
