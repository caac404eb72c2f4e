//! Follow-ups: what an admitted event obliges someone to do next, outside
//! its own aggregate (issue a command to another aggregate, destroy a key).
//! There is no cross-aggregate transaction, so a follow-up is made durable
//! before it is done, and done until it is done:
//!
//! 1. [`Outbox`] is a projection: for each event the gate admits, the
//!    domain's pure [`Reactor`] names its follow-ups, and they are written to
//!    the `outbox` table in the same atomic store write as the projector's
//!    checkpoint. A crash before that write re-projects the event; after it,
//!    the follow-up exists. Duplicates and stale decisions never reach the
//!    reactor (the gate), so a zombie's loser record causes nothing.
//! 2. [`relay`] reads each partition's outbox in log order from its cursor
//!    (the `outbox_cursors` table), performs every follow-up with the
//!    platform's retry policy, and only then advances the cursor. A crash in
//!    between performs the follow-up again, so every follow-up must be
//!    idempotent: commands carry an id derived from the causing event
//!    ([`follow_up_metadata`]), which the target's processor de-duplicates;
//!    other effects are idempotent by construction. Each partition is
//!    relayed on its own; [`relay_in_flight`] performs several follow-ups
//!    of a partition at once (started in log order) and still advances the
//!    cursor only past a contiguous run of done ones.
//!
//! The relay runs beside the outbox projector (same process, same store).
//! Rows of a partition are written in offset order and atomically, so a
//! cursor per partition never skips one.
//!
//! A [`ProcessManager`] is the same mechanism across domains: it reads
//! another domain's events topic through its `contracts` records (a
//! [`RecordProjection`], gated like any projection), and its follow-ups
//! are commands to some domain's commands topic. A follow-up may be
//! deferred ([`Performer::not_before`]): a timer. Its row is in the store
//! from the moment the event is projected, so a restarted relay finds it
//! and fires it when due (at once, if the restart came later).

use std::fmt::Debug;
use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use foldline_contracts::envelope::{CommandMetadata, EventMetadata};
use foldline_contracts::record::CommandRecord;
use foldline_eventsourcing::{CommandId, EventId};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;

use futures::StreamExt;

use crate::codec::Codec;
use crate::domain::{DomainWire, EventOf};
use foldline_contracts::record::EventRecord;

use crate::gated::{json_row, Admitted, AdmittedRecord, DomainProjection, RecordProjection};
use crate::headers::command_headers;
use crate::processor::retry::{produce_is_transient, until_settled};
use crate::projector::{CurrentRows, ProjectionError};
use crate::shutdown::Shutdown;
use crate::store::{RowKey, Store, StoreError, StoredRow};

pub const OUTBOX: &str = "outbox";
pub const OUTBOX_CURSORS: &str = "outbox_cursors";
/// Rows a relay reads per partition per round.
const RELAY_BATCH: usize = 200;
/// How long an idle relay waits before looking again.
const RELAY_IDLE: Duration = Duration::from_millis(10);
/// The longest a relay holding timers sleeps before looking for new rows
/// of its other partitions.
const RELAY_TIMER_POLL: Duration = Duration::from_millis(100);

/// A domain's pure reaction table: the follow-ups an admitted event causes.
pub trait Reactor: Default + Send + Sync + 'static {
    type Wire: DomainWire;
    type FollowUp: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// The projection's name in the topology.
    const NAME: &'static str;

    fn react(&self, admitted: &Admitted<'_, Self::Wire>) -> Vec<Self::FollowUp>;
}

/// The outbox projection of a [`Reactor`].
#[derive(Debug, Default)]
pub struct Outbox<R>(pub R);

fn outbox_partition(name: &str, partition: i32) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn outbox_key(name: &str, partition: i32, offset: i64, index: usize) -> RowKey {
    let mut clustering = offset.max(0).to_be_bytes().to_vec();
    clustering.extend_from_slice(&(index as u32).to_be_bytes());
    RowKey::new(OUTBOX, outbox_partition(name, partition), clustering)
}

fn cursor_key(name: &str, partition: i32) -> RowKey {
    RowKey::new(
        OUTBOX_CURSORS,
        outbox_partition(name, partition),
        Vec::new(),
    )
}

