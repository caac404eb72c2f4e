//! The domain seam: what a pure domain declares so the platform can run it.
//!
//! A domain is a pure [`Decider`] plus a [`DomainWire`]: the mapping between
//! its validated types and the Avro records of its topics. From that the
//! platform derives everything else once, for every domain: reading and
//! validating commands, deciding them into exactly one record (an event or
//! the shared `CommandRejected`), stamping the record's metadata
//! deterministically, and folding the log. `DomainWire` implementors are
//! therefore [`CommandDomain`]s with no further code.

use std::fmt::Debug;

use apache_avro::types::Value;
use foldline_contracts::envelope::{CommandRejected, EventMetadata};
use foldline_contracts::record::{CommandRecord, EventRecord, WireError};
use foldline_eventsourcing::{
    CommandId, CorrelationId, Decider, DecisionContext, EventId, Rejection, RejectionKind,
    Timestamp,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::Decoded;
use crate::processor::{CommandDomain, CommandEnvelope};

/// The rejection code of a command whose fields do not parse into the
/// domain's types. Shared by every domain.
pub const INVALID_COMMAND: &str = "invalid_command";

/// A domain's field mapping: its decider, its topic record unions, and how
/// one turns into the other. Pure: no I/O.
pub trait DomainWire: Send + Sync + 'static {
    type Decider: Decider<
        State: Serialize + DeserializeOwned + Send + Sync + 'static,
        Command: Send + Sync,
        Event: Send + Sync,
    >;
    /// The union of the commands topic's records.
    type Commands: CommandRecord;
    /// The union of the events topic's records.
    type Events: EventRecord;

    /// Parses a wire command into the domain's validated command.
    fn command_from_wire(record: &Self::Commands) -> Result<CommandOf<Self>, WireError>;
    /// Writes a decided event with the metadata the platform stamped.
    fn event_to_wire(event: &EventOf<Self>, metadata: EventMetadata) -> Self::Events;
    /// Reads a domain event back; never called for `CommandRejected`.
    fn event_from_wire(record: &Self::Events) -> Result<EventOf<Self>, WireError>;
}

pub type StateOf<W> = <<W as DomainWire>::Decider as Decider>::State;
pub type CommandOf<W> = <<W as DomainWire>::Decider as Decider>::Command;
pub type EventOf<W> = <<W as DomainWire>::Decider as Decider>::Event;

/// A command record whose ids parsed: only these are ever decided, so every
/// record decided from one has a real event id.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidCommand<C> {
    pub command_id: CommandId,
    pub record: C,
}

impl<C: CommandRecord> ValidCommand<C> {
    /// Checks what the platform needs of every command: ids that parse and
    /// an aggregate to address. Without them a command cannot be settled or
    /// deduplicated: it is poison.
    pub fn validate(record: C) -> Result<Self, WireError> {
        let metadata = record.metadata();
        let command_id =
            metadata
                .command_id
                .parse::<CommandId>()
                .map_err(|error| WireError::InvalidField {
                    field: "metadata.command_id",
                    reason: error.to_string(),
                })?;
        metadata
            .correlation_id
            .parse::<CorrelationId>()
            .map_err(|error| WireError::InvalidField {
                field: "metadata.correlation_id",
                reason: error.to_string(),
            })?;
        if record.aggregate_id().is_empty() {
            return Err(WireError::InvalidField {
                field: "aggregate id",
                reason: "it is empty".to_owned(),
            });
        }
        Ok(Self { command_id, record })
    }
}

/// A record of an events topic as every reader sees it: the wire record and,
/// unless it is a rejection, the domain event it carries. A record whose
/// event does not map to the domain is refused at parse time, so no reader
/// ever folds it (each skips it alike; projectors also park a copy).
pub struct LogRecord<W: DomainWire> {
    pub wire: W::Events,
    pub event: Option<EventOf<W>>,
}

// Written out: a derive would demand `W: Clone + Debug + PartialEq` of the
// marker type instead of its records.
impl<W: DomainWire> Clone for LogRecord<W> {
    fn clone(&self) -> Self {
        Self {
            wire: self.wire.clone(),
            event: self.event.clone(),
        }
    }
}

impl<W: DomainWire> Debug for LogRecord<W> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LogRecord")
            .field("wire", &self.wire)
            .field("event", &self.event)
            .finish()
    }
}

impl<W: DomainWire> PartialEq for LogRecord<W>
where
    EventOf<W>: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.wire == other.wire && self.event == other.event
    }
}

