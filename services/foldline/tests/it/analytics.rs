//! Analytics on the real broker: orders placed and cancelled through the
//! gateway, paid and refused by commands a payments process manager would
//! send, notifications queued and delivered by the notify domain (its local
//! sinks), a poison record in the event log; the summary then equals the
//! sums of the events read back from the topics, a series adds up to it,
//! bad queries are problems, and a second analytics instance replaying
//! every topic from scratch into a fresh store serves identical figures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use foldline_contracts::envelope::CommandMetadata;
use foldline_contracts::notify::{NotifyEventRecord, ORDER_NOTICE_TEMPLATES};
use foldline_contracts::orders::{MarkOrderPaid, MarkOrderPaymentFailed, OrdersEventRecord};
use foldline_contracts::record::EventRecord;
use foldline_platform::codec::Codec;
use foldline_platform::dlq::headers as dlq;
use foldline_platform::headers::command_headers;
use foldline_testcontainers::replay::read_topic;
use foldline_testcontainers::wait::poll_until;
use foldline_testcontainers::{place_body, Api, CommandOptions, Deadline, Deployment};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::support::binary;

const ROLES: &[&str] = &["registry", "gateway", "orders", "notify", "analytics"];
/// The domains whose projectors run in [`ROLES`].
const DOMAINS: &[&str] = &["orders", "notify"];
const NOTIFICATIONS: usize = 3;
const ORDERS: usize = 12;

fn metadata() -> CommandMetadata {
    let command_id = uuid::Uuid::new_v4().to_string();
    CommandMetadata {
        correlation_id: command_id.clone(),
        command_id,
        causation_id: None,
        issued_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as i64)
            .unwrap_or_default(),
        issued_by: "analytics-it".to_owned(),
        traceparent: None,
    }
}

/// Produces a payment outcome to `orders.commands`, as the payments
/// process manager would (the orders API has no pay route).
async fn produce<T: serde::Serialize>(
    producer: &FutureProducer,
    codec: &Codec,
    topic: &str,
    record_name: &str,
    order_id: &str,
    metadata: &CommandMetadata,
    record: &T,
) {
    let payload = codec.encode(topic, record_name, record).await.unwrap();
    producer
        .send(
            FutureRecord::to(topic)
                .key(order_id)
                .payload(&payload)
                .headers(command_headers(metadata, record_name)),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)
        .expect("produce a payment outcome");
}