impl<R: Reactor> DomainProjection for Outbox<R> {
    type Wire = R::Wire;
    const NAME: &'static str = R::NAME;

    fn rows_to_read(&self, _event: &EventOf<R::Wire>, _metadata: &EventMetadata) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        admitted: &Admitted<'_, R::Wire>,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        outbox_rows(
            R::NAME,
            admitted.partition,
            admitted.offset,
            &self.0.react(admitted),
        )
    }
}

/// A process manager's pure reaction table: the follow-ups an admitted
/// event of the domain `SOURCE` causes (commands to this or another
/// domain, timers). It lives in the domain that declares it and reads the
/// source's records from `contracts`, so no domain crate imports another.
pub trait ProcessManager: Default + Send + Sync + 'static {
    /// The union of the source's events topic.
    type Events: EventRecord;
    type FollowUp: Serialize + DeserializeOwned + Debug + Send + Sync + 'static;
    /// The projection's name in the owner's topology entry.
    const NAME: &'static str;
    /// The domain whose events it reacts to.
    const SOURCE: &'static str;

    /// Whether [`ProcessManager::react`] also sees the admitted rejections
    /// of the source's log (a refused command, counted once like an event:
    /// a refusal can oblige a follow-up too, e.g. giving back a payment
    /// the order refused).
    const REACTS_TO_REJECTIONS: bool = false;

    /// Never called for a duplicate or a stale decision (the gate keeps
    /// those away), nor for a rejection unless
    /// [`ProcessManager::REACTS_TO_REJECTIONS`].
    fn react(&self, event: &Self::Events) -> Vec<Self::FollowUp>;
}

/// The outbox projection of a [`ProcessManager`] (run it with
/// `DomainService::with_record_projection`, its relay with [`relay_named`]).
#[derive(Debug, Default)]
pub struct Reactions<M>(pub M);

impl<M: ProcessManager> RecordProjection for Reactions<M> {
    type Events = M::Events;
    const NAME: &'static str = M::NAME;
    const SOURCE: &'static str = M::SOURCE;

    fn rows_to_read(&self, _record: &M::Events) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        admitted: &AdmittedRecord<'_, M::Events>,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        outbox_rows(
            M::NAME,
            admitted.partition,
            admitted.offset,
            &self.0.react(admitted.record),
        )
    }

    fn project_rejection(
        &self,
        admitted: &AdmittedRecord<'_, M::Events>,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        match M::REACTS_TO_REJECTIONS {
            true => outbox_rows(
                M::NAME,
                admitted.partition,
                admitted.offset,
                &self.0.react(admitted.record),
            ),
            false => Ok(Vec::new()),
        }
    }
}

fn outbox_rows<F: Serialize>(
    name: &str,
    partition: i32,
    offset: i64,
    follow_ups: &[F],
) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
    follow_ups
        .iter()
        .enumerate()
        .map(|(index, follow_up)| {
            Ok((
                outbox_key(name, partition, offset, index),
                json_row(OUTBOX, offset, follow_up)?,
            ))
        })
        .collect()
}

/// Why a follow-up failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    #[error("follow-up failed, will retry: {0}")]
    Transient(String),
    #[error("follow-up cannot be performed: {0}")]
    Permanent(String),
}

impl FollowUpError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

impl From<StoreError> for FollowUpError {
    fn from(error: StoreError) -> Self {
        match error.is_transient() {
            true => Self::Transient(error.to_string()),
            false => Self::Permanent(error.to_string()),
        }
    }
}

/// Why a relay stopped. An operator must look: the follow-up at the
/// cursor is not done, and nothing after it will be until it is.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("follow-up of {outbox} partition {partition} failed for good: {reason}")]
    FollowUp {
        outbox: &'static str,
        partition: i32,
        reason: String,
    },
    #[error("outbox row of {outbox} partition {partition} is unreadable: {reason}")]
    UnreadableRow {
        outbox: &'static str,
        partition: i32,
        reason: String,
    },
    #[error("the store failed for good: {0}")]
    Store(StoreError),
}

/// Performs one follow-up. Must be idempotent: a crash between performing
/// and advancing the cursor performs it again.
pub trait Performer<F>: Send + Sync {
    fn perform(&self, follow_up: &F) -> impl Future<Output = Result<(), FollowUpError>> + Send;

