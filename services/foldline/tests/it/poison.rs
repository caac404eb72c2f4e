//! Garbage on the topics the services consume: a record without a value,
//! bytes that are not Avro, an unknown schema id, a command keyed away from
//! its aggregate, a record that is not a command of this domain (an event
//! of `orders.events`, valid Avro under a registered schema id), a corrupt
//! Avro body under a valid schema id, and garbage in the event log itself.
//! Every one is parked in `orders.dlq` with its reason and origin (topic,
//! partition, offset, consumer) — or, in the event log, skipped by every
//! reader alike — and the partition moves on: the many commands behind it
//! on the same partition all take effect.

use std::time::Duration;

use foldline_platform::dlq::headers as dlq;
use foldline_testcontainers::replay::{read_topic, RawRecord};
use foldline_testcontainers::wait::POLL_INTERVAL;
use foldline_testcontainers::{place_body, CommandOptions, Deadline, Deployment};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::support::{binary, spawn_gateway, spawn_processor};

/// Appends `payload` (or no value) under `key` to `topic[partition]`;
/// returns the offset it landed at.
async fn append(
    producer: &FutureProducer,
    topic: &str,
    partition: i32,
    key: &[u8],
    payload: Option<&[u8]>,
) -> i64 {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .key(key);
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(error, _)| error)
        .expect("append a poison record")
        .offset
}

/// A record no client of ours would write, and why it must be parked.
#[derive(Debug)]
struct Poison<'a> {
    key: &'a [u8],
    payload: Option<&'a [u8]>,
    parked_because: &'static str,
}

