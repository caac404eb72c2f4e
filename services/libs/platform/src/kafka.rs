//! Kafka plumbing shared by every loop: client configuration, topic
//! creation, and the embedded (in-process) broker.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use foldline_contracts::topology::TopicSpec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::{KafkaConfig, Secret};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("cannot create kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    /// Transient: the broker accepted the topics but does not list them
    /// (or lists a partition without a leader) yet.
    #[error("topics {topics} exist but are not ready after {waited:?}: {reason}")]
    TopicsNotReady {
        topics: String,
        waited: Duration,
        reason: String,
    },
    #[error("cannot start the embedded broker: {0}")]
    EmbeddedBroker(String),
}

/// The base client configuration every producer and consumer starts from.
fn base_client_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", client_id);
    kafka.security.apply(&mut config);
    config
}

/// The operator's librdkafka properties, applied last so they override
/// every default a client configuration sets.
fn with_operator_properties(
    mut config: ClientConfig,
    properties: &BTreeMap<String, String>,
    secret_properties: &BTreeMap<String, Secret>,
) -> ClientConfig {
    for (key, value) in properties {
        config.set(key, value);
    }
    for (key, value) in secret_properties {
        config.set(key, value.expose());
    }
    config
}

/// An idempotent, acks=all producer placing keys like the Java client does
/// (`murmur2_random`), so Kafka Streams and any other client agree with us
/// on which partition a key lives.
pub fn producer_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = base_client_config(kafka, client_id);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        // A command crosses three produces in series (command, event,
        // outcome), so every millisecond of linger is paid three times per
        // request; under load librdkafka still batches whatever queues
        // behind an in-flight request. Measured
        // on the embedded default, closed loop at 64: 1,117–1,153 settled/s
        // at 1 ms, 1,327–1,340/s at 0 (issue 7). Operators can still set it.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000");
    with_operator_properties(config, &kafka.properties, &kafka.secret_properties)
}

/// A group consumer that commits only what the caller stored after its work
/// became durable (rust-rdkafka's at-least-once pattern).
pub fn group_consumer_config(kafka: &KafkaConfig, client_id: &str, group: &str) -> ClientConfig {
    let mut config = base_client_config(kafka, client_id);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("max.poll.interval.ms", "30000")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string());
    with_operator_properties(config, &kafka.properties, &kafka.secret_properties)
}