/// The figures the orders and notify event logs and their dead-letter
/// topics hold, summed here without any analytics code: each command's
/// first record counts.
pub(crate) async fn sums_of_the_topics(
    deployment: &Deployment,
    codec: &Codec,
) -> BTreeMap<String, i64> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    let mut add = |metric: String, amount: i64| *sums.entry(metric).or_insert(0) += amount;
    let events = read_topic(
        deployment.bootstrap_servers(),
        &deployment.topic("orders.events"),
    )
    .await
    .unwrap();
    let mut settled = BTreeSet::new();
    let mut currency_of = BTreeMap::new();
    for raw in &events {
        let Some(payload) = &raw.payload else {
            continue;
        };
        let Ok(decoded) = codec.decode(payload).await else {
            continue;
        };
        let Ok(record) = OrdersEventRecord::from_avro(&decoded.record_name, &decoded.value) else {
            continue;
        };
        if !settled.insert(record.metadata().command_id.clone()) {
            continue;
        }
        match record {
            OrdersEventRecord::Placed(placed) => {
                add("orders.placed".into(), 1);
                add(
                    format!("orders.placed_value.{}", placed.currency),
                    placed.total,
                );
                currency_of.insert(placed.order_id.clone(), placed.currency.clone());
            }
            OrdersEventRecord::Confirmed(confirmed) => {
                add("orders.confirmed".into(), 1);
                add("orders.payment_approved".into(), 1);
                let currency = &currency_of[&confirmed.order_id];
                add(format!("orders.revenue.{currency}"), confirmed.amount);
            }
            OrdersEventRecord::PaymentRejected(_) => {
                add("orders.rejected".into(), 1);
                add("orders.payment_declined".into(), 1);
            }
            OrdersEventRecord::Rejected(_) => add("orders.rejected".into(), 1),
            OrdersEventRecord::Cancelled(_) => add("orders.cancelled".into(), 1),
            OrdersEventRecord::Shipped(_) => add("orders.shipped".into(), 1),
            OrdersEventRecord::CommandRejected(_) => add("orders.commands_rejected".into(), 1),
        }
    }
    let member = |name: &str| -> String {
        name.chars()
            .map(|c| match c.is_ascii_alphanumeric() {
                true => c.to_ascii_lowercase(),
                false => '_',
            })
            .collect()
    };
    let notify_events = read_topic(
        deployment.bootstrap_servers(),
        &deployment.topic("notify.events"),
    )
    .await
    .unwrap();
    let mut channel_of = BTreeMap::new();
    let mut notices = BTreeMap::new();
    for raw in &notify_events {
        let Some(payload) = &raw.payload else {
            continue;
        };
        let Ok(decoded) = codec.decode(payload).await else {
            continue;
        };
        let Ok(record) = NotifyEventRecord::from_avro(&decoded.record_name, &decoded.value) else {
            continue;
        };
        if !settled.insert(record.metadata().command_id.clone()) {
            continue;
        }
        match record {
            NotifyEventRecord::Queued(queued) => {
                add("notify.queued".into(), 1);
                add(format!("notify.queued.{}", queued.channel), 1);
                channel_of.insert(queued.notification_id.clone(), queued.channel.clone());
                if queued.metadata.causation_id != queued.metadata.command_id
                    && ORDER_NOTICE_TEMPLATES.contains(&queued.template.as_str())
                {
                    notices.insert(queued.notification_id.clone(), member(&queued.template));
                }
            }
            NotifyEventRecord::Sent(sent) => {
                let channel = &channel_of[&sent.notification_id];
                add("notify.sent".into(), 1);
                add(
                    format!("notify.sent.{channel}.{}", member(&sent.provider)),
                    1,
                );
                if let Some(template) = notices.get(&sent.notification_id) {
                    add("notify.order_notices_sent".into(), 1);
                    add(format!("notify.order_notices_sent.{template}"), 1);
                }
            }
            NotifyEventRecord::FailedOver(failover) => {
                let channel = &channel_of[&failover.notification_id];
                add("notify.failovers".into(), 1);
                add(
                    format!(
                        "notify.failovers.{channel}.{}",
                        member(&failover.from_provider)
                    ),
                    1,
                );
            }
            NotifyEventRecord::Failed(failed) => {
                add("notify.failed".into(), 1);
                add(
                    format!("notify.failed.{}", channel_of[&failed.notification_id]),
                    1,
                );
            }
            NotifyEventRecord::AttemptFailed(_) => {}
            NotifyEventRecord::CommandRejected(_) => add("notify.commands_rejected".into(), 1),
        }
    }
    for domain in DOMAINS {
        let letters = read_topic(
            deployment.bootstrap_servers(),
            &deployment.topic(&format!("{domain}.dlq")),
        )
        .await
        .unwrap();
        let origins: BTreeSet<(Vec<u8>, Vec<u8>, Vec<u8>)> = letters
            .iter()
            .map(|letter| {
                let header = |name| letter.header(name).unwrap_or_default().to_vec();
                (
                    header(dlq::TOPIC),
                    header(dlq::PARTITION),
                    header(dlq::OFFSET),
                )
            })
            .collect();
        if !origins.is_empty() {
            add(format!("dlq.{domain}"), origins.len() as i64);
            add(format!("dlq.{domain}.poison"), origins.len() as i64);
        }
    }
    sums
}

