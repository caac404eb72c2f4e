//! [`GatedProjection`]: a domain projection behind the version gate.
//!
//! The gate is the processor's (`crate::gate`): a record counts iff its
//! command is not settled earlier in the log and its aggregate is still at
//! the version the record was decided against. `GatedProjection` owns the
//! two tables that rule needs and that every domain shares:
//! - `aggregate_versions` (domain + aggregate id, —): the version the log
//!   established for each aggregate;
//! - `command_outcomes` (command id, —): how the log settled each command,
//!   which is also what `GET /v1/commands/{id}` serves.
//!
//! A [`DomainProjection`] therefore only ever sees admitted events, in log
//! order, and turns them into its own rows. Duplicates, stale decisions and
//! zombie writes never reach it.

use foldline_contracts::envelope::{CommandOutcome, EventMetadata};
use foldline_contracts::record::{EventRecord, WireError};
use foldline_eventsourcing::gate::{Admission, StreamVersion};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::Decoded;
use crate::domain::{DomainWire, EventOf, LogRecord};
use crate::gate;
use crate::projector::{CurrentRows, Projection, ProjectionError};
use crate::store::{RowKey, StoredRow};

pub const AGGREGATE_VERSIONS: &str = "aggregate_versions";
pub const COMMAND_OUTCOMES: &str = "command_outcomes";

/// A domain's read model: admitted events in, rows out. Pure.
pub trait DomainProjection: Send + Sync + 'static {
    type Wire: DomainWire;
    /// The projection's name in the topology; its projector group is the
    /// one declared with this `projection`.
    const NAME: &'static str;

    /// The rows [`DomainProjection::project`] needs to see for `event`.
    fn rows_to_read(&self, event: &EventOf<Self::Wire>, metadata: &EventMetadata) -> Vec<RowKey>;

    /// The upserts one admitted event causes. Rows carry `admitted.offset`
    /// as their position (see [`json_row`]).
    fn project(
        &self,
        admitted: &Admitted<'_, Self::Wire>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError>;
}

/// An event the gate admitted, with where it sits in the log.
#[derive(Debug)]
pub struct Admitted<'a, W: DomainWire> {
    pub event: &'a EventOf<W>,
    pub metadata: &'a EventMetadata,
    /// The domain whose log holds it.
    pub domain: &'a str,
    /// The Avro full name of its wire record.
    pub record_name: &'static str,
    /// The aggregate's version after this event.
    pub version: u64,
    pub partition: i32,
    pub offset: i64,
}

/// `command_outcomes` row: how the log settled a command, in any domain —
/// the outcome the processor publishes, and the domain it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcomeRow {
    pub domain: String,
    #[serde(flatten)]
    pub outcome: CommandOutcome,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct VersionRow {
    version: u64,
}

pub fn outcome_key(command_id: &str) -> RowKey {
    RowKey::new(COMMAND_OUTCOMES, command_id.as_bytes().to_vec(), Vec::new())
}

pub fn version_key(domain: &str, aggregate_id: &str) -> RowKey {
    let mut partition = domain.as_bytes().to_vec();
    partition.push(0);
    partition.extend_from_slice(aggregate_id.as_bytes());
    RowKey::new(AGGREGATE_VERSIONS, partition, Vec::new())
}

/// A row holding `value` as JSON at log position `position`.
pub fn json_row<T: Serialize>(
    table: &'static str,
    position: i64,
    value: &T,
) -> Result<StoredRow, ProjectionError> {
    serde_json::to_vec(value)
        .map(|value| StoredRow { position, value })
        .map_err(|error| ProjectionError::UnwritableRow {
            table,
            reason: error.to_string(),
        })
}

/// Reads a JSON row, `None` when absent.
pub fn read_json_row<T: DeserializeOwned>(
    key: &RowKey,
    current: &CurrentRows,
) -> Result<Option<T>, ProjectionError> {
    match current.get(key) {
        Some(Some(row)) => serde_json::from_slice(&row.value)
            .map(Some)
            .map_err(|error| ProjectionError::UnreadableRow {
                table: key.table,
                reason: error.to_string(),
            }),
        _ => Ok(None),
    }
}

/// Rows of commands a secondary projection has seen settled (its own gate
/// state; `command_outcomes` stays the primary projection's).
pub const SETTLED_COMMANDS: &str = "settled_commands";

fn settled_key(namespace: &str, command_id: &str) -> RowKey {
    let mut partition = namespace.as_bytes().to_vec();
    partition.push(0);
    partition.extend_from_slice(command_id.as_bytes());
    RowKey::new(SETTLED_COMMANDS, partition, Vec::new())
}

/// A domain projection with the gate and the outcome table in front.
///
/// Several projections of one domain may share a store, each with its own
/// projector at its own pace, so each keeps its own gate state: the
/// domain's primary projection under the domain's name (and it alone
/// writes the public `command_outcomes`), every other one under
/// `<domain>/<projection>`. Shared gate rows would let the faster projector
/// advance a version the slower one then judges its event against, and the
/// slower one would skip it.
#[derive(Debug)]
pub struct GatedProjection<P> {
    gate: Gate,
    inner: P,
}