fn header(record: &RawRecord, name: &str) -> String {
    String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_parked_and_the_partition_moves_on() {
    let deployment = Deployment::new(binary(), "poison").unwrap();
    let _gateway = spawn_gateway(&deployment).await;
    let mut processor = spawn_processor(&deployment, "processor", "store-processor");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();
    let commands_topic = deployment.topic("orders.commands");
    let events_topic = deployment.topic("orders.events");

    let placed = api
        .place_order(
            &place_body(&customer, "EUR", &[("SKU-1", 1, 1250)]),
            &CommandOptions::waiting(20),
        )
        .await
        .unwrap();
    assert_eq!(placed.status, 201, "{placed}");
    let order_id = placed.str("id").unwrap().to_owned();
    let commands = read_topic(deployment.bootstrap_servers(), &commands_topic)
        .await
        .unwrap();
    let real = commands
        .iter()
        .find(|record| record.key.as_deref() == Some(order_id.as_bytes()))
        .expect("the placement in orders.commands")
        .clone();

    let events = read_topic(deployment.bootstrap_servers(), &events_topic)
        .await
        .unwrap();
    let placed_event = events
        .iter()
        .find(|record| record.key.as_deref() == Some(order_id.as_bytes()))
        .expect("the placement in orders.events")
        .clone();
    let real_payload = real.payload.clone().expect("the placement has a value");
    // The wire header (magic byte, schema id) of a real command, then half
    // of its body: a valid schema id, a body that ends mid-record.
    let corrupt_body = real_payload[..5 + (real_payload.len() - 5) / 2].to_vec();

    // Poison on the order's own partition, ahead of its next command.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", deployment.bootstrap_servers())
        .create()
        .unwrap();
    let key = order_id.as_bytes();
    let unknown_schema = [0, 0x7f, 0xff, 0xff, 0xff, 2, b'x'];
    let poison = [
        Poison {
            key,
            payload: None,
            parked_because: "command record has no value",
        },
        Poison {
            key,
            payload: Some(b"{\"hello\": \"world\"}"),
            parked_because: "missing the confluent wire-format header",
        },
        Poison {
            key,
            payload: Some(&unknown_schema),
            // The registry does not know the id.
            parked_because: "404",
        },
        Poison {
            key: b"someone-else",
            payload: real.payload.as_deref(),
            parked_because: "command key is not its aggregate id",
        },
        Poison {
            key,
            payload: placed_event.payload.as_deref(),
            parked_because: "foldline.orders.OrderPlaced is not a record of this topic",
        },
        Poison {
            key,
            payload: Some(&corrupt_body),
            parked_because: "not a decodable avro record",
        },
    ];
    let mut poison_offsets = Vec::new();
    for record in &poison {
        poison_offsets.push(
            append(
                &producer,
                &commands_topic,
                real.partition,
                record.key,
                record.payload,
            )
            .await,
        );
    }
    // Garbage in the event log: no decision wrote it, so every reader
    // (projector, the processor's resync) must step over it.
    let garbage_offset = append(
        &producer,
        &events_topic,
        real.partition,
        key,
        Some(b"\x00\x00\x00\x00\x00garbage"),
    )
    .await;

    // The order's partition moves on: its cancel takes effect.
    let cancelled = api
        .cancel_order(&order_id, "poison behind me", &CommandOptions::waiting(30))
        .await
        .unwrap();
    assert_eq!(cancelled.status, 200, "{cancelled}");
    assert_eq!(cancelled.str("status"), Some("cancelled"), "{cancelled}");
    let read = api.order(&order_id).await.unwrap();
    assert_eq!(read.str("status"), Some("cancelled"), "{read}");
    // Many more commands on the poisoned partition (every command of this
    // order lands there), each settled in turn.
    for attempt in 0..20 {
        let again = api
            .cancel_order(
                &order_id,
                &format!("again {attempt}"),
                &CommandOptions::waiting(30),
            )
            .await
            .unwrap();
        assert_eq!(again.status, 409, "{again}");
        assert_eq!(again.code(), Some("already_cancelled"), "{again}");
    }

    // Each poison record is parked once, with its reason and origin.
    let dlq_topic = deployment.topic("orders.dlq");
    let deadline = Deadline::secs(30);
    let parked = loop {
        let parked = read_topic(deployment.bootstrap_servers(), &dlq_topic)
            .await
            .unwrap();
        if parked.len() > poison.len() || deadline.passed() {
            break parked;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    };
    let mut from_commands: Vec<&RawRecord> = parked
        .iter()
        .filter(|record| header(record, dlq::TOPIC) == commands_topic)
        .collect();
    // The dead-letter topic is partitioned by key: order by origin.
    from_commands.sort_by_key(|record| header(record, dlq::OFFSET).parse::<i64>().unwrap_or(-1));
    assert_eq!(from_commands.len(), poison.len(), "{parked:#?}");
    for ((record, sent), offset) in from_commands.iter().zip(&poison).zip(&poison_offsets) {
        let error = header(record, dlq::ERROR);
        assert!(
            error.contains(sent.parked_because),
            "expected {:?}, parked with {error:?}",
            sent.parked_because
        );
        assert_eq!(record.key.as_deref(), Some(sent.key));
        assert_eq!(record.payload.as_deref(), sent.payload);
        assert_eq!(header(record, dlq::PARTITION), real.partition.to_string());
        assert_eq!(header(record, dlq::OFFSET), offset.to_string(), "{sent:?}");
        assert!(header(record, dlq::CONSUMER).ends_with("orders-processor"));
    }
    let from_events: Vec<&RawRecord> = parked
        .iter()
        // Every projector of orders.events parks its own copy (the
        // timeline and the saga's read it too): count the orders projection's.
        .filter(|record| {
            header(record, dlq::TOPIC) == events_topic
                && header(record, dlq::CONSUMER).ends_with("orders-projector-orders")
        })
        .collect();
    assert_eq!(from_events.len(), 1, "{parked:#?}");
    assert!(
        header(from_events[0], dlq::ERROR).contains("404"),
        "{parked:#?}"
    );
    assert!(header(from_events[0], dlq::CONSUMER).ends_with("orders-projector-orders"));
    assert_eq!(
        header(from_events[0], dlq::OFFSET),
        garbage_offset.to_string()
    );
    assert!(processor.is_running(), "{}", processor.report(40));
}
