//! What the notify tests that drive orders through the saga share: the
//! deployment (simulator, front, processors), the commands a customer
//! sends, the recorded notices, notify's latency figures and the dead
//! letters.

use std::time::Duration;

use foldline_testcontainers::replay::{read_topic, RawRecord};
use foldline_testcontainers::wait::poll_until;
use foldline_testcontainers::{free_port, Api, Deadline, Deployment, FoldlineProcess};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::support::binary;

const SAGA_ON: (&str, &str) = ("FOLDLINE__SAGA__ENABLED", "true");

/// A deployment with the saga on in every process.
pub(crate) fn saga_deployment(test_name: &str) -> Deployment {
    Deployment::new(binary(), test_name)
        .unwrap()
        .with_role_env(vec![(SAGA_ON.0.to_owned(), SAGA_ON.1.to_owned())])
}

/// Starts the payment provider simulator; returns it and its url.
pub(crate) async fn spawn_simulator(deployment: &Deployment) -> (FoldlineProcess, String) {
    let port = free_port().unwrap();
    let simulator = crate::support::spawn_simulator(deployment, &[], port).await;
    (simulator, format!("http://127.0.0.1:{port}"))
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// Notify's retry schedule in the tests: three attempts, quickly.
pub(crate) fn quick_retries() -> Vec<(String, String)> {
    owned(&[
        ("FOLDLINE__NOTIFY__MAX_ATTEMPTS", "3"),
        ("FOLDLINE__NOTIFY__RETRY_BACKOFF_MS", "200"),
        ("FOLDLINE__NOTIFY__RETRY_BACKOFF_MAX_MS", "800"),
    ])
}

/// The payments worker pointed at the simulator, retrying quickly.
pub(crate) fn payments_env(simulator: &str) -> Vec<(String, String)> {
    owned(&[
        ("FOLDLINE__PAYMENTS__PROVIDER__URL", simulator),
        ("FOLDLINE__PAYMENTS__PROVIDER__RETRY_FIRST_DELAY_MS", "20"),
        ("FOLDLINE__PAYMENTS__PROVIDER__RETRY_MAX_DELAY_MS", "300"),
    ])
}

/// Everything that reads a store: the gateway, every projector and relay
/// (the notices', the delivery worker, the saga's, the payment provider
/// worker) and analytics.
pub(crate) async fn spawn_front(
    deployment: &Deployment,
    env: &[(String, String)],
) -> FoldlineProcess {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    deployment
        .spawn_ready_with(
            "front",
            &[
                "registry",
                "gateway",
                "users-projector",
                "orders-projector",
                "payments-projector",
                "notify-projector",
                "analytics",
            ],
            "store-front",
            &env,
            Deadline::secs(90),
        )
        .await
        .expect("the front process becomes ready")
}

/// Every domain's command processor, in one process.
pub(crate) fn spawn_processors(deployment: &Deployment) -> FoldlineProcess {
    deployment
        .spawn(
            "processors",
            &[
                "users-processor",
                "orders-processor",
                "payments-processor",
                "notify-processor",
            ],
            "store-processors",
        )
        .unwrap()
}

/// A command retried (same key) until it is answered 200 or 201.
pub(crate) use crate::support::command_answered as command;

fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("an id").to_owned()
}

/// Registers customer `index` (with a phone number when `phone`).
pub(crate) async fn register(api: &Api, prefix: &str, index: usize, phone: bool) -> String {
    let mut body = json!({
        "email": format!("notice-{index}@{prefix}.example.org"),
        "name": format!("Customer {index}"),
    });
    if phone {
        body["phone"] = json!(format!("+4477009{:05}", index));
    }
    id_of(&command(api, "/v1/users", body, &format!("{prefix}-user-{index}")).await)
}

/// Places an order of 2 × 12.50 EUR (paid, unless `card` says otherwise).
pub(crate) async fn place(
    api: &Api,
    key: String,
    customer: String,
    card: Option<&'static str>,
) -> String {
    let mut body = json!({
        "customer_id": customer,
        "currency": "EUR",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 1250}],
    });
    if let Some(card) = card {
        body["card_token"] = json!(card);
    }
    id_of(&command(api, "/v1/orders", body, &key).await)
}

