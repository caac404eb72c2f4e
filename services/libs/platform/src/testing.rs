//! The replay harness of every domain's property test (feature `testing`,
//! for dev-dependencies): a partition's log in one thread, written the way
//! the processor writes it and read back the way every reader reads it.
//!
//! - commands are decided with [`decide_record`] against the live fold,
//!   a settled command id decides nothing (a redelivery);
//! - a zombie's copies ([`ReplayLog::duplicate`]), re-decisions of settled
//!   commands ([`ReplayLog::redecided`]), stale decisions of new ones
//!   ([`ReplayLog::stale`]) and forged records ([`ReplayLog::foreign`])
//!   are appended between them, as a foreign writer would;
//! - [`avro_round_trip`] sends a record through its `.avsc` to bytes and
//!   back; [`restore_at`] folds a prefix, keeps it as the processor keeps a
//!   snapshot (JSON), and folds the rest onto the restored value.
//!
//! A domain's test then says what the fold of the decoded log must equal
//! (the live fold, at every split) and what its projections must show.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::record::{CommandRecord, EventRecord};
use foldline_contracts::schema::by_full_name;
use foldline_eventsourcing::gate::Admission;

use crate::domain::{decide_record, DomainWire, LogRecord, StateOf, ValidCommand};
use crate::processor::PartitionLog;

/// A partition's log, its live fold, and every command decided into it.
pub struct ReplayLog<W: DomainWire> {
    wire: W,
    pub log: Vec<LogRecord<W>>,
    /// The processor's fold, kept while deciding.
    pub live: PartitionLog<StateOf<W>>,
    /// Every command decided (redeliveries of a settled one excluded).
    pub decided: Vec<ValidCommand<W::Commands>>,
    /// What the live fold answered for each record of `log`.
    pub admissions: Vec<Admission>,
}

impl<W: DomainWire> std::fmt::Debug for ReplayLog<W> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReplayLog")
            .field("records", &self.log.len())
            .field("decided", &self.decided.len())
            .field("admissions", &self.admissions)
            .finish_non_exhaustive()
    }
}

impl<W: DomainWire> ReplayLog<W>
where
    StateOf<W>: Clone + Default,
{
    pub fn new(wire: W) -> Self {
        Self {
            wire,
            log: Vec::new(),
            live: PartitionLog::empty(0),
            decided: Vec::new(),
            admissions: Vec::new(),
        }
    }

    /// Appends `record` at the log's end, folding it into the live state.
    pub fn append(&mut self, record: LogRecord<W>) -> Admission {
        let offset = self.log.len() as i64;
        let admission = self.live.fold(&self.wire, &record, offset);
        self.log.push(record);
        self.admissions.push(admission);
        admission
    }

    /// Decides `command` as the processor does; `None` when its id is
    /// settled already (a redelivery: the processor appends nothing).
    ///
    /// # Panics
    /// When the command's ids do not parse: generate valid commands.
    pub fn decide(&mut self, command: W::Commands) -> Option<Admission> {
        let command = match ValidCommand::validate(command) {
            Ok(command) => command,
            Err(error) => panic!("the test generated an invalid command: {error}"),
        };
        if self.live.settled(&command.command_id.to_string()).is_some() {
            return None;
        }
        let slot = self.live.aggregate(command.record.aggregate_id());
        let record = decide_record::<W>(&slot.state, slot.version, &command);
        self.decided.push(command);
        Some(self.append(record))
    }

    /// Appends an earlier record again (a producer retry, a zombie's copy).
    pub fn duplicate(&mut self, index: usize) -> Option<Admission> {
        let copy = self.log.get(index.checked_rem(self.log.len())?)?.clone();
        Some(self.append(copy))
    }

    /// Re-decides an earlier command against the empty stream (a zombie
    /// that never saw the log) and appends its decision: a copy of a
    /// settled command, whatever it decided.
    pub fn redecided(&mut self, index: usize) -> Option<Admission> {
        let command = self
            .decided
            .get(index.checked_rem(self.decided.len())?)?
            .clone();
        Some(self.stale(command.record))
    }

    /// Decides `command` against the empty stream, as a zombie that never
    /// saw the log would, and appends its decision (not counted as
    /// decided). Against an aggregate the log moved on, the gate must call
    /// it stale.
    ///
    /// # Panics
    /// When the command's ids do not parse.
    pub fn stale(&mut self, command: W::Commands) -> Admission {
        let command = match ValidCommand::validate(command) {
            Ok(command) => command,
            Err(error) => panic!("the test generated an invalid command: {error}"),
        };
        let stale = decide_record::<W>(&StateOf::<W>::default(), 0, &command);
        self.append(stale)
    }

    /// Appends a copy of an earlier record whose command id no decision of
    /// ours could carry (a forged writer).
    pub fn foreign(&mut self, index: usize) -> Option<Admission> {
        let original = self.log.get(index.checked_rem(self.log.len())?)?;
        let forged = forge_command_id(&original.wire, "forged-by-a-foreign-writer");
        let record = match LogRecord::from_wire(forged) {
            Ok(record) => record,
            Err(error) => panic!("a forged copy no longer reads back: {error}"),
        };
        Some(self.append(record))
    }

    /// The log as every reader gets it: each record through its schema.
    pub fn decoded(&self) -> Vec<LogRecord<W>> {
        self.log.iter().map(avro_round_trip).collect()
    }

    /// [`restore_at`] on this log's domain.
    pub fn restore_at(&self, log: &[LogRecord<W>], split: usize) -> PartitionLog<StateOf<W>> {
        restore_at(&self.wire, log, split)
    }
}

