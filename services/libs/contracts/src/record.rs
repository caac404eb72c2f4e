//! The shape every domain's topic records share, so the platform can carry
//! any domain's commands and events without knowing them.
//!
//! A domain declares its commands topic as one [`command_union!`] and its
//! events topic as one [`event_union!`]: each is an enum over the topic's
//! Avro-bound record types, with the dispatch (metadata, aggregate id, record
//! name, to and from Avro) generated once here instead of written by hand.

use std::fmt::Debug;

use apache_avro::types::Value;

use crate::envelope::{CommandMetadata, CommandRejected, EventMetadata};

/// Why a wire record cannot be read or written. Always permanent: the same
/// bytes or value fail the same way on every retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{record} is not a record of this topic")]
    UnknownRecord { record: String },
    #[error("record {record} does not fit its schema: {reason}")]
    DoesNotFitSchema { record: String, reason: String },
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("record {record} cannot be written as avro: {reason}")]
    Unwritable {
        record: &'static str,
        reason: String,
    },
}

/// `result`, with its error as the reason `field` is invalid: how a field
/// mapping reads one wire field into a domain value.
pub fn invalid_field<T, E: std::fmt::Display>(
    field: &'static str,
    result: Result<T, E>,
) -> Result<T, WireError> {
    result.map_err(|error| WireError::InvalidField {
        field,
        reason: error.to_string(),
    })
}

/// Any record of a domain's commands topic.
pub trait CommandRecord: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// Avro full names of every record type the topic carries.
    const RECORD_NAMES: &'static [&'static str];

    fn metadata(&self) -> &CommandMetadata;
    /// The aggregate the command addresses; also its Kafka key.
    fn aggregate_id(&self) -> &str;
    fn record_name(&self) -> &'static str;
    fn to_avro(&self) -> Result<Value, WireError>;
    /// Reads a decoded value by its writer's record name.
    fn from_avro(record_name: &str, value: &Value) -> Result<Self, WireError>;
}

/// Any record of a domain's events topic: one of its events, or the shared
/// [`CommandRejected`].
pub trait EventRecord: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// Avro full names of every record type the topic carries,
    /// `foldline.CommandRejected` included.
    const RECORD_NAMES: &'static [&'static str];

    fn metadata(&self) -> &EventMetadata;
    fn record_name(&self) -> &'static str;
    fn to_avro(&self) -> Result<Value, WireError>;
    fn from_avro(record_name: &str, value: &Value) -> Result<Self, WireError>;
    /// The refusal, when the record is one.
    fn rejection(&self) -> Option<&CommandRejected>;
    fn from_rejection(rejected: CommandRejected) -> Self;
}

/// Reads an Avro value as the wire type `T`.
pub fn read_avro<T: serde::de::DeserializeOwned>(
    record_name: &str,
    value: &Value,
) -> Result<T, WireError> {
    apache_avro::from_value::<T>(value).map_err(|error| WireError::DoesNotFitSchema {
        record: record_name.to_owned(),
        reason: error.to_string(),
    })
}

/// Writes the wire type `T` as an Avro value.
pub fn write_avro<T: serde::Serialize>(
    record_name: &'static str,
    record: &T,
) -> Result<Value, WireError> {
    apache_avro::to_value(record).map_err(|error| WireError::Unwritable {
        record: record_name,
        reason: error.to_string(),
    })
}

/// Declares the record union of a commands topic and implements
/// [`CommandRecord`] for it. `aggregate_id` names the field every command
/// record keys its aggregate by.
#[macro_export]
macro_rules! command_union {
    (
        $(#[$doc:meta])*
        pub enum $union:ident aggregate_id = $aggregate_field:ident {
            $($variant:ident($record:ty) = $name:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $union {
            $($variant($record),)+
        }

        impl $crate::record::CommandRecord for $union {
            const RECORD_NAMES: &'static [&'static str] = &[$($name),+];

            fn metadata(&self) -> &$crate::envelope::CommandMetadata {
                match self {
                    $(Self::$variant(record) => &record.metadata,)+
                }
            }

            fn aggregate_id(&self) -> &str {
                match self {
                    $(Self::$variant(record) => &record.$aggregate_field,)+
                }
            }

            fn record_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)+
                }
            }

            fn to_avro(&self) -> Result<$crate::__avro::types::Value, $crate::record::WireError> {
                match self {
                    $(Self::$variant(record) => $crate::record::write_avro($name, record),)+
                }
            }

            fn from_avro(
                record_name: &str,
                value: &$crate::__avro::types::Value,
            ) -> Result<Self, $crate::record::WireError> {
                match record_name {
                    $($name => $crate::record::read_avro(record_name, value).map(Self::$variant),)+
                    other => Err($crate::record::WireError::UnknownRecord {
                        record: other.to_owned(),
                    }),
                }
            }
        }
    };
}

/// Declares the record union of an events topic and implements
/// [`EventRecord`] for it; the shared `CommandRejected` variant is added.
#[macro_export]
macro_rules! event_union {
    (
        $(#[$doc:meta])*
        pub enum $union:ident {
            $($variant:ident($record:ty) = $name:literal,)+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum $union {
            $($variant($record),)+
            /// A refused command, settled without changing the aggregate.
            CommandRejected($crate::envelope::CommandRejected),
        }

        impl $crate::record::EventRecord for $union {
            const RECORD_NAMES: &'static [&'static str] =
                &[$($name,)+ $crate::envelope::CommandRejected::RECORD_NAME];

            fn metadata(&self) -> &$crate::envelope::EventMetadata {
                match self {
                    $(Self::$variant(record) => &record.metadata,)+
                    Self::CommandRejected(record) => &record.metadata,
                }
            }

            fn record_name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)+
                    Self::CommandRejected(_) => $crate::envelope::CommandRejected::RECORD_NAME,
                }
            }

            fn to_avro(&self) -> Result<$crate::__avro::types::Value, $crate::record::WireError> {
                match self {
                    $(Self::$variant(record) => $crate::record::write_avro($name, record),)+
                    Self::CommandRejected(record) => $crate::record::write_avro(
                        $crate::envelope::CommandRejected::RECORD_NAME,
                        record,
                    ),
                }
            }

            fn from_avro(
                record_name: &str,
                value: &$crate::__avro::types::Value,
            ) -> Result<Self, $crate::record::WireError> {
                match record_name {
                    $($name => $crate::record::read_avro(record_name, value).map(Self::$variant),)+
                    $crate::envelope::CommandRejected::RECORD_NAME => {
                        $crate::record::read_avro(record_name, value).map(Self::CommandRejected)
                    }
                    other => Err($crate::record::WireError::UnknownRecord {
                        record: other.to_owned(),
                    }),
                }
            }

            fn rejection(&self) -> Option<&$crate::envelope::CommandRejected> {
                match self {
                    Self::CommandRejected(record) => Some(record),
                    _ => None,
                }
            }

            fn from_rejection(rejected: $crate::envelope::CommandRejected) -> Self {
                Self::CommandRejected(rejected)
            }
        }
    };
}