impl<P: DomainProjection> GatedProjection<P> {
    /// The domain's primary projection. `domain` namespaces the aggregate
    /// versions (aggregate ids are only unique within a domain).
    pub fn new(domain: impl Into<String>, inner: P) -> Self {
        Self {
            gate: Gate::primary(domain),
            inner,
        }
    }

    /// Another projection of the domain, beside its primary one.
    pub fn secondary(domain: impl Into<String>, inner: P) -> Self {
        Self {
            gate: Gate::secondary(domain, P::NAME),
            inner,
        }
    }
}

/// The gate state one projection keeps (see [`GatedProjection`]): which
/// domain's log it reads, the namespace of its rows, whether it writes the
/// public `command_outcomes`.
#[derive(Clone, Debug)]
struct Gate {
    domain: String,
    /// Namespaces this projection's gate rows.
    namespace: String,
    /// Whether this is the domain's primary projection.
    primary: bool,
}

impl Gate {
    fn primary(domain: impl Into<String>) -> Self {
        let domain = domain.into();
        Self {
            namespace: domain.clone(),
            domain,
            primary: true,
        }
    }

    fn secondary(domain: impl Into<String>, projection: &str) -> Self {
        let domain = domain.into();
        Self {
            namespace: format!("{domain}/{projection}"),
            domain,
            primary: false,
        }
    }

    fn settled_row_key(&self, command_id: &str) -> RowKey {
        match self.primary {
            true => outcome_key(command_id),
            false => settled_key(&self.namespace, command_id),
        }
    }

    fn rows_to_read(&self, metadata: &EventMetadata) -> Vec<RowKey> {
        vec![
            version_key(&self.namespace, &metadata.aggregate_id),
            self.settled_row_key(&metadata.command_id),
        ]
    }

    /// The gate's verdict on a record, given the rows of [`Gate::rows_to_read`].
    fn judge<R: EventRecord>(
        &self,
        wire: &R,
        current: &CurrentRows,
    ) -> Result<gate::Verdict, ProjectionError> {
        let metadata = wire.metadata();
        let version_key = version_key(&self.namespace, &metadata.aggregate_id);
        let outcome_key = self.settled_row_key(&metadata.command_id);
        let current_version = read_json_row::<VersionRow>(&version_key, current)?
            .unwrap_or_default()
            .version;
        let already_settled = matches!(current.get(&outcome_key), Some(Some(_)));
        Ok(gate::judge(
            metadata,
            wire.rejection(),
            StreamVersion(current_version),
            already_settled,
        ))
    }

    /// The gate's upserts for a record, and `admitted`'s for an admitted
    /// event (called with the aggregate's version after it); nothing for a
    /// record the gate ignores.
    fn project<R: EventRecord>(
        &self,
        wire: &R,
        is_event: bool,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
        admitted: impl FnOnce(u64) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError>,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let metadata = wire.metadata();
        let rejection = wire.rejection();
        let version_key = version_key(&self.namespace, &metadata.aggregate_id);
        let outcome_key = self.settled_row_key(&metadata.command_id);
        let verdict = self.judge(wire, current)?;
        if verdict.admission != Admission::Apply {
            return Ok(Vec::new());
        }
        let mut upserts = Vec::new();
        if is_event {
            upserts.extend(admitted(verdict.version_after.0)?);
            let version = VersionRow {
                version: verdict.version_after.0,
            };
            upserts.push((version_key, json_row(AGGREGATE_VERSIONS, offset, &version)?));
        }
        let outcome = CommandOutcomeRow {
            domain: self.domain.clone(),
            outcome: gate::outcome(
                metadata,
                rejection,
                wire.record_name(),
                verdict.version_after,
                partition,
                offset,
            ),
        };
        let table = match self.primary {
            true => COMMAND_OUTCOMES,
            false => SETTLED_COMMANDS,
        };
        upserts.push((outcome_key, json_row(table, offset, &outcome)?));
        Ok(upserts)
    }
}

impl<P: DomainProjection> Projection for GatedProjection<P> {
    type Record = LogRecord<P::Wire>;

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, WireError> {
        LogRecord::parse(&decoded)
    }

    fn rows_to_read(&self, record: &Self::Record) -> Vec<RowKey> {
        let metadata = record.wire.metadata();
        let mut keys = self.gate.rows_to_read(metadata);
        if let Some(event) = &record.event {
            keys.extend(self.inner.rows_to_read(event, metadata));
        }
        keys
    }

    fn admission(&self, record: &Self::Record, current: &CurrentRows) -> Option<Admission> {
        self.gate
            .judge(&record.wire, current)
            .ok()
            .map(|verdict| verdict.admission)
    }

    fn project(
        &self,
        record: &Self::Record,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        self.gate.project(
            &record.wire,
            record.event.is_some(),
            partition,
            offset,
            current,
            |version| match &record.event {
                Some(event) => self.inner.project(
                    &Admitted {
                        event,
                        metadata: record.wire.metadata(),
                        domain: &self.gate.domain,
                        record_name: record.wire.record_name(),
                        version,
                        partition,
                        offset,
                    },
                    current,
                ),
                None => Ok(Vec::new()),
            },
        )
    }
}

