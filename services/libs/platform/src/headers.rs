//! The Kafka headers Foldline writes: on every command (the gateway), every
//! events-topic record and every outcome (the processor). Values are UTF-8;
//! the names are `foldline_contracts::envelope::headers`.

use foldline_contracts::envelope::{headers, CommandMetadata, CommandOutcome, EventMetadata};
use rdkafka::message::{Header, OwnedHeaders};

/// The headers every events-topic record carries.
pub fn record_headers(
    metadata: &EventMetadata,
    record_name: &str,
    traceparent: Option<&str>,
) -> OwnedHeaders {
    let version = metadata.aggregate_version.to_string();
    let mut headers = OwnedHeaders::new()
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(&metadata.event_id),
        })
        .insert(Header {
            key: headers::COMMAND_ID,
            value: Some(&metadata.command_id),
        })
        .insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(&metadata.correlation_id),
        })
        .insert(Header {
            key: headers::CAUSATION_ID,
            value: Some(&metadata.causation_id),
        })
        .insert(Header {
            key: headers::CONTENT_TYPE,
            value: Some(headers::AVRO_CONFLUENT),
        })
        .insert(Header {
            key: headers::RECORD_TYPE,
            value: Some(record_name),
        })
        .insert(Header {
            key: headers::SCHEMA_VERSION,
            value: Some(headers::CONTRACT_VERSION),
        })
        .insert(Header {
            key: headers::AGGREGATE_VERSION,
            value: Some(&version),
        });
    if let Some(traceparent) = traceparent {
        headers = headers.insert(Header {
            key: headers::TRACEPARENT,
            value: Some(traceparent),
        });
    }
    headers
}

/// The headers of an outcome record: what the gateway matches waiting
/// requests by.
pub(crate) fn outcome_headers(outcome: &CommandOutcome) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: headers::COMMAND_ID,
            value: Some(&outcome.command_id),
        })
        .insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(&outcome.correlation_id),
        })
        .insert(Header {
            key: headers::CONTENT_TYPE,
            value: Some(headers::AVRO_CONFLUENT),
        })
}

/// The headers every commands-topic record carries.
pub fn command_headers(metadata: &CommandMetadata, record_name: &str) -> OwnedHeaders {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: headers::COMMAND_ID,
            value: Some(&metadata.command_id),
        })
        .insert(Header {
            key: headers::CORRELATION_ID,
            value: Some(&metadata.correlation_id),
        })
        .insert(Header {
            key: headers::CONTENT_TYPE,
            value: Some(headers::AVRO_CONFLUENT),
        })
        .insert(Header {
            key: headers::RECORD_TYPE,
            value: Some(record_name),
        })
        .insert(Header {
            key: headers::SCHEMA_VERSION,
            value: Some(headers::CONTRACT_VERSION),
        });
    match &metadata.traceparent {
        Some(traceparent) => headers.insert(Header {
            key: headers::TRACEPARENT,
            value: Some(traceparent),
        }),
        None => headers,
    }
}
