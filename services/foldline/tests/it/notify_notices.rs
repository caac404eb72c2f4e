//! The order notices on the real broker, through the whole saga: users
//! register (some with a phone), orders are placed against the provider
//! simulator (paid, declined, for an erased user, for a stranger), paid
//! ones are cancelled (refunds), and the process running the notices'
//! relays and the delivery worker (with the gateway and every projector)
//! is killed with -9 mid-stream. Every notice must reach the fake
//! providers exactly once per event and channel, the erased and unknown
//! users must be recorded as skipped, and the analytics figures must
//! equal what the fakes counted. Then the SMS provider fails for good:
//! the notice's SMS exhausts its attempts into `notify.dlq` with its
//! reason while the emails behind it keep flowing.
//!
//! Both fakes honour `Idempotency-Key`: a repeated call is absorbed and
//! counted as such, so "accepted" counts notifications, and any second
//! notification for one event and channel (another id) would show.

use std::collections::{BTreeMap, BTreeSet};

use foldline_testcontainers::replay::read_topic;
use foldline_testcontainers::wait::poll_until;
use foldline_testcontainers::{
    free_port, Api, Behaviour, Deadline, Deployment, FakeProvider, FoldlineProcess,
};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::support::{binary, command_answered};

const SAGA_ON: (&str, &str) = ("FOLDLINE__SAGA__ENABLED", "true");

struct Fakes {
    mail: FakeProvider,
    sms: FakeProvider,
}

