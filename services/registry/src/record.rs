//! The `_schemas` record format, the one Confluent's `KafkaStore` writes.
//!
//! Keys are JSON objects such as
//! `{"keytype":"SCHEMA","subject":"orders-value","version":1,"magic":1}` and
//! `{"keytype":"CONFIG","subject":null,"magic":0}`; values are
//! `{"subject","version","id","schema","deleted"}` and
//! `{"compatibilityLevel":"BACKWARD"}`; a null value is a tombstone.
//!
//! The topic is compacted, and compaction compares key *bytes*: every key we
//! write is therefore produced from a struct with a fixed field order (the
//! same order Confluent uses) so that two writes for the same logical key
//! always collapse into one.

use serde::{Deserialize, Serialize};

use super::compat::CompatibilityLevel;

/// Identifies a schema version inside a subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SchemaKey {
    pub(crate) subject: String,
    pub(crate) version: u32,
}

/// A decoded record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordKey {
    Schema(SchemaKey),
    /// `None` is the registry-wide setting.
    Config(Option<String>),
    Noop,
    /// Key types this registry never writes and does not interpret
    /// (`DELETE_SUBJECT`, `CLEAR_SUBJECT`, `MODE`, ...).
    Other(String),
}

/// The value of a `SCHEMA` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SchemaValue {
    pub(crate) subject: String,
    pub(crate) version: u32,
    pub(crate) id: u32,
    pub(crate) schema: String,
    #[serde(default)]
    pub(crate) deleted: bool,
    /// Absent means AVRO, as in Confluent's own records.
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) references: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: String,
}

#[derive(Deserialize)]
struct RawKey {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i64>,
}

#[derive(Serialize)]
struct SchemaKeyOut<'a> {
    keytype: &'static str,
    subject: &'a str,
    version: u32,
    magic: u8,
}

#[derive(Serialize)]
struct ConfigKeyOut<'a> {
    keytype: &'static str,
    subject: Option<&'a str>,
    magic: u8,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("record has no key")]
    MissingKey,
    #[error("undecodable key")]
    Key,
    #[error("schema key without a valid subject and version")]
    SchemaKey,
    #[error("undecodable schema value")]
    SchemaValue,
    #[error("undecodable config value")]
    ConfigValue,
    #[error("unknown compatibility level {0:?}")]
    UnknownLevel(String),
}

pub(crate) fn decode_key(bytes: Option<&[u8]>) -> Result<RecordKey, DecodeError> {
    let bytes = bytes.ok_or(DecodeError::MissingKey)?;
    let raw: RawKey = serde_json::from_slice(bytes).map_err(|_| DecodeError::Key)?;
    match raw.keytype.as_str() {
        "SCHEMA" => {
            let subject = raw.subject.ok_or(DecodeError::SchemaKey)?;
            let version = raw
                .version
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| (1..=MAX_VERSION).contains(v))
                .ok_or(DecodeError::SchemaKey)?;
            Ok(RecordKey::Schema(SchemaKey { subject, version }))
        }
        "CONFIG" => Ok(RecordKey::Config(raw.subject)),
        "NOOP" => Ok(RecordKey::Noop),
        _ => Ok(RecordKey::Other(raw.keytype)),
    }
}

pub(crate) fn decode_schema_value(bytes: &[u8]) -> Result<SchemaValue, DecodeError> {
    serde_json::from_slice(bytes).map_err(|_| DecodeError::SchemaValue)
}

pub(crate) fn decode_config_value(bytes: &[u8]) -> Result<CompatibilityLevel, DecodeError> {
    let value: ConfigValue = serde_json::from_slice(bytes).map_err(|_| DecodeError::ConfigValue)?;
    CompatibilityLevel::parse(&value.compatibility_level)
        .ok_or(DecodeError::UnknownLevel(value.compatibility_level))
}

/// Versions and ids are Java `int`s on the Confluent side (and ids are four
/// signed bytes in the wire format), so both stay within `1..=i32::MAX`.
pub(crate) const MAX_VERSION: u32 = i32::MAX as u32;
pub(crate) const MAX_ID: u32 = i32::MAX as u32;

