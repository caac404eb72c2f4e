//! What the processor and projector tests share: a mock cluster with the
//! domain's topics, an embedded schema registry and a codec on it, a
//! producer, topic readers, and the counter domain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value;
use foldline_contracts::envelope::{
    CommandMetadata, CommandOutcome, CommandRejected, EventMetadata,
};
use foldline_contracts::orders::{OrderShipped, ShipOrder};
use foldline_contracts::record::WireError;
use foldline_eventsourcing::{CommandId, EventId};
use foldline_platform::codec::{Codec, Decoded};
use foldline_platform::config::{KafkaConfig, Transactions};
use foldline_platform::kafka::{group_consumer_config, producer_config};
use foldline_platform::processor::{
    self, CommandDomain, CommandEnvelope, PartitionLog, ProcessorError, ProcessorOptions,
    ProcessorTopics,
};
use foldline_platform::shutdown::{self, ShutdownTrigger};
use foldline_platform::store::Store;
use foldline_registry::{serve, Registry, RegistryConfig};
use foldline_testcontainers::{poll_until, read_topic, Deadline, RawRecord};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) type Cluster = MockCluster<'static, DefaultProducerContext>;

/// The commands of the counter domain are `ShipOrder` records (any
/// record of the contracts would do: the codec only knows those).
pub(crate) const COMMAND: &str = "foldline.orders.ShipOrder";
pub(crate) const INCREMENTED: &str = "foldline.orders.OrderShipped";
const REJECTED: &str = CommandRejected::RECORD_NAME;
/// A record name the contracts do not declare: the codec refuses it for good.
const UNDECLARED: &str = "foldline.tests.Undeclared";

/// Counters whose ids start with these are decided into records that can
/// never be encoded: the domain cannot map them, or the codec refuses them.
pub(crate) const UNMAPPABLE: &str = "unmappable-";
pub(crate) const UNDECLARED_RECORD: &str = "undeclared-";

/// Logs to the test output when `RUST_LOG` asks for it.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A registry on `cluster`, its `_schemas-<unique>` topic created.
pub(crate) async fn start_registry(cluster: &Cluster, unique: &str) -> Registry {
    let schemas = format!("_schemas-{unique}");
    cluster.create_topic(&schemas, 1, 1).expect("create topic");
    let kafka = KafkaConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        ..KafkaConfig::default()
    };
    Registry::start(
        &kafka,
        RegistryConfig {
            topic: schemas,
            client_id: format!("registry-{unique}"),
        },
    )
    .await
    .expect("registry starts")
}

/// A mock cluster with a domain's topics, a registry served on it, and a
/// codec using that registry.
pub(crate) struct Fixture {
    pub(crate) cluster: Cluster,
    pub(crate) kafka: KafkaConfig,
    pub(crate) codec: Codec,
    pub(crate) topics: ProcessorTopics,
    pub(crate) producer: FutureProducer,
    _registry: Registry,
    registry_stop: Option<oneshot::Sender<()>>,
}