/// Waits until the order's status is one of `wanted`.
pub(crate) async fn status_of(api: &Api, order: &str, wanted: &[&str]) -> String {
    poll_until(
        &format!("order {order} in {wanted:?}"),
        Deadline::secs(120),
        || async {
            let answer = api.order(order).await.map_err(|e| e.to_string())?;
            match answer.str("status") {
                Some(status) if wanted.contains(&status) => Ok(Some(status.to_owned())),
                _ => Err(answer.to_string()),
            }
        },
    )
    .await
    .expect("the saga settles the order")
}

/// The recorded notices of an order, once there are `count` of them.
pub(crate) async fn notices(api: &Api, order: &str, count: usize) -> Vec<Value> {
    poll_until(
        &format!("{count} notices of order {order}"),
        Deadline::secs(120),
        || async {
            let answer = api
                .get(&format!("/v1/notifications/notices?order_id={order}"))
                .await
                .map_err(|e| e.to_string())?;
            match answer.body["items"].as_array() {
                Some(items) if items.len() >= count => Ok(Some(items.clone())),
                _ => Err(answer.to_string()),
            }
        },
    )
    .await
    .expect("the notices are recorded")
}

/// A notice's notification ids: the email first, then the SMS if any.
pub(crate) fn notification_ids(notice: &Value) -> Vec<String> {
    notice["notification_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect()
}

/// Notify's latency figures (`GET /v1/notifications/latency`).
pub(crate) async fn latency(api: &Api) -> Value {
    api.get("/v1/notifications/latency")
        .await
        .expect("latency")
        .body
}

/// Prints notify's latency figures per provider (for a notice, its request
/// time is its event's, so this is order event → provider accepted).
pub(crate) fn report_latency(label: &str, figures: &Value) {
    for provider in figures["providers"].as_array().into_iter().flatten() {
        eprintln!(
            "notify latency [{label}] {}/{}: n={} p50={}ms p99={}ms max={}ms (call p50={}us p99={}us) breaches {}ms SLA: {}",
            provider["channel"].as_str().unwrap_or_default(),
            provider["provider"].as_str().unwrap_or_default(),
            provider["end_to_end_ms"]["count"],
            provider["end_to_end_ms"]["p50"],
            provider["end_to_end_ms"]["p99"],
            provider["end_to_end_ms"]["max"],
            provider["provider_call_us"]["p50"],
            provider["provider_call_us"]["p99"],
            provider["sla_p99_ms"],
            provider["p99_breaches_sla"],
        );
    }
}

/// Polls `notify.dlq` until `found` picks what the test waits for out of
/// its records (`Err` says what is there so far).
pub(crate) async fn dead_letters_until<T>(
    deployment: &Deployment,
    what: &str,
    found: impl Fn(&[RawRecord]) -> Result<T, String>,
) -> T {
    let topic = deployment.topic("notify.dlq");
    poll_until(what, Deadline::secs(60), || async {
        let records = read_topic(deployment.bootstrap_servers(), &topic)
            .await
            .map_err(|error| error.to_string())?;
        found(&records).map(Some)
    })
    .await
    .unwrap()
}

/// A dead letter's header as text.
pub(crate) fn header_text(record: &RawRecord, name: &str) -> String {
    String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned()
}

/// Waits until every notification reached `status`; returns their views.
pub(crate) async fn wait_status(
    api: &Api,
    ids: &[String],
    status: &str,
    deadline: Deadline,
) -> Vec<Value> {
    let mut views = Vec::new();
    for id in ids {
        let view = poll_until(&format!("notification {id} {status}"), deadline, || async {
            let answer = api
                .get(&format!("/v1/notifications/{id}"))
                .await
                .map_err(|error| error.to_string())?;
            match answer.str("status") {
                Some(seen) if seen == status => Ok(Some(answer.body)),
                _ => Err(answer.to_string()),
            }
        })
        .await
        .expect("the notification settles");
        views.push(view);
    }
    views
}

/// The provider that took a notification, from its view.
pub(crate) fn delivered_by(view: &Value) -> String {
    view["delivery"]["provider"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Produces a record that is no Avro to every partition of `topic`;
/// returns how many partitions it has.
pub(crate) async fn poison_every_partition(deployment: &Deployment, topic: &str) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", deployment.bootstrap_servers())
        .create()
        .unwrap();
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    assert!(partitions > 0, "{topic} has partitions");
    for partition in 0..partitions {
        producer
            .send(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(i32::try_from(partition).unwrap())
                    .key(b"garbage")
                    .payload(b"not avro"),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(error, _)| error)
            .unwrap();
    }
    partitions
}
