//! The domain seam proven with a second domain that exists only here: a
//! counter. Everything a real domain writes is below — a pure decider, its
//! wire records, one `DomainWire`, one `DomainProjection`, one
//! `DomainService` — and nothing else: deciding, stamping, the gate, the
//! outcome table and the fold all come from the platform.

use foldline_contracts::envelope::{CommandMetadata, EventMetadata};
use foldline_contracts::record::{EventRecord, WireError};
use foldline_contracts::topology::Topology;
use foldline_eventsourcing::gate::Admission;
use foldline_eventsourcing::{Decider, DecisionContext, Rejection, RejectionKind};
use serde::{Deserialize, Serialize};

use crate::domain::{decide_record, DomainWire, LogRecord, ValidCommand};
use crate::gated::{
    json_row, outcome_key, read_json_row, Admitted, CommandOutcomeRow, DomainProjection,
    GatedProjection,
};
use crate::processor::{CommandDomain, PartitionLog};
use crate::projector::{apply_in_memory, CurrentRows, MemoryTable, ProjectionError};
use crate::service::DomainService;
use crate::store::{RowKey, StoredRow};

// ---- the pure domain

struct Counter;

#[derive(Clone, Debug, PartialEq)]
struct Add(i64);

#[derive(Clone, Debug, PartialEq)]
struct Added(i64);

#[derive(Clone, Debug, PartialEq)]
struct WouldOverflow;

impl std::fmt::Display for WouldOverflow {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("the counter would pass 100")
    }
}

impl Rejection for WouldOverflow {
    fn code(&self) -> &'static str {
        "would_overflow"
    }
    fn kind(&self) -> RejectionKind {
        RejectionKind::Conflict
    }
}

impl Decider for Counter {
    type State = i64;
    type Command = Add;
    type Event = Added;
    type Rejection = WouldOverflow;

    fn decide(state: &i64, command: &Add, _: &DecisionContext) -> Result<Added, WouldOverflow> {
        if state + command.0 > 100 {
            return Err(WouldOverflow);
        }
        Ok(Added(command.0))
    }

    fn evolve(state: i64, event: &Added) -> i64 {
        state + event.0
    }
}