impl Fixture {
    pub(crate) async fn start(partitions: i32) -> Fixture {
        init_tracing();
        let cluster = MockCluster::new(1).expect("mock cluster");
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let topics = ProcessorTopics {
            commands: format!("counter-{unique}.commands"),
            events: format!("counter-{unique}.events"),
            outcomes: format!("counter-{unique}.outcomes"),
            dlq: format!("counter-{unique}.dlq"),
        };
        for topic in [&topics.commands, &topics.events, &topics.outcomes] {
            cluster
                .create_topic(topic, partitions, 1)
                .expect("create topic");
        }
        cluster
            .create_topic(&topics.dlq, 1, 1)
            .expect("create topic");
        let registry = start_registry(&cluster, &unique).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (registry_stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(registry.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let kafka = KafkaConfig {
            bootstrap_servers: cluster.bootstrap_servers(),
            // The mock cluster's transactions only pretend (INFRA.md).
            transactions: Transactions::Off,
            ..KafkaConfig::default()
        };
        let producer = producer_config(&kafka, "test-producer")
            .create()
            .expect("producer");
        Fixture {
            cluster,
            kafka,
            codec: Codec::new(&url).expect("codec"),
            topics,
            producer,
            _registry: registry,
            registry_stop: Some(registry_stop),
        }
    }

    pub(crate) fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Produces `bytes` to `topic`/`partition` with `key`; returns its offset.
    pub(crate) async fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: &str,
        bytes: &[u8],
    ) -> i64 {
        self.producer
            .send(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(key)
                    .payload(bytes),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(error, _)| error)
            .expect("produce")
            .offset
    }

    /// Produces `command` to `partition` of the commands topic, keyed by
    /// its counter; returns its offset.
    pub(crate) async fn send_command(&self, partition: i32, command: &ShipOrder) -> i64 {
        let bytes = self
            .codec
            .encode(&self.topics.commands, COMMAND, command)
            .await
            .expect("encode command");
        self.produce(&self.topics.commands, partition, &command.order_id, &bytes)
            .await
    }

    pub(crate) async fn read(&self, topic: &str) -> Vec<RawRecord> {
        read_topic(&self.bootstrap_servers(), topic)
            .await
            .expect("read topic")
    }

    /// Every outcome published so far, in topic order per partition.
    pub(crate) async fn outcomes(&self) -> Vec<(Vec<u8>, CommandOutcome)> {
        let mut outcomes = Vec::new();
        for record in self.read(&self.topics.outcomes).await {
            let payload = record.payload.expect("an outcome has a value");
            let outcome = self
                .codec
                .decode(&payload)
                .await
                .expect("decode outcome")
                .into_record::<CommandOutcome>()
                .expect("an outcome");
            outcomes.push((payload, outcome));
        }
        outcomes
    }

    /// Waits until every command of `command_ids` has at least one outcome;
    /// returns every outcome published by then.
    pub(crate) async fn await_outcomes(
        &self,
        command_ids: &[String],
        deadline: Deadline,
    ) -> Vec<(Vec<u8>, CommandOutcome)> {
        poll_until("every command's outcome", deadline, || async {
            let outcomes = self.outcomes().await;
            let published: HashSet<&str> = outcomes
                .iter()
                .map(|(_, outcome)| outcome.command_id.as_str())
                .collect();
            let missing = command_ids
                .iter()
                .filter(|id| !published.contains(id.as_str()))
                .count();
            if missing == 0 {
                Ok(Some(outcomes))
            } else {
                Err(format!(
                    "{missing} of {} outcomes missing",
                    command_ids.len()
                ))
            }
        })
        .await
        .expect("outcomes arrive")
    }

    /// The events topic folded through the gate, as every reader folds it.
    pub(crate) async fn fold_events(&self, partition: i32) -> (PartitionLog<u64>, Vec<RawRecord>) {
        let records: Vec<RawRecord> = self
            .read(&self.topics.events)
            .await
            .into_iter()
            .filter(|record| record.partition == partition)
            .collect();
        let mut log = PartitionLog::empty(partition);
        for record in &records {
            let payload = record.payload.as_deref().expect("an event has a value");
            let decoded = self.codec.decode(payload).await.expect("decode event");
            let parsed = Counter.parse_record(decoded).expect("a counter record");
            log.fold(&Counter, &parsed, record.offset);
        }
        (log, records)
    }

    /// Runs a processor of the counter domain in group `group`.
    pub(crate) fn spawn_processor(&self, group: &str, client_id: &str, store: Store) -> Running {
        let (trigger, shutdown) = shutdown::channel();
        let options = ProcessorOptions {
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            snapshot_every_commands: 1,
            snapshot_scales_with_state: false,
            max_batch: 8,
            dedupe_horizon_ms: i64::MAX / 2,
            instance_id: None,
        };
        let (topics, kafka, codec) = (self.topics.clone(), self.kafka.clone(), self.codec.clone());
        let task = tokio::spawn(async move {
            processor::run(
                Arc::new(Counter),
                topics,
                options,
                &kafka,
                codec,
                store,
                shutdown,
            )
            .await
        });
        Running { trigger, task }
    }

    /// Commits `next_offset` for `group` as a member of it: the mock
    /// cluster refuses commits from outside a group it knows.
    pub(crate) async fn commit_group_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) {
        let kafka = self.kafka.clone();
        let (group, topic) = (group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = group_consumer_config(&kafka, "offset-setter", &group)
                .create()
                .expect("consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            let deadline = Deadline::secs(30);
            while consumer.assignment().expect("assignment").count() == 0 {
                assert!(
                    !deadline.passed(),
                    "the offset setter never got an assignment"
                );
                let _ = consumer.poll(Duration::from_millis(50));
            }
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset(&topic, partition, Offset::Offset(next_offset))
                .expect("offset");
            consumer.commit(&offsets, CommitMode::Sync).expect("commit");
        })
        .await
        .expect("offset setter");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.registry_stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A spawned loop and its stop switch.
pub(crate) struct Running<E = ProcessorError> {
    pub(crate) trigger: ShutdownTrigger,
    pub(crate) task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Running<E> {
    /// Stops the loop and waits for it; panics if it failed.
    pub(crate) async fn stop(self) {
        self.trigger.trigger();
        self.task
            .await
            .expect("loop task")
            .expect("the loop stops cleanly");
    }
}

/// A command incrementing `counter`, with a command id from `seed`.
pub(crate) fn increment(counter: &str, seed: u128) -> ShipOrder {
    let command_id = uuid::Uuid::from_u128(seed).to_string();
    ShipOrder {
        metadata: CommandMetadata {
            command_id: command_id.clone(),
            correlation_id: command_id,
            causation_id: None,
            issued_at: 1_700_000_000_000 + seed as i64,
            issued_by: "test".to_owned(),
            traceparent: None,
        },
        order_id: counter.to_owned(),
    }
}

/// An event record of the counter domain.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CounterRecord {
    Incremented(OrderShipped),
    Rejected(CommandRejected),
}

/// The counter decided by `command` against `version`, as the processor
/// would decide it (tests use it to forge foreign writes).
pub(crate) fn incremented(version: u64, command: &ShipOrder) -> OrderShipped {
    let metadata = &command.metadata;
    let event_id = metadata
        .command_id
        .parse::<CommandId>()
        .map(|command_id| EventId::decided_by(command_id).to_string())
        .unwrap_or_default();
    OrderShipped {
        metadata: EventMetadata {
            event_id,
            aggregate_id: command.order_id.clone(),
            aggregate_version: version as i64 + 1,
            command_id: metadata.command_id.clone(),
            correlation_id: metadata.correlation_id.clone(),
            causation_id: metadata.command_id.clone(),
            occurred_at: metadata.issued_at,
            traceparent: metadata.traceparent.clone(),
        },
        order_id: command.order_id.clone(),
    }
}

/// A counter aggregate: every command increments it. Its state is the
/// count; its records are always accepted increments.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counter;

impl CommandDomain for Counter {
    type State = u64;
    type Command = ShipOrder;
    type Record = CounterRecord;

    fn parse_command(&self, decoded: Decoded) -> Result<ShipOrder, WireError> {
        if decoded.record_name != COMMAND {
            return Err(WireError::UnknownRecord {
                record: decoded.record_name,
            });
        }
        foldline_contracts::record::read_avro(&decoded.record_name, &decoded.value)
    }

    fn command_envelope(&self, command: &ShipOrder) -> CommandEnvelope {
        CommandEnvelope {
            command_id: command.metadata.command_id.clone(),
            correlation_id: command.metadata.correlation_id.clone(),
            aggregate_id: command.order_id.clone(),
            traceparent: command.metadata.traceparent.clone(),
        }
    }

    fn decide(&self, _state: &u64, version: u64, command: &ShipOrder) -> CounterRecord {
        CounterRecord::Incremented(incremented(version, command))
    }

    fn parse_record(&self, decoded: Decoded) -> Result<CounterRecord, WireError> {
        let name = decoded.record_name.as_str();
        match name {
            INCREMENTED => foldline_contracts::record::read_avro(name, &decoded.value)
                .map(CounterRecord::Incremented),
            REJECTED => foldline_contracts::record::read_avro(name, &decoded.value)
                .map(CounterRecord::Rejected),
            other => Err(WireError::UnknownRecord {
                record: other.to_owned(),
            }),
        }
    }

    fn record_to_avro(&self, record: &CounterRecord) -> Result<Value, WireError> {
        match record {
            CounterRecord::Incremented(shipped) if shipped.order_id.starts_with(UNMAPPABLE) => {
                Err(WireError::Unwritable {
                    record: INCREMENTED,
                    reason: "this counter has no wire form".to_owned(),
                })
            }
            CounterRecord::Incremented(shipped) => {
                foldline_contracts::record::write_avro(INCREMENTED, shipped)
            }
            CounterRecord::Rejected(rejected) => {
                foldline_contracts::record::write_avro(REJECTED, rejected)
            }
        }
    }

    fn record_name(&self, record: &CounterRecord) -> &'static str {
        match record {
            CounterRecord::Incremented(shipped)
                if shipped.order_id.starts_with(UNDECLARED_RECORD) =>
            {
                UNDECLARED
            }
            CounterRecord::Incremented(_) => INCREMENTED,
            CounterRecord::Rejected(_) => REJECTED,
        }
    }

    fn record_metadata<'r>(&self, record: &'r CounterRecord) -> &'r EventMetadata {
        match record {
            CounterRecord::Incremented(shipped) => &shipped.metadata,
            CounterRecord::Rejected(rejected) => &rejected.metadata,
        }
    }

    fn rejection<'r>(&self, record: &'r CounterRecord) -> Option<&'r CommandRejected> {
        match record {
            CounterRecord::Incremented(_) => None,
            CounterRecord::Rejected(rejected) => Some(rejected),
        }
    }

    fn evolve(&self, state: u64, _record: &CounterRecord) -> u64 {
        state + 1
    }
}
