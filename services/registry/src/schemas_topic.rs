//! The `_schemas` topic: replaying it, tailing it, appending to it.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use foldline_platform::config::KafkaConfig;
use foldline_platform::kafka::{producer_config, reader_config, with_overrides};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::state::{decode, Applied, LogRecord, Rejection, State};
use super::{RegistryConfig, RegistryError};

/// How long start-up waits for cluster metadata before calling the brokers
/// unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up waits for the schemas topic's partition to be led. A
/// broker that has just started or restarted answers "not leader" for its
/// partitions until the election settles, which on a loaded machine takes
/// well over five seconds; waiting is right, failing would only make the
/// supervisor restart us into the same wait.
const TOPIC_GRACE: Duration = Duration::from_secs(30);
/// How long start-up keeps trying brokers that do not answer at all, or a
/// topic they do not list: a wrong address or a missing topic should fail
/// start-up quickly and say so.
const BROKER_GRACE: Duration = Duration::from_secs(5);
/// The pause between two looks at a topic that is not ready.
const TOPIC_RETRY: Duration = Duration::from_millis(100);
/// How long start-up may spend replaying the topic.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a write may wait for its delivery report (librdkafka retries
/// internally within this bound; see `message.timeout.ms`).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a write may wait for the tail to read it back.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause after a consumer error, so a broker outage does not spin the tail.
const ERROR_BACKOFF: Duration = Duration::from_millis(250);

/// The registry uses a single partition: "first in the log wins" needs one
/// total order, as Confluent's own registry does.
const PARTITION: i32 = 0;

type Reader = StreamConsumer<ReaderContext>;

/// The reader's client context.
///
/// rust-rdkafka hands every consumer error event both to the consumer and
/// to `ClientContext::error`, whose default logs at error level. End of
/// partition is how the tail knows it caught up, after every write: it is
/// not an error and must not be logged as one.
#[derive(Debug, Clone, Copy, Default)]
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            return;
        }
        warn!(error = %error, reason, "schemas topic reader client error");
    }
}

impl ConsumerContext for ReaderContext {}

/// How far the tail has applied the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// The offset after the last applied record.
    next_offset: i64,
    /// The tail has reached the end of the log at least once.
    caught_up: bool,
}

/// The topic, opened: a producer and a tail that folds every record into
/// the shared state.
pub(crate) struct Log {
    topic: String,
    producer: FutureProducer,
    progress: watch::Receiver<Progress>,
    tail: JoinHandle<()>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("topic", &self.topic)
            .field("progress", &*self.progress.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // The tail also stops by itself once `progress` is gone; aborting
        // just makes it prompt.
        self.tail.abort();
    }
}

impl Log {
    /// Checks the topic, replays it into `state` and keeps tailing it.
    pub(crate) async fn open(
        kafka: &KafkaConfig,
        config: &RegistryConfig,
        state: Arc<RwLock<State>>,
    ) -> Result<Self, RegistryError> {
        if kafka.bootstrap_servers.trim().is_empty() {
            return Err(RegistryError::InvalidConfig("bootstrap_servers is empty"));
        }
        if config.topic.trim().is_empty() {
            return Err(RegistryError::InvalidConfig("topic is empty"));
        }
        let topic = config.topic.clone();

        let consumer: Reader = schemas_reader_config(kafka, config)
            .create_with_context(ReaderContext)
            .map_err(RegistryError::Client)?;
        // Metadata and watermark calls block; keep them off the runtime's
        // worker threads.
        let (consumer, high) = {
            let topic = topic.clone();
            let bootstrap_servers = kafka.bootstrap_servers.clone();
            tokio::task::spawn_blocking(move || {
                // A topic created a moment ago (by this very process, say)
                // may not be in the broker's metadata yet, or its leader
                // not elected: a real broker applies a creation in steps.
                let started = std::time::Instant::now();
                loop {
                    let attempt =
                        check_topic(&consumer, &topic, &bootstrap_servers).and_then(|()| {
                            consumer
                                .fetch_watermarks(&topic, PARTITION, METADATA_TIMEOUT)
                                .map_err(|source| {
                                    watermarks_error(source, &topic, &bootstrap_servers)
                                })
                        });
                    match attempt {
                        Ok((_, high)) => return Ok::<_, RegistryError>((consumer, high)),
                        Err(error @ RegistryError::TopicUnavailable { .. })
                            if started.elapsed() < TOPIC_GRACE =>
                        {
                            debug!(%error, "schemas topic has no leader yet, retrying");
                            std::thread::sleep(TOPIC_RETRY);
                        }
                        Err(
                            error @ (RegistryError::TopicMissing { .. }
                            | RegistryError::Unreachable { .. }),
                        ) if started.elapsed() < BROKER_GRACE => {
                            debug!(%error, "schemas topic not ready yet, retrying");
                            std::thread::sleep(TOPIC_RETRY);
                        }
                        Err(error) => return Err(error),
                    }
                }
            })
            .await
            .map_err(|_| RegistryError::Runtime)??
        };

        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, PARTITION, Offset::Beginning)
            .map_err(RegistryError::Client)?;
        consumer
            .assign(&assignment)
            .map_err(RegistryError::Client)?;