// ---- its wire records

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct AddToCounter {
    metadata: CommandMetadata,
    counter_id: String,
    amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CounterIncreased {
    metadata: EventMetadata,
    counter_id: String,
    amount: i64,
}

foldline_contracts::command_union! {
    pub enum CounterCommands aggregate_id = counter_id {
        Add(AddToCounter) = "foldline.counters.AddToCounter",
    }
}

foldline_contracts::event_union! {
    pub enum CounterEvents {
        Increased(CounterIncreased) = "foldline.counters.CounterIncreased",
    }
}

// ---- the declaration

#[derive(Default)]
struct CounterWire;

impl DomainWire for CounterWire {
    type Decider = Counter;
    type Commands = CounterCommands;
    type Events = CounterEvents;

    fn command_from_wire(record: &CounterCommands) -> Result<Add, WireError> {
        let CounterCommands::Add(add) = record;
        if add.amount < 0 {
            return Err(WireError::InvalidField {
                field: "amount",
                reason: "must not be negative".to_owned(),
            });
        }
        Ok(Add(add.amount))
    }

    fn event_to_wire(event: &Added, metadata: EventMetadata) -> CounterEvents {
        CounterEvents::Increased(CounterIncreased {
            counter_id: metadata.aggregate_id.clone(),
            metadata,
            amount: event.0,
        })
    }

    fn event_from_wire(record: &CounterEvents) -> Result<Added, WireError> {
        match record {
            CounterEvents::Increased(increased) => Ok(Added(increased.amount)),
            CounterEvents::CommandRejected(_) => Err(WireError::UnknownRecord {
                record: record.record_name().to_owned(),
            }),
        }
    }
}

#[derive(Default)]
struct CounterProjection;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CounterRow {
    value: i64,
}

fn counter_key(counter_id: &str) -> RowKey {
    RowKey::new("counter_by_id", counter_id.as_bytes().to_vec(), Vec::new())
}

impl DomainProjection for CounterProjection {
    type Wire = CounterWire;
    const NAME: &'static str = "counters";

    fn rows_to_read(&self, _event: &Added, metadata: &EventMetadata) -> Vec<RowKey> {
        vec![counter_key(&metadata.aggregate_id)]
    }

    fn project(
        &self,
        admitted: &Admitted<'_, CounterWire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let key = counter_key(&admitted.metadata.aggregate_id);
        let row = read_json_row::<CounterRow>(&key, current)?.unwrap_or_default();
        let next = CounterRow {
            value: row.value + admitted.event.0,
        };
        Ok(vec![(
            key,
            json_row("counter_by_id", admitted.offset, &next)?,
        )])
    }
}

fn service() -> DomainService {
    DomainService::new::<CounterWire>("counters").with_projection::<CounterProjection>()
}

// ---- the proof

const COUNTER: &str = "counter-1";

fn add(command: u128, amount: i64) -> ValidCommand<CounterCommands> {
    let id = uuid::Uuid::from_u128(command).to_string();
    ValidCommand::validate(CounterCommands::Add(AddToCounter {
        metadata: CommandMetadata {
            command_id: id.clone(),
            correlation_id: id,
            causation_id: None,
            issued_at: 1_000,
            issued_by: "test".to_owned(),
            traceparent: None,
        },
        counter_id: COUNTER.to_owned(),
        amount,
    }))
    .expect("valid test command")
}

/// Folds `records` like the processor's restore and like a projector.
fn fold_both(records: &[LogRecord<CounterWire>]) -> (PartitionLog<i64>, MemoryTable) {
    let mut log = PartitionLog::<i64>::empty(0);
    let projection = GatedProjection::new("counters", CounterProjection);
    let mut rows = MemoryTable::new();
    for (offset, record) in records.iter().enumerate() {
        log.fold(&CounterWire, record, offset as i64);
        apply_in_memory(&projection, &mut rows, record, 0, offset as i64)
            .expect("rows are writable");
    }
    (log, rows)
}

#[test]
fn a_second_domain_decides_folds_and_projects_through_the_seam_alone() {
    let first = decide_record::<CounterWire>(&0, 0, &add(1, 60));
    let state = CounterWire.evolve(0, &first);
    let refused = decide_record::<CounterWire>(&state, 1, &add(2, 50));
    let rejected = refused.wire.rejection().expect("50 more would pass 100");
    assert_eq!(
        (rejected.code.as_str(), rejected.kind.as_str()),
        ("would_overflow", "conflict")
    );
    let invalid = decide_record::<CounterWire>(&state, 1, &add(3, -1));
    assert_eq!(
        invalid
            .wire
            .rejection()
            .map(|rejected| rejected.code.as_str()),
        Some(crate::domain::INVALID_COMMAND)
    );
    let second = decide_record::<CounterWire>(&state, 1, &add(4, 40));
    // A duplicate and a stale copy (decided against version 0) never count.
    let stale = decide_record::<CounterWire>(&0, 0, &add(5, 1));
    let history = [first.clone(), first, refused, invalid, second, stale];

    let (log, rows) = fold_both(&history);
    let slot = log.aggregate(COUNTER);
    assert_eq!((slot.state, slot.version), (100, 2));
    let row: CounterRow = serde_json::from_slice(&rows[&counter_key(COUNTER)].value).unwrap();
    assert_eq!(
        row.value, 100,
        "the projection agrees with the processor's fold"
    );
    for command in [1, 2, 3, 4] {
        let command_id = uuid::Uuid::from_u128(command).to_string();
        let settled = log.settled(&command_id).expect("settled in the log");
        let projected: CommandOutcomeRow =
            serde_json::from_slice(&rows[&outcome_key(&command_id)].value).unwrap();
        assert_eq!(&projected.outcome, settled, "one gate, one outcome");
        assert_eq!(projected.domain, "counters");
    }
    let stale_id = uuid::Uuid::from_u128(5).to_string();
    assert!(log.settled(&stale_id).is_none());
    assert!(!rows.contains_key(&outcome_key(&stale_id)));
}

#[test]
fn a_record_that_is_no_decision_of_ours_is_foreign_to_every_reader() {
    let mut record = decide_record::<CounterWire>(&0, 0, &add(6, 1));
    let CounterEvents::Increased(increased) = &mut record.wire else {
        panic!("an increase");
    };
    increased.metadata.command_id = "forged".to_owned();
    let mut log = PartitionLog::<i64>::empty(0);
    assert_eq!(log.fold(&CounterWire, &record, 0), Admission::Foreign);
    let (_, rows) = fold_both(&[record]);
    assert!(rows.is_empty(), "{rows:?}");
}

#[test]
fn the_declaration_checks_itself_against_the_topology() {
    let service = service();
    assert_eq!(service.projection_names().collect::<Vec<_>>(), ["counters"]);
    let orders_only = Topology::embedded().unwrap();
    assert!(service.check_against(&orders_only).is_err());
}

/// A second projection of the counter domain: the sum again, in its own table.
#[derive(Default)]
struct CounterEcho;

fn echo_key(counter_id: &str) -> RowKey {
    RowKey::new("echo_by_id", counter_id.as_bytes().to_vec(), Vec::new())
}

impl DomainProjection for CounterEcho {
    type Wire = CounterWire;
    const NAME: &'static str = "echo";

    fn rows_to_read(&self, _event: &Added, metadata: &EventMetadata) -> Vec<RowKey> {
        vec![echo_key(&metadata.aggregate_id)]
    }

    fn project(
        &self,
        admitted: &Admitted<'_, CounterWire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let key = echo_key(&admitted.metadata.aggregate_id);
        let row = read_json_row::<CounterRow>(&key, current)?.unwrap_or_default();
        let next = CounterRow {
            value: row.value + admitted.event.0,
        };
        Ok(vec![(key, json_row("echo_by_id", admitted.offset, &next)?)])
    }
}

#[test]
fn two_projections_sharing_a_store_each_see_every_admitted_event() {
    let first = decide_record::<CounterWire>(&0, 0, &add(11, 60));
    let second = decide_record::<CounterWire>(&60, 1, &add(12, 40));
    let history = [first.clone(), first, second];
    let primary = GatedProjection::new("counters", CounterProjection);
    let secondary = GatedProjection::secondary("counters", CounterEcho);
    let mut rows = MemoryTable::new();
    // The secondary projector runs ahead of the primary one, in one store.
    for (offset, record) in history.iter().enumerate() {
        apply_in_memory(&secondary, &mut rows, record, 0, offset as i64).unwrap();
    }
    for (offset, record) in history.iter().enumerate() {
        apply_in_memory(&primary, &mut rows, record, 0, offset as i64).unwrap();
    }
    let value = |key: &RowKey| {
        serde_json::from_slice::<CounterRow>(&rows[key].value)
            .unwrap()
            .value
    };
    assert_eq!(value(&counter_key(COUNTER)), 100);
    assert_eq!(value(&echo_key(COUNTER)), 100);
    let command_id = uuid::Uuid::from_u128(12).to_string();
    let outcome: CommandOutcomeRow =
        serde_json::from_slice(&rows[&outcome_key(&command_id)].value).unwrap();
    assert_eq!(
        outcome.outcome.aggregate_version, 2,
        "the public outcome is the primary's"
    );
}