/// A read model of some domain's events topic built from its `contracts`
/// records alone: how one domain folds another's log (a read model of
/// users in orders, a process manager reacting to payments) without
/// importing its crate. Pure, like [`DomainProjection`].
pub trait RecordProjection: Send + Sync + 'static {
    /// The union of the source topic's records.
    type Events: EventRecord;
    /// The projection's name in the topology (of the domain that owns it).
    const NAME: &'static str;
    /// The domain whose events topic it folds.
    const SOURCE: &'static str;

    /// The rows [`RecordProjection::project`] needs to see for `record`.
    fn rows_to_read(&self, record: &Self::Events) -> Vec<RowKey>;

    /// The upserts one admitted event (never a rejection) causes.
    fn project(
        &self,
        admitted: &AdmittedRecord<'_, Self::Events>,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError>;

    /// The upserts one admitted rejection (the record settling a refused
    /// command, counted once like an event) causes: none, unless the
    /// projection reacts to refusals (a process manager may). Reads no
    /// rows; `admitted.version` is the version the command was refused at.
    fn project_rejection(
        &self,
        _admitted: &AdmittedRecord<'_, Self::Events>,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        Ok(Vec::new())
    }
}

/// A wire event the gate admitted, with where it sits in its log.
#[derive(Debug)]
pub struct AdmittedRecord<'a, E> {
    pub record: &'a E,
    /// The aggregate's version after this event.
    pub version: u64,
    pub partition: i32,
    pub offset: i64,
}

/// A [`RecordProjection`] behind the gate of the log it reads. Its gate
/// rows are its own (`<owner>/<projection>`), like a secondary projection's:
/// it never settles commands for the source domain's readers.
#[derive(Debug)]
pub struct GatedRecords<P> {
    gate: Gate,
    inner: P,
}

impl<P: RecordProjection> GatedRecords<P> {
    /// `owner` is the domain that declares the projection.
    pub fn new(owner: &str, inner: P) -> Self {
        Self {
            gate: Gate {
                domain: P::SOURCE.to_owned(),
                namespace: format!("{owner}/{}", P::NAME),
                primary: false,
            },
            inner,
        }
    }
}

impl<P: RecordProjection> Projection for GatedRecords<P> {
    type Record = P::Events;

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, WireError> {
        P::Events::from_avro(&decoded.record_name, &decoded.value)
    }

    fn rows_to_read(&self, record: &Self::Record) -> Vec<RowKey> {
        let mut keys = self.gate.rows_to_read(record.metadata());
        if record.rejection().is_none() {
            keys.extend(self.inner.rows_to_read(record));
        }
        keys
    }

    fn admission(&self, record: &Self::Record, current: &CurrentRows) -> Option<Admission> {
        self.gate
            .judge(record, current)
            .ok()
            .map(|verdict| verdict.admission)
    }

    fn project(
        &self,
        record: &Self::Record,
        partition: i32,
        offset: i64,
        current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        let is_event = record.rejection().is_none();
        let mut upserts =
            self.gate
                .project(record, is_event, partition, offset, current, |version| {
                    self.inner.project(
                        &AdmittedRecord {
                            record,
                            version,
                            partition,
                            offset,
                        },
                        current,
                    )
                })?;
        // The gate writes a settled row for every record it admits and
        // nothing for any other, so a rejection with upserts was admitted.
        if !is_event && !upserts.is_empty() {
            let version = u64::try_from(record.metadata().aggregate_version).unwrap_or(0);
            upserts.extend(self.inner.project_rejection(&AdmittedRecord {
                record,
                version,
                partition,
                offset,
            })?);
        }
        Ok(upserts)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_row_that_cannot_be_serialised_is_an_error_not_a_dropped_row() {
        // JSON object keys must be strings: a map keyed by bytes cannot be encoded.
        let unencodable: HashMap<Vec<u8>, u8> = HashMap::from([(vec![1], 1)]);
        assert!(matches!(
            json_row("order_by_id", 3, &unencodable),
            Err(ProjectionError::UnwritableRow {
                table: "order_by_id",
                ..
            })
        ));
        let row = json_row("order_by_id", 3, &VersionRow { version: 2 }).unwrap();
        assert_eq!(row.position, 3);
    }

    #[test]
    fn projections_of_one_domain_sharing_a_store_keep_their_own_gate() {
        assert_ne!(
            settled_key("users/follow_ups", "c"),
            outcome_key("c"),
            "a secondary projection never marks a command settled for the primary"
        );
        assert_ne!(settled_key("a/b", "c"), settled_key("a", "b/c"));
    }

    #[test]
    fn version_keys_are_namespaced_by_domain() {
        assert_ne!(version_key("orders", "a"), version_key("payments", "a"));
        // The separator keeps "ab"+"c" apart from "a"+"bc".
        assert_ne!(version_key("ab", "c"), version_key("a", "bc"));
    }
}