/// The metadata of a test's `n`-th command: its own id (from 1,000 on, clear
/// of the small ids tests give aggregates), one millisecond after the last.
pub fn command_metadata(n: u128) -> CommandMetadata {
    let id = uuid::Uuid::from_u128(1_000 + n).to_string();
    CommandMetadata {
        command_id: id.clone(),
        correlation_id: id,
        causation_id: None,
        issued_at: 1_700_000_000_000 + n as i64,
        issued_by: "test".to_owned(),
        traceparent: None,
    }
}

/// Folds `log[..split]`, keeps that fold as a snapshot (JSON, as the
/// processor stores it) and folds `log[split..]` onto the restored value.
///
/// # Panics
/// When the snapshot does not serialise or read back.
pub fn restore_at<W: DomainWire>(
    wire: &W,
    log: &[LogRecord<W>],
    split: usize,
) -> PartitionLog<StateOf<W>>
where
    StateOf<W>: Clone + Default,
{
    let split = split.min(log.len());
    let mut prefix = PartitionLog::empty(0);
    for (offset, record) in log[..split].iter().enumerate() {
        prefix.fold(wire, record, offset as i64);
    }
    let snapshot = serde_json::to_vec(&prefix).expect("a snapshot serialises");
    let mut restored: PartitionLog<StateOf<W>> =
        serde_json::from_slice(&snapshot).expect("a snapshot reads back");
    for (offset, record) in log.iter().enumerate().skip(split) {
        restored.fold(wire, record, offset as i64);
    }
    restored
}

/// `record` through its own `.avsc` to bytes and back.
///
/// # Panics
/// When the record does not fit its schema, or does not read back.
pub fn avro_round_trip<W: DomainWire>(record: &LogRecord<W>) -> LogRecord<W> {
    let name = record.wire.record_name();
    let bytes = write_bytes(name, record.wire.to_avro().expect("a record writes"));
    let decoded = read_bytes(name, &bytes);
    let wire = W::Events::from_avro(name, &decoded).expect("a record reads back");
    LogRecord::from_wire(wire).expect("a decoded record is the domain's")
}

fn schema(name: &str) -> Schema {
    let text = by_full_name(name)
        .unwrap_or_else(|| panic!("{name} has no schema"))
        .text;
    Schema::parse_str(text).unwrap_or_else(|error| panic!("{name}'s schema: {error}"))
}

fn write_bytes(name: &str, value: Value) -> Vec<u8> {
    let schema = schema(name);
    GenericDatumWriter::builder(&schema)
        .build()
        .and_then(|writer| writer.write_value_to_vec(value))
        .unwrap_or_else(|error| panic!("{name} does not fit its schema: {error}"))
}

fn read_bytes(name: &str, bytes: &[u8]) -> Value {
    let schema = schema(name);
    let mut reader = bytes;
    GenericDatumReader::builder(&schema)
        .build()
        .and_then(|datum| datum.read_value(&mut reader))
        .unwrap_or_else(|error| panic!("{name} does not read back: {error}"))
}

/// `record` with `metadata.command_id` replaced, through its Avro value.
fn forge_command_id<E: EventRecord>(record: &E, command_id: &str) -> E {
    let name = record.record_name();
    let Ok(Value::Record(mut fields)) = record.to_avro() else {
        panic!("{name} is not an Avro record");
    };
    for (field, value) in &mut fields {
        if field != "metadata" {
            continue;
        }
        if let Value::Record(metadata) = value {
            for (key, inner) in metadata.iter_mut() {
                if key == "command_id" {
                    *inner = Value::String(command_id.to_owned());
                }
            }
        }
    }
    E::from_avro(name, &Value::Record(fields)).expect("a forged record reads back")
}
