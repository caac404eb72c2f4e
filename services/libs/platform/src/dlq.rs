//! Dead-lettering: poison records go to `D.dlq` with the reason and their
//! origin in headers, so the partition they came from keeps flowing.

use std::time::Duration;

use foldline_contracts::record::WireError;
use futures::FutureExt;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use crate::codec::{Codec, CodecError, Decoded};
use crate::metrics::metrics;
use crate::processor::retry;
use crate::shutdown::Shutdown;

/// Header names on a dead letter.
pub mod headers {
    pub const ERROR: &str = "dlq-error";
    /// `poison` or `undecidable`: see [`super::Cause`].
    pub const CAUSE: &str = "dlq-cause";
    pub const TOPIC: &str = "dlq-original-topic";
    pub const PARTITION: &str = "dlq-original-partition";
    pub const OFFSET: &str = "dlq-original-offset";
    pub const CONSUMER: &str = "dlq-consumer";
}

/// Why a record is parked: who has to fix something before it is replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The record itself is bad (no value, undecodable, not of this domain,
    /// keyed wrongly): its producer has to fix it.
    Poison,
    /// The command is fine but the decision on it cannot be written (the
    /// domain's wire mapping fails, the record is not in the contracts, the
    /// value does not fit its schema): a bug of ours to fix, then replay.
    Undecidable,
    /// The record is fine but the effect it asks for could not be done in
    /// the attempts allowed (a notification no provider took): an operator
    /// decides whether to replay it.
    Exhausted,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Poison => "poison",
            Cause::Undecidable => "undecidable",
            Cause::Exhausted => "exhausted",
        }
    }
}

/// Whether parking is done with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Parked {
    /// In the dead-letter topic: the record may be skipped.
    Parked,
    /// Shutdown came first: the record is not done with.
    Stopped,
}

/// What screening a record for poison made of it.
#[derive(Debug)]
pub enum Screened<T> {
    /// Decoded and parsed: the caller's to process.
    Admitted(T),
    /// Poison, now in the dead-letter topic: done with, may be skipped.
    Parked,
    /// Shutdown came first: not done with.
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// Permanent: the broker refuses the dead letter itself (too large, not
    /// authorised); the record can be neither parked nor skipped.
    #[error("cannot park the record at {topic}/{partition}@{offset} in {dlq}: {reason}")]
    Refused {
        topic: String,
        partition: i32,
        offset: i64,
        dlq: String,
        reason: String,
    },
}

impl DeadLetterError {
    /// Always `false`: transient failures are retried inside `park`.
    pub fn is_transient(&self) -> bool {
        false
    }
}

#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    consumer: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String, consumer: String) -> Self {
        Self {
            producer,
            topic,
            consumer,
        }
    }

    /// Decodes `message`'s value and parses it with `parse`; poison (no
    /// value, undecodable, unparseable: `what` names the record kind in
    /// the reason) is parked. A registry outage is retried, never taken
    /// for poison.
    pub async fn screen<T>(
        &self,
        codec: &Codec,
        message: &OwnedMessage,
        what: &str,
        parse: impl FnOnce(Decoded) -> Result<T, WireError>,
        shutdown: &Shutdown,
    ) -> Result<Screened<T>, DeadLetterError> {
        let Some(payload) = message.payload() else {
            return self
                .reject(message, &format!("{what} record has no value"), shutdown)
                .await;
        };
        let decoded = retry::until_settled(
            "decode record",
            shutdown,
            || codec.decode(payload),
            CodecError::is_transient,
        )
        .await;
        match decoded {
            None => Ok(Screened::Stopped),
            Some(Err(error)) => self.reject(message, &error.to_string(), shutdown).await,
            Some(Ok(decoded)) => match parse(decoded) {
                Ok(parsed) => Ok(Screened::Admitted(parsed)),
                Err(error) => self.reject(message, &error.to_string(), shutdown).await,
            },
        }
    }

    /// Parks `message` as poison.
    pub async fn reject<T>(
        &self,
        message: &OwnedMessage,
        reason: &str,
        shutdown: &Shutdown,
    ) -> Result<Screened<T>, DeadLetterError> {
        Ok(
            match self.park(message, Cause::Poison, reason, shutdown).await? {
                Parked::Parked => Screened::Parked,
                Parked::Stopped => Screened::Stopped,
            },
        )
    }

    /// Sends `message` to the dead-letter topic, retrying transient produce
    /// failures until the broker takes it: a record may be skipped only once
    /// it is parked. Its headers are kept and the reason, cause and origin
    /// added, so it can be replayed to where it came from once fixed.
    pub async fn park(
        &self,
        message: &OwnedMessage,
        cause: Cause,
        reason: &str,
        shutdown: &Shutdown,
    ) -> Result<Parked, DeadLetterError> {
        let headers = self.headers(message, cause, reason);
        let sent = retry::until_settled(
            "park a record in the dead-letter topic",
            shutdown,
            || {
                let mut record =
                    FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers.clone());
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(payload) = message.payload() {
                    record = record.payload(payload);
                }
                self.producer
                    .send(record, Duration::from_secs(10))
                    .map(|sent| sent.map_err(|(error, _)| error))
            },
            retry::produce_is_transient,
        )
        .await;
        match sent {
            None => Ok(Parked::Stopped),
            Some(Ok(_)) => {
                metrics()
                    .dead_lettered
                    .with_label_values(&[message.topic(), cause.as_str()])
                    .inc();
                match cause {
                    Cause::Poison => tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        "parked a poison record in the dead-letter topic"
                    ),
                    Cause::Exhausted => tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        "parked a record whose effect could not be performed in the attempts allowed"
                    ),
                    Cause::Undecidable => tracing::error!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        reason,
                        "parked a command whose decision cannot be written: a bug in its domain or contracts"
                    ),
                }
                Ok(Parked::Parked)
            }
            Some(Err(error)) => Err(DeadLetterError::Refused {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                dlq: self.topic.clone(),
                reason: error.to_string(),
            }),
        }
    }

    fn headers(&self, message: &OwnedMessage, cause: Cause, reason: &str) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for header in original.iter() {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        headers
            .insert(Header {
                key: headers::ERROR,
                value: Some(reason),
            })
            .insert(Header {
                key: headers::CAUSE,
                value: Some(cause.as_str()),
            })
            .insert(Header {
                key: headers::TOPIC,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: headers::PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: headers::OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: headers::CONSUMER,
                value: Some(&self.consumer),
            })
    }
}
