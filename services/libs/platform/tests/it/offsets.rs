//! Committed offsets resume exactly where the work stopped.

use std::time::{Duration, Instant};

use foldline_platform::config::KafkaConfig;
use foldline_platform::kafka::{group_consumer_config, producer_config, store_next_offset};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

fn first_offsets(consumer: &BaseConsumer, count: usize) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut offsets = Vec::new();
    while offsets.len() < count {
        assert!(Instant::now() < deadline, "only read {offsets:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(message.expect("consume").offset());
        }
    }
    offsets
}

/// A regression test: rust-rdkafka's `store_offset` stores `offset + 1`,
/// so storing "the next offset" through it skipped one record per restart.
#[test]
fn a_new_member_resumes_at_the_stored_next_offset() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topic = format!("offsets-{}", uuid::Uuid::new_v4().simple());
    cluster.create_topic(&topic, 1, 1).expect("create topic");
    let kafka = KafkaConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        ..KafkaConfig::default()
    };
    let producer: BaseProducer = producer_config(&kafka, "offsets-producer")
        .create()
        .expect("producer");
    for index in 0..10 {
        producer
            .send(
                BaseRecord::to(&topic)
                    .key("key")
                    .payload(&format!("{index}")),
            )
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");

    let group = format!("offsets-group-{}", uuid::Uuid::new_v4().simple());
    let first: BaseConsumer = group_consumer_config(&kafka, "first", &group)
        .create()
        .expect("consumer");
    first.subscribe(&[&topic]).expect("subscribe");
    assert_eq!(first_offsets(&first, 5), vec![0, 1, 2, 3, 4]);
    store_next_offset(&first, &topic, 0, 5).expect("store");
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(first);

    let second: BaseConsumer = group_consumer_config(&kafka, "second", &group)
        .create()
        .expect("consumer");
    second.subscribe(&[&topic]).expect("subscribe");
    assert_eq!(first_offsets(&second, 1), vec![5]);
}
