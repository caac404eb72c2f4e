//! The raw Kafka baseline: how fast this broker takes and gives records of
//! a command's size with the platform's producer settings, on a topic of
//! its own, so settled commands/s can be read against what the log allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use foldline_platform::kafka_security::KafkaSecurityConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;

/// The partition count of the orders topics, so the baseline spreads like
/// the platform does.
const PARTITIONS: i32 = 6;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RawResult {
    pub(crate) topic: String,
    pub(crate) record_bytes: usize,
    pub(crate) partitions: usize,
    /// Records the broker still held when the consume run began.
    pub(crate) retained: u64,
    /// Times the consumer read them all, from the first offset.
    pub(crate) consume_passes: u64,
    pub(crate) produced: u64,
    pub(crate) produce_failed: u64,
    pub(crate) produce_s: f64,
    pub(crate) produce_per_s: f64,
    pub(crate) consumed: u64,
    pub(crate) consume_s: f64,
    pub(crate) consume_per_s: f64,
}

#[derive(Debug, Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug, Clone)]
struct Counting(Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        let counter = if result.is_ok() {
            &self.0.delivered
        } else {
            &self.0.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Measures produce/s then consume/s; blocking (librdkafka polling), so it
/// runs on a blocking thread.
pub(crate) fn measure(
    bootstrap: &str,
    security: &KafkaSecurityConfig,
    duration: Duration,
    record_bytes: usize,
) -> anyhow::Result<RawResult> {
    let topic = format!("foldline-load-raw-{}", uuid::Uuid::now_v7().simple());
    create_topic(bootstrap, security, &topic)?;
    let (produced, produce_failed, produce_s) =
        produce(bootstrap, security, &topic, duration, record_bytes)?;
    if produced == 0 {
        bail!("the raw baseline delivered no record to {topic} on {bootstrap}");
    }
    let consumed = consume(bootstrap, security, &topic, duration)?;
    Ok(RawResult {
        topic,
        record_bytes,
        partitions: consumed.partitions,
        retained: consumed.retained,
        consume_passes: consumed.passes,
        produced,
        produce_failed,
        produce_s,
        produce_per_s: produced as f64 / produce_s,
        consumed: consumed.consumed,
        consume_s: consumed.seconds,
        consume_per_s: consumed.consumed as f64 / consumed.seconds.max(1e-9),
    })
}

/// `bootstrap.servers` with the platform's `[kafka.security]`, so the
/// baseline reaches a secured cluster the way the roles do.
fn client_config(bootstrap: &str, security: &KafkaSecurityConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    security.apply(&mut config);
    config
}

/// Creates the topic through the admin API; the embedded mock cluster does
/// not serve it, and there the first produce creates the topic instead.
fn create_topic(
    bootstrap: &str,
    security: &KafkaSecurityConfig,
    topic: &str,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, security)
        .create()
        .context("create the kafka admin client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build a runtime for the admin client")?;
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    let created = runtime.block_on(admin.create_topics(
        &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
        &options,
    ));
    match created {
        Ok(results) => {
            for result in results {
                if let Err((name, code)) = result {
                    // A cluster wanting more replicas refuses 1; let it
                    // auto-create the topic with its own defaults.
                    eprintln!("raw baseline: could not create topic {name} ({code}); relying on auto-create");
                }
            }
        }
        Err(error) => {
            eprintln!("raw baseline: the admin api refused ({error}); relying on auto-create")
        }
    }
    Ok(())
}

fn produce(
    bootstrap: &str,
    security: &KafkaSecurityConfig,
    topic: &str,
    duration: Duration,
    record_bytes: usize,
) -> anyhow::Result<(u64, u64, f64)> {
    let deliveries = Arc::new(Deliveries::default());
    // The platform's own producer settings (foldline_platform::kafka::producer_config).
    let producer: BaseProducer<Counting> = client_config(bootstrap, security)
        .set("client.id", "foldline-load-raw")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create_with_context(Counting(deliveries.clone()))
        .context("create the raw baseline producer")?;
    let value = vec![b'x'; record_bytes];
    let started = Instant::now();
    let mut index = 0_u64;
    while started.elapsed() < duration {
        // Keys like order ids, so records spread over partitions as commands do.
        let key = uuid::Uuid::from_u128(u128::from(index) << 64 | 0x7).to_string();
        let mut record = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(error).context("produce a raw baseline record"),
            }
        }
        index += 1;
        if index.is_multiple_of(1_024) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flush the raw baseline producer")?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok((
        deliveries.delivered.load(Ordering::Relaxed),
        deliveries.failed.load(Ordering::Relaxed),
        elapsed,
    ))
}

struct Consumed {
    partitions: usize,
    retained: u64,
    passes: u64,
    consumed: u64,
    seconds: f64,
}

/// Reads the whole topic from its first offset to its high watermarks, as
/// many times as it takes to read for `duration`.
fn consume(
    bootstrap: &str,
    security: &KafkaSecurityConfig,
    topic: &str,
    duration: Duration,
) -> anyhow::Result<Consumed> {
    let consumer: BaseConsumer = client_config(bootstrap, security)
        .set("client.id", "foldline-load-raw")
        // assign needs a group id; the consumer never joins or commits.
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // The platform's default (KafkaConfig::fetch_wait_max_ms): a fetch
        // at the end of the log waits this long, and librdkafka's 500 ms
        // default would stall every pass's restart.
        .set("fetch.wait.max.ms", "5")
        .create()
        .context("create the raw baseline consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("fetch the raw baseline topic's metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
        .collect();
    if partitions.is_empty() {
        bail!("the raw baseline topic {topic} has no partitions in the metadata");
    }
    let mut assignment = TopicPartitionList::new();
    let mut expected = 0_u64;
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .context("fetch the raw baseline topic's watermarks")?;
        // The mock cluster keeps a bounded log: read what is still there.
        expected += u64::try_from(high - low).unwrap_or(0);
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(low))
            .context("assign a raw baseline partition")?;
    }
    if expected == 0 {
        bail!("the raw baseline topic {topic} holds no records to consume");
    }
    // The mock cluster keeps only a few MiB per partition, far less than a
    // produce run writes, so one pass over it is over in a blink: read it
    // again from the start until the reading time adds up to `duration`.
    // A pass is timed from its first record to its last, so re-assigning
    // between passes is not charged to the broker.
    let deadline = Instant::now() + duration + Duration::from_secs(120);
    let (mut consumed, mut passes, mut reading) = (0_u64, 0_u64, Duration::ZERO);
    while passes == 0 || reading < duration {
        consumer
            .assign(&assignment)
            .context("assign the raw baseline topic")?;
        let (mut this_pass, mut first) = (0_u64, None);
        while this_pass < expected {
            if Instant::now() > deadline {
                bail!("the raw baseline consumer read {this_pass} of {expected} records of pass {passes} too slowly");
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    first.get_or_insert_with(Instant::now);
                    this_pass += 1;
                    std::hint::black_box(message.payload_len());
                }
                Some(Err(error)) => return Err(error).context("consume a raw baseline record"),
                None => {}
            }
        }
        reading += first.map_or(Duration::ZERO, |first: Instant| first.elapsed());
        consumed += this_pass;
        passes += 1;
    }
    Ok(Consumed {
        partitions: partitions.len(),
        retained: expected,
        passes,
        consumed,
        seconds: reading.as_secs_f64(),
    })
}
