//! The transactional mode's producer (`design.md`, *Transactional mode*):
//! how `kafka.transactions` is resolved, the producer's `transactional.id`,
//! and the blocking librdkafka transaction calls, run off the async workers.

use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::TopicPartitionList;

use super::{retry, ProcessorError};
use crate::config::{KafkaConfig, Transactions};
use crate::kafka::{producer_config, with_overrides};
use crate::shutdown::Shutdown;

/// How long one blocking transaction call (init, send offsets, commit,
/// abort) may wait on the broker.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the broker keeps a transaction of ours open without an end. A
/// round's transaction lasts milliseconds; this bounds how long a crashed
/// replica's open transaction (one no successor with its `transactional.id`
/// aborts) holds its partitions' `read_committed` readers back. librdkafka
/// wants a record's delivery timeout within it.
const TRANSACTION_TIMEOUT_MS: &str = "10000";

/// What the processor writes with, once `kafka.transactions` is resolved.
pub(super) enum WriteMode {
    /// The idempotent producer; offsets committed by the consumer.
    Idempotent(FutureProducer),
    /// A transactional producer, initialised; offsets sent in its transactions.
    /// (Boxed: it carries the configuration to make it again.)
    Transactional(Box<TransactionalProducer>),
}

/// A transactional producer and what it takes to make it again (after a
/// fatal error, e.g. fenced by a newer producer with its `transactional.id`).
pub(super) struct TransactionalProducer {
    pub(super) producer: FutureProducer,
    kafka: KafkaConfig,
    client_id: String,
    transactional_id: String,
}

/// How a round's transaction ended.
#[derive(Debug)]
pub(super) enum Finished {
    Committed,
    /// Aborted (an abortable error, e.g. the group fenced our offsets by
    /// generation): the producer may begin the next transaction.
    Aborted(String),
    /// The producer is unusable (fenced by `transactional.id`, or another
    /// fatal error): it must be made again.
    Fatal(String),
}

/// The `transactional.id` of a processor replica: stable per replica (its
/// configured instance id), distinct between replicas of one group.
pub(super) fn transactional_id(group: &str, instance_id: &str) -> String {
    format!("{group}.{instance_id}")
}

/// Resolves `kafka.transactions` and makes the producer: `Auto` and `On`
/// try `init_transactions`; a broker that answers it lacks transactions is
/// a fallback to the idempotent mode for `Auto` and an error for `On`.
/// `None` on shutdown. (The embedded mock cluster never gets here with
/// `Auto`: the embedded platform sets `Off`, see `foldline::app`.)
pub(super) async fn resolve(
    kafka: &KafkaConfig,
    client_id: &str,
    transactional_id: String,
    shutdown: &Shutdown,
) -> Result<Option<WriteMode>, ProcessorError> {
    if kafka.transactions == Transactions::Off {
        let producer = producer_config(kafka, client_id).create()?;
        return Ok(Some(WriteMode::Idempotent(producer)));
    }
    let mut transactional = TransactionalProducer {
        producer: producer_config(kafka, client_id).create()?,
        kafka: kafka.clone(),
        client_id: client_id.to_owned(),
        transactional_id,
    };
    match transactional.renew(shutdown).await {
        Ok(None) => Ok(None),
        Ok(Some(())) => {
            tracing::info!(transactional_id = %transactional.transactional_id, "transactional mode: events, outcomes and offsets commit together");
            Ok(Some(WriteMode::Transactional(Box::new(transactional))))
        }
        Err(error) if kafka.transactions == Transactions::Auto && lacks_transactions(&error) => {
            tracing::warn!(%error, "the broker does not support transactions: idempotent mode");
            let producer = producer_config(kafka, client_id).create()?;
            Ok(Some(WriteMode::Idempotent(producer)))
        }
        Err(error) => Err(ProcessorError::Transactions(error.to_string())),
    }
}

/// Whether `init_transactions` failed because the broker cannot do them
/// (librdkafka checks the brokers' ApiVersions for the transaction APIs).
fn lacks_transactions(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion)
    )
}

fn transaction_error(error: &KafkaError) -> Option<&rdkafka::error::RDKafkaError> {
    match error {
        KafkaError::Transaction(error) => Some(error),
        _ => None,
    }
}

fn is_retriable(error: &KafkaError) -> bool {
    transaction_error(error).is_some_and(|error| error.is_retriable())
}