fn front_env(fakes: &Fakes, simulator: &str) -> Vec<(String, String)> {
    [
        (
            "FOLDLINE__NOTIFY__EMAIL_PROVIDERS",
            format!("mail={}", fakes.mail.url()),
        ),
        (
            "FOLDLINE__NOTIFY__SMS_PROVIDERS",
            format!("primary={}", fakes.sms.url()),
        ),
        ("FOLDLINE__NOTIFY__PROVIDER_TIMEOUT_MS", "500".to_owned()),
        ("FOLDLINE__NOTIFY__MAX_ATTEMPTS", "3".to_owned()),
        ("FOLDLINE__NOTIFY__RETRY_BACKOFF_MS", "200".to_owned()),
        ("FOLDLINE__NOTIFY__RETRY_BACKOFF_MAX_MS", "800".to_owned()),
        ("FOLDLINE__PAYMENTS__PROVIDER__URL", simulator.to_owned()),
        (
            "FOLDLINE__PAYMENTS__PROVIDER__RETRY_FIRST_DELAY_MS",
            "20".to_owned(),
        ),
        (
            "FOLDLINE__PAYMENTS__PROVIDER__RETRY_MAX_DELAY_MS",
            "300".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// Everything that reads a store: the gateway, every projector and relay
/// (the notices', the delivery worker, the saga's, the payment provider
/// worker) and analytics. The process the test kills.
async fn spawn_front(deployment: &Deployment, env: &[(String, String)]) -> FoldlineProcess {
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

/// A command retried (same key) until the gateway answers it: the gateway
/// dies with the front process.
async fn command(api: &Api, path: &str, body: Value, key: &str) -> Value {
    command_answered(api, path, body, key).await
}

fn id_of(body: &Value) -> String {
    body["id"].as_str().expect("an id").to_owned()
}

async fn register(api: &Api, prefix: &str, index: usize, phone: bool) -> String {
    let mut body = json!({
        "email": format!("notice-{index}@{prefix}.example.org"),
        "name": format!("Customer {index}"),
    });
    if phone {
        body["phone"] = json!(format!("+4477009{:05}", index));
    }
    id_of(&command(api, "/v1/users", body, &format!("{prefix}-user-{index}")).await)
}

async fn place(api: &Api, key: String, customer: String, card: Option<&'static str>) -> String {
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

async fn status_of(api: &Api, order: &str, wanted: &[&str]) -> String {
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
async fn notices(api: &Api, order: &str, count: usize) -> Vec<Value> {
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

/// An order the test expects notices for.
struct Expected {
    order: String,
    templates: Vec<&'static str>,
    phone: bool,
}

/// Waits until every expected notice is recorded as queued with one
/// notification per channel, and every one of them reached its fake;
/// returns the email and SMS notification ids.
async fn delivered(
    api: &Api,
    fakes: &Fakes,
    expected: &[Expected],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut emails, mut texts) = (BTreeSet::new(), BTreeSet::new());
    for wanted in expected {
        let recorded = notices(api, &wanted.order, wanted.templates.len()).await;
        let templates: BTreeSet<&str> = recorded
            .iter()
            .filter_map(|notice| notice["template"].as_str())
            .collect();
        assert_eq!(
            templates,
            wanted.templates.iter().copied().collect(),
            "{recorded:?}"
        );
        for notice in &recorded {
            assert_eq!(notice["outcome"], "queued", "{notice}");
            let ids: Vec<String> = notice["notification_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect();
            assert_eq!(ids.len(), 1 + usize::from(wanted.phone), "{notice}");
            emails.insert(ids[0].clone());
            texts.extend(ids.get(1).cloned());
        }
    }
    let arrived = |fake: &FakeProvider, ids: &BTreeSet<String>| {
        let accepted = fake.accepted();
        ids.iter().all(|id| accepted.contains_key(id))
    };
    poll_until("every notice at the fakes", Deadline::secs(120), || async {
        Ok::<_, String>(
            (arrived(&fakes.mail, &emails) && arrived(&fakes.sms, &texts)).then_some(()),
        )
    })
    .await
    .unwrap();
    (emails, texts)
}

/// Prints notify's own latency figures per provider: for a notice, its
/// request time is its event's, so this is order event → provider accepted.
async fn report_latency(api: &Api, label: &str) {
    let figures = api.get("/v1/notifications/latency").await.unwrap().body;
    for provider in figures["providers"].as_array().into_iter().flatten() {
        eprintln!(
            "notify notices latency [{label}] {}/{}: n={} p50={}ms p99={}ms max={}ms",
            provider["channel"].as_str().unwrap_or_default(),
            provider["provider"].as_str().unwrap_or_default(),
            provider["end_to_end_ms"]["count"],
            provider["end_to_end_ms"]["p50"],
            provider["end_to_end_ms"]["p99"],
            provider["end_to_end_ms"]["max"],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_outcome_is_told_once_per_channel_across_a_kill_9_and_analytics_counts_it() {
    let fakes = Fakes {
        mail: FakeProvider::start(true).await.unwrap(),
        sms: FakeProvider::start(true).await.unwrap(),
    };
    let deployment = Deployment::new(binary(), "notify-notices")
        .unwrap()
        .with_role_env(vec![(SAGA_ON.0.to_owned(), SAGA_ON.1.to_owned())]);
    let simulator_listen = format!("127.0.0.1:{}", free_port().unwrap());
    let mut simulator = deployment
        .spawn_with(
            "simulator",
            &["provider-simulator"],
            "store-simulator",
            &[("FOLDLINE__PAYMENTS__SIMULATOR__LISTEN", &simulator_listen)],
        )
        .unwrap();
    let simulator_url = format!("http://{simulator_listen}");
    simulator
        .wait_ready(&format!("{simulator_url}/healthz"), Deadline::secs(30))
        .await
        .expect("the simulator becomes ready");
    let env = front_env(&fakes, &simulator_url);
    let mut front = spawn_front(&deployment, &env).await;
    let _processors = deployment
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
        .unwrap();
    let api = deployment.api().unwrap();
    let prefix = deployment.prefix().to_owned();

    // Customers: two with a phone, two without; one erases their data.
    let mut customers = Vec::new();
    for index in 0..4 {
        customers.push((register(&api, &prefix, index, index < 2).await, index < 2));
    }
    let erased = register(&api, &prefix, 9, true).await;
    let erasure = api
        .send(
            Method::DELETE,
            &format!("/v1/users/{erased}/personal-data"),
            Some(json!({"requested_by": "dpo@example.org", "reason": "asked"}).to_string()),
            &[("prefer", "wait=5".to_owned())],
        )
        .await
        .unwrap();
    assert_eq!(erasure.str("personal_data"), Some("erased"), "{erasure}");
    let mut expected = Vec::new();

    // Paid and declined orders; the paid ones of the first two customers
    // are cancelled again (a refund each).
    let mut paid = Vec::new();
    for (index, (customer, phone)) in customers.iter().enumerate() {
        let order = place(
            &api,
            format!("{prefix}-paid-{index}"),
            customer.clone(),
            None,
        )
        .await;
        paid.push((order, *phone, index < 2));
        let declined = place(
            &api,
            format!("{prefix}-declined-{index}"),
            customer.clone(),
            Some("tok_chargeDeclined"),
        )
        .await;
        expected.push(Expected {
            order: declined,
            templates: vec!["order.rejected"],
            phone: *phone,
        });
    }
    for (order, phone, cancel) in paid {
        assert_eq!(status_of(&api, &order, &["confirmed"]).await, "confirmed");
        let mut templates = vec!["order.confirmed"];
        if cancel {
            command(
                &api,
                &format!("/v1/orders/{order}/cancel"),
                json!({"reason": "changed my mind"}),
                &format!("{order}-cancel"),
            )
            .await;
            templates.push("order.refunded");
        }
        expected.push(Expected {
            order,
            templates,
            phone,
        });
    }

    delivered(&api, &fakes, &expected).await;
    report_latency(&api, "before the kill").await;

    // kill -9 of the front mid-stream, while orders are still placed and
    // their notices queued and delivered.
    let delivered_before = fakes.mail.accepted().len();
    let sender = {
        let (api, customers, prefix) = (api.clone(), customers.clone(), prefix.clone());
        tokio::spawn(async move {
            let mut placing = JoinSet::new();
            for index in 0..16 {
                let (api, (customer, phone)) = (api.clone(), customers[index % 4].clone());
                let key = format!("{prefix}-crash-{index}");
                placing.spawn(async move { (place(&api, key, customer, None).await, phone) });
            }
            let mut placed = Vec::new();
            while let Some(done) = placing.join_next().await {
                placed.push(done.unwrap());
            }
            placed
        })
    };
    poll_until("some crash-phase notices", Deadline::secs(120), || async {
        Ok::<_, String>((fakes.mail.accepted().len() >= delivered_before + 3).then_some(()))
    })
    .await
    .unwrap();
    front.kill9().unwrap();
    front = spawn_front(&deployment, &env).await;
    for (order, phone) in sender.await.unwrap() {
        status_of(&api, &order, &["confirmed"]).await;
        expected.push(Expected {
            order,
            templates: vec!["order.confirmed"],
            phone,
        });
    }

    // The erased user's and the stranger's orders are rejected by the
    // saga; their notices are recorded as skipped, nothing is sent.
    let for_erased = place(&api, format!("{prefix}-erased"), erased, None).await;
    let stranger = place(
        &api,
        format!("{prefix}-stranger"),
        "6f1c1a52-8d3e-4f4e-9a57-0c6b9e2f1d10".to_owned(),
        None,
    )
    .await;
    for (order, reason) in [
        (&for_erased, "recipient_erased"),
        (&stranger, "recipient_unknown"),
    ] {
        assert_eq!(status_of(&api, order, &["rejected"]).await, "rejected");
        let recorded = notices(&api, order, 1).await;
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0]["outcome"], "skipped", "{recorded:?}");
        assert_eq!(recorded[0]["reason"], reason, "{recorded:?}");
    }

    let (emails, texts) = delivered(&api, &fakes, &expected).await;
    for (fake, ids, what) in [(&fakes.mail, &emails, "email"), (&fakes.sms, &texts, "sms")] {
        let accepted = fake.accepted();
        let accepted_ids: BTreeSet<String> = accepted.keys().cloned().collect();
        assert_eq!(&accepted_ids, ids, "{what}: accepted exactly the notices");
        assert!(
            accepted.values().all(|times| *times == 1),
            "{what}: {accepted:?}"
        );
        eprintln!(
            "notify notices [{what}]: {} delivered once each, {} repeated calls absorbed by the key",
            ids.len(),
            fake.absorbed_repeats()
        );
    }

    // Analytics counts what the fakes counted.
    report_latency(&api, "after the kill").await;
    let notices_sent = i64::try_from(emails.len() + texts.len()).unwrap();
    let summary = poll_until(
        "analytics counts the notices",
        Deadline::secs(60),
        || async {
            let summary = api
                .get("/v1/analytics/summary")
                .await
                .map_err(|e| e.to_string())?
                .body;
            let sums = &summary["sums"];
            let counted = (
                sums["notify.order_notices_sent"].as_i64(),
                sums["notify.sent.email.mail"].as_i64(),
                sums["notify.sent.sms.primary"].as_i64(),
            );
            match counted
                == (
                    Some(notices_sent),
                    Some(i64::try_from(emails.len()).unwrap()),
                    Some(i64::try_from(texts.len()).unwrap()),
                ) {
                true => Ok(Some(summary)),
                false => Err(format!("{counted:?}")),
            }
        },
    )
    .await
    .unwrap();
    let latency = &summary["latencies_ms"]["notify.order_to_notification_ms"];
    assert_eq!(latency["count"].as_i64(), Some(notices_sent), "{summary}");
    eprintln!(
        "notify notices: order → notification latency over {} notices (a kill -9 included): p50={}ms p90={}ms p99={}ms max={}ms",
        latency["count"], latency["p50"], latency["p90"], latency["p99"], latency["max"]
    );

    // The SMS provider fails for good: the next confirmation's SMS is
    // retried, then parked in notify.dlq with its reason; its email and the
    // emails of the orders behind it are delivered all the same.
    fakes.sms.set(Behaviour::Fail);
    let (phone_customer, _) = customers[0].clone();
    let failing = place(&api, format!("{prefix}-sms-down"), phone_customer, None).await;
    let behind = place(
        &api,
        format!("{prefix}-behind"),
        customers[2].0.clone(),
        None,
    )
    .await;
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for order in [&failing, &behind] {
        let recorded = notices(&api, order, 1).await;
        ids.insert(
            order.as_str(),
            recorded[0]["notification_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect(),
        );
    }
    let failed_sms = ids[failing.as_str()][1].clone();
    let flowing_emails = [
        ids[failing.as_str()][0].clone(),
        ids[behind.as_str()][0].clone(),
    ];
    poll_until(
        "the emails flow past the failing SMS",
        Deadline::secs(60),
        || async {
            let accepted = fakes.mail.accepted();
            Ok::<_, String>(
                flowing_emails
                    .iter()
                    .all(|id| accepted.contains_key(id))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    let dlq_topic = deployment.topic("notify.dlq");
    let parked = poll_until(
        "the SMS parked as exhausted",
        Deadline::secs(60),
        || async {
            let records = read_topic(deployment.bootstrap_servers(), &dlq_topic)
                .await
                .map_err(|error| error.to_string())?;
            let exhausted: Vec<String> = records
                .iter()
                .filter(|record| record.header("dlq-cause") == Some(b"exhausted".as_slice()))
                .filter(|record| record.key.as_deref() == Some(failed_sms.as_bytes()))
                .map(|record| {
                    String::from_utf8_lossy(record.header("dlq-error").unwrap_or_default())
                        .into_owned()
                })
                .collect();
            match exhausted.first() {
                Some(reason) => Ok(Some(reason.clone())),
                None => Err(format!(
                    "{} dead letters, none for {failed_sms}",
                    records.len()
                )),
            }
        },
    )
    .await
    .unwrap();
    assert!(parked.contains("503"), "{parked}");
    poll_until("the SMS recorded failed", Deadline::secs(60), || async {
        let view = api
            .get(&format!("/v1/notifications/{failed_sms}"))
            .await
            .map_err(|error| error.to_string())?;
        match view.str("status") {
            Some("failed") => Ok(Some(())),
            _ => Err(view.to_string()),
        }
    })
    .await
    .unwrap();
    assert!(!fakes.sms.accepted().contains_key(&failed_sms));
    drop(front);
}
