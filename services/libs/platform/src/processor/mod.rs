//! The command processor: decides commands into events without broker
//! transactions, with exactly-once effect. Read `design.md` beside this file
//! for the invariants, why each failure case is safe, and which file holds
//! what.

pub(crate) mod assignment;
mod log;
mod restore;
pub mod retry;
mod run;
mod settle;
mod transaction;

use std::fmt::Debug;
use std::sync::Arc;

use apache_avro::types::Value;
use foldline_contracts::envelope::{CommandRejected, EventMetadata};
use foldline_contracts::record::WireError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::assignment::Partitions;
pub use self::log::{AggregateSlot, LogFingerprint, PartitionLog};
use self::restore::Restorer;
pub use self::run::run;
use self::transaction::WriteMode;
use crate::codec::{Codec, Decoded};
use crate::dlq::{DeadLetterError, DeadLetters};
pub use crate::headers::record_headers;
use crate::store::Store;

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
    /// `processor.snapshot_scales_with_state`.
    pub snapshot_scales_with_state: bool,
    pub max_batch: usize,
    /// How long a settled command id is remembered (the commands topic's retention).
    pub dedupe_horizon_ms: i64,
    /// This replica's stable name, for its `transactional.id`
    /// (`processor.instance_id`); `None`: a fresh one per start.
    pub instance_id: Option<String>,
}

/// Why the processor stopped. Everything transient inside a batch is
/// retried; these are what is left for an operator or a supervisor.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Permanent: the configuration does not make a client.
    #[error("cannot create kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Permanent: records the fold needs are gone.
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
    /// Permanent: the log's stable end stayed behind what was folded: the
    /// log was replaced by a shorter one, or a transaction on it hangs (its
    /// markers lost, so the last stable offset never moves past it).
    #[error(
        "the snapshot of {topic}/{partition} is at offset {snapshot} but the log's stable end stays at \
         {log_end}: the log was replaced, or a transaction on it hangs (look with `kafka-transactions.sh \
         find-hanging`)"
    )]
    SnapshotAheadOfLog {
        topic: String,
        partition: i32,
        snapshot: i64,
        log_end: i64,
    },
    /// Permanent: the log holds another record where the snapshot's last
    /// folded record was (the log was replaced by one at least as long).
    #[error(
        "the snapshot of {topic}/{partition} folded event {expected_event_id} at offset {offset} but the \
         log holds {found} there: the log was replaced"
    )]
    SnapshotOfAnotherLog {
        topic: String,
        partition: i32,
        offset: i64,
        expected_event_id: String,
        found: String,
    },
    /// Transient: the events partition could not be read within the
    /// restore's bounds; a restarted processor may well succeed.
    #[error("cannot read {topic}/{partition}: {reason}")]
    Read {
        topic: String,
        partition: i32,
        reason: String,
    },
    /// Permanent: a record can be neither parked nor skipped.
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    /// Permanent: `kafka.transactions = "on"` and the broker refuses
    /// transactions (not supported, not authorised).
    #[error("cannot initialise kafka transactions: {0}")]
    Transactions(String),
    /// Permanent: the broker's authorizer refuses this principal (an ACL
    /// is missing). Retrying cannot grant it: the processor stops, loudly,
    /// and its supervisor's restart backoff paces the retries.
    #[error(
        "kafka refused access to {resource} (authorization failed: {reason}); grant the \
         principal its ACLs, then restart the processor"
    )]
    NotAuthorized { resource: String, reason: String },
}

impl ProcessorError {
    /// Whether restarting the processor can get past this.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Read { .. })
    }
}

/// The processor's I/O handles and the state of the partitions it owns.
/// Its methods live by concern in `settle.rs` and `restore.rs`.
struct Processor<D: CommandDomain> {
    domain: Arc<D>,
    topics: ProcessorTopics,
    options: ProcessorOptions,
    codec: Codec,
    store: Store,
    /// Shared with the restores, which run on tasks of their own.
    restorer: Arc<Restorer<D>>,
    /// The producer of events and outcomes, idempotent or transactional.
    writes: WriteMode,
    dead_letters: DeadLetters,
    partitions: Partitions<D::State>,
    /// Batches of a round that did not settle, for the next round.
    carried: Vec<settle::Batch<D::Command>>,
    /// Rounds in a row that did not settle (the backoff's step); reset by
    /// one that does.
    resync_attempts: usize,
    /// When the carried batches are due again, even if no record comes.
    resync_at: Option<tokio::time::Instant>,
}
