//! The projector: folds an events topic into store rows.
//!
//! A projection is pure: given a record, its log position and the current
//! rows it asked for, it returns row upserts. The loop does the I/O: read
//! rows (through an in-batch overlay so a batch sees its own writes), write
//! the batch with the partition checkpoints in one store write, then store
//! the consumer offsets. Redelivery re-applies records whose positions the
//! rows already reflect: the store's position guard makes that a no-op, so
//! a replay yields byte-identical rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use foldline_contracts::record::WireError;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tokio::sync::watch;

use crate::codec::{Codec, CodecError, Decoded};
use crate::config::KafkaConfig;
use crate::dlq::DeadLetters;
use crate::kafka::{
    close_off_the_runtime, commit_stored_offsets, group_consumer_config, producer_config,
    store_next_offset,
};
use crate::shutdown::Shutdown;
use crate::store::{Checkpoint, RowKey, Store, StoreError, StoredRow, WriteBatch};

/// Current rows a projection asked for; `None` when absent.
pub type CurrentRows = HashMap<RowKey, Option<StoredRow>>;

/// A fold of an events topic into rows. Domains do not implement this
/// directly: they write a [`DomainProjection`](crate::gated::DomainProjection)
/// and [`GatedProjection`](crate::gated::GatedProjection) adds the gate.
pub trait Projection: Send + Sync + 'static {
    type Record: Send + Sync + 'static;

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, WireError>;
    /// The rows `project` needs to see for `record`.
    fn rows_to_read(&self, record: &Self::Record) -> Vec<RowKey>;
    /// The upserts `record` at `partition`/`offset` causes. Pure.
    fn project(
        &self,
        record: &Self::Record,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError>;
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

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("cannot create kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot project {topic}/{partition} at offset {offset}: {source}")]
    Projection {
        topic: String,
        partition: i32,
        offset: i64,
        source: ProjectionError,
    },
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
    let consumer: StreamConsumer =
        group_consumer_config(kafka, &options.client_id, &options.name).create()?;
    consumer.subscribe(&[&options.topic])?;
    let producer: FutureProducer = producer_config(kafka, &options.client_id).create()?;
    let dead_letters = DeadLetters::new(producer, options.dlq.clone(), options.name.clone());
    tracing::info!(projector = %options.name, topic = %options.topic, "projector started");
    loop {
        let first = tokio::select! {
            () = shutdown.clone().wait() => break,
            received = consumer.recv() => received,
        };
        let mut batch = match first {
            Ok(message) => vec![message.detach()],
            Err(error) => {
                tracing::warn!(%error, "projector consumer error");
                continue;
            }
        };
        while batch.len() < options.max_batch {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => batch.push(message.detach()),
                _ => break,
            }
        }
        let Some(write) = project_batch(
            projection.as_ref(),
            &options,
            &codec,
            &store,
            &dead_letters,
            &batch,
            &shutdown,
        )
        .await?
        else {
            break;
        };
        let checkpoints = write.checkpoints.clone();
        let mut delay = Duration::from_millis(20);
        // Never skip: a store outage stalls the partition, it does not lose records.
        loop {
            match store.write(write.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    if shutdown.is_triggered() {
                        return Ok(());
                    }
                    tracing::warn!(%error, projector = %options.name, "cannot write projection batch, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        for checkpoint in &checkpoints {
            if let Err(error) = store_next_offset(
                &consumer,
                &options.topic,
                checkpoint.partition,
                checkpoint.next_offset,
            ) {
                tracing::warn!(%error, partition = checkpoint.partition, "cannot store projector offset");
            }
        }
        handle.sender.send_modify(|map| {
            for checkpoint in &checkpoints {
                let next = map.entry(checkpoint.partition).or_insert(0);
                *next = (*next).max(checkpoint.next_offset);
            }
        });
    }
    close_off_the_runtime(move || {
        commit_stored_offsets(&consumer, "projector offsets");
        drop(consumer);
    })
    .await;
    tracing::info!(projector = %options.name, "projector stopped");
    Ok(())
}

/// Projects one batch into a write; `None` when stopped mid-way.
async fn project_batch<P: Projection>(
    projection: &P,
    options: &ProjectorOptions,
    codec: &Codec,
    store: &Store,
    dead_letters: &DeadLetters,
    batch: &[OwnedMessage],
    shutdown: &Shutdown,
) -> Result<Option<WriteBatch>, ProjectorError> {
    let mut overlay: CurrentRows = HashMap::new();
    let mut write = WriteBatch::default();
    let mut next_offsets: HashMap<i32, i64> = HashMap::new();
    for message in batch {
        next_offsets.insert(message.partition(), message.offset() + 1);
        let Some(read) = read_record(projection, codec, dead_letters, message, shutdown).await
        else {
            return Ok(None);
        };
        let Some(record) = read else {
            continue;
        };
        let mut current = CurrentRows::new();
        for key in projection.rows_to_read(&record) {
            let row = match overlay.get(&key) {
                Some(row) => row.clone(),
                None => match read_row(store, &key, shutdown).await {
                    Some(row) => row,
                    None => return Ok(None),
                },
            };
            current.insert(key, row);
        }
        let upserts = projection
            .project(&record, message.partition(), message.offset(), &current)
            .map_err(|source| ProjectorError::Projection {
                topic: options.topic.clone(),
                partition: message.partition(),
                offset: message.offset(),
                source,
            })?;
        for (key, row) in upserts {
            overlay.insert(key.clone(), Some(row.clone()));
            write.upserts.push((key, row));
        }
    }
    write.checkpoints = next_offsets
        .into_iter()
        .map(|(partition, next_offset)| Checkpoint {
            projector: options.name.clone(),
            topic: options.topic.clone(),
            partition,
            next_offset,
        })
        .collect();
    Ok(Some(write))
}

async fn read_row(store: &Store, key: &RowKey, shutdown: &Shutdown) -> Option<Option<StoredRow>> {
    let mut delay = Duration::from_millis(20);
    loop {
        match store.get(key.clone()).await {
            Ok(row) => return Some(row),
            Err(error) => {
                if shutdown.is_triggered() {
                    return None;
                }
                let transient = StoreError::is_transient(&error);
                tracing::warn!(%error, transient, "cannot read projection row, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// `Some(None)`: poison, parked. `None`: stopped.
async fn read_record<P: Projection>(
    projection: &P,
    codec: &Codec,
    dead_letters: &DeadLetters,
    message: &OwnedMessage,
    shutdown: &Shutdown,
) -> Option<Option<P::Record>> {
    let Some(payload) = message.payload() else {
        dead_letters
            .park(message, "event record has no value")
            .await;
        return Some(None);
    };
    let mut delay = Duration::from_millis(20);
    let decoded = loop {
        match codec.decode(payload).await {
            Ok(decoded) => break decoded,
            Err(error) if CodecError::is_transient(&error) => {
                if shutdown.is_triggered() {
                    return None;
                }
                tracing::warn!(%error, "registry unavailable while projecting, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                dead_letters.park(message, &error.to_string()).await;
                return Some(None);
            }
        }
    };
    match projection.parse_record(decoded) {
        Ok(record) => Some(Some(record)),
        Err(error) => {
            dead_letters.park(message, &error.to_string()).await;
            Some(None)
        }
    }
}