impl<W: DomainWire> LogRecord<W> {
    pub fn parse(decoded: &Decoded) -> Result<Self, WireError> {
        let wire = W::Events::from_avro(&decoded.record_name, &decoded.value)?;
        Self::from_wire(wire)
    }

    pub fn from_wire(wire: W::Events) -> Result<Self, WireError> {
        let event = match wire.rejection() {
            Some(_) => None,
            None => Some(W::event_from_wire(&wire)?),
        };
        Ok(Self { wire, event })
    }
}

/// Decides a command into the one record to append. Pure and
/// deterministic: the clock is the command's `issued_at`, the event id
/// derives from the command id, so redeciding writes the same bytes.
pub fn decide_record<W: DomainWire>(
    state: &StateOf<W>,
    version: u64,
    command: &ValidCommand<W::Commands>,
) -> LogRecord<W> {
    let record = &command.record;
    let metadata = record.metadata();
    let stamped = |aggregate_version: u64| EventMetadata {
        event_id: EventId::decided_by(command.command_id).to_string(),
        aggregate_id: record.aggregate_id().to_owned(),
        aggregate_version: i64::try_from(aggregate_version).unwrap_or(i64::MAX),
        command_id: metadata.command_id.clone(),
        correlation_id: metadata.correlation_id.clone(),
        // The event a process manager's command reacted to, so a chain
        // across domains can be followed event to event; a client's
        // command is its own event's cause.
        causation_id: metadata
            .causation_id
            .clone()
            .unwrap_or_else(|| metadata.command_id.clone()),
        occurred_at: metadata.issued_at,
        traceparent: metadata.traceparent.clone(),
    };
    let rejected = |code: &str, kind: RejectionKind, message: String| LogRecord {
        wire: W::Events::from_rejection(CommandRejected {
            metadata: stamped(version),
            command_type: record.record_name().to_owned(),
            code: code.to_owned(),
            kind: kind.as_str().to_owned(),
            message,
        }),
        event: None,
    };
    let domain_command = match W::command_from_wire(record) {
        Ok(domain_command) => domain_command,
        Err(error) => return rejected(INVALID_COMMAND, RejectionKind::Invalid, error.to_string()),
    };
    let context = DecisionContext {
        now: Timestamp(metadata.issued_at),
    };
    match W::Decider::decide(state, &domain_command, &context) {
        Ok(event) => LogRecord {
            wire: W::event_to_wire(&event, stamped(version + 1)),
            event: Some(event),
        },
        Err(rejection) => rejected(rejection.code(), rejection.kind(), rejection.to_string()),
    }
}

impl<W: DomainWire> CommandDomain for W {
    type State = StateOf<W>;
    type Command = ValidCommand<W::Commands>;
    type Record = LogRecord<W>;

    fn parse_command(&self, decoded: Decoded) -> Result<Self::Command, WireError> {
        ValidCommand::validate(W::Commands::from_avro(
            &decoded.record_name,
            &decoded.value,
        )?)
    }

    fn command_envelope(&self, command: &Self::Command) -> CommandEnvelope {
        let metadata = command.record.metadata();
        CommandEnvelope {
            command_id: metadata.command_id.clone(),
            correlation_id: metadata.correlation_id.clone(),
            aggregate_id: command.record.aggregate_id().to_owned(),
            traceparent: metadata.traceparent.clone(),
        }
    }

    fn decide(&self, state: &Self::State, version: u64, command: &Self::Command) -> Self::Record {
        decide_record::<W>(state, version, command)
    }

    fn parse_record(&self, decoded: Decoded) -> Result<Self::Record, WireError> {
        LogRecord::parse(&decoded)
    }

    fn record_to_avro(&self, record: &Self::Record) -> Result<Value, WireError> {
        record.wire.to_avro()
    }

    fn record_name(&self, record: &Self::Record) -> &'static str {
        record.wire.record_name()
    }

    fn record_metadata<'r>(&self, record: &'r Self::Record) -> &'r EventMetadata {
        record.wire.metadata()
    }

    fn rejection<'r>(&self, record: &'r Self::Record) -> Option<&'r CommandRejected> {
        record.wire.rejection()
    }

    fn evolve(&self, state: Self::State, record: &Self::Record) -> Self::State {
        match &record.event {
            Some(event) => W::Decider::evolve(state, event),
            None => state,
        }
    }
}
