//! The pure part of the processor: a partition's log folded through the
//! version gate. No I/O; the loop feeds it records and asks it questions.

use std::collections::HashMap;

use foldline_contracts::envelope::CommandOutcome;
use foldline_eventsourcing::gate::{Admission, StreamVersion};
use serde::{Deserialize, Serialize};

use super::CommandDomain;
use crate::gate;

/// One aggregate as the log established it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateSlot<S> {
    pub state: S,
    pub version: u64,
}

/// The last record a fold took in: its offset and event id. A snapshot
/// carries it so a restore can read that record back and recognise the log
/// the snapshot was folded from (design.md, *State and restore*): a log
/// replaced by another at least as long would otherwise be folded on as if
/// it were the old one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFingerprint {
    pub offset: i64,
    pub event_id: String,
}

/// The state of one events partition: every aggregate on it, every command
/// it settled, and the offset right after the last record folded.
///
/// Invariant: the content is exactly the fold of the partition's records
/// `[0, next_offset)`. Speculative folds that later fail verification make
/// the whole value invalid; the loop then drops it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionLog<S> {
    pub partition: i32,
    pub next_offset: i64,
    aggregates: HashMap<String, AggregateSlot<S>>,
    settled: HashMap<String, CommandOutcome>,
    /// `None` before the first record, and in snapshots written before
    /// fingerprints existed (they restore unchecked).
    #[serde(default)]
    last_folded: Option<LogFingerprint>,
}

impl<S: Clone + Default> PartitionLog<S> {
    pub fn empty(partition: i32) -> Self {
        Self {
            partition,
            next_offset: 0,
            aggregates: HashMap::new(),
            settled: HashMap::new(),
            last_folded: None,
        }
    }

    /// The last record folded, to check the log against on restore.
    pub fn last_folded(&self) -> Option<&LogFingerprint> {
        self.last_folded.as_ref()
    }

    pub fn aggregate(&self, aggregate_id: &str) -> AggregateSlot<S> {
        self.aggregates
            .get(aggregate_id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn settled(&self, command_id: &str) -> Option<&CommandOutcome> {
        self.settled.get(command_id)
    }

    pub fn aggregate_count(&self) -> usize {
        self.aggregates.len()
    }

    pub fn settled_count(&self) -> usize {
        self.settled.len()
    }

    /// Folds the record at `offset` through the gate; returns the verdict.
    pub fn fold<D: CommandDomain<State = S>>(
        &mut self,
        domain: &D,
        record: &D::Record,
        offset: i64,
    ) -> Admission {
        self.next_offset = offset + 1;
        let metadata = domain.record_metadata(record);
        self.last_folded = Some(LogFingerprint {
            offset,
            event_id: metadata.event_id.clone(),
        });
        let rejection = domain.rejection(record);
        let current = StreamVersion(
            self.aggregates
                .get(&metadata.aggregate_id)
                .map(|slot| slot.version)
                .unwrap_or(0),
        );
        let already_settled = self.settled.contains_key(&metadata.command_id);
        let verdict = gate::judge(metadata, rejection, current, already_settled);
        if verdict.admission != Admission::Apply {
            return verdict.admission;
        }
        if rejection.is_none() {
            let slot = self
                .aggregates
                .entry(metadata.aggregate_id.clone())
                .or_default();
            slot.state = domain.evolve(std::mem::take(&mut slot.state), record);
            slot.version = verdict.version_after.0;
        }
        self.settled.insert(
            metadata.command_id.clone(),
            gate::outcome(
                metadata,
                rejection,
                domain.record_name(record),
                verdict.version_after,
                self.partition,
                offset,
            ),
        );
        Admission::Apply
    }

    /// Forgets settled commands decided before `horizon` (ms): older commands
    /// are past the commands topic's retention and cannot be redelivered.
    pub fn forget_settled_before(&mut self, horizon: i64) {
        self.settled
            .retain(|_, outcome| outcome.decided_at >= horizon);
    }
}