        let producer: FutureProducer = schemas_writer_config(kafka, config)
            .create()
            .map_err(RegistryError::Client)?;

        let (progress_tx, mut progress) = watch::channel(Progress {
            next_offset: 0,
            caught_up: false,
        });
        let tail = tokio::spawn(tail(consumer, state, progress_tx, topic.clone()));
        let log = Self {
            topic,
            producer,
            progress: progress.clone(),
            tail,
        };

        info!(topic = %log.topic, high_watermark = high, "replaying schemas topic");
        // End of partition is the reliable signal: on a compacted topic the
        // last offsets below the high watermark may no longer exist.
        let replay = progress.wait_for(|p| p.caught_up || p.next_offset >= high);
        match tokio::time::timeout(REPLAY_TIMEOUT, replay).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(RegistryError::ReaderStopped),
            Err(_) => {
                return Err(RegistryError::ReplayTimeout {
                    topic: log.topic.clone(),
                })
            }
        }
        info!(topic = %log.topic, high_watermark = high, "schemas topic replayed");
        Ok(log)
    }

    /// Appends a record and waits until the tail has applied it, so that
    /// the state reflects the log up to and including it. Returns its offset.
    pub(crate) async fn append(
        &self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<i64, RegistryError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let delivery =
            self.producer
                .send(record, DELIVERY_TIMEOUT)
                .await
                .map_err(|(source, _)| RegistryError::Write {
                    topic: self.topic.clone(),
                    source,
                })?;
        if delivery.partition != PARTITION {
            // `start` refuses multi-partition topics, so this means the
            // topic was re-created under us.
            return Err(RegistryError::TopicPartitions {
                topic: self.topic.clone(),
                partitions: usize::try_from(delivery.partition).map_or(0, |p| p + 1),
            });
        }
        let offset = delivery.offset;
        let mut progress = self.progress.clone();
        let applied = progress.wait_for(|p| p.next_offset > offset);
        let applied = tokio::time::timeout(READ_BACK_TIMEOUT, applied).await;
        match applied {
            Ok(Ok(_)) => Ok(offset),
            Ok(Err(_)) => Err(RegistryError::ReaderStopped),
            Err(_) => Err(RegistryError::ReadBackTimeout {
                topic: self.topic.clone(),
                offset,
            }),
        }
    }
}

/// Notifies each time the tail has applied more of the log.
#[derive(Debug)]
pub(crate) struct Changes(watch::Receiver<Progress>);

impl Changes {
    /// Waits for the next change; `false` if the tail has stopped.
    pub(crate) async fn next(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

impl Log {
    /// Starts listening for changes; the current state counts as seen.
    pub(crate) fn changes(&self) -> Changes {
        let mut receiver = self.progress.clone();
        receiver.borrow_and_update();
        Changes(receiver)
    }
}

/// A partition without a leader yet is a topic not ready, not brokers out
/// of reach: the brokers answered.
fn watermarks_error(source: KafkaError, topic: &str, bootstrap_servers: &str) -> RegistryError {
    match source.rdkafka_error_code() {
        Some(
            code @ (RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::UnknownLeaderEpoch
            | RDKafkaErrorCode::FencedLeaderEpoch),
        ) => RegistryError::TopicUnavailable {
            topic: topic.to_owned(),
            reason: code.to_string().to_lowercase(),
        },
        _ => RegistryError::Unreachable {
            bootstrap_servers: bootstrap_servers.to_owned(),
            source,
        },
    }
}

/// Fails unless the topic exists with exactly one partition.
fn check_topic(
    consumer: &Reader,
    topic: &str,
    bootstrap_servers: &str,
) -> Result<(), RegistryError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|source| RegistryError::Unreachable {
            bootstrap_servers: bootstrap_servers.to_owned(),
            source,
        })?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(RegistryError::TopicMissing {
            topic: topic.to_owned(),
        });
    };
    if let Some(error) = found.error() {
        let code = RDKafkaErrorCode::from(error);
        return Err(match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
                RegistryError::TopicMissing {
                    topic: topic.to_owned(),
                }
            }
            other => RegistryError::TopicUnavailable {
                topic: topic.to_owned(),
                reason: other.to_string().to_lowercase(),
            },
        });
    }
    match found.partitions().len() {
        0 => Err(RegistryError::TopicMissing {
            topic: topic.to_owned(),
        }),
        1 => Ok(()),
        partitions => Err(RegistryError::TopicPartitions {
            topic: topic.to_owned(),
            partitions,
        }),
    }
}