pub(crate) fn encode_schema_key(key: &SchemaKey) -> Vec<u8> {
    to_json(&SchemaKeyOut {
        keytype: "SCHEMA",
        subject: &key.subject,
        version: key.version,
        magic: 1,
    })
}

pub(crate) fn encode_config_key(subject: Option<&str>) -> Vec<u8> {
    to_json(&ConfigKeyOut {
        keytype: "CONFIG",
        subject,
        magic: 0,
    })
}

pub(crate) fn encode_schema_value(value: &SchemaValue) -> Vec<u8> {
    to_json(value)
}

pub(crate) fn encode_config_value(level: CompatibilityLevel) -> Vec<u8> {
    to_json(&ConfigValue {
        compatibility_level: level.as_str().to_owned(),
    })
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // These structs hold only strings, integers and booleans, which
    // serde_json always serialises; an empty vector is never produced.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_byte_identical_to_confluents() {
        let key = SchemaKey {
            subject: "orders-value".to_owned(),
            version: 3,
        };
        assert_eq!(
            String::from_utf8(encode_schema_key(&key)).expect("utf8"),
            r#"{"keytype":"SCHEMA","subject":"orders-value","version":3,"magic":1}"#
        );
        assert_eq!(
            String::from_utf8(encode_config_key(None)).expect("utf8"),
            r#"{"keytype":"CONFIG","subject":null,"magic":0}"#
        );
        assert_eq!(
            String::from_utf8(encode_config_key(Some("s"))).expect("utf8"),
            r#"{"keytype":"CONFIG","subject":"s","magic":0}"#
        );
    }

    #[test]
    fn values_round_trip() {
        let value = SchemaValue {
            subject: "s".to_owned(),
            version: 1,
            id: 7,
            schema: r#""string""#.to_owned(),
            deleted: false,
            schema_type: None,
            references: Vec::new(),
        };
        let bytes = encode_schema_value(&value);
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf8"),
            r#"{"subject":"s","version":1,"id":7,"schema":"\"string\"","deleted":false}"#
        );
        assert_eq!(decode_schema_value(&bytes), Ok(value));
        assert_eq!(
            decode_config_value(&encode_config_value(CompatibilityLevel::Full)),
            Ok(CompatibilityLevel::Full)
        );
    }

    #[test]
    fn keys_decode_in_any_field_order() {
        let key = decode_key(Some(
            br#"{"magic":1,"version":2,"subject":"x","keytype":"SCHEMA"}"#,
        ));
        assert_eq!(
            key,
            Ok(RecordKey::Schema(SchemaKey {
                subject: "x".to_owned(),
                version: 2
            }))
        );
        assert_eq!(
            decode_key(Some(br#"{"keytype":"NOOP","magic":0}"#)),
            Ok(RecordKey::Noop)
        );
        assert_eq!(
            decode_key(Some(br#"{"keytype":"MODE","subject":null,"magic":0}"#)),
            Ok(RecordKey::Other("MODE".to_owned()))
        );
    }

    #[test]
    fn garbage_keys_are_errors() {
        assert_eq!(decode_key(None), Err(DecodeError::MissingKey));
        assert_eq!(decode_key(Some(b"\xff")), Err(DecodeError::Key));
        assert_eq!(decode_key(Some(b"[]")), Err(DecodeError::Key));
        assert_eq!(
            decode_key(Some(br#"{"keytype":"SCHEMA","subject":"x","version":0}"#)),
            Err(DecodeError::SchemaKey)
        );
        assert_eq!(
            decode_key(Some(br#"{"keytype":"SCHEMA","version":1}"#)),
            Err(DecodeError::SchemaKey)
        );
        assert_eq!(
            decode_config_value(br#"{"compatibilityLevel":"SIDEWAYS"}"#),
            Err(DecodeError::UnknownLevel("SIDEWAYS".to_owned()))
        );
    }
}
