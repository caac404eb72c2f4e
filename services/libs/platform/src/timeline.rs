//! The timeline: every admitted event of every domain, indexed by
//! correlation id, so the whole chain one request started (an order, its
//! payment, its refund) can be listed in causal order.
//!
//! [`Timeline<W>`] is a secondary projection any domain adds to itself
//! (`with_projection::<Timeline<MyWire>>()`, one projector group per
//! domain): it needs nothing of the domain but the metadata every record
//! carries. Each admitted event writes two rows:
//! - `timeline` (correlation id, event id): the entry;
//! - `timeline_aggregates` (domain + aggregate id, correlation id): which
//!   chains touched an aggregate, so an aggregate's timeline is found by
//!   its id even when later requests (a client's cancel) started chains of
//!   their own.
//!
//! Every row is keyed by its event, so projectors of different domains
//! writing one chain never write the same row (their positions, offsets
//! of different topics, are never compared).
//!
//! Causal order comes from the ids: an event's `causation_id` is the event
//! its command reacted to (a process manager's hop sets it) or, for a
//! client's command, the command itself. [`causal_order`] lists a cause
//! before everything it caused and, among events whose causes are listed,
//! the earliest first.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::marker::PhantomData;

use foldline_contracts::envelope::EventMetadata;
use foldline_contracts::record::EventRecord;
use serde::{Deserialize, Serialize};

use crate::domain::{DomainWire, EventOf};
use crate::gated::{json_row, Admitted, AdmittedRecord, DomainProjection, RecordProjection};
use crate::projector::{CurrentRows, ProjectionError};
use crate::store::{RowKey, Store, StoreError, StoredRow};

pub const TIMELINE: &str = "timeline";
pub const TIMELINE_AGGREGATES: &str = "timeline_aggregates";
/// The projection's name in every domain's topology entry.
pub const TIMELINE_PROJECTION: &str = "timeline";
/// The most entries (and chains) one read returns.
pub const MAX_ENTRIES: usize = 1_000;

/// One event of a chain, as the timeline keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub domain: String,
    /// The Avro full name of the event's record.
    pub record: String,
    pub event_id: String,
    pub aggregate_id: String,
    pub aggregate_version: i64,
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub occurred_at: i64,
    pub partition: i32,
    pub offset: i64,
}

/// The timeline projection of the domain `W` (see the module docs).
#[derive(Debug)]
pub struct Timeline<W>(PhantomData<fn() -> W>);

impl<W> Default for Timeline<W> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn aggregate_partition(domain: &str, aggregate_id: &str) -> Vec<u8> {
    let mut partition = domain.as_bytes().to_vec();
    partition.push(0);
    partition.extend_from_slice(aggregate_id.as_bytes());
    partition
}

pub fn entry_key(correlation_id: &str, event_id: &str) -> RowKey {
    RowKey::new(
        TIMELINE,
        correlation_id.as_bytes().to_vec(),
        event_id.as_bytes().to_vec(),
    )
}

pub fn aggregate_chain_key(domain: &str, aggregate_id: &str, correlation_id: &str) -> RowKey {
    RowKey::new(
        TIMELINE_AGGREGATES,
        aggregate_partition(domain, aggregate_id),
        correlation_id.as_bytes().to_vec(),
    )
}

/// The entry of one admitted event.
pub fn entry(
    domain: &str,
    record: &str,
    metadata: &EventMetadata,
    partition: i32,
    offset: i64,
) -> TimelineEntry {
    TimelineEntry {
        domain: domain.to_owned(),
        record: record.to_owned(),
        event_id: metadata.event_id.clone(),
        aggregate_id: metadata.aggregate_id.clone(),
        aggregate_version: metadata.aggregate_version,
        command_id: metadata.command_id.clone(),
        correlation_id: metadata.correlation_id.clone(),
        causation_id: metadata.causation_id.clone(),
        occurred_at: metadata.occurred_at,
        partition,
        offset,
    }
}

/// The two rows of one admitted event (see the module docs).
pub fn rows(
    domain: &str,
    record: &str,
    metadata: &EventMetadata,
    partition: i32,
    offset: i64,
) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
    let entry = entry(domain, record, metadata, partition, offset);
    Ok(vec![
        (
            entry_key(&metadata.correlation_id, &metadata.event_id),
            json_row(TIMELINE, offset, &entry)?,
        ),
        (
            aggregate_chain_key(domain, &metadata.aggregate_id, &metadata.correlation_id),
            // The value is the correlation id (the key holds it too): the
            // row only says the chain touched the aggregate.
            json_row(TIMELINE_AGGREGATES, offset, &metadata.correlation_id)?,
        ),
    ])
}