/// A consumer with no group, for reading a partition from an offset.
///
/// librdkafka refuses `assign` without a `group.id`, so one is set
/// (`{client_id}-reader`), but a reader never subscribes, joins or commits:
/// the group stays empty.
pub fn reader_config(kafka: &KafkaConfig, client_id: &str) -> ClientConfig {
    let mut config = base_client_config(kafka, client_id);
    config
        .set("group.id", format!("{client_id}-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string());
    with_operator_properties(config, &kafka.properties, &kafka.secret_properties)
}

/// The context of a reader that asks for end-of-partition events
/// (`enable.partition.eof`) to know where a partition ends under
/// `read_committed` (its last offsets may be transaction markers, never
/// served as records): librdkafka reports each such event through the error
/// callback as well, which rust-rdkafka's default context logs at error
/// level. This one logs every other error as the default does.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndOfPartitionReader;

impl rdkafka::ClientContext for EndOfPartitionReader {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error != rdkafka::error::KafkaError::Global(RDKafkaErrorCode::PartitionEOF) {
            tracing::error!(%error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for EndOfPartitionReader {}

/// `config`, one of the client configurations above built from `kafka`, with
/// some of its defaults replaced by `overrides`, for a client with needs of
/// its own; the operator's properties, applied again, still win.
pub fn with_overrides(
    mut config: ClientConfig,
    kafka: &KafkaConfig,
    overrides: &[(&str, &str)],
) -> ClientConfig {
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    with_operator_properties(config, &kafka.properties, &kafka.secret_properties)
}

/// Marks everything before `next_offset` as done, for the next commit: the
/// committed offset is the next record to read.
///
/// Deliberately not `Consumer::store_offset`: that wraps librdkafka's legacy
/// `rd_kafka_offset_store`, which stores `offset + 1` (it takes the offset of
/// the last record *processed*); passing it a next offset silently skips a
/// record on the next restart.
pub fn store_next_offset<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> KafkaResult<()> {
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, partition, Offset::Offset(next_offset))?;
    consumer.store_offsets(&offsets)
}

/// Commits what was stored, before leaving the group. "Nothing stored
/// since the last auto-commit" is not a failure.
pub fn commit_stored_offsets<C: ConsumerContext>(consumer: &impl Consumer<C>, what: &str) {
    match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => {}
        Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, what, "cannot commit offsets at shutdown"),
    }
}

/// Runs `close` (a final commit, leaving the group, dropping clients: all
/// blocking librdkafka calls that wait on the broker) on a blocking thread,
/// so a broker outage cannot stall the async workers during shutdown: the
/// caller's drain deadline must stay able to fire.
pub async fn close_off_the_runtime(close: impl FnOnce() + Send + 'static) {
    if tokio::task::spawn_blocking(close).await.is_err() {
        tracing::warn!("closing kafka clients panicked");
    }
}

/// Creates the topics that do not exist yet, through the admin API.
pub async fn create_topics(
    kafka: &KafkaConfig,
    specs: &[TopicSpec],
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<DefaultClientContext> =
        with_overrides(base_client_config(kafka, "foldline-admin"), kafka, &[])
            .create()
            .map_err(KafkaSetupError::Client)?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            spec.configs.iter().fold(
                NewTopic::new(&spec.name, spec.partitions, TopicReplication::Fixed(-1)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new_topics.iter(), &options)
        .await
        .map_err(|error| KafkaSetupError::CreateTopic {
            topic: specs
                .iter()
                .map(|spec| spec.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: error.to_string(),
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaSetupError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    let names = specs.iter().map(|spec| spec.name.clone()).collect();
    let probe: BaseConsumer = base_client_config(kafka, "foldline-admin")
        .create()
        .map_err(KafkaSetupError::Client)?;
    tokio::task::spawn_blocking(move || wait_until_led(&probe, names, TOPICS_READY_WAIT))
        .await
        .unwrap_or_else(|_| {
            Err(KafkaSetupError::TopicsNotReady {
                topics: String::new(),
                waited: Duration::ZERO,
                reason: "the wait was cancelled".to_owned(),
            })
        })
}

/// How long `create_topics` waits for the topics it made sure of to be
/// listed with a leader for every partition. A broker applies a creation in
/// steps (the controller commits it, then the broker's metadata and the
/// partitions' leaders follow), which on a loaded machine takes seconds; a
/// role that read a topic a moment too early would call it missing.
const TOPICS_READY_WAIT: Duration = Duration::from_secs(60);

/// Polls the cluster's metadata until every one of `names` is listed and
/// each of its partitions has a leader, or `wait` passes. Blocking.
fn wait_until_led(
    probe: &BaseConsumer,
    names: Vec<String>,
    wait: Duration,
) -> Result<(), KafkaSetupError> {
    let started = std::time::Instant::now();
    loop {
        let unready = match probe.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(metadata) => {
                let unready: Vec<&str> = names
                    .iter()
                    .filter(|name| {
                        !metadata.topics().iter().any(|topic| {
                            topic.name() == name.as_str()
                                && topic.error().is_none()
                                && !topic.partitions().is_empty()
                                && topic
                                    .partitions()
                                    .iter()
                                    .all(|partition| partition.leader() >= 0)
                        })
                    })
                    .map(String::as_str)
                    .collect();
                if unready.is_empty() {
                    return Ok(());
                }
                format!("not listed with a leader yet: {}", unready.join(","))
            }
            Err(error) => error.to_string(),
        };
        if started.elapsed() >= wait {
            return Err(KafkaSetupError::TopicsNotReady {
                topics: names.join(","),
                waited: started.elapsed(),
                reason: unready,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// librdkafka's in-process mock cluster: real Kafka protocol on loopback,
/// in memory. It lives on its own thread because the cluster handle is not
/// `Send`; dropping this value stops it.
#[derive(Debug)]
pub struct EmbeddedBroker {
    bootstrap_servers: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// What the embedded broker does not do, for the start-up banner.
    pub const LIMITS: &'static str = "in memory only (gone when the process exits); \
        at most 5 MiB or 100k messages kept per partition; no transactions; \
        the admin API is not served (topics are created through the mock API)";

    pub fn start(specs: &[TopicSpec]) -> Result<EmbeddedBroker, KafkaSetupError> {
        let specs = specs.to_vec();
        let (ready_sender, ready) = mpsc::channel::<Result<String, String>>();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-broker".to_owned())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(error) => {
                        let _ = ready_sender.send(Err(error.to_string()));
                        return;
                    }
                };
                for spec in &specs {
                    if let Err(error) = cluster.create_topic(&spec.name, spec.partitions, 1) {
                        let _ = ready_sender.send(Err(format!("topic {}: {error}", spec.name)));
                        return;
                    }
                }
                let _ = ready_sender.send(Ok(cluster.bootstrap_servers()));
                // Either a stop message or the sender being dropped ends the broker.
                let _ = stopped.recv();
                drop(cluster);
            })
            .map_err(|error| KafkaSetupError::EmbeddedBroker(error.to_string()))?;
        let bootstrap_servers = ready
            .recv()
            .map_err(|_| KafkaSetupError::EmbeddedBroker("broker thread exited".to_owned()))?
            .map_err(KafkaSetupError::EmbeddedBroker)?;
        Ok(EmbeddedBroker {
            bootstrap_servers,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_defaults_but_not_the_operators_properties() {
        let mut kafka = KafkaConfig::default();
        kafka
            .properties
            .insert("linger.ms".to_owned(), "5".to_owned());
        let config = with_overrides(
            producer_config(&kafka, "client"),
            &kafka,
            &[("linger.ms", "0"), ("acks", "1")],
        );
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("partitioner"), Some("murmur2_random"));
        assert_eq!(config.get("client.id"), Some("client"));
    }
}