fn requires_abort(error: &KafkaError) -> bool {
    transaction_error(error).is_some_and(|error| error.txn_requires_abort())
}

/// Runs a blocking librdkafka call on a blocking thread: a broker outage
/// must not stall an async worker.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

impl TransactionalProducer {
    /// Makes a fresh producer under the same `transactional.id` and
    /// initialises it: this fences every older producer with the id and
    /// aborts a transaction one left open. Transient failures (broker down,
    /// coordinator moving) are retried; `None` on shutdown.
    pub(super) async fn renew(&mut self, shutdown: &Shutdown) -> Result<Option<()>, KafkaError> {
        let config = with_overrides(
            producer_config(&self.kafka, &self.client_id),
            &self.kafka,
            &[
                ("transactional.id", self.transactional_id.as_str()),
                ("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS),
                ("message.timeout.ms", TRANSACTION_TIMEOUT_MS),
            ],
        );
        let producer: FutureProducer = config.create()?;
        let initialised = retry::until_settled(
            "initialise transactions",
            shutdown,
            || {
                let producer = producer.clone();
                blocking(move || producer.init_transactions(CALL_TIMEOUT))
            },
            is_retriable,
        )
        .await;
        match initialised {
            None => Ok(None),
            Some(Ok(())) => {
                self.producer = producer;
                Ok(Some(()))
            }
            Some(Err(error)) => Err(error),
        }
    }

    pub(super) fn begin(&self) -> Result<(), KafkaError> {
        self.producer.begin_transaction()
    }

    /// Sends the round's command offsets to the transaction under the
    /// consumer's group metadata (KIP-447: the group refuses them from a
    /// member of an older generation) and commits; aborts on failure.
    pub(super) async fn commit(
        &self,
        offsets: TopicPartitionList,
        group: Option<ConsumerGroupMetadata>,
    ) -> Finished {
        let group = match group {
            Some(group) => Some(group),
            None if offsets.count() == 0 => None,
            None => {
                return self
                    .abort("the consumer has no group metadata".to_owned())
                    .await
            }
        };
        let producer = self.producer.clone();
        let span = tracing::Span::current();
        let committed = blocking(move || {
            let _entered = span.enter();
            let started = Instant::now();
            if let Some(group) = group {
                producer.send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)?;
            }
            let sent = Instant::now();
            let mut attempts = 0;
            let committed = loop {
                match producer.commit_transaction(CALL_TIMEOUT) {
                    Err(error) if is_retriable(&error) && attempts < 3 => attempts += 1,
                    other => break other,
                }
            };
            tracing::debug!(
                send_offsets_us = (sent - started).as_micros() as u64,
                commit_us = sent.elapsed().as_micros() as u64,
                "transaction commit calls"
            );
            committed
        })
        .await;
        match committed {
            Ok(()) => Finished::Committed,
            Err(error) if requires_abort(&error) => self.abort(error.to_string()).await,
            Err(error) => Finished::Fatal(error.to_string()),
        }
    }

    /// Aborts the open transaction; `why` is what made it abort.
    pub(super) async fn abort(&self, why: String) -> Finished {
        let producer = self.producer.clone();
        match blocking(move || producer.abort_transaction(CALL_TIMEOUT)).await {
            Ok(()) => Finished::Aborted(why),
            Err(error) => Finished::Fatal(format!("{why}; the abort failed too: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_named_by_its_group_and_instance() {
        assert_eq!(
            transactional_id("orders-processor", "orders-processor-0"),
            "orders-processor.orders-processor-0"
        );
    }

    #[test]
    fn only_a_broker_without_the_apis_means_no_transactions() {
        assert!(lacks_transactions(&KafkaError::MessageProduction(
            RDKafkaErrorCode::UnsupportedFeature
        )));
        assert!(lacks_transactions(&KafkaError::MessageProduction(
            RDKafkaErrorCode::UnsupportedVersion
        )));
        // A broker that is down or still loading is not a broker without
        // transactions: `auto` must not fall back for it.
        assert!(!lacks_transactions(&KafkaError::MessageProduction(
            RDKafkaErrorCode::AllBrokersDown
        )));
        assert!(!lacks_transactions(&KafkaError::MessageProduction(
            RDKafkaErrorCode::CoordinatorLoadInProgress
        )));
    }
}