/// Another domain's events in the timeline, declared by the domain that
/// wants them listed (through `contracts` records; run with
/// `DomainService::with_record_projection`).
pub trait TimelineSource: Send + Sync + 'static {
    type Events: EventRecord;
    /// The domain whose events topic is read.
    const DOMAIN: &'static str;
    /// The projection's name in the declaring domain's topology entry.
    const PROJECTION: &'static str;
}

/// The timeline projection of a [`TimelineSource`].
#[derive(Debug)]
pub struct RecordTimeline<S>(PhantomData<fn() -> S>);

impl<S> Default for RecordTimeline<S> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<S: TimelineSource> RecordProjection for RecordTimeline<S> {
    type Events = S::Events;
    const NAME: &'static str = S::PROJECTION;
    const SOURCE: &'static str = S::DOMAIN;

    fn rows_to_read(&self, _record: &S::Events) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        admitted: &AdmittedRecord<'_, S::Events>,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        rows(
            S::DOMAIN,
            admitted.record.record_name(),
            admitted.record.metadata(),
            admitted.partition,
            admitted.offset,
        )
    }
}

impl<W: DomainWire> DomainProjection for Timeline<W> {
    type Wire = W;
    const NAME: &'static str = TIMELINE_PROJECTION;

    fn rows_to_read(&self, _event: &EventOf<W>, _metadata: &EventMetadata) -> Vec<RowKey> {
        Vec::new()
    }

    fn project(
        &self,
        admitted: &Admitted<'_, W>,
        _current: &CurrentRows,
    ) -> Result<Vec<(RowKey, StoredRow)>, ProjectionError> {
        rows(
            admitted.domain,
            admitted.record_name,
            admitted.metadata,
            admitted.partition,
            admitted.offset,
        )
    }
}

/// Why a timeline cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("timeline row of {table} is unreadable: {reason}")]
    UnreadableRow { table: &'static str, reason: String },
}

impl TimelineError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(error) => error.is_transient(),
            Self::UnreadableRow { .. } => false,
        }
    }
}

async fn scan_all(
    store: &Store,
    table: &'static str,
    partition: Vec<u8>,
) -> Result<Vec<(Vec<u8>, StoredRow)>, StoreError> {
    let mut rows = Vec::new();
    let mut after = None;
    while rows.len() < MAX_ENTRIES {
        let page = store
            .scan(
                table,
                partition.clone(),
                after.clone(),
                MAX_ENTRIES - rows.len(),
            )
            .await?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        rows.extend(page);
    }
    Ok(rows)
}

/// Every event of every chain that touched `aggregate_id` of `domain`, in
/// causal order (at most [`MAX_ENTRIES`]); empty when none is known.
pub async fn read(
    store: &Store,
    domain: &str,
    aggregate_id: &str,
) -> Result<Vec<TimelineEntry>, TimelineError> {
    let chains = scan_all(
        store,
        TIMELINE_AGGREGATES,
        aggregate_partition(domain, aggregate_id),
    )
    .await?;
    let mut entries = Vec::new();
    for (correlation_id, _) in chains {
        for (_, row) in scan_all(store, TIMELINE, correlation_id).await? {
            let entry = serde_json::from_slice::<TimelineEntry>(&row.value).map_err(|error| {
                TimelineError::UnreadableRow {
                    table: TIMELINE,
                    reason: error.to_string(),
                }
            })?;
            entries.push(entry);
        }
    }
    entries.truncate(MAX_ENTRIES);
    Ok(causal_order(entries))
}

