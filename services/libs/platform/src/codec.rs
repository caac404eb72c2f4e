//! Avro values in the Confluent wire format (magic byte, 4-byte schema id,
//! Avro binary), through a Confluent-compatible schema registry.
//!
//! Subjects follow TopicRecordNameStrategy. The first encode of a record type
//! registers its `.avsc` (or finds it registered) and caches the id.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use foldline_contracts::schema::{self, RecordSchema};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("no schema is declared for record {0}")]
    UndeclaredRecord(String),
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    #[error("schema registry refused: {0}")]
    RegistryRefused(String),
    #[error("record cannot be encoded as {record}: {reason}")]
    Encode { record: String, reason: String },
    #[error("value is not a decodable avro record: {0}")]
    Undecodable(String),
    #[error("value of record {record} does not fit the expected type: {reason}")]
    WrongShape { record: String, reason: String },
}

/// How long an unknown schema id is retried before its record is poison.
const UNKNOWN_SCHEMA_GRACE: Duration = Duration::from_secs(5);

impl CodecError {
    /// Whether retrying the same bytes can succeed (the registry was down)
    /// rather than the bytes being poison.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RegistryUnavailable(_))
    }

    fn from_registry(error: SRCError) -> Self {
        if error.retriable {
            Self::RegistryUnavailable(error.error)
        } else {
            Self::RegistryRefused(error.error)
        }
    }
}

/// A decoded value and the full name of its writer schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub record_name: String,
    pub value: Value,
}

impl Decoded {
    /// Reads the value as a wire type.
    pub fn into_record<T: DeserializeOwned>(self) -> Result<T, CodecError> {
        apache_avro::from_value::<T>(&self.value).map_err(|error| CodecError::WrongShape {
            record: self.record_name,
            reason: error.to_string(),
        })
    }
}

/// Shared by every loop of a process; cheap to clone.
#[derive(Clone)]
pub struct Codec {
    encoder: Arc<AvroEncoder>,
    decoder: Arc<AvroDecoder>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Codec {
    pub fn new(registry_url: &str) -> Result<Codec, CodecError> {
        let settings = || {
            SrSettings::new_builder(registry_url.to_owned())
                .set_timeout(Duration::from_secs(5))
                .no_proxy()
                .build()
                .map_err(CodecError::from_registry)
        };
        Ok(Codec {
            encoder: Arc::new(AvroEncoder::new(settings()?)),
            decoder: Arc::new(AvroDecoder::new(settings()?)),
        })
    }

    fn strategy(topic: &str, declared: &RecordSchema) -> SubjectNameStrategy {
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
            topic.to_owned(),
            SuppliedSchema::new(
                Some(declared.full_name.to_owned()),
                SchemaType::Avro,
                declared.text.to_owned(),
            ),
        )
    }

    fn declared(record_name: &str) -> Result<&'static RecordSchema, CodecError> {
        schema::by_full_name(record_name)
            .ok_or_else(|| CodecError::UndeclaredRecord(record_name.to_owned()))
    }

    /// Encodes `record` as `record_name` for `topic`.
    pub async fn encode<T: Serialize>(
        &self,
        topic: &str,
        record_name: &str,
        record: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let value = apache_avro::to_value(record).map_err(|error| CodecError::Encode {
            record: record_name.to_owned(),
            reason: error.to_string(),
        })?;
        self.encode_value(topic, record_name, value).await
    }

    /// Encodes an Avro value as `record_name` for `topic`.
    pub async fn encode_value(
        &self,
        topic: &str,
        record_name: &str,
        value: Value,
    ) -> Result<Vec<u8>, CodecError> {
        let declared = Self::declared(record_name)?;
        let strategy = Self::strategy(topic, declared);
        match self.encoder.encode_value(value, &strategy).await {
            Ok(bytes) => Ok(bytes),
            Err(error) => {
                // The converter caches failures; a transient one must not stick.
                if error.retriable {
                    self.encoder.remove_errors_from_cache();
                }
                Err(CodecError::from_registry(error))
            }
        }
    }

    /// Registers (or finds) every record schema of `topic` up front, so a
    /// registry that refuses a schema stops start-up instead of a command.
    pub async fn register(&self, topic: &str, record_names: &[String]) -> Result<(), CodecError> {
        for record_name in record_names {
            let declared = Self::declared(record_name)?;
            let key = schema::subject(topic, record_name);
            self.encoder
                .get_schema_and_id(&key, Self::strategy(topic, declared))
                .await
                .map_err(|error| {
                    if error.retriable {
                        self.encoder.remove_errors_from_cache();
                    }
                    CodecError::from_registry(error)
                })?;
        }
        Ok(())
    }

    pub async fn decode(&self, bytes: &[u8]) -> Result<Decoded, CodecError> {
        if bytes.len() < 5 || bytes[0] != 0 {
            return Err(CodecError::Undecodable(
                "missing the confluent wire-format header".to_owned(),
            ));
        }
        // Set at the first 404 only: the common path reads no clock.
        let mut grace_ends: Option<tokio::time::Instant> = None;
        let mut delay = Duration::from_millis(100);
        loop {
            match self.decoder.decode(Some(bytes)).await {
                Ok(result) => {
                    let record_name =
                        result.name.map(|name| name.fullname(None)).ok_or_else(|| {
                            CodecError::Undecodable(
                                "writer schema is not a named record".to_owned(),
                            )
                        })?;
                    return Ok(Decoded {
                        record_name,
                        value: result.value,
                    });
                }
                Err(error) if error.retriable => {
                    self.decoder.remove_errors_from_cache();
                    return Err(CodecError::RegistryUnavailable(error.error));
                }
                // A registry replica that has not replayed `_schemas` up to
                // a schema registered elsewhere answers 404 for a valid id:
                // the id gets a grace period before the bytes count as
                // poison (skipping a real event would corrupt every fold).
                Err(error)
                    if error.error.contains("404")
                        && *grace_ends.get_or_insert_with(|| {
                            tokio::time::Instant::now() + UNKNOWN_SCHEMA_GRACE
                        }) > tokio::time::Instant::now() =>
                {
                    self.decoder.remove_errors_from_cache();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(CodecError::Undecodable(error.error)),
            }
        }
    }
}