/// Polls the summary until its sums of the metrics `counted` picks are
/// `expected`; returns the summary.
pub(crate) async fn summary_reaching(
    api: &Api,
    expected: &BTreeMap<String, i64>,
    counted: impl Fn(&str) -> bool,
) -> Value {
    poll_until(
        "the analytics summary to equal the topics' sums",
        Deadline::secs(90),
        || async {
            let response = api
                .get("/v1/analytics/summary")
                .await
                .map_err(|error| error.to_string())?;
            let sums: BTreeMap<String, i64> = response
                .body
                .get("sums")
                .and_then(|sums| serde_json::from_value::<BTreeMap<String, i64>>(sums.clone()).ok())
                .unwrap_or_default()
                .into_iter()
                .filter(|(metric, _)| counted(metric))
                .collect();
            match &sums == expected {
                true => Ok(Some(response.body)),
                false => Err(format!("{sums:?}")),
            }
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_totals_equal_the_sums_of_the_events_and_a_replay_serves_the_same() {
    let deployment = Deployment::new(binary(), "analytics").unwrap();
    let mut platform = deployment
        .spawn_ready("platform", ROLES, "store", Deadline::secs(60))
        .await
        .expect("the platform process becomes ready");
    let api = deployment.api().unwrap();
    let customer = uuid::Uuid::new_v4().to_string();

    // Place, through the gateway.
    let mut orders = Vec::new();
    for index in 0..ORDERS {
        let currency = if index % 2 == 0 { "EUR" } else { "USD" };
        let body = place_body(
            &customer,
            currency,
            &[("SKU-1", 1 + index as i64 % 3, 1250)],
        );
        let key = format!("analytics-place-{index}");
        let placed = api
            .place_order(&body, &CommandOptions::keyed_waiting(&key, 20))
            .await
            .unwrap();
        assert_eq!(placed.status, 201, "{placed}");
        let order_id = placed.str("id").unwrap().to_owned();
        let total = placed.body["total"].as_i64().unwrap();
        orders.push((order_id, total));
    }
    // Cancel three, through the gateway; cancelling one again is refused.
    for (order_id, _) in &orders[..3] {
        let cancelled = api
            .cancel_order(order_id, "changed my mind", &CommandOptions::waiting(20))
            .await
            .unwrap();
        assert_eq!(cancelled.status, 200, "{cancelled}");
    }
    let again = api
        .cancel_order(&orders[0].0, "again", &CommandOptions::waiting(20))
        .await
        .unwrap();
    assert_eq!(again.status, 409, "{again}");

    // Pay four, refuse two: the payment outcomes the saga would send.
    let codec = Codec::new(&deployment.registry_url()).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", deployment.bootstrap_servers())
        // As every producer of ours: a command lands on its order's partition.
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let commands = deployment.topic("orders.commands");
    for (index, (order_id, total)) in orders[3..9].iter().enumerate() {
        let metadata = metadata();
        let payment_id = uuid::Uuid::new_v4().to_string();
        if index < 4 {
            let record = MarkOrderPaid {
                metadata: metadata.clone(),
                order_id: order_id.clone(),
                payment_id,
                amount: *total,
            };
            let name = "foldline.orders.MarkOrderPaid";
            produce(
                &producer, &codec, &commands, name, order_id, &metadata, &record,
            )
            .await;
        } else {
            let record = MarkOrderPaymentFailed {
                metadata: metadata.clone(),
                order_id: order_id.clone(),
                payment_id,
                reason: "card declined".to_owned(),
            };
            let name = "foldline.orders.MarkOrderPaymentFailed";
            produce(
                &producer, &codec, &commands, name, order_id, &metadata, &record,
            )
            .await;
        }
    }
    for (index, (order_id, _)) in orders[3..9].iter().enumerate() {
        let status = if index < 4 {
            "confirmed"
        } else {
            "payment_rejected"
        };
        poll_until(
            "the payment outcome on the order",
            Deadline::secs(60),
            || async {
                let order = api
                    .order(order_id)
                    .await
                    .map_err(|error| error.to_string())?;
                match order.str("status") == Some(status) {
                    true => Ok(Some(())),
                    false => Err(order.to_string()),
                }
            },
        )
        .await
        .unwrap();
    }
    // Notifications, through the gateway, delivered by the local sink.
    let mut notifications = Vec::new();
    for index in 0..NOTIFICATIONS {
        let body = serde_json::json!({
            "channel": "email",
            "recipient": format!("reader-{index}@example.org"),
            "template": "report.ready",
        });
        let key = format!("analytics-notify-{index}");
        let queued = api
            .command(
                "/v1/notifications",
                body.to_string(),
                &CommandOptions::keyed_waiting(&key, 10),
            )
            .await
            .unwrap();
        assert!(matches!(queued.status, 201 | 202), "{queued}");
        // 201 with the notification when it settled within the wait, else 202.
        let id = queued.str("id").or(queued.str("notification_id")).unwrap();
        notifications.push(id.to_owned());
    }
    for id in &notifications {
        poll_until("the notification sent", Deadline::secs(60), || async {
            let view = api
                .get(&format!("/v1/notifications/{id}"))
                .await
                .map_err(|error| error.to_string())?;
            match view.str("status") == Some("sent") {
                true => Ok(Some(())),
                false => Err(view.to_string()),
            }
        })
        .await
        .unwrap();
    }
    // Poison in the event log, once every command has settled: parked in
    // orders.dlq by the orders projector and by analytics, one origin,
    // counted once.
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&deployment.topic("orders.events"))
                .partition(0)
                .key(b"poison")
                .payload(b"not avro"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(error, _)| error)
        .unwrap();
    // Every reader of orders.events parks its own copy (the orders
    // projection, the saga's outboxes, the timeline, analytics): one
    // origin, which analytics must count once.
    // (Each reader parks it in the dead-letter topic of the domain that
    // declares it: notify's read models of orders in notify.dlq.)
    let topology = foldline_contracts::topology::Topology::embedded().unwrap();
    let readers_of = |domain: &str| {
        topology
            .domains
            .iter()
            .filter(|declared| declared.name == domain)
            .flat_map(|declared| &declared.consumer_groups)
            .filter(|group| group.reads == ["orders.events"])
            .count()
    };
    assert!(
        readers_of("orders") >= 2,
        "the orders projection and analytics read it"
    );
    for domain in DOMAINS {
        let readers = readers_of(domain);
        poll_until(
            "every reader parked the poison",
            Deadline::secs(60),
            || async {
                let letters = read_topic(
                    deployment.bootstrap_servers(),
                    &deployment.topic(&format!("{domain}.dlq")),
                )
                .await
                .map_err(|error| error.to_string())?;
                match letters.len() == readers {
                    true => Ok(Some(())),
                    false => Err(format!(
                        "{} dead letters of {readers} in {domain}.dlq",
                        letters.len()
                    )),
                }
            },
        )
        .await
        .unwrap();
    }

    // The topics' sums, read back with a stock client, are the client's.
    let expected = sums_of_the_topics(&deployment, &codec).await;
    let revenue_eur: i64 = orders[3..7]
        .iter()
        .enumerate()
        .filter(|(index, _)| (index + 3) % 2 == 0)
        .map(|(_, (_, total))| total)
        .sum();
    assert_eq!(expected["orders.placed"], ORDERS as i64);
    assert_eq!(expected["orders.cancelled"], 3);
    assert_eq!(expected["orders.confirmed"], 4);
    assert_eq!(expected["orders.rejected"], 2);
    assert_eq!(expected["orders.commands_rejected"], 1);
    assert_eq!(expected["orders.revenue.EUR"], revenue_eur);
    assert_eq!(expected["dlq.orders"], 1);
    assert_eq!(expected["notify.sent"], NOTIFICATIONS as i64);
    assert_eq!(
        expected["notify.sent.email.email_sink"],
        NOTIFICATIONS as i64
    );

    let summary = summary_reaching(&api, &expected, |_| true).await;
    assert_eq!(summary["payment_approval"]["rate_basis_points"], 6_666);
    assert_eq!(summary["revenue"]["EUR"], revenue_eur);
    let latency = &summary["latencies_ms"]["orders.order_to_payment_ms"];
    assert_eq!(latency["count"], 6, "{summary}");

    // A series over the last hours adds up to the total.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for resolution in ["minute", "hour"] {
        let path = format!(
            "/v1/analytics/series?metric=orders.placed&resolution={resolution}&from={}&to={now}",
            now - 3 * 3_600_000
        );
        let series = api.get(&path).await.unwrap();
        assert_eq!(series.status, 200, "{series}");
        let placed: i64 = series.body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| point["value"].as_i64().unwrap())
            .sum();
        assert_eq!(placed, ORDERS as i64, "{resolution}: {series}");
    }
    for bad in [
        "/v1/analytics/series?metric=orders.placed&resolution=day",
        "/v1/analytics/series?resolution=hour",
        "/v1/analytics/series?metric=orders.placed&from=later",
    ] {
        let refused = api.get(bad).await.unwrap();
        assert_eq!(refused.status, 400, "{bad}: {refused}");
        assert!(refused.is_problem(), "{bad}: {refused}");
    }

    // A second instance, alone in the analytics groups, with a fresh store:
    // it replays every topic from its start and serves the same figures.
    platform
        .terminate(Deadline::secs(30))
        .await
        .expect("the platform stops");
    let _replay = deployment
        .spawn_ready(
            "replay",
            &["registry", "gateway", "analytics"],
            "store-replay",
            Deadline::secs(60),
        )
        .await
        .expect("the replaying process becomes ready");
    let replayed = summary_reaching(&api, &expected, |_| true).await;
    assert_eq!(replayed, summary, "a fresh replay serves identical figures");
}
