//! Dead-lettering: poison records go to `D.dlq` with the reason and their
//! origin in headers, so the partition they came from keeps flowing.

use std::time::Duration;

use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

/// Header names on a dead letter.
pub mod headers {
    pub const ERROR: &str = "dlq-error";
    pub const TOPIC: &str = "dlq-original-topic";
    pub const PARTITION: &str = "dlq-original-partition";
    pub const OFFSET: &str = "dlq-original-offset";
    pub const CONSUMER: &str = "dlq-consumer";
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

    /// Sends `message` to the dead-letter topic, retrying until the broker
    /// takes it: a poison record may be skipped only once it is parked.
    pub async fn park(&self, message: &OwnedMessage, error: &str) {
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
        headers = headers
            .insert(Header {
                key: headers::ERROR,
                value: Some(error),
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
            });
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers.clone());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self.producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => {
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        error,
                        "parked poison record in the dead-letter topic"
                    );
                    return;
                }
                Err((failure, _)) => {
                    tracing::warn!(%failure, dlq = %self.topic, "cannot park poison record yet, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