/// A cause before its effects; among events free to come next, the
/// earliest (`occurred_at`, then domain, aggregate and version, so the
/// order is total and the same on every read). Pure.
pub fn causal_order(entries: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    type Rank = (i64, String, String, i64, String);
    let rank = |entry: &TimelineEntry| -> Rank {
        (
            entry.occurred_at,
            entry.domain.clone(),
            entry.aggregate_id.clone(),
            entry.aggregate_version,
            entry.event_id.clone(),
        )
    };
    let by_id: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| (entry.event_id.clone(), index))
        .collect();
    // Two edges order an event: its cause (another event of the list) and
    // its aggregate's previous version (a client's command on an aggregate
    // a chain already changed).
    let mut previous_version: BTreeMap<(String, String), Vec<(i64, usize)>> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        previous_version
            .entry((entry.domain.clone(), entry.aggregate_id.clone()))
            .or_default()
            .push((entry.aggregate_version, index));
    }
    let mut effects: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    let mut waiting_for = vec![0usize; entries.len()];
    let mut edge = |cause: usize, effect: usize| {
        if cause != effect {
            effects[cause].push(effect);
            waiting_for[effect] += 1;
        }
    };
    for (index, entry) in entries.iter().enumerate() {
        if let Some(&cause) = by_id.get(&entry.causation_id) {
            edge(cause, index);
        }
    }
    for versions in previous_version.values_mut() {
        versions.sort();
        for pair in versions.windows(2) {
            edge(pair[0].1, pair[1].1);
        }
    }
    let mut ready: BinaryHeap<Reverse<(Rank, usize)>> = entries
        .iter()
        .enumerate()
        .filter(|(index, _)| waiting_for[*index] == 0)
        .map(|(index, entry)| Reverse((rank(entry), index)))
        .collect();
    let mut order = Vec::with_capacity(entries.len());
    while let Some(Reverse((_, index))) = ready.pop() {
        order.push(index);
        for &effect in &effects[index] {
            waiting_for[effect] -= 1;
            if waiting_for[effect] == 0 {
                ready.push(Reverse((rank(&entries[effect]), effect)));
            }
        }
    }
    // A cycle cannot come from the log (an event's cause was decided
    // before it); should ids ever form one, list its events last rather
    // than drop them.
    let mut listed = vec![false; entries.len()];
    for &index in &order {
        listed[index] = true;
    }
    let mut rest: Vec<usize> = (0..entries.len()).filter(|index| !listed[*index]).collect();
    rest.sort_by_key(|index| rank(&entries[*index]));
    order.extend(rest);
    let mut slots: Vec<Option<TimelineEntry>> = entries.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|index| slots[index].take())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        domain: &str,
        aggregate: &str,
        version: i64,
        id: &str,
        cause: &str,
        at: i64,
    ) -> TimelineEntry {
        TimelineEntry {
            domain: domain.to_owned(),
            record: format!("foldline.{domain}.Event"),
            event_id: id.to_owned(),
            aggregate_id: aggregate.to_owned(),
            aggregate_version: version,
            command_id: format!("command-of-{id}"),
            correlation_id: "chain".to_owned(),
            causation_id: cause.to_owned(),
            occurred_at: at,
            partition: 0,
            offset: 0,
        }
    }

    fn ids(entries: &[TimelineEntry]) -> Vec<&str> {
        entries
            .iter()
            .map(|entry| entry.event_id.as_str())
            .collect()
    }

    #[test]
    fn a_cause_comes_before_its_effects_whatever_the_clocks_say() {
        // The payment's clock runs behind the order's: by time alone the
        // authorization would come first.
        let placed = event("orders", "o", 1, "placed", "client-command", 100);
        let requested = event("payments", "p", 1, "requested", "placed", 90);
        let authorized = event("payments", "p", 2, "authorized", "requested", 95);
        let confirmed = event("orders", "o", 2, "confirmed", "authorized", 100);
        let ordered = causal_order(vec![
            confirmed.clone(),
            authorized.clone(),
            placed.clone(),
            requested.clone(),
        ]);
        assert_eq!(
            ids(&ordered),
            ["placed", "requested", "authorized", "confirmed"]
        );
    }

    #[test]
    fn a_clients_command_on_a_changed_aggregate_comes_after_its_previous_version() {
        let placed = event("orders", "o", 1, "placed", "place-command", 100);
        let confirmed = event("orders", "o", 2, "confirmed", "placed", 100);
        // The client's cancel names no event as its cause and is stamped
        // by another gateway whose clock is behind.
        let cancelled = event("orders", "o", 3, "cancelled", "cancel-command", 50);
        let refunded = event("payments", "p", 1, "refund", "cancelled", 60);
        let ordered = causal_order(vec![refunded, cancelled, confirmed, placed]);
        assert_eq!(
            ids(&ordered),
            ["placed", "confirmed", "cancelled", "refund"]
        );
    }

    #[test]
    fn independent_events_are_listed_earliest_first_and_the_order_is_total() {
        let first = event("a", "x", 1, "first", "c1", 1);
        let second = event("b", "y", 1, "second", "c2", 2);
        let tie = event("a", "z", 1, "tie", "c3", 2);
        let one = causal_order(vec![second.clone(), tie.clone(), first.clone()]);
        let other = causal_order(vec![tie, first, second]);
        assert_eq!(one, other);
        assert_eq!(ids(&one), ["first", "tie", "second"]);
    }

    #[test]
    fn ids_forming_a_cycle_are_listed_not_dropped() {
        let one = event("a", "x", 1, "one", "two", 1);
        let two = event("b", "y", 1, "two", "one", 2);
        let free = event("c", "z", 1, "free", "c", 3);
        let ordered = causal_order(vec![two, one, free]);
        assert_eq!(ids(&ordered), ["free", "one", "two"]);
    }

    #[test]
    fn rows_of_different_events_and_chains_never_share_a_key() {
        assert_ne!(entry_key("c", "e1"), entry_key("c", "e2"));
        assert_ne!(
            aggregate_chain_key("orders", "o", "c1"),
            aggregate_chain_key("orders", "o", "c2")
        );
        assert_ne!(
            aggregate_chain_key("ab", "c", "x").partition,
            aggregate_chain_key("a", "bc", "x").partition
        );
    }
}
