//! Metadata carried by every record, and the command outcome.

use apache_avro::AvroSchema;
use serde::{Deserialize, Serialize};

/// Kafka header names. Values are UTF-8.
pub mod headers {
    pub const EVENT_ID: &str = "event-id";
    pub const COMMAND_ID: &str = "command-id";
    pub const CORRELATION_ID: &str = "correlation-id";
    pub const CAUSATION_ID: &str = "causation-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// The contract version of `schemas/avro/` the record was written with.
    pub const CONTRACT_VERSION: &str = "1";
    /// The aggregate's version after the record.
    pub const AGGREGATE_VERSION: &str = "aggregate-version";
    /// The Avro full name of the value's record (lets a reader route without decoding).
    pub const RECORD_TYPE: &str = "record-type";
    /// The content type of every Avro value Foldline writes.
    pub const AVRO_CONFLUENT: &str = "application/vnd.confluent.avro";
}

/// Inlined as `metadata` in every command record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline")]
pub struct CommandMetadata {
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub issued_at: i64,
    pub issued_by: String,
    pub traceparent: Option<String>,
}

/// Inlined as `metadata` in every event record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline")]
pub struct EventMetadata {
    pub event_id: String,
    pub aggregate_id: String,
    /// The aggregate's version after this record.
    pub aggregate_version: i64,
    pub command_id: String,
    pub correlation_id: String,
    pub causation_id: String,
    pub occurred_at: i64,
    pub traceparent: Option<String>,
}

/// A refused command, recorded in its domain's event log: every domain's
/// events topic carries this one record type for refusals, so a reader (the
/// processor's restore, a projector, the data team) knows a command is
/// settled and why without knowing the domain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline")]
pub struct CommandRejected {
    pub metadata: EventMetadata,
    pub command_type: String,
    pub code: String,
    /// `invalid`, `conflict` or `not_found` (`RejectionKind::as_str`).
    pub kind: String,
    pub message: String,
}

impl CommandRejected {
    pub const RECORD_NAME: &'static str = "foldline.CommandRejected";
}

/// The fate of a command, as the event log settled it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "foldline")]
pub struct CommandOutcome {
    pub command_id: String,
    pub correlation_id: String,
    pub aggregate_id: String,
    /// `accepted` or `rejected`.
    pub status: String,
    pub aggregate_version: i64,
    pub event_id: String,
    pub event_type: String,
    pub event_partition: i32,
    pub event_offset: i64,
    pub rejection_code: Option<String>,
    pub rejection_kind: Option<String>,
    pub rejection_message: Option<String>,
    pub decided_at: i64,
}

impl CommandOutcome {
    pub const ACCEPTED: &'static str = "accepted";
    pub const REJECTED: &'static str = "rejected";
    pub const RECORD_NAME: &'static str = "foldline.CommandOutcome";

    pub fn is_accepted(&self) -> bool {
        self.status == Self::ACCEPTED
    }
}