    /// When a deferred follow-up (a timer) is due, in Unix milliseconds.
    /// The relay holds its partition's cursor until then, so only timers
    /// due no earlier than it wait behind it when timers of one outbox
    /// are due in log order (a fixed delay after each event's time).
    fn not_before(&self, _follow_up: &F) -> Option<i64> {
        None
    }
}

fn unix_millis_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn settle<T>(
    what: &'static str,
    shutdown: &Shutdown,
    attempt: impl FnMut() -> futures::future::BoxFuture<'static, Result<T, StoreError>>,
) -> Option<Result<T, RelayError>> {
    until_settled(what, shutdown, attempt, StoreError::is_transient)
        .await
        .map(|result| result.map_err(RelayError::Store))
}

/// Performs the follow-ups of `R`'s outbox in log order, per partition,
/// until shutdown.
pub async fn relay<R: Reactor, P: Performer<R::FollowUp>>(
    performer: P,
    store: Store,
    partitions: i32,
    shutdown: Shutdown,
) -> Result<(), RelayError> {
    relay_named::<R::FollowUp, P>(R::NAME, performer, store, partitions, shutdown).await
}

/// [`relay`], performing up to `in_flight` follow-ups of a partition at
/// once (see [`relay_named_in_flight`]).
pub async fn relay_in_flight<R: Reactor, P: Performer<R::FollowUp>>(
    performer: P,
    store: Store,
    partitions: i32,
    in_flight: NonZeroUsize,
    shutdown: Shutdown,
) -> Result<(), RelayError> {
    relay_named_in_flight::<R::FollowUp, P>(
        R::NAME,
        performer,
        store,
        partitions,
        in_flight,
        shutdown,
    )
    .await
}

/// Performs the follow-ups of the outbox `name` (a [`Reactor`]'s or a
/// [`ProcessManager`]'s) in log order, per partition of its source log,
/// one at a time per partition, until shutdown.
pub async fn relay_named<F, P>(
    name: &'static str,
    performer: P,
    store: Store,
    partitions: i32,
    shutdown: Shutdown,
) -> Result<(), RelayError>
where
    F: DeserializeOwned + Send + Sync,
    P: Performer<F>,
{
    relay_named_in_flight(
        name,
        performer,
        store,
        partitions,
        NonZeroUsize::MIN,
        shutdown,
    )
    .await
}

/// [`relay_named`] with up to `in_flight` follow-ups of each partition
/// performed at once. Each partition is relayed on its own (a slow
/// follow-up holds only its partition). Within one, follow-ups start in
/// log order and the cursor only ever moves past a contiguous run of done
/// ones: a follow-up done before an earlier one is still running is
/// performed again after a crash (performers are idempotent), never
/// skipped. A partition reads no more rows while `in_flight` of them are
/// not yet behind its cursor (backpressure).
pub async fn relay_named_in_flight<F, P>(
    name: &'static str,
    performer: P,
    store: Store,
    partitions: i32,
    in_flight: NonZeroUsize,
    shutdown: Shutdown,
) -> Result<(), RelayError>
where
    F: DeserializeOwned + Send + Sync,
    P: Performer<F>,
{
    let relays = (0..partitions).map(|partition| PartitionRelay {
        name,
        partition,
        performer: &performer,
        store: &store,
        in_flight: in_flight.get(),
        shutdown: &shutdown,
    });
    futures::future::try_join_all(relays.map(PartitionRelay::run))
        .await
        .map(|_| ())
}

/// One partition of an outbox, relayed.
struct PartitionRelay<'a, P> {
    name: &'static str,
    partition: i32,
    performer: &'a P,
    store: &'a Store,
    in_flight: usize,
    shutdown: &'a Shutdown,
}

/// What one round of a partition came to.
enum Round {
    /// Follow-ups were performed: look again at once.
    Performed,
    /// Nothing due: sleep, until the earliest held timer if there is one.
    Idle {
        next_due: Option<i64>,
    },
    Stopped,
}