/// The platform's partition reader (nothing committed, so every start
/// replays from the beginning), with end-of-partition events on, which tell
/// the tail it caught up; it never creates the topic, whose absence must
/// fail start-up.
fn schemas_reader_config(kafka: &KafkaConfig, config: &RegistryConfig) -> ClientConfig {
    with_overrides(
        reader_config(kafka, &format!("{}-schemas", config.client_id)),
        kafka,
        &[
            ("enable.partition.eof", "true"),
            ("allow.auto.create.topics", "false"),
            ("topic.metadata.refresh.interval.ms", "10000"),
        ],
    )
}

/// The platform's producer (idempotent, acks=all, `murmur2_random` like
/// Confluent's registry), sending each write at once and giving up on it
/// within [`DELIVERY_TIMEOUT`]: a client waits on every one.
fn schemas_writer_config(kafka: &KafkaConfig, config: &RegistryConfig) -> ClientConfig {
    let delivery_timeout = DELIVERY_TIMEOUT.as_millis().to_string();
    with_overrides(
        producer_config(kafka, &format!("{}-schemas-writer", config.client_id)),
        kafka,
        &[
            ("linger.ms", "0"),
            ("message.timeout.ms", &delivery_timeout),
        ],
    )
}

/// Reads the topic forever, folding each record into `state`, until every
/// progress receiver is gone.
async fn tail(
    consumer: Reader,
    state: Arc<RwLock<State>>,
    progress: watch::Sender<Progress>,
    topic: String,
) {
    loop {
        let received = tokio::select! {
            () = progress.closed() => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                let offset = message.offset();
                // Parse outside the lock; only the cheap part runs under it.
                let decoded = decode(LogRecord {
                    key: message.key(),
                    value: message.payload(),
                });
                let applied = state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply_decoded(decoded);
                report(&topic, offset, &applied);
                progress.send_modify(|p| p.next_offset = p.next_offset.max(offset + 1));
            }
            Err(KafkaError::PartitionEOF(_)) => {
                progress.send_if_modified(|p| !std::mem::replace(&mut p.caught_up, true));
            }
            Err(error) => {
                warn!(topic = %topic, error = %error, "error reading schemas topic; retrying");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    debug!(topic = %topic, "schemas topic reader stopped");
}

fn report(topic: &str, offset: i64, applied: &Applied) {
    match applied {
        Applied::Registered {
            subject,
            version,
            id,
        } => debug!(topic, offset, subject = %subject, version, id, "schema version applied"),
        Applied::Rejected(Rejection::VersionTaken { existing_id }) => info!(
            topic,
            offset,
            existing_id,
            "ignoring schema record for a version already taken; first in the log wins"
        ),
        Applied::Rejected(Rejection::IdTaken { id }) => info!(
            topic,
            offset, id, "ignoring schema record for an id already taken; first in the log wins"
        ),
        Applied::Rejected(Rejection::Invalid(reason)) => warn!(
            topic,
            offset,
            reason = %reason,
            "skipping undecodable _schemas record"
        ),
        other => debug!(topic, offset, applied = ?other, "schemas record applied"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_without_a_leader_is_a_topic_not_ready_and_is_waited_for() {
        for code in [
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::LeaderNotAvailable,
        ] {
            let error = watermarks_error(KafkaError::MetadataFetch(code), "_schemas", "b:9092");
            assert!(
                matches!(error, RegistryError::TopicUnavailable { .. }),
                "{code:?}: {error}"
            );
        }
        let error = watermarks_error(
            KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
            "_schemas",
            "b:9092",
        );
        assert!(
            matches!(error, RegistryError::Unreachable { .. }),
            "{error}"
        );
    }
}