impl<P> PartitionRelay<'_, P> {
    async fn run<F>(self) -> Result<(), RelayError>
    where
        F: DeserializeOwned + Send + Sync,
        P: Performer<F>,
    {
        loop {
            let next_due = match self.round::<F>().await? {
                Round::Performed => continue,
                Round::Stopped => return Ok(()),
                Round::Idle { next_due } => next_due,
            };
            // Idle: look again soon for new rows, or wake for the next timer.
            let idle = next_due
                .map(|due| u64::try_from(due - unix_millis_now()).unwrap_or(0))
                .map_or(RELAY_IDLE, |wait| {
                    RELAY_IDLE.max(Duration::from_millis(wait).min(RELAY_TIMER_POLL))
                });
            tokio::select! {
                () = self.shutdown.clone().wait() => return Ok(()),
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Reads a batch from the cursor and performs the due prefix of it.
    async fn round<F>(&self) -> Result<Round, RelayError>
    where
        F: DeserializeOwned + Send + Sync,
        P: Performer<F>,
    {
        let (name, partition) = (self.name, self.partition);
        let cursor = match settle("read an outbox cursor", self.shutdown, || {
            let store = self.store.clone();
            Box::pin(async move { store.get(cursor_key(name, partition)).await })
        })
        .await
        {
            None => return Ok(Round::Stopped),
            Some(result) => result?.map(|row| row.value),
        };
        let rows = match settle("read an outbox", self.shutdown, || {
            let (store, cursor) = (self.store.clone(), cursor.clone());
            Box::pin(async move {
                store
                    .scan(
                        OUTBOX,
                        outbox_partition(name, partition),
                        cursor,
                        RELAY_BATCH,
                    )
                    .await
            })
        })
        .await
        {
            None => return Ok(Round::Stopped),
            Some(result) => result?,
        };
        // The rows before the first timer not yet due (it holds the
        // cursor, so those behind it wait) or the first unreadable row
        // (reported once the rows before it are done).
        let mut due = Vec::new();
        let mut next_due = None;
        let mut unreadable = None;
        let now = unix_millis_now();
        for (clustering, row) in rows {
            let follow_up: F = match serde_json::from_slice(&row.value) {
                Ok(follow_up) => follow_up,
                Err(error) => {
                    unreadable = Some(RelayError::UnreadableRow {
                        outbox: name,
                        partition,
                        reason: error.to_string(),
                    });
                    break;
                }
            };
            if let Some(when) = self.performer.not_before(&follow_up) {
                if when > now {
                    next_due = Some(when);
                    break;
                }
            }
            due.push((clustering, follow_up));
        }
        let performed = due.len();
        let stopped = self.perform_in_order(due).await?;
        if let Some(error) = unreadable {
            return Err(error);
        }
        Ok(match (stopped, performed) {
            (true, _) => Round::Stopped,
            (false, 0) => Round::Idle { next_due },
            (false, _) => Round::Performed,
        })
    }

    /// Performs `due` (in log order, up to `in_flight` at once) and moves
    /// the cursor past each contiguous run of done ones, while the later
    /// ones keep running. Returns whether shutdown stopped it.
    async fn perform_in_order<F>(&self, due: Vec<(Vec<u8>, F)>) -> Result<bool, RelayError>
    where
        F: Send + Sync,
        P: Performer<F>,
    {
        let (name, partition) = (self.name, self.partition);
        let (done, mut done_rows) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let perform = async move {
            // `buffered` starts them in order, at most `in_flight` at once,
            // and yields them in order: each yield is the next row the
            // cursor may pass.
            let outcome = async {
                let mut settled = futures::stream::iter(due)
                    .map(|(clustering, follow_up)| async move {
                        let outcome = until_settled(
                            "perform a follow-up",
                            self.shutdown,
                            || self.performer.perform(&follow_up),
                            FollowUpError::is_transient,
                        )
                        .await;
                        (clustering, outcome)
                    })
                    .buffered(self.in_flight);
                while let Some((clustering, outcome)) = settled.next().await {
                    match outcome {
                        None => return Ok(true),
                        Some(Ok(())) => {
                            // The receiver lives as long as this future.
                            let _ = done.send(clustering);
                        }
                        Some(Err(error)) => {
                            return Err(RelayError::FollowUp {
                                outbox: name,
                                partition,
                                reason: error.to_string(),
                            })
                        }
                    }
                }
                Ok(false)
            }
            .await;
            // Ends the cursor's loop once the rows done so far are behind it.
            drop(done);
            outcome
        };
        // Advances the cursor beside the performing (polled together, so
        // the follow-ups in flight keep going during the store write), past
        // the latest done row each time.
        let advance = async {
            while let Some(mut clustering) = done_rows.recv().await {
                while let Ok(later) = done_rows.try_recv() {
                    clustering = later;
                }
                let advanced = settle("advance an outbox cursor", self.shutdown, || {
                    let (store, clustering) = (self.store.clone(), clustering.clone());
                    Box::pin(async move {
                        store
                            .put(
                                cursor_key(name, partition),
                                StoredRow {
                                    position: 0,
                                    value: clustering,
                                },
                            )
                            .await
                    })
                })
                .await;
                match advanced {
                    None => return Ok(true),
                    Some(result) => result?,
                }
            }
            Ok(false)
        };
        let (performed, advanced) = tokio::join!(perform, advance);
        // Rows done before a failure are behind the cursor: report the
        // failure only once they are.
        let advanced = advanced?;
        Ok(performed? || advanced)
    }
}

/// The metadata of a command a follow-up issues: its id derives from the
/// causing event (`step` names which of its follow-ups), so performing it
/// twice issues the same command, which its processor de-duplicates; it
/// keeps the event's correlation id and names the event as its cause; its
/// clock is the event's, so re-deciding it is deterministic too.
pub fn follow_up_metadata(cause: &EventMetadata, step: &str, issued_by: &str) -> CommandMetadata {
    let command_id = match cause.event_id.parse::<EventId>() {
        Ok(event_id) => CommandId::caused_by(event_id, step),
        // The gate admits no record without a uuid event id; stay
        // deterministic rather than fail if one ever gets here.
        Err(_) => CommandId::from_idempotency_key(&cause.event_id, step),
    };
    CommandMetadata {
        command_id: command_id.to_string(),
        correlation_id: cause.correlation_id.clone(),
        causation_id: Some(cause.event_id.clone()),
        issued_at: cause.occurred_at,
        issued_by: issued_by.to_owned(),
        traceparent: cause.traceparent.clone(),
    }
}

/// Reads one JSON row a performer consults (a read model the follow-up
/// depends on): a store outage is transient, an unreadable row permanent.
pub async fn read_json<T: DeserializeOwned>(
    store: &Store,
    key: RowKey,
) -> Result<Option<T>, FollowUpError> {
    let row = store.get(key.clone()).await.map_err(FollowUpError::from)?;
    let current = std::iter::once((key.clone(), row)).collect();
    crate::gated::read_json_row::<T>(&key, &current)
        .map_err(|error| FollowUpError::Permanent(error.to_string()))
}

/// Produces `command` to `topic`, keyed by its aggregate.
pub async fn send_command<C: CommandRecord>(
    producer: &FutureProducer,
    codec: &Codec,
    topic: &str,
    command: &C,
) -> Result<(), FollowUpError> {
    let value = command
        .to_avro()
        .map_err(|error| FollowUpError::Permanent(error.to_string()))?;
    let bytes = codec
        .encode_value(topic, command.record_name(), value)
        .await
        .map_err(|error| match error.is_transient() {
            true => FollowUpError::Transient(error.to_string()),
            false => FollowUpError::Permanent(error.to_string()),
        })?;
    let record = FutureRecord::to(topic)
        .key(command.aggregate_id())
        .payload(&bytes)
        .headers(command_headers(command.metadata(), command.record_name()));
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map(|_| ())
        .map_err(|(error, _)| match produce_is_transient(&error) {
            true => FollowUpError::Transient(error.to_string()),
            false => FollowUpError::Permanent(error.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_rows_sort_in_log_order_within_a_partition() {
        let first = outbox_key("r", 3, 9, 1);
        let second = outbox_key("r", 3, 10, 0);
        assert_eq!(first.partition, second.partition);
        assert!(first.clustering < second.clustering);
        assert_ne!(outbox_key("r", 2, 9, 1).partition, first.partition);
        assert_ne!(outbox_partition("ab", 1), outbox_partition("a", 1));
    }

    #[test]
    fn follow_up_commands_are_derived_from_their_cause() {
        let cause = EventMetadata {
            event_id: EventId::decided_by(CommandId::from_idempotency_key("c", "k")).to_string(),
            aggregate_id: "a".to_owned(),
            aggregate_version: 1,
            command_id: "c".to_owned(),
            correlation_id: "corr".to_owned(),
            causation_id: "c".to_owned(),
            occurred_at: 42,
            traceparent: None,
        };
        let first = follow_up_metadata(&cause, "register", "relay");
        assert_eq!(first, follow_up_metadata(&cause, "register", "relay"));
        assert_ne!(
            first.command_id,
            follow_up_metadata(&cause, "release", "relay").command_id
        );
        assert_eq!(first.correlation_id, "corr");
        assert_eq!(first.causation_id.as_deref(), Some(cause.event_id.as_str()));
        assert_eq!(first.issued_at, 42);
    }

    /// Row 0 is held until rows 1 and 2 are done; rows 0 to 5 of one
    /// partition, three at a time.
    #[derive(Default)]
    struct HeldFirst {
        released: tokio::sync::Notify,
        was_released: std::sync::atomic::AtomicBool,
        started_before_release: std::sync::Mutex<Vec<u32>>,
        done: std::sync::Mutex<Vec<u32>>,
        done_signal: tokio::sync::Notify,
    }

    struct Held(std::sync::Arc<HeldFirst>);

    impl Performer<u32> for Held {
        async fn perform(&self, follow_up: &u32) -> Result<(), FollowUpError> {
            use std::sync::atomic::Ordering::SeqCst;
            let state = &self.0;
            if !state.was_released.load(SeqCst) {
                state
                    .started_before_release
                    .lock()
                    .unwrap()
                    .push(*follow_up);
            }
            if *follow_up == 0 {
                let released = state.released.notified();
                if !state.was_released.load(SeqCst) {
                    released.await;
                }
            }
            state.done.lock().unwrap().push(*follow_up);
            state.done_signal.notify_waiters();
            Ok(())
        }
    }

    async fn done_count_reaches(state: &HeldFirst, count: usize) {
        loop {
            let signal = state.done_signal.notified();
            if state.done.lock().unwrap().len() >= count {
                return;
            }
            signal.await;
        }
    }

    #[tokio::test]
    async fn a_relay_with_follow_ups_in_flight_never_moves_its_cursor_past_one_not_done() {
        let store = Store::in_memory();
        for offset in 0..6i64 {
            for (key, row) in outbox_rows("held", 0, offset, &[offset as u32]).unwrap() {
                store.put(key, row).await.unwrap();
            }
        }
        let state = std::sync::Arc::new(HeldFirst::default());
        let (trigger, shutdown) = crate::shutdown::channel();
        let relay = relay_named_in_flight::<u32, _>(
            "held",
            Held(std::sync::Arc::clone(&state)),
            store.clone(),
            1,
            NonZeroUsize::new(3).unwrap(),
            shutdown,
        );
        let last_row = outbox_key("held", 0, 5, 0).clustering;
        let test = async {
            done_count_reaches(&state, 2).await;
            assert_eq!(*state.done.lock().unwrap(), [1, 2]);
            assert_eq!(
                store.get(cursor_key("held", 0)).await.unwrap(),
                None,
                "row 0 is not done: the cursor stays before it"
            );
            state
                .was_released
                .store(true, std::sync::atomic::Ordering::SeqCst);
            state.released.notify_waiters();
            done_count_reaches(&state, 6).await;
            // The cursor is written beside the performing: wait for it.
            loop {
                let cursor = store.get(cursor_key("held", 0)).await.unwrap();
                if cursor.map(|row| row.value).as_ref() == Some(&last_row) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            trigger.trigger();
        };
        let (relayed, ()) =
            tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(relay, test) })
                .await
                .expect("the relay performs every row");
        relayed.unwrap();
        let mut done = state.done.lock().unwrap().clone();
        done.sort_unstable();
        assert_eq!(done, [0, 1, 2, 3, 4, 5], "each row once");
        assert_eq!(
            *state.started_before_release.lock().unwrap(),
            [0, 1, 2],
            "no more than three in flight: row 3 waits for row 0"
        );
    }
}
